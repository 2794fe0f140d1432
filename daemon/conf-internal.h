/* SPDX-License-Identifier: MIT */
/* conf's private header: the parse context and limits shared by conf.c, conf-parse.c and conf-allowlist.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

#define CONF_MAX_VALUE 1024     /* longest accepted value */
#define CONF_MAX_LIST 256       /* globs, USB ids, slot labels each */
#define CONF_MAX_SECRET 256     /* bytes read from a PIN or PSK file */

struct parse_ctx {
        struct conf *conf;
        const char *file;
        char *err;
        size_t errlen;
        int error;
        bool private_file;              /* the file being parsed: no group or other permission bits */
};

static inline bool printable(const char *s) {
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
                        return false;
        return true;
}

/* conf-parse.c: inih's callback, one key of one file into ctx->conf (the key table). */
int conf_ini_handler(void *user, const char *section, const char *key, const char *value);

/* conf-allowlist.c: [profile] serial_allowlist, read when the configuration is loaded. */
int conf_load_allowlist(struct conf *c, char *err, size_t errlen);
