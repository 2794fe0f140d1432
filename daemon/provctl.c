/* SPDX-License-Identifier: MIT */
/* provctl: the operator's command line for provd (control socket client and CA tooling). */

#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "audit.h"
#include "certs-hsm/ca.h"
#include "certs-hsm/signer.h"
#include "db.h"
#include "log.h"
#include "config.h"
#include "schema/schema.h"
#include "timespec.h"
#include "util.h"

#define REPLY_MAX (64u * 1024 * 1024)   /* a page of 1000 devices with PEMs is ~1.5 MB */

static const char *arg_socket = "/run/provd/provd.sock";
static bool arg_json;
static bool arg_pem;
static const char *arg_since;
static const char *arg_dir;
static const char *arg_org;
static const char *arg_signer_uri;    /* ca init / signer import: the signer key (pkcs11: or file:) */
static const char *arg_pin_file;      /* its PIN: a path, or credential:NAME */
static const char *arg_module;        /* PKCS#11 module */
static const char *arg_root;          /* signer import: the root certificate */
static const char *arg_out;           /* signer import: where the certificate goes */
static const char *arg_cert;          /* signer status: the signer certificate file */
static const char *arg_root_key;      /* signer rotate: the root's private key */
static const char *arg_config = PROVD_SYSCONFDIR "/provd.conf"; /* signer rotate: provd's configuration */
static bool arg_compressed;           /* ca init: a signer within atcacert's compressed limits */
static bool arg_no_expiry;            /* ca init: root and signer without expiry */
static unsigned arg_signer_id;        /* ca init --compressed */
static unsigned arg_interval_ms = 1000;
static unsigned arg_limit;
static unsigned arg_page;               /* devices per request; 0 = the daemon's page (1000) */
static const char *arg_db = "/var/lib/provd/provd.db";
static const char *arg_until;
static const char *arg_format = "jsonl";
static int arg_timeout_ms = 30000;
static bool arg_failed;
static bool arg_all;

static void help(void) {
        printf("Usage: provctl [OPTIONS] COMMAND ...\n\n"
               "Commands (talk to a running provd):\n"
               "  status                 per-slot state, serial, step, elapsed, last error; totals and rate\n"
               "  watch                  live status view, refreshed every --interval ms\n"
               "  devices                provisioned devices (--since T, --pem, --limit N)\n"
               "  stats                  database totals (devices, certificates, attempts, AWS outbox)\n"
               "  reissue SERIAL         issue a new certificate the next time SERIAL is plugged\n"
               "  ping                   check that provd answers\n"
               "  reload                 re-read the configuration (a new signer is switched to live; audited)\n"
               "  aws status             AWS registration: jobs by state and step, oldest pending, last errors\n"
               "  aws retry ID|--failed  queue a failed registration (or every failed one) again\n"
               "  aws drain              send what is queued (mode = offline) until nothing is pending\n"
               "Commands (local, no daemon):\n"
               "  ca init --dir D        create root and signer keys and certificates in D\n"
               "  audit verify           check the audit log's hash chain (--db PATH)\n"
               "  audit export           write audit rows as JSONL or CSV (--db, --since, --until, --format)\n"
               "  db check               check every page and the totals of the database (--db PATH)\n"
               "  ca signer-csr --dir D  create a signer key and CSR for an offline root\n"
               "  ca init --signer-uri U with a pkcs11: URI, the signer key made in the HSM, D/signer.csr\n"
               "  signer import CERT     install a signer certificate checked against key and root (--root, --signer-uri)\n"
               "  signer status          every signer: state, certificates issued, validity (--db; or --cert F)\n"
               "  signer rotate          a new signer, switched to live in the running provd (--dir, --root-key)\n"
               "  aws export-bulk FILE   devices not yet registered, as JSON lines for AWS bulk registration\n\n"
               "Options:\n"
               "  -s, --socket PATH      control socket (default %s, or $PROVD_SOCKET)\n"
               "  -j, --json             machine-readable output\n"
               "      --since T          devices since T: epoch seconds, YYYY-MM-DD[THH:MM:SS[Z]], or 30m/12h/7d ago\n"
               "      --pem              include certificate PEM (devices)\n"
               "      --limit N          at most N devices\n"
               "      --page N           devices per request to provd (default and most: 1000)\n"
               "      --dir D            output directory (ca)\n"
               "      --db PATH          database for audit and db check (default /var/lib/provd/provd.db)\n"
               "      --until T          audit export: rows before T (same forms as --since)\n"
               "      --format F         audit export: jsonl (default) or csv\n"
               "      --org O            organization in CA subjects (ca)\n"
               "      --signer-uri U     signer key: pkcs11:token=...;object=... or file:/path (ca init, signer import)\n"
               "      --pin-file F       PKCS#11 PIN from file F, or credential:NAME ($CREDENTIALS_DIRECTORY)\n"
               "      --module M         PKCS#11 module (default: module-path in the URI, $PROVD_PKCS11_MODULE)\n"
               "      --root R           root certificate (signer import)\n"
               "      --out F            installed signer certificate (signer import; default D/signer.pem)\n"
               "      --cert F           signer certificate file (signer status)\n"
               "      --compressed       ca init: signer certificate within ATECC compressed limits\n"
               "      --signer-id N      ca init --compressed: the 16-bit signer id (0..65535)\n"
               "      --no-expiry        ca init: root and signer valid until 9999-12-31\n"
               "      --root-key K       signer rotate: the root's key (default DIR/root.key)\n"
               "      --config F         signer rotate: provd's configuration; the drop-in goes in F.d/\n"
               "      --interval MS      refresh period for watch (default 1000)\n"
               "      --timeout MS       how long to wait for provd (default 30000)\n"
               "      --failed           aws retry: every failed registration\n"
               "      --all              aws export-bulk: every device certificate, registered or not\n",
               arg_socket);
}

static int parse_uint(const char *s, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || !*s || *end || v > UINT32_MAX)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

/* Returns ms since the epoch (timespec.h). */
static int parse_time(const char *s, int64_t *ret) {
        return timespec_parse(s, (int64_t)time(NULL), ret);
}

static int connect_socket(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(arg_socket) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, arg_socket);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/*
 * Text from outside (port paths, slot labels, serials, errors a board
 * caused) reaches a terminal: control characters, DEL and backslashes are
 * written as \xNN, like log_escape() does for log lines, so none can drive
 * the terminal or forge a line.
 */
static void put_escaped(FILE *f, const char *s) {
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p < 0x20 || *p == 0x7f || *p == '\\')
                        fprintf(f, "\\x%02x", *p);
                else
                        fputc(*p, f);
}

/* The same into @buf (at most @len - 1 bytes, cut at a whole escape). */
static const char *escaped(const char *s, char *buf, size_t len) {
        size_t n = 0;

        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                bool esc = *p < 0x20 || *p == 0x7f || *p == '\\';
                if (n + (esc ? 4 : 1) >= len)
                        break;
                if (esc)
                        n += (size_t)snprintf(buf + n, len - n, "\\x%02x", *p);
                else
                        buf[n++] = (char)*p;
        }
        buf[n] = 0;
        return buf;
}

/* Sends one request line and reads one reply line. */
static int call(cJSON *req, cJSON **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *text = NULL, *buf = NULL;
        size_t len = 0, cap = 0;
        int r;

        fd = connect_socket();
        if (fd < 0) {
                fprintf(stderr, "provctl: cannot reach provd at %s: %s\n", arg_socket, strerror(-fd));
                if (fd == -ENOENT || fd == -ECONNREFUSED)
                        fprintf(stderr, "provctl: is provd running? (systemctl status provd)\n");
                else if (fd == -EACCES)
                        fprintf(stderr, "provctl: only root and the provd group may use the socket\n");
                return fd;
        }
        text = cJSON_PrintUnformatted(req);
        if (!text) {
                fprintf(stderr, "provctl: out of memory\n");
                return -ENOMEM;
        }
        size_t n = strlen(text);
        text[n] = '\n';         /* cJSON's buffer is NUL-terminated: reuse the NUL for the newline */
        for (size_t off = 0; off <= n;) {
                ssize_t w = send(fd, text + off, n + 1 - off, MSG_NOSIGNAL);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        /* Turned away: provd wrote why before it closed; read that below. */
                        if (errno == EPIPE || errno == ECONNRESET)
                                break;
                        fprintf(stderr, "provctl: cannot send the request to provd: %m\n");
                        return -errno;
                }
                off += (size_t)w;
        }
        text[n] = 0;
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                r = poll(&p, 1, arg_timeout_ms);
                if (r == 0) {
                        fprintf(stderr, "provctl: provd did not answer within %d ms\n", arg_timeout_ms);
                        return -ETIMEDOUT;
                }
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "provctl: waiting for provd's answer: %m\n");
                        return -errno;
                }
                if (len + 65536 > cap) {
                        if (cap >= REPLY_MAX) {
                                fprintf(stderr, "provctl: provd's answer is over %u MiB; refused\n", REPLY_MAX >> 20);
                                return -E2BIG;
                        }
                        cap = cap ? cap * 2 : 131072;
                        char *nb = realloc(buf, cap);
                        if (!nb) {
                                fprintf(stderr, "provctl: out of memory\n");
                                return -ENOMEM;
                        }
                        buf = nb;
                }
                ssize_t k = read(fd, buf + len, cap - len - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == ECONNRESET && len > 0)
                                break;
                        fprintf(stderr, "provctl: reading provd's answer: %m\n");
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t)k;
                if (memchr(buf + len - k, '\n', (size_t)k))
                        break;
        }
        if (!buf || len == 0) {
                fprintf(stderr, "provctl: provd closed the connection without answering\n");
                return -ECONNRESET;
        }
        buf[len] = 0;
        *ret = cJSON_Parse(buf);
        if (!*ret) {
                fprintf(stderr, "provctl: provd sent a malformed reply\n");
                return -EBADMSG;
        }
        cJSON *ok = cJSON_GetObjectItem(*ret, "ok");
        if (!cJSON_IsTrue(ok)) {
                cJSON *e = cJSON_GetObjectItem(*ret, "error");
                fputs("provctl: provd refused: ", stderr);
                put_escaped(stderr, cJSON_IsString(e) ? e->valuestring : "request failed");
                fputc('\n', stderr);
                cJSON_Delete(*ret);
                *ret = NULL;
                return -EIO;
        }
        return 0;
}

static double num(const cJSON *o, const char *k) {
        const cJSON *v = cJSON_GetObjectItem(o, k);
        return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *k) {
        const cJSON *v = cJSON_GetObjectItem(o, k);
        return cJSON_IsString(v) ? v->valuestring : "";
}

static void print_json(const cJSON *o) {
        char *t = cJSON_Print(o);
        if (t)
                puts(t);
        free(t);
}

static void print_status(const cJSON *o, bool tty) {
        const cJSON *totals = cJSON_GetObjectItem(o, "totals"), *ports = cJSON_GetObjectItem(o, "ports"), *p;
        const char *green = tty ? "\033[32m" : "", *red = tty ? "\033[31m" : "", *yellow = tty ? "\033[33m" : "",
                   *off = tty ? "\033[0m" : "";

        char e1[256], e2[256], e3[256], e4[1024], e5[64];

        printf("station %s  provd %s  up %.0f s%s\n", escaped(str(o, "station"), e1, sizeof e1),
               escaped(str(o, "version"), e2, sizeof e2), num(o, "uptime_s"),
               cJSON_IsTrue(cJSON_GetObjectItem(o, "stopping")) ? "  (stopping)" : "");
        printf("provisioned %.0f  already %.0f  failed %.0f  rejected %.0f  clone %.0f  aborted %.0f  "
               "| %.0f per minute, %.0f active\n",
               num(totals, "provisioned"), num(totals, "already_provisioned"), num(totals, "failed"),
               num(totals, "rejected"), num(totals, "clone_suspected"), num(totals, "aborted"),
               num(o, "per_minute"), num(o, "active"));
        printf("\n%-16s %-8s %-8s %-20s %8s  %s\n", "SLOT", "STATE", "STEP", "SERIAL", "ELAPSED", "LAST ERROR");
        cJSON_ArrayForEach(p, ports) {
                const char *state = str(p, "state");
                const char *color = streq(state, "done") ? green : streq(state, "failed") ? red : yellow;
                printf("%-16.16s %s%-8s%s %-8s %-20s %7.1fs  %s\n", escaped(str(p, "slot"), e1, sizeof e1), color,
                       escaped(state, e5, sizeof e5), off, escaped(str(p, "step"), e2, sizeof e2),
                       escaped(str(p, "serial"), e3, sizeof e3), num(p, "elapsed_ms") / 1000.0,
                       escaped(str(p, "last_error"), e4, sizeof e4));
        }
}

static int cmd_simple(const char *cmd) {
        cJSON *req = cJSON_CreateObject(), *reply = NULL;
        int r;

        cJSON_AddStringToObject(req, "cmd", cmd);
        r = call(req, &reply);
        cJSON_Delete(req);
        if (r < 0)
                return r;
        if (arg_json || !streq(cmd, "status"))
                print_json(reply);
        else
                print_status(reply, isatty(STDOUT_FILENO));
        cJSON_Delete(reply);
        return 0;
}

static int cmd_watch(void) {
        bool tty = isatty(STDOUT_FILENO);

        for (;;) {
                cJSON *req = cJSON_CreateObject(), *reply = NULL;
                int r;

                cJSON_AddStringToObject(req, "cmd", "status");
                r = call(req, &reply);
                cJSON_Delete(req);
                if (r < 0)
                        return r;
                if (tty)
                        fputs("\033[H\033[2J", stdout);
                if (arg_json) {
                        char *t = cJSON_PrintUnformatted(reply);
                        if (t)
                                puts(t);
                        free(t);
                } else
                        print_status(reply, tty);
                fflush(stdout);
                cJSON_Delete(reply);
                struct timespec ts = { arg_interval_ms / 1000, (long)(arg_interval_ms % 1000) * 1000000 };
                nanosleep(&ts, NULL);
        }
}

/* Pages of at most a page's worth of devices (the daemon caps them), until the list or --limit ends. */
static int cmd_devices(void) {
        cJSON *all = arg_json ? cJSON_CreateArray() : NULL, *d;
        char after[80] = "";
        unsigned shown = 0;
        int64_t since = 0;
        int r = 0;

        if (arg_since && parse_time(arg_since, &since) < 0) {
                fprintf(stderr, "provctl: cannot parse time '%s'\n", arg_since);
                cJSON_Delete(all);
                return -EINVAL;
        }
        if (arg_json && !all)
                return -ENOMEM;
        if (!arg_json)
                printf("%-20s %-14s %-24s %-20s %s\n", "SERIAL", "STATE", "PROVISIONED", "THING", "CERTIFICATE ID");
        for (;;) {
                cJSON *req = cJSON_CreateObject(), *reply = NULL, *next;

                cJSON_AddStringToObject(req, "cmd", "devices");
                cJSON_AddNumberToObject(req, "since", (double)since);
                if (after[0])
                        cJSON_AddStringToObject(req, "after", after);
                cJSON_AddBoolToObject(req, "pem", arg_pem || arg_json);
                unsigned want = arg_limit ? arg_limit - shown : 0;
                if (arg_page && (!want || arg_page < want))
                        want = arg_page;
                if (want)
                        cJSON_AddNumberToObject(req, "limit", want);
                r = call(req, &reply);
                cJSON_Delete(req);
                if (r < 0)
                        break;
                cJSON_ArrayForEach(d, cJSON_GetObjectItem(reply, "devices")) {
                        shown++;
                        if (arg_json) {
                                cJSON_AddItemToArray(all, cJSON_Duplicate(d, true));
                                continue;
                        }
                        char when[32] = "-";
                        double ms = num(d, "provisioned_at");
                        if (ms > 0) {
                                time_t t = (time_t)(ms / 1000);
                                struct tm tm;
                                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
                        }
                        char e1[256], e2[64], e3[512], e4[256];
                        printf("%-20s %-14s %-24s %-20s %s\n", escaped(str(d, "serial"), e1, sizeof e1),
                               escaped(str(d, "state"), e2, sizeof e2), when,
                               escaped(str(d, "thing_name"), e3, sizeof e3),
                               escaped(str(d, "cert_sha256"), e4, sizeof e4));
                        if (arg_pem) {
                                /* PEM is lines of base64: only its newlines are left as they are. */
                                for (const char *q = str(d, "certificate_pem"); *q; q++)
                                        if (*q == '\n' || (*q >= 0x20 && *q < 0x7f && *q != '\\'))
                                                putchar(*q);
                                        else
                                                printf("\\x%02x", (unsigned char)*q);
                        }
                }
                next = cJSON_GetObjectItem(reply, "next");
                /* A cursor that does not move forward would page forever: stop instead. */
                if (!next || (arg_limit && shown >= arg_limit) || !cJSON_IsNumber(cJSON_GetObjectItem(next, "since")) ||
                    num(next, "since") < (double)since || !str(next, "after")[0] ||
                    (size_t)snprintf(after, sizeof after, "%s", str(next, "after")) >= sizeof after) {
                        cJSON_Delete(reply);
                        break;
                }
                since = (int64_t)num(next, "since");
                cJSON_Delete(reply);
        }
        if (r >= 0 && arg_json)
                print_json(all);
        cJSON_Delete(all);
        return r;
}

static int cmd_reissue(const char *serial) {
        cJSON *req = cJSON_CreateObject(), *reply = NULL;
        int r;

        cJSON_AddStringToObject(req, "cmd", "reissue");
        cJSON_AddStringToObject(req, "serial", serial);
        r = call(req, &reply);
        cJSON_Delete(req);
        if (r < 0)
                return r;
        if (arg_json)
                print_json(reply);
        else
                printf("%s will get a new certificate the next time it is plugged in\n", serial);
        cJSON_Delete(reply);
        return 0;
}

static int read_pin_arg(char **ret) {
        int r;

        *ret = NULL;
        if (!arg_pin_file)
                return 0;
        r = signer_pin_read(arg_pin_file, ret);
        if (r < 0)
                fprintf(stderr, "provctl: PIN %s: %s\n", arg_pin_file,
                        r == -EPERM || r == -EBADFD ? signer_strerror(r) : strerror(-r));
        return r;
}

static void print_key(const char *uri, const struct ca_hsm_key *k) {
        if (arg_json) {
                _cleanup_free_ char *red = signer_uri_redact(uri);
                printf("{\"key\":\"%s\",\"sensitive\":%s,\"extractable\":%s,\"always_sensitive\":%s,"
                       "\"never_extractable\":%s,\"token\":%s,\"value_readable\":%s}\n",
                       red ? red : "", k->sensitive ? "true" : "false", k->extractable ? "true" : "false",
                       k->always_sensitive ? "true" : "false", k->never_extractable ? "true" : "false",
                       k->token ? "true" : "false", k->value_readable ? "true" : "false");
                return;
        }
        printf("  CKA_TOKEN %s, CKA_SENSITIVE %s, CKA_EXTRACTABLE %s, CKA_ALWAYS_SENSITIVE %s, "
               "CKA_NEVER_EXTRACTABLE %s; private value readable: %s\n",
               k->token ? "true" : "false", k->sensitive ? "true" : "false", k->extractable ? "true" : "false",
               k->always_sensitive ? "true" : "false", k->never_extractable ? "true" : "false",
               k->value_readable ? "yes" : "no");
}

static int cmd_ca(int argc, char **argv) {
        struct ca_init_opts opts = { .org = arg_org, .compressed = arg_compressed, .signer_id = (uint16_t)arg_signer_id,
                                     .no_expiry = arg_no_expiry };
        int r;

        if (argc < 1 || !arg_dir) {
                fprintf(stderr, "provctl: usage: provctl ca init|signer-csr --dir DIR [--org O] [--signer-uri pkcs11:...]\n");
                return -EINVAL;
        }
        /* A new directory for keys: only its owner may enter it (an existing one is left as it is). */
        if (mkdir(arg_dir, 0700) < 0 && errno != EEXIST) {
                fprintf(stderr, "provctl: cannot create %s: %m\n", arg_dir);
                return -errno;
        }
        if (streq(argv[0], "init") && arg_signer_uri) {
                _cleanup_free_ char *red = signer_uri_redact(arg_signer_uri);
                struct ca_hsm_key k;
                char *pin = NULL;

                if (strncmp(arg_signer_uri, "pkcs11:", 7) != 0) {
                        fprintf(stderr, "provctl: --signer-uri for ca init must be a pkcs11: URI\n");
                        return -EINVAL;
                }
                r = read_pin_arg(&pin);
                if (r < 0)
                        return r;
                r = ca_hsm_keygen(arg_signer_uri, pin, arg_module, &k);
                if (r < 0) {
                        fprintf(stderr, "provctl: creating the signer key in %s failed: %s\n", red ? red : "the token",
                                r == -EEXIST ? "a key with that label/id exists already"
                                : r == -EKEYREJECTED ? "the token made a key that is extractable or not sensitive"
                                : r == -EMEDIUMTYPE ? "the token cannot make an EC P-256 key"
                                                    : signer_strerror(r));
                        signer_pin_free(pin);
                        return r;
                }
                if (!arg_json)
                        printf("created the signer key in %s\n", red ? red : "the token");
                print_key(arg_signer_uri, &k);
                r = ca_signer_csr_hsm(arg_dir, &opts, arg_signer_uri, pin, arg_module);
                signer_pin_free(pin);
                if (r < 0) {
                        fprintf(stderr, "provctl: writing %s/signer.csr failed: %s\n", arg_dir,
                                r == -EEXIST ? "it exists" : signer_strerror(r));
                        return r;
                }
                if (!arg_json)
                        printf("created %s/signer.csr; have the offline root sign it (CA:TRUE, pathlen:0, "
                               "keyCertSign), then: provctl signer import CERT --root ROOT --signer-uri ...\n",
                               arg_dir);
                return 0;
        }
        if (streq(argv[0], "init")) {
                r = ca_init(arg_dir, &opts);
                if (r == -EEXIST)
                        fprintf(stderr, "provctl: %s already holds CA files; refusing to overwrite them\n", arg_dir);
                else if (r == -ERANGE)
                        fprintf(stderr, "provctl: the compressed certificate format has no dates after 2031\n");
                else if (r < 0)
                        fprintf(stderr, "provctl: ca init in %s failed: %s\n", arg_dir, strerror(-r));
                else
                        printf("created %s/root.key, root.pem, signer.key, signer.pem\n", arg_dir);
                return r;
        }
        if (streq(argv[0], "signer-csr")) {
                r = ca_signer_csr(arg_dir, &opts);
                if (r < 0)
                        fprintf(stderr, "provctl: ca signer-csr in %s failed: %s\n", arg_dir, strerror(-r));
                else
                        printf("created %s/signer.key and signer.csr; have the root sign signer.csr\n", arg_dir);
                return r;
        }
        fprintf(stderr, "provctl: unknown ca command '%s'\n", argv[0]);
        return -EINVAL;
}

static void print_validity(const char *what, const struct signer_validity *v) {
        char nb[32], na[32];
        struct tm tm;

        strftime(nb, sizeof nb, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&v->not_before, &tm));
        strftime(na, sizeof na, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&v->not_after, &tm));
        printf("%-8s valid %s .. %s, %s%" PRId64 " days %s\n", what, nb, na, v->expired ? "EXPIRED " : "",
               v->days_left < 0 ? -v->days_left : v->days_left, v->days_left < 0 ? "ago" : "left");
        if (v->not_yet_valid)
                printf("%-8s NOT YET VALID\n", what);
}

#define SIGNER_EXPIRY_WARN_DAYS 90

/*
 * signer status without --cert: every signer the database knows, with its
 * state, how many certificates it issued, its validity and a warning ahead of
 * expiry. Read-only (its own connection: safe while provd runs).
 */
static int signer_status_db(void) {
        static const char sql[] =
                "SELECT s.id, s.name, s.subject, s.state, s.not_before, s.not_after, s.cert_sha256, "
                "(SELECT count(*) FROM certificates c WHERE c.signer_id = s.id) FROM signers s ORDER BY s.id";
        cJSON *arr;
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        char err[256];
        int64_t now_ms = (int64_t)time(NULL) * 1000;
        int r, rc, warn = 0, active = 0;

        r = db_open_readonly_err(&db, arg_db, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, err);
                return r;
        }
        arr = cJSON_CreateArray();
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, sqlite3_errmsg(db));
                sqlite3_close(db);
                cJSON_Delete(arr);
                return -EIO;
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *name = (const char *)sqlite3_column_text(st, 1);
                const char *subject = (const char *)sqlite3_column_text(st, 2);
                const char *state = (const char *)sqlite3_column_text(st, 3);
                const char *sha = (const char *)sqlite3_column_text(st, 6);
                int64_t id = sqlite3_column_int64(st, 0), nb = sqlite3_column_int64(st, 4),
                        na = sqlite3_column_int64(st, 5), issued = sqlite3_column_int64(st, 7);
                int64_t days = (na - now_ms) / 86400000;
                bool is_active = state && streq(state, "active");
                bool expiring = is_active && days < SIGNER_EXPIRY_WARN_DAYS;

                active += is_active;
                warn += expiring;
                if (arg_json) {
                        cJSON *o = cJSON_CreateObject();
                        cJSON_AddNumberToObject(o, "id", (double)id);
                        cJSON_AddStringToObject(o, "name", name ? name : "");
                        cJSON_AddStringToObject(o, "subject", subject ? subject : "");
                        cJSON_AddStringToObject(o, "state", state ? state : "");
                        cJSON_AddStringToObject(o, "cert_sha256", sha ? sha : "");
                        cJSON_AddNumberToObject(o, "not_before", (double)(nb / 1000));
                        cJSON_AddNumberToObject(o, "not_after", (double)(na / 1000));
                        cJSON_AddNumberToObject(o, "days_left", (double)days);
                        cJSON_AddNumberToObject(o, "certificates", (double)issued);
                        cJSON_AddBoolToObject(o, "expiry_warning", expiring);
                        cJSON_AddItemToArray(arr, o);
                } else {
                        char e_subject[256], e_name[160], na_s[32];
                        time_t t = (time_t)(na / 1000);
                        struct tm tm;

                        log_escape(subject ? subject : "", e_subject, sizeof e_subject);
                        log_escape(name ? name : "", e_name, sizeof e_name);
                        strftime(na_s, sizeof na_s, "%Y-%m-%d", gmtime_r(&t, &tm));
                        printf("signer %" PRId64 "  %-7s %s (%s)  %" PRId64 " certificates  until %s (%" PRId64
                               " days)%s\n", id, state ? state : "?", e_subject, e_name, issued, na_s, days,
                               days < 0 ? "  EXPIRED" : expiring ? "  WARNING: expires soon; rotate it" : "");
                }
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        if (rc != SQLITE_DONE) {
                fprintf(stderr, "provctl: %s: reading signers failed\n", arg_db);
                cJSON_Delete(arr);
                return -EIO;
        }
        if (arg_json)
                print_json(arr);
        else if (active == 0)
                printf("no active signer\n");
        cJSON_Delete(arr);
        return warn ? -EKEYEXPIRED : 0;
}

/*
 * signer rotate: a new signer, switched to live. The new key and certificate
 * are made (a key file certified by the root at hand, or a key made in the
 * HSM whose CSR the root at hand certifies) unless --cert names one already
 * imported; a drop-in CONFIG.d/90-signer-rotation.conf then names it, and
 * provd is asked to reload: it opens the new signer off its loop, records it,
 * switches new sessions to it, keeps boards in flight on the old one and
 * marks the old one retired (all audited, with our uid).
 */
static bool has_prefix(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int write_dropin(const char *uri, const char *cert, const char *root) {
        _cleanup_free_ char *dir = NULL, *path = NULL, *tmp = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        char when[32];
        time_t now = time(NULL);
        struct tm tm;
        int fd;

        if (asprintf(&dir, "%s.d", arg_config) < 0 ||
            asprintf(&path, "%s/90-signer-rotation.conf", dir) < 0 ||
            asprintf(&tmp, "%s/.90-signer-rotation.conf.tmp", dir) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                return -errno;
        }
        gmtime_r(&now, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        fprintf(f, "# Written by provctl signer rotate at %s. The signer named here replaced\n"
                   "# the one before it, which stays recorded (retired) for verification.\n"
                   "[signer]\nuri = %s\ncert = %s\n", when, uri, cert);
        if (root)
                fprintf(f, "root = %s\n", root);
        if (arg_pin_file)
                fprintf(f, "%s = %s\n", has_prefix(arg_pin_file, "credential:") ? "pin_credential" : "pin_file",
                        has_prefix(arg_pin_file, "credential:") ? arg_pin_file + strlen("credential:") : arg_pin_file);
        if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
                unlink(tmp);
                return -errno;
        }
        if (rename(tmp, path) < 0) {
                unlink(tmp);
                return -errno;
        }
        printf("wrote %s\n", path);
        return 0;
}

/* The uid provd runs as (its status), so that a key file made by root here is one provd accepts. */
static int provd_uid(uid_t *ret) {
        cJSON *req = cJSON_CreateObject(), *reply = NULL, *v;
        int r;

        cJSON_AddStringToObject(req, "cmd", "status");
        r = call(req, &reply);
        cJSON_Delete(req);
        if (r < 0)
                return r;
        v = cJSON_GetObjectItemCaseSensitive(reply, "uid");
        r = cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 4294967295.0 ? 0 : -EPROTO;
        if (r == 0)
                *ret = (uid_t)v->valuedouble;
        cJSON_Delete(reply);
        return r;
}

static int signer_rotate(void) {
        _cleanup_free_ char *root_buf = NULL, *root_key_buf = NULL, *key_path = NULL, *cert_path = NULL,
                            *uri = NULL, *csr_dir = NULL, *csr = NULL;
        const char *dir = arg_dir ? arg_dir : PROVD_SYSCONFDIR;
        const char *root = arg_root, *root_key = arg_root_key;
        struct ca_init_opts opts = { .org = arg_org };
        cJSON *req, *reply = NULL, *v;
        char name[64];
        time_t now = time(NULL);
        struct tm tm;
        uid_t uid;
        int r;

        gmtime_r(&now, &tm);
        strftime(name, sizeof name, "signer-%Y%m%dT%H%M%SZ", &tm);
        if (!root) {
                if (asprintf(&root_buf, "%s/root.pem", dir) < 0)
                        return -ENOMEM;
                root = root_buf;
        }
        if (!root_key) {
                if (asprintf(&root_key_buf, "%s/root.key", dir) < 0)
                        return -ENOMEM;
                root_key = root_key_buf;
        }
        r = provd_uid(&uid);
        if (r < 0) {
                fprintf(stderr, "provctl: cannot ask provd which user it runs as: %s\n", strerror(-r));
                return r;
        }

        if (arg_cert) {
                /* Imported already (signer import): only the switch is left. */
                if (!arg_signer_uri) {
                        fprintf(stderr, "provctl: signer rotate --cert needs --signer-uri, the certificate's key\n");
                        return -EINVAL;
                }
                cert_path = strdup(arg_cert);
                uri = strdup(arg_signer_uri);
        } else if (arg_signer_uri && has_prefix(arg_signer_uri, "pkcs11:")) {
                struct ca_hsm_key key;
                char *pin = NULL;

                if (asprintf(&csr_dir, "%s/%s.d", dir, name) < 0 || asprintf(&csr, "%s/signer.csr", csr_dir) < 0 ||
                    asprintf(&cert_path, "%s/%s.pem", dir, name) < 0)
                        return -ENOMEM;
                if (mkdir(csr_dir, 0700) < 0) {
                        fprintf(stderr, "provctl: %s: %s\n", csr_dir, strerror(errno));
                        return -errno;
                }
                r = read_pin_arg(&pin);
                if (r < 0)
                        return r;
                r = ca_hsm_keygen(arg_signer_uri, pin, arg_module, &key);
                if (r >= 0)
                        r = ca_signer_csr_hsm(csr_dir, &opts, arg_signer_uri, pin, arg_module);
                signer_pin_free(pin);
                if (r < 0) {
                        fprintf(stderr, "provctl: the new signer key in %s: %s\n", arg_signer_uri, signer_strerror(r));
                        return r;
                }
                if (access(root_key, R_OK) < 0) {
                        printf("the new signer key is in the token; have the offline root sign %s, then run\n"
                               "  provctl signer import CERT --root %s --signer-uri '%s' --out FILE\n"
                               "  provctl signer rotate --cert FILE --signer-uri '%s'\n", csr, root,
                               arg_signer_uri, arg_signer_uri);
                        return 0;
                }
                r = ca_sign_signer_csr(csr, root_key, root, &opts, cert_path);
                if (r < 0) {
                        fprintf(stderr, "provctl: certifying %s with %s: %s\n", csr, root_key, strerror(-r));
                        return r;
                }
                uri = strdup(arg_signer_uri);
        } else {
                if (asprintf(&key_path, "%s/%s.key", dir, name) < 0 || asprintf(&cert_path, "%s/%s.pem", dir, name) < 0)
                        return -ENOMEM;
                r = ca_signer_issue(dir, name, root_key, root, &opts);
                if (r < 0) {
                        fprintf(stderr, "provctl: a new signer in %s: %s\n", dir,
                                r == -EKEYREJECTED ? "the root key does not belong to the root certificate"
                                : r == -ENOENT     ? "the root key or certificate is missing (--root-key, --root)"
                                                   : strerror(-r));
                        return r;
                }
                /* provd refuses a key file that is not its own: hand it over. */
                if (geteuid() == 0 && uid != 0 && chown(key_path, uid, (gid_t)-1) < 0) {
                        r = -errno;
                        fprintf(stderr, "provctl: chown %s: %s\n", key_path, strerror(errno));
                        return r;
                }
                if (asprintf(&uri, "file:%s", key_path) < 0)
                        return -ENOMEM;
                printf("created %s and %s\n", key_path, cert_path);
        }
        if (!uri || !cert_path)
                return -ENOMEM;

        r = write_dropin(uri, cert_path, arg_root);
        if (r < 0) {
                fprintf(stderr, "provctl: writing the configuration drop-in: %s\n", strerror(-r));
                return r;
        }
        req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "cmd", "reload");
        r = call(req, &reply);
        cJSON_Delete(req);
        if (r < 0)
                return r;       /* call() printed provd's reason */
        if (arg_json)
                print_json(reply);
        else {
                v = cJSON_GetObjectItemCaseSensitive(reply, "message");
                printf("%s\n", cJSON_IsString(v) ? v->valuestring : "reloaded");
        }
        v = cJSON_GetObjectItemCaseSensitive(reply, "rotated");
        r = cJSON_IsTrue(v) ? 0 : -EALREADY;
        cJSON_Delete(reply);
        return r;
}

static int cmd_signer(int argc, char **argv) {
        int r;

        if (argc < 1) {
                fprintf(stderr, "provctl: usage: provctl signer import CERT ... | signer status --cert FILE\n");
                return -EINVAL;
        }
        if (streq(argv[0], "status")) {
                struct signer_file_status st;
                if (!arg_cert)
                        return signer_status_db();
                r = signer_cert_file_status(arg_cert, time(NULL), &st);
                if (r < 0) {
                        fprintf(stderr, "provctl: %s: %s\n", arg_cert, signer_strerror(r));
                        return r;
                }
                if (arg_json) {
                        cJSON *o = cJSON_CreateObject();
                        char *txt;
                        cJSON_AddStringToObject(o, "subject_cn", st.subject_cn);
                        cJSON_AddStringToObject(o, "ski", st.ski_hex);
                        cJSON_AddNumberToObject(o, "not_before", (double)st.validity.not_before);
                        cJSON_AddNumberToObject(o, "not_after", (double)st.validity.not_after);
                        cJSON_AddNumberToObject(o, "days_left", (double)st.validity.days_left);
                        cJSON_AddBoolToObject(o, "expired", st.validity.expired);
                        cJSON_AddBoolToObject(o, "not_yet_valid", st.validity.not_yet_valid);
                        cJSON_AddBoolToObject(o, "has_root", st.has_root);
                        if (st.has_root)
                                cJSON_AddNumberToObject(o, "root_not_after", (double)st.root_validity.not_after);
                        txt = cJSON_PrintUnformatted(o);
                        if (txt)
                                printf("%s\n", txt);
                        free(txt);
                        cJSON_Delete(o);
                } else {
                        printf("signer   %s (SKI %s)\n", st.subject_cn, st.ski_hex[0] ? st.ski_hex : "none");
                        print_validity("signer", &st.validity);
                        if (st.has_root)
                                print_validity("root", &st.root_validity);
                }
                return st.validity.expired || st.validity.not_yet_valid ? -EKEYEXPIRED : 0;
        }
        if (streq(argv[0], "rotate"))
                return signer_rotate();
        if (streq(argv[0], "import")) {
                _cleanup_free_ char *out_buf = NULL;
                const char *out = arg_out;
                char *pin = NULL;

                if (argc < 2 || !arg_root || !arg_signer_uri || (!arg_out && !arg_dir)) {
                        fprintf(stderr, "provctl: usage: provctl signer import CERT --root ROOT --signer-uri URI "
                                        "[--pin-file F] (--out FILE | --dir DIR)\n");
                        return -EINVAL;
                }
                if (!out) {
                        if (asprintf(&out_buf, "%s/signer.pem", arg_dir) < 0)
                                return -ENOMEM;
                        out = out_buf;
                }
                r = read_pin_arg(&pin);
                if (r < 0)
                        return r;
                r = ca_signer_import(argv[1], arg_root, arg_signer_uri, pin, arg_module, out);
                signer_pin_free(pin);
                if (r < 0) {
                        fprintf(stderr, "provctl: %s not installed: %s\n", argv[1],
                                r == -EDOM     ? "not a signer CA certificate (needs CA:TRUE, pathlen:0, keyUsage keyCertSign)"
                                : r == -ERANGE ? "expired or not yet valid"
                                : r == -EEXIST ? "the destination exists already"
                                : r == -EKEYREJECTED
                                        ? "it does not hold the signer key's public key, or the root did not sign it"
                                        : signer_strerror(r));
                        return r;
                }
                printf("installed %s as %s\n", argv[1], out);
                return 0;
        }
        fprintf(stderr, "provctl: unknown signer command '%s'\n", argv[0]);
        return -EINVAL;
}

static int cmd_audit(int argc, char **argv) {
        sqlite3 *db = NULL;
        char err[256] = "";
        int64_t rows = 0, bad = 0, from = 0, to = 0;
        int r;

        if (argc < 1 || (!streq(argv[0], "verify") && !streq(argv[0], "export"))) {
                fprintf(stderr, "provctl: usage: provctl audit verify|export [--db PATH]\n");
                return -EINVAL;
        }
        if ((arg_since && parse_time(arg_since, &from) < 0) || (arg_until && parse_time(arg_until, &to) < 0)) {
                fprintf(stderr, "provctl: cannot parse --since/--until\n");
                return -EINVAL;
        }
        if (!streq(arg_format, "jsonl") && !streq(arg_format, "csv")) {
                fprintf(stderr, "provctl: --format must be jsonl or csv\n");
                return -EINVAL;
        }
        r = db_open_readonly_err(&db, arg_db, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, err[0] ? err : strerror(-r));
                return r;
        }
        if (streq(argv[0], "verify")) {
                r = audit_verify(db, &rows, &bad);
                /* -EBADMSG is also what SQLite's "corrupt" maps to: a broken chain names its row. */
                if (r == -EBADMSG && bad > 0)
                        printf("audit log BROKEN: %" PRId64 " rows read, first bad row id %" PRId64
                               " (edited, inserted or deleted rows)\n", rows, bad);
                else if (r == -EBADMSG)
                        fprintf(stderr, "provctl: cannot read the audit log: the database file is corrupt "
                                "(sqlite3 %s 'PRAGMA integrity_check' shows where)\n", arg_db);
                else if (r < 0)
                        fprintf(stderr, "provctl: cannot read the audit log: %s\n", strerror(-r));
                else
                        printf("audit log intact: %" PRId64 " rows, hash chain verified\n", rows);
        } else {
                r = audit_export(db, stdout, streq(arg_format, "csv") ? AUDIT_FORMAT_CSV : AUDIT_FORMAT_JSONL,
                                 from, to);
                if (r < 0)
                        fprintf(stderr, "provctl: export failed: %s\n", strerror(-r));
        }
        sqlite3_close(db);
        return r < 0 ? r : 0;
}

/*
 * provctl db check: the whole integrity check (every page, every index entry
 * against its row), then the totals behind `stats` against the rows. Read
 * only, on a snapshot: safe while provd runs. Exit status 1 on any problem.
 */
static int cmd_db(int argc, char **argv) {
        sqlite3 *db = NULL;
        char err[2048] = "";
        unsigned version = 3;
        int r, rt;

        if (argc < 1 || !streq(argv[0], "check")) {
                fprintf(stderr, "provctl: usage: provctl db check [--db PATH]\n");
                return -EINVAL;
        }
        r = db_open_readonly_err(&db, arg_db, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, err[0] ? err : strerror(-r));
                return r;
        }
        /* One read transaction: both checks see the same snapshot. */
        (void)sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        r = db_check_integrity(db, true, err, sizeof err);
        if (r < 0)
                printf("%s: %s\n", arg_db, err);
        else
                printf("%s: integrity ok (every page and index checked)\n", arg_db);
        rt = 0;
        if (r >= 0 && schema_version(db, &version) >= 0 && version < 3)
                printf("%s: no totals before schema 3 (this file is at %u; provd migrates it when it opens it)\n",
                       arg_db, version);
        else if (r >= 0)
                rt = db_check_totals(db, err, sizeof err);
        if (rt < 0)
                printf("%s: %s\n", arg_db, err);
        else if (r >= 0 && version >= 3)
                printf("%s: totals ok (stats match the rows)\n", arg_db);
        (void)sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        sqlite3_close(db);
        return r < 0 ? r : rt;
}

/* --- aws ------------------------------------------------------------------- */

static void print_counts(const char *title, const cJSON *o) {
        const cJSON *v;

        if (!cJSON_IsObject(o) || !o->child)
                return;
        printf("  %s:", title);
        cJSON_ArrayForEach(v, o)
                printf(" %s %.0f", v->string, v->valuedouble);
        printf("\n");
}

static void print_aws_status(const cJSON *o) {
        const cJSON *ob = cJSON_GetObjectItem(o, "outbox"), *wk = cJSON_GetObjectItem(o, "worker"), *e;
        const cJSON *st = cJSON_GetObjectItem(ob, "states"), *old = cJSON_GetObjectItem(ob, "oldest_pending");

        printf("AWS registration: mode %s", str(o, "mode"));
        if (cJSON_IsObject(wk))
                printf(", %s%s, %.0f of %.0f jobs running, %.1f calls/s (%.0f calls, %.0f retries, %.0f throttled)",
                       cJSON_IsTrue(cJSON_GetObjectItem(wk, "sending")) ? "sending" : "not sending",
                       cJSON_IsTrue(cJSON_GetObjectItem(wk, "draining")) ? " (draining)" : "",
                       num(wk, "active"), num(wk, "concurrency"), num(wk, "rate_per_s"), num(wk, "calls"),
                       num(wk, "retries"), num(wk, "throttled"));
        printf("\n");
        printf("jobs: pending %.0f (due %.0f)  in flight %.0f  done %.0f  failed %.0f\n", num(st, "pending"),
               num(ob, "pending_due"), num(st, "in_flight"), num(st, "done"), num(st, "failed"));
        print_counts("pending by step", cJSON_GetObjectItem(ob, "pending"));
        print_counts("in flight by step", cJSON_GetObjectItem(ob, "in_flight"));
        print_counts("failed by step", cJSON_GetObjectItem(ob, "failed"));
        if (cJSON_IsObject(old)) {
                time_t t = (time_t)(num(old, "created_at") / 1000);
                char buf[32];
                strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
                printf("oldest pending: #%.0f (%s) queued %s\n", num(old, "id"), str(old, "kind"), buf);
        }
        e = cJSON_GetObjectItem(wk, "last_error");
        if (cJSON_IsObject(e))
                printf("last error: %s: %s\n", str(e, "code"), str(e, "message"));
        const cJSON *errs = cJSON_GetObjectItem(ob, "errors"), *x;
        if (cJSON_GetArraySize(errs) > 0) {
                printf("\n%-8s %-8s %-14s %-24s %-20s %s\n", "ID", "STATE", "KIND", "STEP", "THING", "ERROR");
                cJSON_ArrayForEach(x, errs)
                        printf("%-8.0f %-8s %-14s %-24s %-20.20s %s\n", num(x, "id"), str(x, "state"), str(x, "kind"),
                               str(x, "step"), str(x, "thing_name"), str(x, "error"));
        }
}

/* JSON lines of the template parameters for StartThingRegistrationTask, from the database (no daemon). */
static int aws_export_bulk(const char *path) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        char err[512] = "";
        FILE *f;
        unsigned long n = 0;
        int r, rc;

        r = db_open_readonly_err(&db, arg_db, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, err[0] ? err : strerror(-r));
                return r;
        }
        rc = sqlite3_prepare_v2(db,
                                "SELECT c.thing_name, c.device_serial, c.der, c.sha256 FROM aws_outbox o "
                                "JOIN certificates c ON c.id = o.cert_id "
                                "WHERE o.kind = 'register_cert' AND (?1 OR o.state <> 'done') ORDER BY o.id",
                                -1, &st, NULL);
        if (rc != SQLITE_OK) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, sqlite3_errmsg(db));
                sqlite3_close(db);
                return -EIO;
        }
        sqlite3_bind_int(st, 1, arg_all);
        f = streq(path, "-") ? stdout : fopen(path, "wxe");
        if (!f) {
                r = -errno;
                fprintf(stderr, "provctl: %s: %m (an existing file is not overwritten)\n", path);
                sqlite3_finalize(st);
                sqlite3_close(db);
                return r;
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                char *pem = db_der_to_pem(sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2));
                cJSON *o = cJSON_CreateObject();
                char *line;

                /* The parameter names of the template in docs/AWS.md ("Bulk registration"). */
                cJSON_AddStringToObject(o, "ThingName", (const char *)sqlite3_column_text(st, 0));
                cJSON_AddStringToObject(o, "SerialNumber", (const char *)sqlite3_column_text(st, 1));
                cJSON_AddStringToObject(o, "CertificatePem", pem ? pem : "");
                cJSON_AddStringToObject(o, "CertificateId", (const char *)sqlite3_column_text(st, 3));
                line = cJSON_PrintUnformatted(o);
                if (!pem || !line || fprintf(f, "%s\n", line) < 0)
                        r = -EIO;
                free(line);
                free(pem);
                cJSON_Delete(o);
                if (r < 0)
                        break;
                n++;
        }
        if (r >= 0 && rc != SQLITE_DONE) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, sqlite3_errmsg(db));
                r = -EIO;
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        if (f != stdout && fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r < 0)
                return r;
        fprintf(stderr, "%lu device(s) written to %s\n", n, path);
        return 0;
}

static int cmd_aws(int argc, char **argv) {
        cJSON *req, *reply = NULL;
        int r;

        if (argc >= 2 && streq(argv[0], "export-bulk"))
                return aws_export_bulk(argv[1]);
        if (argc < 1 || (!streq(argv[0], "status") && !streq(argv[0], "retry") && !streq(argv[0], "drain"))) {
                fprintf(stderr, "provctl: usage: provctl aws status|retry ID|retry --failed|drain|export-bulk FILE\n");
                return -EINVAL;
        }
        req = cJSON_CreateObject();
        if (streq(argv[0], "status"))
                cJSON_AddStringToObject(req, "cmd", "aws-status");
        else if (streq(argv[0], "drain"))
                cJSON_AddStringToObject(req, "cmd", "aws-drain");
        else {
                unsigned id;

                cJSON_AddStringToObject(req, "cmd", "aws-retry");
                if (arg_failed && argc == 1)
                        cJSON_AddBoolToObject(req, "failed", true);
                else if (!arg_failed && argc == 2 && parse_uint(argv[1], &id) >= 0 && id > 0)
                        cJSON_AddNumberToObject(req, "id", id);
                else {
                        cJSON_Delete(req);
                        fprintf(stderr, "provctl: usage: provctl aws retry ID|--failed\n");
                        return -EINVAL;
                }
        }
        r = call(req, &reply);
        cJSON_Delete(req);
        if (r < 0)
                return r;
        if (arg_json)
                print_json(reply);
        else if (streq(argv[0], "status"))
                print_aws_status(reply);
        else if (streq(argv[0], "drain"))
                printf("provd is sending the queued registrations (see provctl aws status)\n");
        else
                printf("%.0f registration(s) queued again\n", num(reply, "requeued"));
        cJSON_Delete(reply);
        return 0;
}

int main(int argc, char **argv) {
        enum { ARG_SINCE = 0x100, ARG_PEM, ARG_DIR, ARG_ORG, ARG_INTERVAL, ARG_LIMIT, ARG_TIMEOUT, ARG_VERSION, ARG_DB, ARG_UNTIL, ARG_FORMAT, ARG_PAGE,
               ARG_SIGNER_URI, ARG_PIN_FILE, ARG_MODULE, ARG_ROOT, ARG_OUT, ARG_CERT, ARG_COMPRESSED, ARG_SIGNER_ID,
               ARG_NO_EXPIRY, ARG_ROOT_KEY, ARG_CONFIG, ARG_FAILED, ARG_ALL };
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "since", required_argument, NULL, ARG_SINCE },
                { "pem", no_argument, NULL, ARG_PEM },
                { "dir", required_argument, NULL, ARG_DIR },
                { "org", required_argument, NULL, ARG_ORG },
                { "interval", required_argument, NULL, ARG_INTERVAL },
                { "limit", required_argument, NULL, ARG_LIMIT },
                { "page", required_argument, NULL, ARG_PAGE },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "db", required_argument, NULL, ARG_DB },
                { "until", required_argument, NULL, ARG_UNTIL },
                { "format", required_argument, NULL, ARG_FORMAT },
                { "signer-uri", required_argument, NULL, ARG_SIGNER_URI },
                { "pin-file", required_argument, NULL, ARG_PIN_FILE },
                { "module", required_argument, NULL, ARG_MODULE },
                { "root", required_argument, NULL, ARG_ROOT },
                { "out", required_argument, NULL, ARG_OUT },
                { "cert", required_argument, NULL, ARG_CERT },
                { "compressed", no_argument, NULL, ARG_COMPRESSED },
                { "signer-id", required_argument, NULL, ARG_SIGNER_ID },
                { "no-expiry", no_argument, NULL, ARG_NO_EXPIRY },
                { "root-key", required_argument, NULL, ARG_ROOT_KEY },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "failed", no_argument, NULL, ARG_FAILED },
                { "all", no_argument, NULL, ARG_ALL },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        const char *cmd;
        unsigned v;
        int c, r;

        if (getenv("PROVD_SOCKET"))
                arg_socket = getenv("PROVD_SOCKET");
        while ((c = getopt_long(argc, argv, "s:jh", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        arg_socket = optarg;
                        break;
                case 'j':
                        arg_json = true;
                        break;
                case ARG_SINCE:
                        arg_since = optarg;
                        break;
                case ARG_PEM:
                        arg_pem = true;
                        break;
                case ARG_DIR:
                        arg_dir = optarg;
                        break;
                case ARG_ORG:
                        arg_org = optarg;
                        break;
                case ARG_DB:
                        arg_db = optarg;
                        break;
                case ARG_UNTIL:
                        arg_until = optarg;
                        break;
                case ARG_FORMAT:
                        arg_format = optarg;
                        break;
                case ARG_SIGNER_URI:
                        arg_signer_uri = optarg;
                        break;
                case ARG_PIN_FILE:
                        arg_pin_file = optarg;
                        break;
                case ARG_MODULE:
                        arg_module = optarg;
                        break;
                case ARG_ROOT:
                        arg_root = optarg;
                        break;
                case ARG_OUT:
                        arg_out = optarg;
                        break;
                case ARG_CERT:
                        arg_cert = optarg;
                        break;
                case ARG_ROOT_KEY:
                        arg_root_key = optarg;
                        break;
                case ARG_CONFIG:
                        arg_config = optarg;
                        break;
                case ARG_COMPRESSED:
                        arg_compressed = true;
                        break;
                case ARG_NO_EXPIRY:
                        arg_no_expiry = true;
                        break;
                case ARG_SIGNER_ID:
                        if (parse_uint(optarg, &v) < 0 || v > 0xffff) {
                                fprintf(stderr, "provctl: invalid signer id '%s' (0..65535)\n", optarg);
                                return 2;
                        }
                        arg_signer_id = v;
                        break;
                case ARG_FAILED:
                        arg_failed = true;
                        break;
                case ARG_ALL:
                        arg_all = true;
                        break;
                case ARG_INTERVAL:
                case ARG_LIMIT:
                case ARG_PAGE:
                case ARG_TIMEOUT:
                        if (parse_uint(optarg, &v) < 0 || (c == ARG_INTERVAL && v < 50) || v > INT32_MAX) {
                                fprintf(stderr, "provctl: invalid number '%s'\n", optarg);
                                return 2;
                        }
                        if (c == ARG_INTERVAL)
                                arg_interval_ms = v;
                        else if (c == ARG_LIMIT)
                                arg_limit = v;
                        else if (c == ARG_PAGE)
                                arg_page = v;
                        else
                                arg_timeout_ms = (int)v;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("provctl %s\n", PROVD_VERSION);
                        return 0;
                default:
                        return 2;
                }
        if (optind >= argc) {
                help();
                return 2;
        }
        cmd = argv[optind];
        if (streq(cmd, "status") || streq(cmd, "ping") || streq(cmd, "stats") || streq(cmd, "reload"))
                r = cmd_simple(cmd);
        else if (streq(cmd, "watch"))
                r = cmd_watch();
        else if (streq(cmd, "devices"))
                r = cmd_devices();
        else if (streq(cmd, "reissue")) {
                if (optind + 1 >= argc) {
                        fprintf(stderr, "provctl: usage: provctl reissue SERIAL\n");
                        return 2;
                }
                r = cmd_reissue(argv[optind + 1]);
        } else if (streq(cmd, "audit"))
                r = cmd_audit(argc - optind - 1, argv + optind + 1);
        else if (streq(cmd, "db"))
                r = cmd_db(argc - optind - 1, argv + optind + 1);
        else if (streq(cmd, "ca"))
                r = cmd_ca(argc - optind - 1, argv + optind + 1);
        else if (streq(cmd, "signer"))
                r = cmd_signer(argc - optind - 1, argv + optind + 1);
        else if (streq(cmd, "aws"))
                r = cmd_aws(argc - optind - 1, argv + optind + 1);
        else {
                fprintf(stderr, "provctl: unknown command '%s' (see provctl --help)\n", cmd);
                return 2;
        }
        return r < 0 ? 1 : 0;
}
