/* SPDX-License-Identifier: MIT */
/* provctl: the operator's command line for provd (options, the control-socket call, output helpers). */

#include <cjson/cJSON.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "config.h"
#include "timespec.h"
#include "util.h"
#include "provctl.h"

#define REPLY_MAX (64u * 1024 * 1024)   /* a page of 1000 devices with PEMs is ~1.5 MB */

const char *arg_socket = "/run/provd/provd.sock";
bool arg_json;
bool arg_pem;
const char *arg_since;
const char *arg_dir;
const char *arg_org;
const char *arg_signer_uri;    /* ca init / signer import: the signer key (pkcs11: or file:) */
const char *arg_pin_file;      /* its PIN: a path, or credential:NAME */
const char *arg_module;        /* PKCS#11 module */
const char *arg_root;          /* signer import: the root certificate */
const char *arg_out;           /* signer import: where the certificate goes */
const char *arg_cert;          /* signer status: the signer certificate file */
const char *arg_root_key;      /* signer rotate: the root's private key */
const char *arg_config = PROVD_SYSCONFDIR "/provd.conf"; /* signer rotate: provd's configuration */
bool arg_compressed;           /* ca init: a signer within atcacert's compressed limits */
bool arg_no_expiry;            /* ca init: root and signer without expiry */
unsigned arg_signer_id;        /* ca init --compressed */
unsigned arg_interval_ms = 1000;
unsigned arg_limit;
unsigned arg_page;               /* devices per request; 0 = the daemon's page (1000) */
const char *arg_db = "/var/lib/provd/provd.db";
const char *arg_until;
const char *arg_format = "jsonl";
int arg_timeout_ms = 30000;
bool arg_failed;
bool arg_all;

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

int parse_uint(const char *s, unsigned *ret) {
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
int parse_time(const char *s, int64_t *ret) {
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
const char *escaped(const char *s, char *buf, size_t len) {
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
int call(cJSON *req, cJSON **ret) {
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

double num(const cJSON *o, const char *k) {
        const cJSON *v = cJSON_GetObjectItem(o, k);
        return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

const char *str(const cJSON *o, const char *k) {
        const cJSON *v = cJSON_GetObjectItem(o, k);
        return cJSON_IsString(v) ? v->valuestring : "";
}

void print_json(const cJSON *o) {
        char *t = cJSON_Print(o);
        if (t)
                puts(t);
        free(t);
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
