/* SPDX-License-Identifier: MIT */
/* AWS credentials: environment, shared credentials file + profile, or a file named in the configuration. */
#ifndef PROVD_AWS_CREDS_H
#define PROVD_AWS_CREDS_H

#include <stddef.h>

#define AWS_CREDS_FILE_MAX 65536        /* a credentials file larger than this is refused */
#define AWS_ACCESS_KEY_MAX 128
#define AWS_SECRET_KEY_MAX 128
#define AWS_SESSION_TOKEN_MAX 4096
#define AWS_PROFILE_MAX 64

/* Never logged, never written anywhere; wiped when freed. */
struct aws_creds {
        char access_key_id[AWS_ACCESS_KEY_MAX + 1];
        char secret_access_key[AWS_SECRET_KEY_MAX + 1];
        char *session_token;            /* NULL for long-term keys */
        char source[96];                /* where they came from, for messages: "environment", "file ... [profile]" */
};

/*
 * Where to look, in order (the first that has a key wins):
 *   1. @file (the [aws] credentials_file key): an absolute path, or a bare
 *      name looked up in $CREDENTIALS_DIRECTORY (systemd LoadCredential=);
 *      same format as the shared credentials file, section @profile.
 *   2. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN).
 *   3. The shared credentials file: $AWS_SHARED_CREDENTIALS_FILE, else
 *      $HOME/.aws/credentials; section $AWS_PROFILE, else @profile, else "default".
 * An explicitly configured file that is missing or broken is an error (no
 * fallback to the environment: the operator asked for that file).
 */
struct aws_creds_source {
        const char *file;               /* NULL: not configured */
        const char *profile;            /* NULL: "default" */
};

/**
 * Loads credentials. @getenv_fn NULL means getenv() (tests pass their own).
 * Returns 0 and a new struct (aws_creds_free()), or -ENOENT (none found),
 * -EINVAL (malformed: the message in @err says what and where, never a
 * secret), -E2BIG (file or value too large), -ENOMEM, or a -errno of open().
 */
int aws_creds_load(const struct aws_creds_source *src, const char *(*getenv_fn)(const char *name),
                   struct aws_creds **ret, char *err, size_t errlen);

/**
 * Parses shared-credentials-file text (INI: [profile] sections with
 * aws_access_key_id, aws_secret_access_key, aws_session_token; other keys
 * ignored). Returns 0, -ENOENT (no such profile or no key in it), -EINVAL,
 * -E2BIG, -ENOMEM.
 */
int aws_creds_parse(const char *text, size_t len, const char *profile, struct aws_creds **ret,
                    char *err, size_t errlen);

struct aws_creds *aws_creds_free(struct aws_creds *c);
struct aws_creds *aws_creds_dup(const struct aws_creds *c);

#endif
