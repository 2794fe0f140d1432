/* SPDX-License-Identifier: MIT */
/* AWS credentials: environment, shared credentials file + profile, or a file named in the configuration. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws-creds.h"
#include "basic/secret-file.h"
#include "util.h"

struct aws_creds *aws_creds_free(struct aws_creds *c) {
        if (!c)
                return NULL;
        if (c->session_token) {
                explicit_bzero(c->session_token, strlen(c->session_token));
                free(c->session_token);
        }
        explicit_bzero(c, sizeof *c);
        free(c);
        return NULL;
}

static void aws_creds_freep(struct aws_creds **c) {
        aws_creds_free(*c);
}
#define _cleanup_creds_ _cleanup_(aws_creds_freep)

struct aws_creds *aws_creds_dup(const struct aws_creds *c) {
        struct aws_creds *n = malloc(sizeof *n);

        if (!n)
                return NULL;
        memcpy(n, c, sizeof *n);
        if (c->session_token) {
                n->session_token = strdup(c->session_token);
                if (!n->session_token) {
                        explicit_bzero(n, sizeof *n);
                        free(n);
                        return NULL;
                }
        }
        return n;
}

/* The values end up in HTTP headers and the signing key: printable ASCII, no
 * spaces, so nothing can split a header or hide in a log line. */
static bool valid_value(const char *s, size_t len, size_t max) {
        if (len == 0 || len > max)
                return false;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
                        return false;
        return true;
}

static bool valid_key_id(const char *s, size_t len) {
        if (len < 16 || len > AWS_ACCESS_KEY_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
                        return false;
        return true;
}

static int set_field(struct aws_creds *c, const char *key, size_t klen, const char *v, size_t vlen,
                     unsigned line, char *err, size_t errlen) {
#define KEYIS(k) (klen == strlen(k) && strncasecmp(key, k, klen) == 0)
        if (KEYIS("aws_access_key_id")) {
                if (!valid_key_id(v, vlen))
                        return snprintf(err, errlen, "line %u: aws_access_key_id is not an access key id "
                                        "(16-128 capital letters and digits)", line), -EINVAL;
                memcpy(c->access_key_id, v, vlen);
                c->access_key_id[vlen] = 0;
        } else if (KEYIS("aws_secret_access_key")) {
                if (!valid_value(v, vlen, AWS_SECRET_KEY_MAX))
                        return snprintf(err, errlen, "line %u: aws_secret_access_key is empty, too long "
                                        "or has spaces or control characters", line), -EINVAL;
                memcpy(c->secret_access_key, v, vlen);
                c->secret_access_key[vlen] = 0;
        } else if (KEYIS("aws_session_token") || KEYIS("aws_security_token")) {
                if (!valid_value(v, vlen, AWS_SESSION_TOKEN_MAX))
                        return snprintf(err, errlen, "line %u: aws_session_token is empty, longer than %d "
                                        "bytes or has spaces or control characters", line,
                                        AWS_SESSION_TOKEN_MAX), -EINVAL;
                char *t = strndup(v, vlen);
                if (!t)
                        return -ENOMEM;
                if (c->session_token) {
                        explicit_bzero(c->session_token, strlen(c->session_token));
                        free(c->session_token);
                }
                c->session_token = t;
        }
        /* Other keys (region, output, role_arn ...) belong to other tools. */
        return 0;
#undef KEYIS
}

static bool is_space(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\r';
}

int aws_creds_parse(const char *text, size_t len, const char *profile, struct aws_creds **ret,
                    char *err, size_t errlen) {
        _cleanup_creds_ struct aws_creds *c = NULL;
        bool in_profile = false, seen_profile = false;
        unsigned line = 0;
        size_t plen;
        int r;

        if (!profile || !*profile)
                profile = "default";
        plen = strlen(profile);
        if (len > AWS_CREDS_FILE_MAX)
                return snprintf(err, errlen, "credentials file larger than %d bytes", AWS_CREDS_FILE_MAX), -E2BIG;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;

        for (size_t pos = 0; pos < len;) {
                const char *s = text + pos;
                const char *nl = memchr(s, '\n', len - pos);
                size_t n = nl ? (size_t)(nl - s) : len - pos;
                pos += n + (nl ? 1 : 0);
                line++;

                while (n > 0 && is_space(*s))
                        s++, n--;
                while (n > 0 && is_space(s[n - 1]))
                        n--;
                if (n == 0 || *s == '#' || *s == ';')
                        continue;
                if (memchr(s, '\0', n))
                        return snprintf(err, errlen, "line %u: NUL byte", line), -EINVAL;
                if (*s == '[') {
                        if (s[n - 1] != ']')
                                return snprintf(err, errlen, "line %u: unterminated section header", line), -EINVAL;
                        const char *name = s + 1;
                        size_t nlen = n - 2;
                        while (nlen > 0 && is_space(*name))
                                name++, nlen--;
                        while (nlen > 0 && is_space(name[nlen - 1]))
                                nlen--;
                        /* ~/.aws/config spells sections "[profile NAME]"; accept both. */
                        if (nlen > 8 && strncmp(name, "profile ", 8) == 0) {
                                name += 8, nlen -= 8;
                                while (nlen > 0 && is_space(*name))
                                        name++, nlen--;
                        }
                        in_profile = nlen == plen && memcmp(name, profile, plen) == 0;
                        seen_profile |= in_profile;
                        continue;
                }
                const char *eq = memchr(s, '=', n);
                if (!eq)
                        return snprintf(err, errlen, "line %u: expected key = value", line), -EINVAL;
                if (!in_profile)
                        continue;
                size_t klen = (size_t)(eq - s);
                while (klen > 0 && is_space(s[klen - 1]))
                        klen--;
                const char *v = eq + 1;
                size_t vlen = n - (size_t)(v - s);
                while (vlen > 0 && is_space(*v))
                        v++, vlen--;
                r = set_field(c, s, klen, v, vlen, line, err, errlen);
                if (r < 0)
                        return r;
        }
        if (!seen_profile)
                return snprintf(err, errlen, "no profile [%.64s]", profile), -ENOENT;
        if (!c->access_key_id[0] || !c->secret_access_key[0])
                return snprintf(err, errlen, "profile [%.64s] lacks aws_access_key_id or aws_secret_access_key",
                                profile), -ENOENT;
        snprintf(c->source, sizeof c->source, "[%.64s]", profile);
        *ret = TAKE_PTR(c);
        return 0;
}


static int load_file(const char *path, const char *profile, struct aws_creds **ret, char *err, size_t errlen) {
        char *text = NULL, msg[256] = "";
        size_t len = 0;
        int r;

        r = file_read_bounded(path, AWS_CREDS_FILE_MAX, &text, &len);
        if (r < 0) {
                snprintf(err, errlen, "%s: %s", path, r == -EFBIG ? "larger than 64 KiB" : strerror(-r));
                return r;
        }
        r = aws_creds_parse(text, len, profile, ret, msg, sizeof msg);
        explicit_bzero(text, len);
        free(text);
        if (r < 0) {
                snprintf(err, errlen, "%s: %s", path, msg);
                return r;
        }
        char src[96];
        snprintf(src, sizeof src, "%.60s %.30s", path, (*ret)->source);
        memcpy((*ret)->source, src, sizeof src);
        return 0;
}

static const char *env_or_null(const char *(*getenv_fn)(const char *), const char *name) {
        const char *v = getenv_fn ? getenv_fn(name) : getenv(name);
        return isempty(v) ? NULL : v;
}

int aws_creds_load(const struct aws_creds_source *src, const char *(*getenv_fn)(const char *name),
                   struct aws_creds **ret, char *err, size_t errlen) {
        const char *profile = src && src->profile ? src->profile : NULL;
        char path[PATH_MAX];
        int r;

        if (src && src->file) {
                if (src->file[0] == '/')
                        snprintf(path, sizeof path, "%s", src->file);
                else {
                        const char *dir = env_or_null(getenv_fn, "CREDENTIALS_DIRECTORY");
                        if (!dir)
                                return snprintf(err, errlen, "credentials_file '%.64s' is not an absolute path "
                                                "and $CREDENTIALS_DIRECTORY is not set", src->file), -ENOENT;
                        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, src->file) >= sizeof path)
                                return -ENAMETOOLONG;
                }
                return load_file(path, profile, ret, err, errlen);
        }

        const char *id = env_or_null(getenv_fn, "AWS_ACCESS_KEY_ID");
        const char *secret = env_or_null(getenv_fn, "AWS_SECRET_ACCESS_KEY");
        if (id || secret) {
                _cleanup_creds_ struct aws_creds *c = calloc(1, sizeof *c);
                const char *token = env_or_null(getenv_fn, "AWS_SESSION_TOKEN");

                if (!c)
                        return -ENOMEM;
                if (!id || !secret)
                        return snprintf(err, errlen, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set "
                                        "together"), -EINVAL;
                r = set_field(c, "aws_access_key_id", 17, id, strlen(id), 0, err, errlen);
                if (r >= 0)
                        r = set_field(c, "aws_secret_access_key", 21, secret, strlen(secret), 0, err, errlen);
                if (r >= 0 && token)
                        r = set_field(c, "aws_session_token", 17, token, strlen(token), 0, err, errlen);
                if (r < 0) {
                        /* "line 0: aws_x ..." reads badly for the environment. */
                        char msg[200];
                        snprintf(msg, sizeof msg, "%s", err + (strncmp(err, "line 0: ", 8) == 0 ? 8 : 0));
                        snprintf(err, errlen, "environment: %s", msg);
                        return r;
                }
                snprintf(c->source, sizeof c->source, "environment");
                *ret = TAKE_PTR(c);
                return 0;
        }

        const char *shared = env_or_null(getenv_fn, "AWS_SHARED_CREDENTIALS_FILE");
        const char *env_profile = env_or_null(getenv_fn, "AWS_PROFILE");
        if (!shared) {
                const char *home = env_or_null(getenv_fn, "HOME");
                if (!home)
                        return snprintf(err, errlen, "no AWS credentials: none configured, none in the "
                                        "environment, no $HOME"), -ENOENT;
                if ((size_t)snprintf(path, sizeof path, "%s/.aws/credentials", home) >= sizeof path)
                        return -ENAMETOOLONG;
        } else
                snprintf(path, sizeof path, "%s", shared);
        r = load_file(path, env_profile ? env_profile : profile, ret, err, errlen);
        if (r == -ENOENT && !shared && access(path, F_OK) < 0)
                snprintf(err, errlen, "no AWS credentials: none configured, none in the environment, no %.200s",
                         path);
        return r;
}
