/* SPDX-License-Identifier: MIT */
/* provctl: the CA and signer tooling (ca init, signer-csr, signer import/status/rotate). */

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "certs-hsm/ca.h"
#include "certs-hsm/signer.h"
#include "db.h"
#include "log.h"
#include "config.h"
#include "util.h"
#include "provctl.h"

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

int cmd_ca(int argc, char **argv) {
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

static char *prev;              /* the replaced drop-in, kept as path.prev */

static int write_dropin(const char *uri, const char *cert, const char *root) {
        _cleanup_free_ char *dir = NULL, *path = NULL, *tmp = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        char when[32];
        time_t now = time(NULL);
        struct tm tm;
        int fd, r;

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
        /* The drop-in it replaces is kept until provd has switched (restore_dropin()). */
        if (asprintf(&prev, "%s.prev", path) < 0) {
                unlink(tmp);
                return -ENOMEM;
        }
        bool had_prev = rename(path, prev) == 0;
        if (rename(tmp, path) < 0) {
                r = -errno;
                unlink(tmp);
                if (had_prev)
                        (void)rename(prev, path);
                return r;
        }
        printf("wrote %s\n", path);
        return 0;
}

/*
 * provd refused the new signer (and keeps issuing with the old one): the
 * drop-in must not name it either, or the next start would fail on it.
 * Puts back the drop-in it replaced, or removes it.
 */
static void restore_dropin(void) {
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s.d/90-signer-rotation.conf", arg_config) < 0 || !prev)
                return;
        if (rename(prev, path) < 0)
                (void)unlink(path);
        free(prev);
        prev = NULL;
        fprintf(stderr, "provctl: %s restored: the configuration names the signer provd is using\n", path);
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
        if (r < 0) {
                restore_dropin();       /* call() printed provd's reason */
                return r;
        }
        if (prev) {
                (void)unlink(prev);
                free(prev);
                prev = NULL;
        }
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

int cmd_signer(int argc, char **argv) {
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
