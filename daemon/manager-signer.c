/* SPDX-License-Identifier: MIT */
/* The signer: opening it, recording it in the database, the signing context sessions take. */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certs-hsm/cert.h"
#include "certs-hsm/signer.h"
#include "audit.h"
#include "db.h"
#include "log.h"
#include "manager-internal.h"
#include "signing-ctx.h"
#include "util.h"

/*
 * The audit chain's head in the journal, at start and at exit: an outside copy
 * that `provctl audit verify` cannot give by itself (someone who can write the
 * database file could rebuild the whole chain after an edit).
 */
void manager_log_audit_head(struct manager *m, const char *when) {
        uint8_t hash[AUDIT_HASH_LEN];
        char text[2 * AUDIT_HASH_LEN + 1];
        sqlite3 *db = NULL;
        int64_t id = 0;
        int r;

        r = db_open_readonly(&db, m->conf.database);
        if (r >= 0)
                r = audit_head(db, NULL, &id, hash);
        sqlite3_close(db);
        if (r < 0) {
                log_warning_errno(r, "audit log head %s: cannot read it: %m", when);
                return;
        }
        hex_encode(hash, AUDIT_HASH_LEN, text, false);
        log_notice("audit log head %s: row %" PRId64 ", hash %s", when, id, text);
}

/* The key file of a file: signer (the forms signer_open() takes), or NULL for a token. */
static const char *signer_key_path(const char *uri) {
        if (strncmp(uri, "file://", 7) == 0)
                return uri + 7;
        if (strncmp(uri, "file:", 5) == 0)
                return uri + 5;
        return uri[0] == '/' ? uri : NULL;
}

static int secret_error(int r, const char *what, const char *path) {
        if (r == -EPERM)
                return log_error_errno(r, "%s %s is readable or writable by group or others, or not owned by the "
                                       "user provd runs as; chown it to that user and run chmod 600 on it",
                                       what, path);
        return log_error_errno(r, "%s %s: %m", what, path);
}

/*
 * What a start would refuse, without opening the signer: the key file (a
 * file: signer) and the PIN file exist and follow the key file's rule, the
 * certificates are readable. A reload runs it on the loop thread (a few
 * system calls, no crypto, no token), so a key that went missing or
 * world-readable is reported then, not at the next start.
 */
int manager_check_signer_files(const struct conf *c) {
        const char *key = signer_key_path(c->signer_uri);
        int fd;

        if (key) {
                fd = conf_open_secret(key);
                if (fd < 0)
                        return secret_error(fd, "signer key", key);
                close(fd);
        }
        if (c->signer_pin_file) {
                fd = conf_open_secret(c->signer_pin_file);
                if (fd < 0)
                        return secret_error(fd, "signer PIN file", c->signer_pin_file);
                close(fd);
        }
        if (access(c->signer_cert, R_OK) < 0)
                return log_error_errno(-errno, "signer certificate %s: %m", c->signer_cert);
        if (access(c->root_cert, R_OK) < 0)
                return log_error_errno(-errno, "root certificate %s: %m", c->root_cert);
        return 0;
}

/*
 * Opens the signer @c names and an issuer over it (the profile from @c).
 * Blocking (key files, PKCS#11 login): at start, and on a worker thread for
 * a live signer switch (manager-rotate.c). Logs why it failed.
 */
int manager_open_issuer(const struct conf *c, struct issuer **ret) {
        _cleanup_free_ char *source = NULL, *uri_public = NULL;
        struct signer *s = NULL;
        struct cert_profile prof;
        char *pin = NULL;
        int r;

        uri_public = signer_uri_redact(c->signer_uri);
        if (!uri_public)
                return log_oom();
        if (c->signer_pin_file)
                source = strdup(c->signer_pin_file);
        else if (c->signer_pin_credential && asprintf(&source, "credential:%s", c->signer_pin_credential) < 0)
                source = NULL;
        if ((c->signer_pin_file || c->signer_pin_credential) && !source)
                return log_oom();
        if (source) {
                r = signer_pin_read(source, &pin);
                if (r == -EPERM)
                        return log_error_errno(r, "signer PIN file %s is readable or writable by group or others, or not "
                                               "owned by the user provd runs as; chown it to that user and run "
                                               "chmod 600 on it", source);
                if (r < 0)
                        return log_error_errno(r, "signer PIN %s: %m", source);
        }
        r = signer_open(&s, c->signer_uri, c->signer_cert, pin);
        pin = signer_pin_free(pin);
        if (r == -EPERM)
                return log_error_errno(r, "signer key %s (or its pin-source file) is readable or writable by group "
                                       "or others, or not owned by the user provd runs as; chown it to that user "
                                       "and run chmod 600 on it", uri_public);
        if (r == -ENOTSUP)
                return log_error_errno(r, "signer %s: a PIN in the URI (pin-value=) is refused; put it in a file "
                                       "named by [signer] pin_file", uri_public);
        if (r < 0)
                return log_error_errno(r, "cannot open signer %s with certificate %s: %m", uri_public,
                                       c->signer_cert);
        r = signer_set_root(s, c->root_cert);
        if (r < 0) {
                signer_free(s);
                return log_error_errno(r, "root %s: %s", c->root_cert,
                                       r == -EKEYREJECTED ? "did not sign the signer certificate" : strerror(-r));
        }
        cert_profile_init(&prof);
        if (c->validity_days == 0)
                prof.no_expiry = true;
        else
                prof.validity_days = c->validity_days;
        prof.org = c->organization;
        prof.expiry = c->expiry == CERT_EXPIRY_MODE_REFUSE ? CERT_EXPIRY_REFUSE : CERT_EXPIRY_CLAMP;
        if (c->format == CERT_FORMAT_MODE_ATECC) {
                prof.format = CERT_FORMAT_ATECC;
                prof.atecc_signer_id = c->atecc_signer_id;
                prof.atecc_template_id = c->atecc_template_id;
                prof.atecc_chain_id = c->atecc_chain_id;
        }
        r = issuer_new(ret, s, &prof);
        if (r < 0)
                return log_error_errno(r, "cannot set up issuance: %m");
        return 0;
}

int manager_signer_open(struct manager *m) {
        int r;

        /* As it may be stored and shown: no PIN (certs-hsm/signer.h). */
        m->signer_uri_public = signer_uri_redact(m->conf.signer_uri);
        if (!m->signer_uri_public)
                return log_oom();
        r = manager_open_issuer(&m->conf, &m->issuer);
        if (r < 0)
                return r;
        return 0;
}

struct signer_job {
        struct db_req req;
        struct manager *m;
        void (*ready)(struct manager *m);
};

static void on_signer_ensured(struct db_req *req) {
        struct signer_job *j = container_of(req, struct signer_job, req);
        struct manager *m = j->m;
        void (*ready)(struct manager *m) = j->ready;
        struct signing_ctx *ctx = NULL;
        int r;

        if (req->result < 0) {
                log_error("cannot record the signer in the database: %s", req->errmsg);
                m->exit_code = 1;
                free(j);
                manager_stop(m);
                manager_job_end(m);
                return;
        }
        if (req->signer.retired)
                log_warning("signer %s is marked retired in the database; issuing with it anyway",
                            req->signer.cert_sha256);
        r = signing_ctx_new(&ctx, m->issuer, req->signer.signer_id);
        free(j);
        if (r < 0) {
                log_oom();
                m->exit_code = 1;
                manager_stop(m);
                manager_job_end(m);
                return;
        }
        manager_set_signing_ctx(m, ctx);
        signing_ctx_unref(ctx);
        if (m->stopping) {
                manager_job_end(m);
                return;
        }
        manager_log_audit_head(m, "at start");
        ready(m);
        manager_job_end(m);
}

/* Records the configured signer (DB_SIGNER_ENSURE); @ready runs once it is the current signing context. */
int manager_signer_record(struct manager *m, void (*ready)(struct manager *m)) {
        struct signer_job *j;
        const uint8_t *der;
        size_t len;

        j = calloc(1, sizeof *j);
        if (!j)
                return log_oom();
        j->m = m;
        j->ready = ready;
        der = issuer_signer_cert_der(m->issuer, &len);
        j->req.type = DB_SIGNER_ENSURE;
        snprintf(j->req.signer.name, sizeof j->req.signer.name, "%s", m->conf.name);
        j->req.signer.key_uri = m->signer_uri_public;
        j->req.signer.cert_der = der;
        j->req.signer.cert_der_len = len;
        j->req.done = on_signer_ensured;
        j->req.userdata = j;
        manager_job_begin(m);
        db_submit(m->db, &j->req);
        return 0;
}
