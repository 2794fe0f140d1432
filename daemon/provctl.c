/* SPDX-License-Identifier: MIT */
/* provctl: the operator's command line for provd (control socket client and CA tooling). */

#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "audit.h"
#include "certs-hsm/ca.h"
#include "db.h"
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
static unsigned arg_interval_ms = 1000;
static unsigned arg_limit;
static unsigned arg_page;               /* devices per request; 0 = the daemon's page (1000) */
static const char *arg_db = "/var/lib/provd/provd.db";
static const char *arg_until;
static const char *arg_format = "jsonl";
static int arg_timeout_ms = 30000;

static void help(void) {
        printf("Usage: provctl [OPTIONS] COMMAND ...\n\n"
               "Commands (talk to a running provd):\n"
               "  status                 per-slot state, serial, step, elapsed, last error; totals and rate\n"
               "  watch                  live status view, refreshed every --interval ms\n"
               "  devices                provisioned devices (--since T, --pem, --limit N)\n"
               "  stats                  database totals (devices, certificates, attempts, AWS outbox)\n"
               "  reissue SERIAL         issue a new certificate the next time SERIAL is plugged\n"
               "  ping                   check that provd answers\n"
               "Commands (local, no daemon):\n"
               "  ca init --dir D        create root and signer keys and certificates in D\n"
               "  audit verify           check the audit log's hash chain (--db PATH)\n"
               "  audit export           write audit rows as JSONL or CSV (--db, --since, --until, --format)\n"
               "  db check               check every page and the totals of the database (--db PATH)\n"
               "  ca signer-csr --dir D  create a signer key and CSR for an offline root\n\n"
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
               "      --interval MS      refresh period for watch (default 1000)\n"
               "      --timeout MS       how long to wait for provd (default 30000)\n",
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
                ssize_t w = write(fd, text + off, n + 1 - off);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
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
                fprintf(stderr, "provctl: %s\n", cJSON_IsString(e) ? e->valuestring : "request failed");
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

        printf("station %s  provd %s  up %.0f s%s\n", str(o, "station"), str(o, "version"), num(o, "uptime_s"),
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
                printf("%-16.16s %s%-8s%s %-8s %-20s %7.1fs  %s\n", str(p, "slot"), color, state, off,
                       str(p, "step"), str(p, "serial"), num(p, "elapsed_ms") / 1000.0, str(p, "last_error"));
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
                        printf("%-20s %-14s %-24s %-20s %s\n", str(d, "serial"), str(d, "state"), when,
                               str(d, "thing_name"), str(d, "cert_sha256"));
                        if (arg_pem)
                                fputs(str(d, "certificate_pem"), stdout);
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

static int cmd_ca(int argc, char **argv) {
        struct ca_init_opts opts = { .org = arg_org };
        int r;

        if (argc < 1 || !arg_dir) {
                fprintf(stderr, "provctl: usage: provctl ca init|signer-csr --dir DIR [--org O]\n");
                return -EINVAL;
        }
        if (streq(argv[0], "init")) {
                r = ca_init(arg_dir, &opts);
                if (r == -EEXIST)
                        fprintf(stderr, "provctl: %s already holds CA files; refusing to overwrite them\n", arg_dir);
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

int main(int argc, char **argv) {
        enum { ARG_SINCE = 0x100, ARG_PEM, ARG_DIR, ARG_ORG, ARG_INTERVAL, ARG_LIMIT, ARG_TIMEOUT, ARG_VERSION, ARG_DB, ARG_UNTIL, ARG_FORMAT, ARG_PAGE };
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
        if (streq(cmd, "status") || streq(cmd, "ping") || streq(cmd, "stats"))
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
        else {
                fprintf(stderr, "provctl: unknown command '%s' (see provctl --help)\n", cmd);
                return 2;
        }
        return r < 0 ? 1 : 0;
}
