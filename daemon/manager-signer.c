/* SPDX-License-Identifier: MIT */
/* The signer: opening it, recording it in the database, the signing context sessions take. */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
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

static int read_pin(const char *path, char *buf, size_t len) {
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        int r;

        if (!path)
                return 0;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        /* The PIN is as good as the key: the key file's rule. */
        r = signer_check_secret_fd(fd);
        if (r < 0)
                return r;
        n = read(fd, buf, len - 1);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        return 1;
}

static int open_issuer(struct manager *m, const struct conf *c, struct issuer **ret) {
        struct signer *s = NULL;
        struct cert_profile prof;
        char pin[256] = "";
        const char *uri = c->signer_uri;
        /* Logged instead of @uri: a pkcs11: URI may carry the PIN (pin-value=). */
        const char *shown = m->signer_uri_public ? m->signer_uri_public : "(signer URI)";
        int r;

        r = read_pin(c->signer_pin_file, pin, sizeof pin);
        if (r == -EPERM)
                return log_error_errno(r, "signer PIN file %s is readable or writable by group or others, or not "
                                       "owned by the user provd runs as; chown it to that user and run chmod 600 "
                                       "on it", c->signer_pin_file);
        if (r < 0)
                return log_error_errno(r, "signer PIN file %s: %m", c->signer_pin_file);
        r = signer_open(&s, uri, c->signer_cert, r > 0 ? pin : NULL);
        explicit_bzero(pin, sizeof pin);
        if (r == -EPERM)
                return log_error_errno(r, "signer key %s (or its pin-source file) is readable or writable by group "
                                       "or others, or not owned by the user provd runs as; chown it to that user "
                                       "and run chmod 600 on it", shown);
        if (r < 0)
                return log_error_errno(r, "cannot open signer %s with certificate %s: %m", shown, c->signer_cert);
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
        r = open_issuer(m, &m->conf, &m->issuer);
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
