/* SPDX-License-Identifier: MIT */
/* provd configuration: the value parsers and the table of keys they fill (inih callback). */

#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws-register.h"
#include "certs-hsm/signer.h"
#include "conf.h"
#include "serial-port.h"
#include "log.h"
#include "util.h"
#include "basic/hex.h"
#include "conf-internal.h"

typedef int (*conf_parser)(struct parse_ctx *ctx, const char *value, void *field);

struct conf_item {
        const char *section;
        const char *key;
        conf_parser parse;
        size_t offset;
        unsigned min, max;              /* for unsigned values */
};

static int fail(struct parse_ctx *ctx, int error, const char *fmt, const char *a, const char *b) {
        if (!ctx->error) {
                char what[256];
                snprintf(what, sizeof what, fmt, a, b);
                snprintf(ctx->err, ctx->errlen, "%s", what);
                ctx->error = error;
        }
        return error;
}

static int parse_string(struct parse_ctx *ctx, const char *value, void *field) {
        char **p = field;
        char *n;

        if (!printable(value))
                return -EINVAL;
        n = strdup(value);
        if (!n)
                return -ENOMEM;
        free(*p);
        *p = n;
        return 0;
}

/* Empty value resets to "not set". */
static int parse_opt_string(struct parse_ctx *ctx, const char *value, void *field) {
        char **p = field;

        if (isempty(value)) {
                *p = (free(*p), NULL);
                return 0;
        }
        return parse_string(ctx, value, field);
}

static int parse_path(struct parse_ctx *ctx, const char *value, void *field) {
        if (value[0] != '/')
                return -EINVAL;
        if (strlen(value) >= PATH_MAX)
                return -ENAMETOOLONG;
        return parse_string(ctx, value, field);
}

static int parse_opt_path(struct parse_ctx *ctx, const char *value, void *field) {
        if (isempty(value))
                return parse_opt_string(ctx, value, field);
        return parse_path(ctx, value, field);
}

/*
 * A secret's file: an absolute path, or "credential:NAME" for a systemd
 * credential (LoadCredential=NAME:..., read from $CREDENTIALS_DIRECTORY).
 */
static int parse_secret_path(struct parse_ctx *ctx, const char *value, void *field) {
        const char *dir, *name;
        char path[PATH_MAX];

        if (strncmp(value, "credential:", 11) != 0)
                return parse_opt_path(ctx, value, field);
        name = value + 11;
        if (isempty(name) || strlen(name) > 255 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                               "0123456789_.-") != strlen(name) || name[0] == '.')
                return -EINVAL;
        dir = getenv("CREDENTIALS_DIRECTORY");
        if (!dir || dir[0] != '/')
                return fail(ctx, -ENOENT, "%s%s needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)", "", value);
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
                return -ENAMETOOLONG;
        return parse_string(ctx, path, field);
}

/* A PSK written into the file itself: only in a file that group and others cannot read. */
static int parse_inline_psk(struct parse_ctx *ctx, const char *value, void *field) {
        if (!isempty(value) && !ctx->private_file)
                return fail(ctx, -EPERM, "%s[board] wifi_psk in %s, which group or others may read: put the PSK "
                            "in wifi_psk_file (chmod 600) or a credential:NAME", "", ctx->file);
        return parse_opt_string(ctx, value, field);
}

static int parse_bool(struct parse_ctx *ctx, const char *value, void *field) {
        static const char *const yes[] = { "1", "yes", "true", "on" };
        static const char *const no[] = { "0", "no", "false", "off" };
        bool *b = field;

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(value, yes[i]) == 0)
                        return (*b = true), 0;
                if (strcasecmp(value, no[i]) == 0)
                        return (*b = false), 0;
        }
        return -EINVAL;
}

static int parse_uint_raw(const char *value, unsigned long long *ret) {
        char *end;

        if (!*value || *value == '-' || *value == '+')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_log_level(struct parse_ctx *ctx, const char *value, void *field) {
        int r = log_level_from_string(value);
        if (r < 0)
                return r;
        *(int *)field = r;
        return 0;
}

static int parse_thing_name(struct parse_ctx *ctx, const char *value, void *field) {
        enum thing_name_mode *m = field;

        if (strcasecmp(value, "cn") == 0)
                *m = THING_NAME_CN;
        else if (strcasecmp(value, "ski") == 0)
                *m = THING_NAME_SKI;
        else
                return -EINVAL;
        return 0;
}

static int parse_cert_format(struct parse_ctx *ctx, const char *value, void *field) {
        enum cert_format_mode *m = field;

        if (strcasecmp(value, "x509") == 0)
                *m = CERT_FORMAT_MODE_X509;
        else if (strcasecmp(value, "atecc-compressed") == 0)
                *m = CERT_FORMAT_MODE_ATECC;
        else
                return -EINVAL;
        return 0;
}

static int parse_cert_expiry(struct parse_ctx *ctx, const char *value, void *field) {
        enum cert_expiry_mode *m = field;

        if (strcasecmp(value, "clamp") == 0)
                *m = CERT_EXPIRY_MODE_CLAMP;
        else if (strcasecmp(value, "refuse") == 0)
                *m = CERT_EXPIRY_MODE_REFUSE;
        else
                return -EINVAL;
        return 0;
}

/* A systemd credential name: one path component ([A-Za-z0-9_.@-], not starting with '.'). */
static int parse_credential(struct parse_ctx *ctx, const char *value, void *field) {
        char **s = field, *v;
        size_t n = strlen(value);

        if (n == 0 || n > 255 || value[0] == '.')
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)value[i]) && !strchr("_.@-", value[i]))
                        return -EINVAL;
        v = strdup(value);
        if (!v)
                return -ENOMEM;
        free(*s);
        *s = v;
        return 0;
}

static int list_append(void *arrayp, size_t *n, size_t size, const void *item) {
        void **array = arrayp;
        void *a;

        if (*n >= CONF_MAX_LIST)
                return -E2BIG;
        a = realloc(*array, (*n + 1) * size);
        if (!a)
                return -ENOMEM;
        memcpy((char *)a + *n * size, item, size);
        *array = a;
        (*n)++;
        return 0;
}

/* "glob = A B" appends each word; an empty value clears the list (drop-ins can override). */
static int parse_globs(struct parse_ctx *ctx, const char *value, void *field) {
        struct conf *c = ctx->conf;
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        if (isempty(value)) {
                for (size_t i = 0; i < c->n_globs; i++)
                        free(c->globs[i]);
                c->globs = (free(c->globs), NULL);
                c->n_globs = 0;
                return 0;
        }
        for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
                if (w[0] != '/' || strlen(w) >= PATH_MAX)
                        return -EINVAL;
                char *g = strdup(w);
                if (!g)
                        return -ENOMEM;
                int r = list_append(&c->globs, &c->n_globs, sizeof(char *), &g);
                if (r < 0)
                        return free(g), r;
        }
        return 0;
}

static int parse_hex16(const char *s, size_t len, uint16_t *ret) {
        unsigned v = 0;

        if (len == 0 || len > 4)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                int d = unhexchar(s[i]);

                if (d < 0)
                        return -EINVAL;
                v = v * 16 + (unsigned)d;
        }
        *ret = (uint16_t)v;
        return 0;
}

/* "usb_id = 03eb:2175 1366" — VID:PID pairs, or a bare VID for any product. */
static int parse_usb_ids(struct parse_ctx *ctx, const char *value, void *field) {
        struct conf *c = ctx->conf;
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        if (isempty(value)) {
                c->usb_ids = (free(c->usb_ids), NULL);
                c->n_usb_ids = 0;
                return 0;
        }
        for (char *w = strtok_r(copy, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
                struct usb_id id = {};
                char *colon = strchr(w, ':');
                int r;

                r = parse_hex16(w, colon ? (size_t)(colon - w) : strlen(w), &id.vid);
                if (r < 0)
                        return r;
                if (colon) {
                        r = parse_hex16(colon + 1, strlen(colon + 1), &id.pid);
                        if (r < 0)
                                return r;
                }
                if (id.vid == 0)
                        return -EINVAL;
                r = list_append(&c->usb_ids, &c->n_usb_ids, sizeof id, &id);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- [aws] ---- */

static const char *const aws_mode_names[] = {
        [AWS_MODE_OFF] = "off",
        [AWS_MODE_MAR] = "mar",
        [AWS_MODE_JITR] = "jitr",
        [AWS_MODE_JITP] = "jitp",
        [AWS_MODE_OFFLINE] = "offline",
};

const char *aws_mode_to_string(enum aws_mode m) {
        return (unsigned)m < ELEMENTSOF(aws_mode_names) ? aws_mode_names[m] : "?";
}

static int parse_aws_mode(struct parse_ctx *ctx, const char *value, void *field) {
        for (size_t i = 0; i < ELEMENTSOF(aws_mode_names); i++)
                if (strcasecmp(value, aws_mode_names[i]) == 0) {
                        *(enum aws_mode *)field = (enum aws_mode)i;
                        return 0;
                }
        return -EINVAL;
}

/* An absolute path, or a bare name looked up in $CREDENTIALS_DIRECTORY when loaded. */
static int parse_credentials_file(struct parse_ctx *ctx, const char *value, void *field) {
        if (isempty(value))
                return parse_opt_string(ctx, value, field);
        if (value[0] == '/')
                return parse_path(ctx, value, field);
        if (strchr(value, '/') || streq(value, ".") || streq(value, "..") || strlen(value) > 255)
                return -EINVAL;
        return parse_string(ctx, value, field);
}

/* Proxy: empty is meaningful ("no proxy", not "from the environment"). */
static int parse_proxy(struct parse_ctx *ctx, const char *value, void *field) {
        if (strchr(value, ' '))
                return -EINVAL;
        return parse_string(ctx, value, field);
}

static int parse_thing_type(struct parse_ctx *ctx, const char *value, void *field) {
        if (!isempty(value) && !aws_thing_name_valid(value))
                return -EINVAL;
        return parse_opt_string(ctx, value, field);
}

static int parse_policy_name(struct parse_ctx *ctx, const char *value, void *field) {
        if (!aws_policy_name_valid(value))
                return -EINVAL;
        return parse_string(ctx, value, field);
}

static int parse_account_id(struct parse_ctx *ctx, const char *value, void *field) {
        if (!isempty(value) && (strlen(value) != 12 || strspn(value, "0123456789") != 12))
                return -EINVAL;
        return parse_opt_string(ctx, value, field);
}

static int parse_arn(struct parse_ctx *ctx, const char *value, void *field) {
        if (!isempty(value) && !aws_arn_valid(value))
                return -EINVAL;
        return parse_opt_string(ctx, value, field);
}

static int parse_region(struct parse_ctx *ctx, const char *value, void *field) {
        if (!isempty(value) && !aws_region_valid(value))
                return -EINVAL;
        return parse_opt_string(ctx, value, field);
}

static int parse_service(struct parse_ctx *ctx, const char *value, void *field) {
        if (!aws_region_valid(value))          /* same character set: [a-z0-9-] */
                return -EINVAL;
        return parse_string(ctx, value, field);
}

/* "thing_attributes = serial model firmware"; empty: the default for the thing type. */
static int parse_thing_attributes(struct parse_ctx *ctx, const char *value, void *field) {
        struct conf_aws *a = &ctx->conf->aws;
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;
        unsigned mask = 0;

        if (!copy)
                return -ENOMEM;
        if (isempty(value)) {
                a->thing_attributes = 0;
                a->thing_attributes_set = false;
                return 0;
        }
        for (char *w = strtok_r(copy, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
                if (streq(w, "none"))
                        continue;
                int r = aws_attr_from_name(w);
                if (r < 0)
                        return r;
                mask |= (unsigned)r;
        }
        a->thing_attributes = mask;
        a->thing_attributes_set = true;
        return 0;
}

/* "1", "0.5", "12.25" tokens per second -> milli-tokens (three decimals at most). */
static int parse_milli(const char *s, size_t len, uint32_t *ret) {
        uint64_t v = 0;
        size_t i = 0, decimals = 0;
        bool dot = false;

        if (len == 0)
                return -EINVAL;
        for (; i < len; i++) {
                if (s[i] == '.' && !dot) {
                        dot = true;
                        continue;
                }
                if (s[i] < '0' || s[i] > '9' || (dot && ++decimals > 3))
                        return -EINVAL;
                v = v * 10 + (uint64_t)(s[i] - '0');
                if (v > 100000000000ull)
                        return -ERANGE;
        }
        for (; decimals < 3; decimals++)
                v *= 10;
        if (v == 0 || v > 1000000000ull)
                return -ERANGE;
        *ret = (uint32_t)v;
        return 0;
}

/* "rate_limit = CreateThing:15 RegisterCertificateWithoutCA:10/20" (per second, optional burst). */
static int parse_rate_limit(struct parse_ctx *ctx, const char *value, void *field) {
        struct conf_aws *a = &ctx->conf->aws;
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        if (isempty(value)) {
                memset(a->rate_milli, 0, sizeof a->rate_milli);
                memset(a->burst, 0, sizeof a->burst);
                return 0;
        }
        for (char *w = strtok_r(copy, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
                char *colon = strchr(w, ':'), *slash;
                uint32_t milli, burst = 0;
                int op, r;

                if (!colon)
                        return -EINVAL;
                *colon = 0;
                op = aws_op_from_name(w);
                if (op < 0)
                        return op;
                slash = strchr(colon + 1, '/');
                r = parse_milli(colon + 1, slash ? (size_t)(slash - colon - 1) : strlen(colon + 1), &milli);
                if (r < 0)
                        return r;
                if (slash) {
                        unsigned long long b;
                        r = parse_uint_raw(slash + 1, &b);
                        if (r < 0 || b == 0 || b > 10000)
                                return -EINVAL;
                        burst = (uint32_t)b;
                }
                a->rate_milli[op] = milli;
                a->burst[op] = burst;
        }
        return 0;
}

#define U(sec, key, field, lo, hi) { sec, key, NULL, offsetof(struct conf, field), lo, hi }
#define P(sec, key, fn, field) { sec, key, fn, offsetof(struct conf, field), 0, 0 }

static const struct conf_item items[] = {
        P("station", "name", parse_string, name),
        P("station", "state_dir", parse_path, state_dir),
        P("station", "database", parse_path, database),
        P("station", "control_socket", parse_path, control_socket),
        P("station", "control_group", parse_opt_string, control_group),
        U("station", "max_ports", max_ports, 1, 4096),
        U("station", "max_frame", max_frame, 512, 65535),
        U("station", "workers", workers, 0, 64),
        P("station", "log_level", parse_log_level, log_level),

        P("ports", "glob", parse_globs, globs),
        P("ports", "usb_id", parse_usb_ids, usb_ids),
        U("ports", "rescan_ms", rescan_ms, 50, 600000),
        U("ports", "baud", baud, 1200, 4000000),
        U("ports", "max_errors", max_errors, 1, 1000000),

        P("signer", "uri", parse_string, signer_uri),
        P("signer", "cert", parse_path, signer_cert),
        P("signer", "root", parse_path, root_cert),
        P("signer", "pin_file", parse_secret_path, signer_pin_file),
        P("signer", "pin_credential", parse_credential, signer_pin_credential),

        U("profile", "validity_days", validity_days, 0, 36500),
        P("profile", "thing_name", parse_thing_name, thing_name),
        P("profile", "organization", parse_opt_string, organization),
        P("profile", "reissue", parse_bool, reissue),
        P("profile", "lock", parse_bool, lock),
        U("profile", "max_certs_per_hour", max_certs_per_hour, 0, 10000000),
        P("profile", "format", parse_cert_format, format),
        P("profile", "expiry", parse_cert_expiry, expiry),
        U("profile", "signer_id", atecc_signer_id, 0, 65535),
        U("profile", "template_id", atecc_template_id, 0, 15),
        U("profile", "chain_id", atecc_chain_id, 0, 15),
        U("profile", "max_certs_per_port_per_minute", max_certs_per_port_per_minute, 0, 1000000),
        P("profile", "serial_allowlist", parse_opt_path, serial_allowlist),

        U("timeouts", "response_ms", response_ms, 10, 600000),
        U("timeouts", "hello_ms", hello_ms, 10, 600000),
        U("timeouts", "request_ms", request_ms, 10, 600000),
        U("timeouts", "write_ms", write_ms, 10, 600000),
        U("timeouts", "result_ms", result_ms, 10, 600000),
        U("timeouts", "keygen_ms", keygen_ms, 10, 600000),
        U("timeouts", "retries", retries, 0, 20),
        U("timeouts", "session_ms", session_ms, 100, 3600000),
        U("timeouts", "shutdown_ms", shutdown_ms, 0, 600000),

        P("board", "aws_endpoint", parse_opt_string, aws_endpoint),
        P("board", "wifi_ssid", parse_opt_string, wifi_ssid),
        P("board", "wifi_psk", parse_inline_psk, wifi_psk),
        P("board", "wifi_psk_file", parse_secret_path, wifi_psk_file),

        U("database", "batch_max", batch_max, 1, 4096),
        U("database", "batch_delay_us", batch_delay_us, 0, 1000000),
        U("database", "min_free_mb", min_free_mb, 0, 1048576),

        P("aws", "mode", parse_aws_mode, aws.mode),
        P("aws", "endpoint", parse_opt_string, aws.endpoint),
        P("aws", "region", parse_region, aws.region),
        P("aws", "signing_service", parse_service, aws.signing_service),
        P("aws", "ca_file", parse_opt_path, aws.ca_file),
        P("aws", "proxy", parse_proxy, aws.proxy),
        P("aws", "credentials_file", parse_credentials_file, aws.credentials_file),
        P("aws", "profile", parse_opt_string, aws.profile),
        U("aws", "timeout_ms", aws.timeout_ms, 100, 600000),
        U("aws", "connect_timeout_ms", aws.connect_timeout_ms, 100, 600000),
        U("aws", "max_response", aws.max_response, 4096, 16777216),
        U("aws", "max_connections", aws.max_connections, 1, 64),
        P("aws", "register_with_ca", parse_bool, aws.register_with_ca),
        P("aws", "sni_only", parse_bool, aws.sni_only),
        P("aws", "thing_type", parse_thing_type, aws.thing_type),
        P("aws", "thing_attributes", parse_thing_attributes, aws.thing_attributes),
        P("aws", "policy_name", parse_policy_name, aws.policy_name),
        P("aws", "policy_template", parse_opt_path, aws.policy_template),
        P("aws", "account_id", parse_account_id, aws.account_id),
        P("aws", "jitp_template", parse_opt_path, aws.jitp_template),
        P("aws", "jitp_role_arn", parse_arn, aws.jitp_role_arn),
        P("aws", "rate_limit", parse_rate_limit, aws.rate_milli),
        U("aws", "backoff_base_ms", aws.backoff_base_ms, 1, 600000),
        U("aws", "backoff_max_ms", aws.backoff_max_ms, 1, 3600000),
        U("aws", "max_attempts", aws.max_attempts, 1, 1000),
        U("aws", "concurrency", aws.concurrency, 1, 256),
};

static int handle_slot(struct parse_ctx *ctx, const char *key, const char *value) {
        struct conf *c = ctx->conf;
        struct slot_label s;

        if (isempty(value) || strlen(value) > 64 || !printable(value) || strlen(key) >= PATH_MAX)
                return -EINVAL;
        /* A later file overrides an earlier label for the same key. */
        for (size_t i = 0; i < c->n_slots; i++)
                if (streq(c->slots[i].key, key)) {
                        char *l = strdup(value);
                        if (!l)
                                return -ENOMEM;
                        free(c->slots[i].label);
                        c->slots[i].label = l;
                        return 0;
                }
        s.key = strdup(key);
        s.label = strdup(value);
        if (!s.key || !s.label) {
                free(s.key);
                free(s.label);
                return -ENOMEM;
        }
        int r = list_append(&c->slots, &c->n_slots, sizeof s, &s);
        if (r < 0) {
                free(s.key);
                free(s.label);
        }
        return r;
}

/* Debian's libinih passes no line number: messages get "file:line" from ini_parse()'s result. */
int conf_ini_handler(void *user, const char *section, const char *key, const char *value) {
        struct parse_ctx *ctx = user;
        const char *where = "";
        int r;

        if (!key)               /* new section: accepted if any item or [slots] uses it */
                return 1;
        if (strlen(value) > CONF_MAX_VALUE)
                return fail(ctx, -E2BIG, "%svalue of '%s' is too long", where, key), 0;

        if (streq(section, "slots")) {
                r = handle_slot(ctx, key, value);
                if (r < 0)
                        return fail(ctx, r, "%sinvalid slot label for '%s'", where, key), 0;
                return 1;
        }
        for (size_t i = 0; i < ELEMENTSOF(items); i++) {
                const struct conf_item *it = &items[i];
                void *field = (char *)ctx->conf + it->offset;

                if (!streq(it->section, section) || !streq(it->key, key))
                        continue;
                if (it->parse)
                        r = it->parse(ctx, value, field);
                else {
                        unsigned long long v;
                        r = parse_uint_raw(value, &v);
                        if (r >= 0 && (v < it->min || v > it->max))
                                r = -ERANGE;
                        if (r >= 0)
                                *(unsigned *)field = (unsigned)v;
                }
                if (r < 0) {
                        char what[64];
                        snprintf(what, sizeof what, "[%s] %s", section, key);
                        return fail(ctx, r, "%sinvalid value for %s", where, what), 0;
                }
                return 1;
        }
        char what[160];
        snprintf(what, sizeof what, "[%.60s] %.60s", section, key);
        return fail(ctx, -EINVAL, "%sunknown key %s", where, what), 0;
}
