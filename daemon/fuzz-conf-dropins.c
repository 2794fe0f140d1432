/* SPDX-License-Identifier: MIT */
/* Fuzz target: conf_load() on a main file plus drop-ins in FILE.d/, written to a temporary directory. */

/*
 * Input: files separated by the byte 0x1e; the first is provd.conf, the others
 * (at most 16) go to provd.conf.d/ as NN.conf, or as NN.conf.off (which must
 * be ignored) when they start with '!'.
 * Check: conf_load() is the same as parsing the main file and then each
 * .conf drop-in in lexical order with conf_parse_string(), then validating:
 * same result, same message, same settings. Nothing leaks (ASan).
 */

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"

#define MAX_DROPINS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], main_path[128], d_path[160];

static void check(bool ok, const char *what) {
        if (!ok) {
                fprintf(stderr, "fuzz-conf-dropins: %s\n", what);
                abort();
        }
}

static bool same_str(const char *a, const char *b) {
        return a == b || (a && b && strcmp(a, b) == 0);
}

static void write_file(const char *path, const char *p, size_t n) {
        FILE *f = fopen(path, "we");

        check(f != NULL, "fopen");
        /* Private, as a file holding wifi_psk must be (conf.c refuses an inline PSK in a file
         * others can read; the sequential reference parse does not look at modes). */
        check(fchmod(fileno(f), 0600) == 0, "fchmod");
        check(n == 0 || fwrite(p, 1, n, f) == n, "fwrite");
        check(fclose(f) == 0, "fclose");
}

static void clean_dir(void);

/* The replay and libFuzzer both end with exit(): leave no directory behind. */
static void remove_dir(void) {
        clean_dir();
        (void)rmdir(d_path);
        (void)unlink(main_path);
        (void)rmdir(dir);
}

static void setup_dir(void) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

        snprintf(dir, sizeof dir, "%s/fuzz-conf-XXXXXX", base);
        check(mkdtemp(dir) != NULL, "mkdtemp");
        snprintf(main_path, sizeof main_path, "%s/provd.conf", dir);
        snprintf(d_path, sizeof d_path, "%s.d", main_path);
        check(mkdir(d_path, 0700) == 0, "mkdir");
        check(atexit(remove_dir) == 0, "atexit");
}

static void clean_dir(void) {
        DIR *d = opendir(d_path);
        struct dirent *de;

        check(d != NULL, "opendir");
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        check(unlinkat(dirfd(d), de->d_name, 0) == 0, "unlink");
        closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char err_load[512] = "", err_seq[512] = "", path[MAX_DROPINS][200], *text[MAX_DROPINS + 1] = {};
        bool enabled[MAX_DROPINS] = {};
        struct conf a, b;
        size_t n = 0, off = 0;
        int ra, rb = 0;

        if (size > 65536 || memchr(data, 0, size))
                return 0;       /* a NUL ends a string, not a file: the two paths would differ by design */
        if (!dir[0])
                setup_dir();
        clean_dir();

        /* Split on 0x1e. */
        while (n <= MAX_DROPINS) {
                const uint8_t *s = memchr(data + off, 0x1e, size - off);
                size_t len = (s ? (size_t)(s - data) : size) - off;

                text[n] = strndup((const char *)data + off, len);
                check(text[n] != NULL, "strndup");
                n++;
                if (!s)
                        break;
                off += len + 1;
        }
        write_file(main_path, text[0], strlen(text[0]));
        for (size_t i = 1; i < n; i++) {
                enabled[i - 1] = text[i][0] != '!';
                snprintf(path[i - 1], sizeof path[i - 1], "%s/%02zu.conf%s", d_path, i, enabled[i - 1] ? "" : ".off");
                write_file(path[i - 1], text[i], strlen(text[i]));
        }

        conf_init(&a);
        ra = conf_load(&a, main_path, err_load, sizeof err_load);

        conf_init(&b);
        rb = conf_parse_string(&b, text[0], main_path, err_seq, sizeof err_seq);
        for (size_t i = 1; rb >= 0 && i < n; i++)
                if (enabled[i - 1])
                        rb = conf_parse_string(&b, text[i], path[i - 1], err_seq, sizeof err_seq);
        if (rb >= 0)
                rb = conf_validate(&b, err_seq, sizeof err_seq);

        check(ra == rb, "conf_load() and the sequential parse disagree");
        check(ra == 0 || (strcmp(err_load, err_seq) == 0 && err_load[0]), "different or empty messages");
        if (ra == 0) {
                check(same_str(a.signer_uri, b.signer_uri) && same_str(a.signer_cert, b.signer_cert) &&
                              same_str(a.root_cert, b.root_cert) && same_str(a.wifi_psk, b.wifi_psk) &&
                              same_str(a.name, b.name) && same_str(a.database, b.database),
                      "different strings");
                check(a.n_globs == b.n_globs && a.n_usb_ids == b.n_usb_ids && a.n_slots == b.n_slots &&
                              a.response_ms == b.response_ms && a.keygen_ms == b.keygen_ms &&
                              a.retries == b.retries && a.session_ms == b.session_ms && a.lock == b.lock &&
                              a.max_frame == b.max_frame && a.aws.mode == b.aws.mode,
                      "different values");
                for (size_t i = 0; i < a.n_slots; i++)
                        check(same_str(a.slots[i].key, b.slots[i].key) &&
                                      same_str(a.slots[i].label, b.slots[i].label),
                              "different slot labels");
        }
        conf_deinit(&a);
        conf_deinit(&b);
        for (size_t i = 0; i < n; i++)
                free(text[i]);
        return 0;
}
