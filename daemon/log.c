/* SPDX-License-Identifier: MIT */
/* Logging to the journal (structured, with slot and serial fields) or to stderr. */

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "config.h"
#include "log.h"

#if HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#endif

static int max_level = LOG_INFO;
static bool to_journal;

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
        [LOG_ERR] = "err", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

/* The journal sets JOURNAL_STREAM=dev:ino for a service's stderr; only then talk to it natively. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

void log_open(void) {
#if HAVE_SYSTEMD
        to_journal = stderr_is_journal();
#else
        (void)stderr_is_journal;
#endif
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (level_names[i] && streq(level_names[i], s))
                        return (int)i;
        return -EINVAL;
}

/*
 * Text from outside (port paths, slot labels, board error texts, config
 * values) reaches log lines inside %s arguments. A control character in it
 * could forge a second log line (a newline) or drive the terminal that
 * shows the log (an escape sequence), so every byte below 0x20 and 0x7f is
 * written as \xNN, and so is a backslash, so the escaping cannot itself be
 * forged. Bytes >= 0x80 are kept: UTF-8 labels stay readable. Truncates to
 * @size - 1 bytes without cutting an escape in half.
 */
size_t log_escape(const char *in, char *out, size_t size) {
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;

        if (size == 0)
                return 0;
        for (; *in; in++) {
                unsigned char c = (unsigned char)*in;

                if (c >= 0x20 && c != 0x7f && c != '\\') {
                        if (o + 1 >= size)
                                break;
                        out[o++] = (char)c;
                        continue;
                }
                if (o + 4 >= size)
                        break;
                out[o++] = '\\';
                out[o++] = 'x';
                out[o++] = hex[c >> 4];
                out[o++] = hex[c & 15];
        }
        out[o] = '\0';
        return o;
}

int log_internalv(int level, int error, const char *slot, const char *serial,
                  const char *fmt, va_list ap) {
        char raw[2048], msg[2048], prefix[160] = "", eslot[96] = "", eserial[80] = "";
        int saved = errno;

        errno = abs(error);     /* for %m */
        vsnprintf(raw, sizeof raw, fmt, ap);
        errno = saved;
        log_escape(raw, msg, sizeof msg);
        if (slot)
                log_escape(slot, eslot, sizeof eslot);
        if (serial)
                log_escape(serial, eserial, sizeof eserial);

        if (slot && serial)
                snprintf(prefix, sizeof prefix, "slot %s [%s]: ", eslot, eserial);
        else if (slot)
                snprintf(prefix, sizeof prefix, "slot %s: ", eslot);

#if HAVE_SYSTEMD
        if (to_journal) {
                sd_journal_send("MESSAGE=%s%s", prefix, msg,
                                "PRIORITY=%i", level,
                                "PROVD_SLOT=%s", eslot,
                                "PROVD_SERIAL=%s", eserial,
                                error ? "ERRNO=%i" : NULL, abs(error),
                                NULL);
                return error ? -abs(error) : 0;
        }
#endif
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        fprintf(stderr, "%02d:%02d:%02d.%03ld %-7s %s%s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
                ts.tv_nsec / 1000000, level_names[level & 7], prefix, msg);
        return error ? -abs(error) : 0;
}

int log_internal(int level, int error, const char *slot, const char *serial, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_internalv(level, error, slot, serial, fmt, ap);
        va_end(ap);
        return r;
}

bool check_failed(bool failed, const char *expr, const char *file, int line) {
        static bool dumped;

        if (!failed)
                return false;
        log_internal(LOG_CRIT, 0, NULL, NULL, "assertion '%s' failed at %s:%d; recovering", expr, file, line);
        if (!dumped) {
                dumped = true;
                /* One core for the post-mortem, without taking the daemon down. */
                if (fork() == 0)
                        abort();
        }
        return true;
}
