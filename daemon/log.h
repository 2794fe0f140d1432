/* SPDX-License-Identifier: MIT */
/* Logging to the journal (structured, with slot and serial fields) or to stderr. */
#ifndef PROVD_LOG_H
#define PROVD_LOG_H

#include <stdarg.h>
#include <syslog.h>

#include "util.h"

void log_open(void);
void log_set_max_level(int level);
int log_get_max_level(void);
/** Parses "err", "warning", "notice", "info", "debug"; returns the level or -EINVAL. */
int log_level_from_string(const char *s);
/**
 * Copies @in to @out (@size bytes, NUL-terminated) with every control byte
 * (< 0x20, 0x7f) and backslash written as \xNN; stops before an escape that
 * does not fit. Returns the length written. Every log line goes through it.
 */
size_t log_escape(const char *in, char *out, size_t size);

/**
 * Logs one line. @slot and @serial may be NULL; they prefix the message and
 * become PROVD_SLOT= / PROVD_SERIAL= fields in the journal. %m prints
 * strerror(-error). Returns -abs(error), or 0 when error is 0.
 */
int log_internal(int level, int error, const char *slot, const char *serial,
                 const char *fmt, ...) _printf_(5, 6);
int log_internalv(int level, int error, const char *slot, const char *serial,
                  const char *fmt, va_list ap) _printf_(5, 0);

#define log_full_errno(level, error, ...)                                       \
        ({                                                                      \
                int _l = (level), _e = (error);                                 \
                (_l <= log_get_max_level()) ? log_internal(_l, _e, NULL, NULL, __VA_ARGS__) \
                                            : -abs(_e);                         \
        })

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, e, __VA_ARGS__)

#define log_oom() log_error_errno(-ENOMEM, "out of memory")

#endif
