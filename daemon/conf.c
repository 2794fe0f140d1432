/* SPDX-License-Identifier: MIT */
/* provd configuration: INI file + provd.conf.d drop-ins, parsed into a fresh struct, validated whole. */

#include <dirent.h>
#include <glob.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aws-register.h"
#include "conf.h"
#include "serial-port.h"
#include "log.h"
#include "util.h"

#define CONF_MAX_VALUE 1024     /* longest accepted value */
#define CONF_MAX_LIST 256       /* globs, USB ids, slot labels each */

struct parse_ctx {
        struct conf *conf;
        const char *file;
        char *err;
        size_t errlen;
        int error;
};

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

static bool printable(const char *s) {
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
                        return false;
        return true;
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
                char ch = s[i];
                int d = ch >= '0' && ch <= '9' ? ch - '0' :
                        ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
                        ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
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
        P("signer", "pin_file", parse_opt_path, signer_pin_file),

        U("profile", "validity_days", validity_days, 0, 36500),
        P("profile", "thing_name", parse_thing_name, thing_name),
        P("profile", "organization", parse_opt_string, organization),
        P("profile", "reissue", parse_bool, reissue),
        P("profile", "lock", parse_bool, lock),
        U("profile", "max_certs_per_hour", max_certs_per_hour, 0, 10000000),

        U("timeouts", "response_ms", response_ms, 10, 600000),
        U("timeouts", "keygen_ms", keygen_ms, 10, 600000),
        U("timeouts", "retries", retries, 0, 20),
        U("timeouts", "session_ms", session_ms, 100, 3600000),
        U("timeouts", "shutdown_ms", shutdown_ms, 0, 600000),

        P("board", "aws_endpoint", parse_opt_string, aws_endpoint),
        P("board", "wifi_ssid", parse_opt_string, wifi_ssid),
        P("board", "wifi_psk", parse_opt_string, wifi_psk),

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
static int handler(void *user, const char *section, const char *key, const char *value) {
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

void conf_init(struct conf *c) {
        *c = (struct conf) {
                .max_ports = 512,
                .max_frame = 4096,
                .log_level = LOG_INFO,
                .rescan_ms = 1000,
                .baud = 115200,
                .max_errors = 64,
                .validity_days = 0,
                .thing_name = THING_NAME_CN,
                .response_ms = 1000,
                .keygen_ms = 5000,
                .retries = 3,
                .session_ms = 120000,
                .shutdown_ms = 10000,
                .batch_max = 256,
                .batch_delay_us = 2000,
                .min_free_mb = 64,
                .aws = {
                        .mode = AWS_MODE_OFF,
                        .timeout_ms = 30000,
                        .connect_timeout_ms = 10000,
                        .max_response = 65536,
                        .max_connections = 4,
                        .backoff_base_ms = 200,
                        .backoff_max_ms = 30000,
                        .max_attempts = 10,
                },
        };
        c->name = strdup("station");
        c->state_dir = strdup("/var/lib/provd");
        c->control_socket = strdup("/run/provd/provd.sock");
        c->control_group = strdup("provd");
        c->aws.signing_service = strdup("iot");
        c->aws.policy_name = strdup("provd-device");
}

void conf_deinit(struct conf *c) {
        free(c->name);
        free(c->state_dir);
        free(c->database);
        free(c->control_socket);
        free(c->control_group);
        for (size_t i = 0; i < c->n_globs; i++)
                free(c->globs[i]);
        free(c->globs);
        free(c->usb_ids);
        for (size_t i = 0; i < c->n_slots; i++) {
                free(c->slots[i].key);
                free(c->slots[i].label);
        }
        free(c->slots);
        free(c->signer_uri);
        free(c->signer_cert);
        free(c->root_cert);
        free(c->signer_pin_file);
        free(c->organization);
        free(c->aws_endpoint);
        free(c->wifi_ssid);
        free(c->aws.endpoint);
        free(c->aws.region);
        free(c->aws.signing_service);
        free(c->aws.ca_file);
        free(c->aws.proxy);
        free(c->aws.credentials_file);
        free(c->aws.profile);
        free(c->aws.thing_type);
        free(c->aws.policy_name);
        free(c->aws.policy_template);
        free(c->aws.account_id);
        free(c->aws.jitp_template);
        free(c->aws.jitp_role_arn);
        if (c->wifi_psk) {
                explicit_bzero(c->wifi_psk, strlen(c->wifi_psk));
                free(c->wifi_psk);
        }
        *c = (struct conf) {};
}

static int parse_one(struct conf *c, FILE *f, const char *text, const char *name, char *err, size_t errlen) {
        struct parse_ctx ctx = { .conf = c, .file = name, .err = err, .errlen = errlen };
        int r;

        r = f ? ini_parse_file(f, handler, &ctx) : ini_parse_string(text, handler, &ctx);
        if (ctx.error) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", err);
                if (r > 0)
                        snprintf(err, errlen, "%s:%d: %s", name, r, msg);
                else
                        snprintf(err, errlen, "%s: %s", name, msg);
                return ctx.error;
        }
        if (r > 0) {
                char where[PATH_MAX + 32];
                snprintf(where, sizeof where, "%s:%d", name, r);
                snprintf(err, errlen, "%s: syntax error", where);
                return -EINVAL;
        }
        if (r < 0) {
                snprintf(err, errlen, "%s: cannot read", name);
                return r == -2 ? -ENOMEM : -EIO;
        }
        return 0;
}

int conf_parse_string(struct conf *c, const char *text, const char *name, char *err, size_t errlen) {
        return parse_one(c, NULL, text, name, err, errlen);
}

static int parse_file(struct conf *c, const char *path, char *err, size_t errlen) {
        FILE *f = fopen(path, "re");
        int r;

        if (!f) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
                return r;
        }
        r = parse_one(c, f, NULL, path, err, errlen);
        fclose(f);
        return r;
}

int conf_load(struct conf *ret, const char *path, char *err, size_t errlen) {
        char dir[PATH_MAX];
        glob_t g = {};
        int r;

        r = parse_file(ret, path, err, errlen);
        if (r < 0)
                return r;
        if ((size_t)snprintf(dir, sizeof dir, "%s.d/*.conf", path) >= sizeof dir)
                return -ENAMETOOLONG;
        r = glob(dir, GLOB_ERR, NULL, &g);      /* sorted by default */
        if (r == 0)
                for (size_t i = 0; i < g.gl_pathc; i++) {
                        r = parse_file(ret, g.gl_pathv[i], err, errlen);
                        if (r < 0) {
                                globfree(&g);
                                return r;
                        }
                }
        globfree(&g);
        return conf_validate(ret, err, errlen);
}

/* Only what can be checked without reading files; the templates are read when AWS starts. */
static int validate_aws(const struct conf_aws *a, char *err, size_t errlen) {
        char region[40];
        int r;

        if (a->mode == AWS_MODE_OFF)
                return 0;
        if (!a->endpoint) {
                snprintf(err, errlen, "[aws] mode = %s needs endpoint (https://iot.REGION.amazonaws.com)",
                         aws_mode_to_string(a->mode));
                return -EINVAL;
        }
        r = aws_endpoint_region(a->endpoint, region, sizeof region);
        if (r < 0 && !a->region) {
                snprintf(err, errlen, "[aws] endpoint is not iot.REGION.amazonaws.com: set region to sign for");
                return -EINVAL;
        }
        if (r >= 0 && a->region && !streq(region, a->region)) {
                snprintf(err, errlen, "[aws] region %s does not match the endpoint's region %s", a->region, region);
                return -EINVAL;
        }
        if (a->backoff_base_ms > a->backoff_max_ms) {
                snprintf(err, errlen, "[aws] backoff_base_ms is larger than backoff_max_ms");
                return -EINVAL;
        }
        if (a->mode == AWS_MODE_MAR) {
                unsigned mask = a->thing_attributes_set ? a->thing_attributes :
                                a->thing_type ? AWS_ATTR_ALL : AWS_ATTR_SERIAL | AWS_ATTR_MODEL | AWS_ATTR_FIRMWARE;
                if (!a->thing_type && __builtin_popcount(mask) > 3) {
                        snprintf(err, errlen, "[aws] AWS IoT allows 3 attributes on a thing without a thing type: "
                                 "set thing_type or list at most 3 in thing_attributes");
                        return -EINVAL;
                }
                if (!a->policy_template) {
                        snprintf(err, errlen, "[aws] mode = mar needs policy_template");
                        return -EINVAL;
                }
                if (a->sni_only) {
                        snprintf(err, errlen, "[aws] sni_only is for mode = jitr or jitp");
                        return -EINVAL;
                }
        } else {
                if (a->register_with_ca) {
                        snprintf(err, errlen, "[aws] register_with_ca is for mode = mar");
                        return -EINVAL;
                }
        }
        if (a->mode == AWS_MODE_JITP && (!a->jitp_template || !a->jitp_role_arn)) {
                snprintf(err, errlen, "[aws] mode = jitp needs jitp_template and jitp_role_arn");
                return -EINVAL;
        }
        if (a->mode != AWS_MODE_JITP && (a->jitp_template || a->jitp_role_arn)) {
                snprintf(err, errlen, "[aws] jitp_template and jitp_role_arn are for mode = jitp");
                return -EINVAL;
        }
        return 0;
}

int conf_validate(const struct conf *c, char *err, size_t errlen) {
        if (!c->signer_uri || !c->signer_cert || !c->root_cert) {
                snprintf(err, errlen, "[signer] uri, cert and root are required");
                return -EINVAL;
        }
        if (strncmp(c->signer_uri, "file:", 5) != 0 && strncmp(c->signer_uri, "pkcs11:", 7) != 0) {
                snprintf(err, errlen, "[signer] uri must start with file: or pkcs11:");
                return -EINVAL;
        }
        if (c->n_globs == 0 && c->n_usb_ids == 0) {
                snprintf(err, errlen, "[ports] needs at least one glob or usb_id");
                return -EINVAL;
        }
        if (c->wifi_psk && !c->wifi_ssid) {
                snprintf(err, errlen, "[board] wifi_psk given without wifi_ssid");
                return -EINVAL;
        }
        if (c->aws_endpoint && strlen(c->aws_endpoint) > 253) {
                snprintf(err, errlen, "[board] aws_endpoint is longer than a host name can be");
                return -EINVAL;
        }
        if (!serial_port_speed(c->baud)) {
                snprintf(err, errlen, "[ports] baud %u is not a standard rate (1200, 2400, ... 115200, 230400, "
                         "460800, 921600, ... 4000000)", c->baud);
                return -EINVAL;
        }
        if (c->keygen_ms < c->response_ms) {
                snprintf(err, errlen, "[timeouts] keygen_ms must be at least response_ms");
                return -EINVAL;
        }
        if (c->aws.mode == AWS_MODE_JITP && c->thing_name == THING_NAME_SKI) {
                /* JITP names the thing from the certificate's subject; the SKI is not in it. */
                snprintf(err, errlen, "[aws] mode = jitp names things from the certificate CN: "
                         "[profile] thing_name = ski needs mode = mar");
                return -EINVAL;
        }
        return validate_aws(&c->aws, err, errlen);
}

const char *conf_slot_label(const struct conf *c, const char *path, const char *usb_location) {
        for (size_t i = 0; i < c->n_slots; i++)
                if (streq(c->slots[i].key, path))
                        return c->slots[i].label;
        if (usb_location)
                for (size_t i = 0; i < c->n_slots; i++)
                        if (streq(c->slots[i].key, usb_location))
                                return c->slots[i].label;
        /* Unlabelled: the device name ("ttyACM3", "board-007") reads better than the path. */
        const char *base = strrchr(path, '/');
        return base && base[1] ? base + 1 : path;
}
