/* SPDX-License-Identifier: MIT */
/* provd configuration: [profile] serial_allowlist (serials or a manifest), sorted for lookups. */

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf.h"
#include "util.h"
#include "conf-internal.h"

#define ALLOWLIST_MAX (1u << 20)        /* serials in [profile] serial_allowlist */
#define ALLOWLIST_MAX_BYTES (64u << 20)

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends @s (hex, either case) lowercased; -EINVAL when it is not a serial. */
static int add_serial(struct conf *c, const char *s, size_t *cap) {
        size_t n = strlen(s);
        char *l;

        if (n < 2 || n > 64 || n % 2)
                return -EINVAL;
        if (c->n_allowed_serials >= ALLOWLIST_MAX)
                return -E2BIG;
        if (!(l = strdup(s)))
                return -ENOMEM;
        for (char *p = l; *p; p++) {
                if (*p >= 'A' && *p <= 'F')
                        *p = (char)(*p - 'A' + 'a');
                else if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return free(l), -EINVAL;
        }
        if (c->n_allowed_serials == *cap) {
                size_t ncap = *cap ? *cap * 2 : 256;
                char **a = realloc(c->allowed_serials, ncap * sizeof *a);
                if (!a)
                        return free(l), -ENOMEM;
                c->allowed_serials = a;
                *cap = ncap;
        }
        c->allowed_serials[c->n_allowed_serials++] = l;
        return 0;
}

/*
 * Microchip's secure-element manifest: a JSON array of signed secure
 * elements, each naming its serial in "header": {"uniqueId": "0123..."}.
 * The JWS signatures are not checked here: like the plain list, the file is
 * trusted as its owner wrote it (it may not be writable by group or others).
 */
static int read_manifest(struct conf *c, FILE *f, size_t *cap, char *err, size_t errlen) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0, tcap = 0;
        cJSON *root, *e;
        int r = 0;

        for (;;) {
                if (len + 65536 > tcap) {
                        if (tcap >= ALLOWLIST_MAX_BYTES)
                                return -EFBIG;
                        tcap = tcap ? tcap * 2 : 262144;
                        char *t = realloc(text, tcap);
                        if (!t)
                                return -ENOMEM;
                        text = t;
                }
                size_t k = fread(text + len, 1, tcap - len, f);
                len += k;
                if (k == 0)
                        break;
        }
        if (ferror(f))
                return -EIO;
        root = cJSON_ParseWithLength(text ? text : "", len);
        if (!cJSON_IsArray(root)) {
                snprintf(err, errlen, "%s: not a JSON array of secure elements (a manifest)", c->serial_allowlist);
                cJSON_Delete(root);
                return -EINVAL;
        }
        unsigned i = 0;
        cJSON_ArrayForEach(e, root) {
                const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                        cJSON_GetObjectItemCaseSensitive(e, "header"), "uniqueId"));
                r = id ? add_serial(c, id, cap) : -EINVAL;
                if (r < 0) {
                        snprintf(err, errlen, "%s: element %u: %s", c->serial_allowlist, i,
                                 r == -E2BIG ? "too many serials" : "no header.uniqueId in hex (2 to 64 digits)");
                        break;
                }
                i++;
        }
        cJSON_Delete(root);
        return r;
}

/* One serial a line, in either case, lowercased, or a manifest (JSON); sorted for bsearch(). */
int conf_read_allowlist(struct conf *c, FILE *f, char *err, size_t errlen) {
        char line[256];
        unsigned lineno = 0;
        size_t cap = 0;
        int ch, r;

        while ((ch = fgetc(f)) == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
                ;
        if (ch == '[') {
                ungetc(ch, f);
                r = read_manifest(c, f, &cap, err, errlen);
                if (r < 0)
                        return r;
                goto sort;
        }
        if (ch != EOF)
                ungetc(ch, f);
        while (fgets(line, sizeof line, f)) {
                char *s = line + strspn(line, " \t"), *e;

                lineno++;
                if (!strchr(line, '\n') && !feof(f)) {
                        snprintf(err, errlen, "%s:%u: line too long", c->serial_allowlist, lineno);
                        return -EINVAL;
                }
                e = s + strcspn(s, " \t\r\n#");
                /* After the serial: only blanks or a comment. */
                const char *rest = e + strspn(e, " \t\r\n");
                if (*rest && *rest != '#')
                        goto bad;
                if (e == s)
                        continue;       /* blank or comment */
                *e = 0;
                r = add_serial(c, s, &cap);
                if (r == -E2BIG) {
                        snprintf(err, errlen, "%s: more than %u serials", c->serial_allowlist, ALLOWLIST_MAX);
                        return r;
                }
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        goto bad;
                continue;
        bad:
                snprintf(err, errlen, "%s:%u: not a serial in hex (2 to 64 digits)", c->serial_allowlist, lineno);
                return -EINVAL;
        }
        if (ferror(f)) {
                snprintf(err, errlen, "[profile] serial_allowlist %s: read error", c->serial_allowlist);
                return -EIO;
        }
sort:
        if (c->n_allowed_serials > 0)
                qsort(c->allowed_serials, c->n_allowed_serials, sizeof(char *), cmp_str);
        return 0;
}

/*
 * [profile] serial_allowlist: hex serials, one a line (the secure-element
 * vendor's manifest reduced to its serials); blank lines and '#' comments
 * skipped. Not a secret, but whoever can write it decides which boards get
 * certificates: refused when group or others may write it.
 */
int conf_load_allowlist(struct conf *c, char *err, size_t errlen) {
        struct stat stb;
        FILE *f;
        int r;

        if (!c->serial_allowlist)
                return 0;
        f = fopen(c->serial_allowlist, "re");
        if (!f || fstat(fileno(f), &stb) < 0) {
                r = -errno;
                if (f)
                        fclose(f);
                snprintf(err, errlen, "[profile] serial_allowlist %s: %s", c->serial_allowlist, strerror(-r));
                return r;
        }
        if (!S_ISREG(stb.st_mode) || (stb.st_mode & 022) || stb.st_size > ALLOWLIST_MAX_BYTES) {
                snprintf(err, errlen, "[profile] serial_allowlist %s: %s", c->serial_allowlist,
                         !S_ISREG(stb.st_mode) ? "not a regular file" :
                         (stb.st_mode & 022) ? "writable by group or others (chmod 644)" : "larger than 64 MiB");
                fclose(f);
                return -EPERM;
        }
        r = conf_read_allowlist(c, f, err, errlen);
        fclose(f);
        return r;
}

bool conf_serial_allowed(const struct conf *c, const char *serial) {
        char key[65];
        const char *k = key;
        size_t n = strlen(serial);

        if (!c->serial_allowlist)
                return true;
        if (n >= sizeof key || c->n_allowed_serials == 0)
                return false;
        for (size_t i = 0; i <= n; i++)
                key[i] = serial[i] >= 'A' && serial[i] <= 'F' ? (char)(serial[i] - 'A' + 'a') : serial[i];
        return bsearch(&k, c->allowed_serials, c->n_allowed_serials, sizeof(char *), cmp_str) != NULL;
}
