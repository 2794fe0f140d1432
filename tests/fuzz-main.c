/* SPDX-License-Identifier: MIT */
/* Replays a fuzz corpus through LLVMFuzzerTestOneInput() when not built with libFuzzer. */

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
        FILE *f = fopen(path, "rbe");
        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
                if (len == cap) {
                        cap = cap ? cap * 2 : 4096;
                        uint8_t *n = realloc(buf, cap);
                        if (!n) {
                                free(buf);
                                fclose(f);
                                return -ENOMEM;
                        }
                        buf = n;
                }
                size_t r = fread(buf + len, 1, cap - len, f);
                if (r == 0)
                        break;
                len += r;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        return 0;
}

static int cmp(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
        unsigned files = 0;

        /* Always exercise the empty input too. */
        LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i]) < 0)
                                return 1;
                        files++;
                        continue;
                }
                DIR *d = opendir(argv[i]);
                if (!d)
                        return 1;
                char **names = NULL;
                size_t n = 0;
                struct dirent *de;
                while ((de = readdir(d))) {
                        if (de->d_name[0] == '.')
                                continue;
                        names = realloc(names, (n + 1) * sizeof(*names));
                        if (!names)
                                return 1;
                        if (asprintf(&names[n], "%s/%s", argv[i], de->d_name) < 0)
                                return 1;
                        n++;
                }
                closedir(d);
                qsort(names, n, sizeof(*names), cmp);
                for (size_t k = 0; k < n; k++) {
                        if (run_file(names[k]) < 0)
                                return 1;
                        files++;
                        free(names[k]);
                }
                free(names);
        }
        printf("replayed %u inputs\n", files);
        /* A corpus that is missing or empty is a broken test, not a pass. */
        return files > 0 ? 0 : 1;
}
