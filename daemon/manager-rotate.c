/* SPDX-License-Identifier: MIT */
/* Live signer rotation: a reload that names another signer switches to it without a restart. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "certs-hsm/cert.h"
#include "certs-hsm/digest.h"
#include "certs-hsm/signer.h"
#include "aws-worker.h"
#include "db.h"
#include "json-writer.h"
#include "log.h"
#include "manager-internal.h"
#include "signing-ctx.h"
#include "util.h"

/*
 * The sequence, each step on the loop thread unless said otherwise:
 *
 *   1. worker thread: parse the configuration again and open the signer it
 *      names (a key file read, or a PKCS#11 login: both may block);
 *   2. DB_SIGNER_ENSURE records it;
 *   3. a signing context for it becomes the current one: every session that
 *      starts issuance from now on uses it; sessions in flight keep the
 *      context they took (signing-ctx.h), so their certificate, PUT_CERT
 *      chain and record stay consistent with the old signer; in JITR/JITP
 *      mode the AWS worker queues the new CA's registration;
 *   4. DB_SIGNER_RETIRE marks the old signer retired (kept for verification,
 *      audited as signer.retire) and DB_AUDIT records signer.rotate with both
 *      fingerprints and who asked.
 *
 * A failure before step 3 changes nothing: the old signer keeps issuing.
 */

struct rotation {
        uv_work_t work;
        struct db_req req;
        struct manager *m;
        char *config_path;
        struct conf conf;               /* the new configuration (worker thread fills it) */
        struct issuer *issuer;          /* the new signer's */
        char *uri_public;
        int r;
        char err[512];
        int64_t old_id, new_id;
        char old_sha[DB_SHA256_HEX_MAX], new_sha[DB_SHA256_HEX_MAX];
        char actor[DB_LABEL_MAX];
        char details[512];
        manager_rotate_cb done;
        void *userdata;
};

static void rotation_finish(struct rotation *j, int r, const char *msg) {
        struct manager *m = j->m;

        if (r < 0)
                log_error("signer rotation: %s; the current signer keeps issuing", msg);
        if (j->done)
                j->done(j->userdata, r, msg, j->old_id, j->new_id);
        issuer_free(j->issuer);
        free(j->uri_public);
        conf_deinit(&j->conf);
        free(j->config_path);
        free(j);
        m->rotating = false;
        manager_job_end(m);
}

static void work_open(uv_work_t *w) {
        struct rotation *j = container_of(w, struct rotation, work);

        j->r = conf_load(&j->conf, j->config_path, j->err, sizeof j->err);
        if (j->r < 0)
                return;
        j->r = manager_open_issuer(&j->conf, &j->issuer);
        if (j->r < 0)
                snprintf(j->err, sizeof j->err, "cannot open the new signer %s (see the log line before)",
                         j->conf.signer_uri ? j->conf.signer_uri : "");
}

static void on_audited(struct db_req *req) {
        struct rotation *j = container_of(req, struct rotation, req);
        char msg[256];

        if (req->result < 0)
                log_warning("signer rotation: the audit row was not written: %s", req->errmsg);
        snprintf(msg, sizeof msg, "signer %" PRId64 " (%.16s...) replaces signer %" PRId64 " (%.16s...)", j->new_id,
                 j->new_sha, j->old_id, j->old_sha);
        log_notice("signer rotation: %s, requested by %s", msg, j->actor);
        rotation_finish(j, 0, msg);
}

static void on_retired(struct db_req *req) {
        struct rotation *j = container_of(req, struct rotation, req);
        struct json_writer w;

        if (req->result < 0)
                log_warning("signer rotation: signer %" PRId64 " not marked retired: %s", j->old_id, req->errmsg);
        json_writer_init(&w, j->details, sizeof j->details);
        json_writer_int(&w, "old_signer_id", j->old_id);
        json_writer_str(&w, "old_cert_sha256", j->old_sha);
        json_writer_int(&w, "new_signer_id", j->new_id);
        json_writer_str(&w, "new_cert_sha256", j->new_sha);
        json_writer_str(&w, "key_uri", j->uri_public);
        memset(&j->req, 0, sizeof j->req);
        j->req.type = DB_AUDIT;
        snprintf(j->req.audit.actor, sizeof j->req.audit.actor, "%s", j->actor);
        snprintf(j->req.audit.action, sizeof j->req.audit.action, "signer.rotate");
        j->req.audit.details_json = json_writer_finish(&w);
        j->req.done = on_audited;
        db_submit(j->m->db, &j->req);
}

static void swap_str(char **a, char **b) {
        char *t = *a;

        *a = *b;
        *b = t;
}

static bool str_eq(const char *a, const char *b) {
        return a == b || (a && b && streq(a, b));
}

/* Step 3: the switch. Also what the manager keeps for the next reload and for status. */
static int switch_to(struct rotation *j) {
        struct manager *m = j->m;
        struct signing_ctx *ctx = NULL;
        int r;

        r = signing_ctx_new(&ctx, j->issuer, j->new_id);
        if (r < 0)
                return r;
        manager_set_signing_ctx(m, ctx);
        signing_ctx_unref(ctx);

        issuer_free(m->issuer);
        m->issuer = TAKE_PTR(j->issuer);
        free(m->signer_uri_public);
        m->signer_uri_public = TAKE_PTR(j->uri_public);
        j->uri_public = strdup(m->signer_uri_public);   /* for the audit row */
        /* The signer fields are start-bound in a plain reload; now they are the new ones. */
        swap_str(&m->conf.signer_uri, &j->conf.signer_uri);
        swap_str(&m->conf.signer_cert, &j->conf.signer_cert);
        swap_str(&m->conf.root_cert, &j->conf.root_cert);
        swap_str(&m->conf.signer_pin_file, &j->conf.signer_pin_file);
        swap_str(&m->conf.signer_pin_credential, &j->conf.signer_pin_credential);
        return 0;
}

static void on_ensured(struct db_req *req) {
        struct rotation *j = container_of(req, struct rotation, req);
        struct manager *m = j->m;
        char msg[DB_ERRMSG_MAX + 64];
        int r;

        if (req->result < 0) {
                snprintf(msg, sizeof msg, "cannot record the new signer: %s", req->errmsg);
                rotation_finish(j, req->result, msg);
                return;
        }
        j->new_id = req->signer.signer_id;
        memcpy(j->new_sha, req->signer.cert_sha256, sizeof j->new_sha);
        if (j->new_id == j->old_id) {
                rotation_finish(j, 0, "the configured signer is the current one: nothing to rotate");
                return;
        }
        if (req->signer.retired) {
                snprintf(msg, sizeof msg, "signer %.16s... was retired before; a retired signer issues nothing "
                         "new (make a new signer key)", j->new_sha);
                rotation_finish(j, -ESTALE, msg);
                return;
        }
        if (m->stopping) {
                rotation_finish(j, -ESHUTDOWN, "provd is shutting down");
                return;
        }
        r = switch_to(j);
        if (r < 0) {
                rotation_finish(j, r, "out of memory");
                return;
        }
        /* JITR/JITP: the new signer's CA is registered with AWS like the first one (the worker
         * holds the issuer: the verification certificate is signed with the new key). */
        r = aws_worker_register_signer(m->aws, j->new_id, m->issuer);
        if (r < 0)
                log_warning_errno(r, "signer rotation: cannot queue the AWS CA registration of signer %" PRId64
                                  ": %m; it is queued at the next start", j->new_id);
        memset(&j->req, 0, sizeof j->req);
        j->req.type = DB_SIGNER_RETIRE;
        j->req.retire.signer_id = j->old_id;
        snprintf(j->req.retire.actor, sizeof j->req.retire.actor, "%s", j->actor);
        j->req.done = on_retired;
        db_submit(m->db, &j->req);
}

static void after_open(uv_work_t *w, int status) {
        struct rotation *j = container_of(w, struct rotation, work);
        struct manager *m = j->m;
        const uint8_t *der;
        size_t len;

        if (status < 0 || j->r < 0) {
                rotation_finish(j, status < 0 ? status : j->r, j->err[0] ? j->err : "cancelled");
                return;
        }
        if (m->stopping || !m->db) {
                rotation_finish(j, -ESHUTDOWN, "provd is shutting down");
                return;
        }
        j->uri_public = signer_uri_redact(j->conf.signer_uri);
        if (!j->uri_public) {
                rotation_finish(j, -ENOMEM, "out of memory");
                return;
        }
        der = issuer_signer_cert_der(j->issuer, &len);
        j->req.type = DB_SIGNER_ENSURE;
        snprintf(j->req.signer.name, sizeof j->req.signer.name, "%s", j->conf.name ? j->conf.name : m->conf.name);
        snprintf(j->req.signer.actor, sizeof j->req.signer.actor, "%s", j->actor);
        j->req.signer.key_uri = j->uri_public;
        j->req.signer.cert_der = der;
        j->req.signer.cert_der_len = len;
        j->req.done = on_ensured;
        db_submit(m->db, &j->req);
}

bool manager_signer_differs(const struct conf *a, const struct conf *b) {
        return !str_eq(a->signer_uri, b->signer_uri) || !str_eq(a->signer_cert, b->signer_cert) ||
               !str_eq(a->root_cert, b->root_cert) || !str_eq(a->signer_pin_file, b->signer_pin_file) ||
               !str_eq(a->signer_pin_credential, b->signer_pin_credential);
}

int manager_signer_rotate(struct manager *m, const char *actor, manager_rotate_cb done, void *userdata) {
        struct signing_ctx *cur = manager_signing_ctx(m);
        struct rotation *j;
        int r;

        if (m->stopping || !m->db)
                return -ESHUTDOWN;
        if (m->rotating)
                return -EBUSY;
        if (!cur)
                return -EAGAIN;         /* the start-up signer is not recorded yet */
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        conf_init(&j->conf);
        j->m = m;
        j->config_path = strdup(m->config_path);
        if (!j->config_path) {
                conf_deinit(&j->conf);
                free(j);
                return -ENOMEM;
        }
        {
                uint8_t sha[32];

                j->old_id = cur->signer_id;
                if (certs_sha256(cur->chain_der, cur->chain_len, sha) < 0) {
                        free(j->config_path);
                        conf_deinit(&j->conf);
                        free(j);
                        return -EIO;
                }
                hex_encode(sha, sizeof sha, j->old_sha, false);
        }
        snprintf(j->actor, sizeof j->actor, "%s", actor ? actor : "provd");
        j->done = done;
        j->userdata = userdata;
        r = uv_queue_work(m->loop, &j->work, work_open, after_open);
        if (r < 0) {
                conf_deinit(&j->conf);
                free(j->config_path);
                free(j);
                return r;
        }
        m->rotating = true;
        manager_job_begin(m);
        log_info("signer rotation requested by %s", j->actor);
        return 0;
}
