/* SPDX-License-Identifier: MIT */
/* provd configuration: INI file + provd.conf.d drop-ins, parsed into a fresh struct, validated whole. */

#include <glob.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws-register.h"
#include "certs-hsm/signer.h"
#include "conf.h"
#include "serial-port.h"
#include "log.h"
#include "util.h"
#include "conf-internal.h"

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
                .keygen_ms = 3000,
                .retries = 3,
                /*
                 * A 64-slot line whose operators swap a board every 5 s on
                 * every slot stays under 46,000 an hour; the simulated line of
                 * the benchmark (14,000 boards a minute, no hands) would pass
                 * 50,000 in under 4 minutes. One port: nobody swaps a board
                 * every second for a minute (a port with a board swapped after
                 * every RESULT got 100 certificates a second).
                 */
                .max_certs_per_hour = 50000,
                .max_certs_per_port_per_minute = 60,
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
                        .concurrency = 8,
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
        free(c->signer_pin_credential);
        free(c->organization);
        free(c->serial_allowlist);
        for (size_t i = 0; i < c->n_allowed_serials; i++)
                free(c->allowed_serials[i]);
        free(c->allowed_serials);
        free(c->wifi_psk_file);
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
        struct stat stb;
        int r;

        /* A string (tests, fuzzing) is nobody's file to read. */
        ctx.private_file = !f || (fstat(fileno(f), &stb) == 0 && (stb.st_mode & 077) == 0);
        r = f ? ini_parse_file(f, conf_ini_handler, &ctx) : ini_parse_string(text, conf_ini_handler, &ctx);
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

int conf_open_secret(const char *path) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        r = signer_check_secret_fd(fd);
        if (r < 0)
                return r;
        return TAKE_FD(fd);
}

/* [board] wifi_psk_file: its first line is the PSK. */
static int load_psk(struct conf *c, char *err, size_t errlen) {
        _cleanup_close_ int fd = -EBADF;
        char buf[CONF_MAX_SECRET + 1];
        ssize_t n;

        if (!c->wifi_psk_file)
                return 0;
        if (c->wifi_psk) {
                snprintf(err, errlen, "[board] wifi_psk and wifi_psk_file are both set; keep wifi_psk_file");
                return -EINVAL;
        }
        fd = conf_open_secret(c->wifi_psk_file);
        if (fd == -EPERM) {
                snprintf(err, errlen, "[board] wifi_psk_file %s is readable or writable by group or others, or not "
                         "owned by the user provd runs as; chown it to that user and run chmod 600 on it",
                         c->wifi_psk_file);
                return fd;
        }
        if (fd < 0) {
                snprintf(err, errlen, "[board] wifi_psk_file %s: %s", c->wifi_psk_file, strerror(-fd));
                return fd;
        }
        n = read(fd, buf, sizeof buf - 1);
        if (n < 0) {
                int r = -errno;
                snprintf(err, errlen, "[board] wifi_psk_file %s: %s", c->wifi_psk_file, strerror(-r));
                return r;
        }
        buf[n] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        if (isempty(buf) || !printable(buf) || (size_t)n >= sizeof buf - 1) {
                explicit_bzero(buf, sizeof buf);
                snprintf(err, errlen, "[board] wifi_psk_file %s: the first line must be the PSK (printable, at "
                         "most %d bytes)", c->wifi_psk_file, CONF_MAX_SECRET - 1);
                return -EINVAL;
        }
        c->wifi_psk = strdup(buf);
        explicit_bzero(buf, sizeof buf);
        return c->wifi_psk ? 0 : -ENOMEM;
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
        r = conf_validate(ret, err, errlen);
        if (r < 0)
                return r;
        r = load_psk(ret, err, errlen);
        if (r < 0)
                return r;
        return conf_load_allowlist(ret, err, errlen);
}

/* pin-value (RFC 7512), in any case or percent-encoding: the PIN belongs in pin_file. */
static bool uri_has_pin_value(const char *uri) {
        char dec[CONF_MAX_VALUE + 1];
        size_t n = 0;

        for (const char *p = uri; *p && n < sizeof dec - 1; p++) {
                unsigned v;
                if (p[0] == '%' && p[1] && p[2] && sscanf(p + 1, "%2x", &v) == 1) {
                        dec[n++] = (char)v;
                        p += 2;
                } else
                        dec[n++] = *p;
        }
        dec[n] = 0;
        return strcasestr(dec, "pin-value") != NULL;
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
        if (aws_mode_is_mar(a->mode)) {
                unsigned mask = a->thing_attributes_set ? a->thing_attributes :
                                a->thing_type ? AWS_ATTR_ALL : AWS_ATTR_SERIAL | AWS_ATTR_MODEL | AWS_ATTR_FIRMWARE;
                if (!a->thing_type && __builtin_popcount(mask) > 3) {
                        snprintf(err, errlen, "[aws] AWS IoT allows 3 attributes on a thing without a thing type: "
                                 "set thing_type or list at most 3 in thing_attributes");
                        return -EINVAL;
                }
                if (!a->policy_template) {
                        snprintf(err, errlen, "[aws] mode = %s needs policy_template", aws_mode_to_string(a->mode));
                        return -EINVAL;
                }
                if (a->sni_only) {
                        snprintf(err, errlen, "[aws] sni_only is for mode = jitr or jitp");
                        return -EINVAL;
                }
        } else {
                if (a->register_with_ca) {
                        snprintf(err, errlen, "[aws] register_with_ca is for mode = mar or offline");
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
        /* Never echo the URI here: it may hold the PIN. */
        if (uri_has_pin_value(c->signer_uri)) {
                snprintf(err, errlen, "[signer] uri carries the PIN (pin-value=): remove it and put the PIN in a "
                         "file only provd can read, named by [signer] pin_file");
                return -EINVAL;
        }
        if (c->signer_pin_file && c->signer_pin_credential) {
                snprintf(err, errlen, "[signer] pin_file and pin_credential are exclusive");
                return -EINVAL;
        }
        if (c->n_globs == 0 && c->n_usb_ids == 0) {
                snprintf(err, errlen, "[ports] needs at least one glob or usb_id");
                return -EINVAL;
        }
        if ((c->wifi_psk || c->wifi_psk_file) && !c->wifi_ssid) {
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
        if (c->keygen_ms < c->response_ms || c->keygen_ms < c->request_ms) {
                snprintf(err, errlen, "[timeouts] keygen_ms must be at least response_ms and request_ms");
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
