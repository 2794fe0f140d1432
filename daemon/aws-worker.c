/* SPDX-License-Identifier: MIT */
/* The AWS outbox worker: claims aws_outbox rows, runs their flows under the token buckets, records every step. */

#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aws-conf.h"
#include "aws-worker.h"
#include "certs-hsm/cert.h"
#include "db.h"
#include "log.h"
#include "util.h"
#include "aws-worker-internal.h"

uint32_t aws_worker_rnd(struct aws_worker *w) {
        w->rng ^= w->rng << 13;
        w->rng ^= w->rng >> 17;
        w->rng ^= w->rng << 5;
        return w->rng;
}

void aws_worker_count_call(struct aws_worker *w) {
        uint64_t sec = uv_now(w->loop) / 1000;

        if (sec != w->rate_sec) {
                for (uint64_t s = w->rate_sec + 1; s <= sec && s <= w->rate_sec + RATE_WINDOW_S; s++)
                        w->rate_ring[s % RATE_WINDOW_S] = 0;
                w->rate_sec = sec;
        }
        w->rate_ring[sec % RATE_WINDOW_S]++;
        w->calls++;
}

static double rate_per_s(const struct aws_worker *w) {
        uint64_t sec = uv_now(w->loop) / 1000, n = 0;

        if (sec >= w->rate_sec + RATE_WINDOW_S)
                return 0;
        /* The ring's slots are those of the last RATE_WINDOW_S seconds up to rate_sec. */
        for (unsigned i = 0; i < RATE_WINDOW_S; i++)
                n += w->rate_ring[i];
        return (double)n / RATE_WINDOW_S;
}

int aws_worker_load_creds(struct aws_worker *w, char *err, size_t errlen) {
        struct aws_creds *c = NULL;
        int r;

        r = aws_creds_load(&w->creds_src, NULL, &c, err, errlen);
        if (r < 0)
                return r;
        r = aws_http_set_creds(w->http, c);
        if (r >= 0) {
                w->have_creds = true;
                w->creds_loaded_ms = uv_now(w->loop);
                snprintf(w->creds_from, sizeof w->creds_from, "%s", c->source);
        }
        aws_creds_free(c);
        return r;
}

static int set_creds_source(struct aws_worker *w, const struct conf *c) {
        char *f = c->aws.credentials_file ? strdup(c->aws.credentials_file) : NULL;
        char *p = c->aws.profile ? strdup(c->aws.profile) : NULL;

        if ((c->aws.credentials_file && !f) || (c->aws.profile && !p)) {
                free(f);
                free(p);
                return -ENOMEM;
        }
        free(w->creds_file);
        free(w->creds_profile);
        w->creds_file = f;
        w->creds_profile = p;
        w->creds_src = (struct aws_creds_source) { .file = f, .profile = p };
        return 0;
}

int aws_worker_new(uv_loop_t *loop, struct db *db, const struct conf *c, struct issuer *issuer,
                   const struct aws_worker_hooks *hooks, struct aws_worker **ret, char *err, size_t errlen) {
        struct aws_worker *w;
        struct aws_http_opts ho;
        struct aws_registrar_opts ro;
        _cleanup_free_ char *policy = NULL, *ca_pem = NULL;
        char region[40];
        const uint8_t *der;
        size_t len;
        int r;

        if (c->aws.mode == AWS_MODE_OFF || !issuer) {
                snprintf(err, errlen, "AWS registration is off");
                return -EINVAL;
        }
        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->loop = loop;
        w->db = db;
        w->conf = c;
        w->mode = c->aws.mode;
        w->hooks = *hooks;
        w->issuer = issuer_ref(issuer);
        w->concurrency = c->aws.concurrency ? c->aws.concurrency : 8;
        w->max_attempts = c->aws.max_attempts ? c->aws.max_attempts : 10;
        if (RAND_bytes((uint8_t *)&w->rng, sizeof w->rng) != 1 || w->rng == 0)
                w->rng = (uint32_t)now_usec() | 1;
        der = issuer_signer_cert_der(issuer, &len);
        r = aws_pem_from_der(der, len, &ca_pem);
        if (r < 0)
                goto fail;
        r = aws_conf_http_opts(c, region, &ho, err, errlen);
        if (r < 0)
                goto fail;
        r = aws_http_new(loop, &ho, &w->http, err, errlen);
        if (r < 0)
                goto fail;
        r = aws_conf_registrar_opts(c, ca_pem, &ro, &policy, err, errlen);
        if (r < 0)
                goto fail;
        r = aws_registrar_new(w->http, &ro, &w->reg);
        if (r < 0) {
                snprintf(err, errlen, "invalid registration options");
                goto fail;
        }
        r = set_creds_source(w, c);
        if (r < 0)
                goto fail;
        r = aws_worker_load_creds(w, err, errlen);
        if (r < 0) {
                /* Offline queues only: the credentials are needed when it drains. */
                if (w->mode != AWS_MODE_OFFLINE)
                        goto fail;
                log_warning("aws: no credentials yet (%s); `provctl aws drain` will need them", err);
        }
        uv_timer_init(loop, &w->poll_timer);
        w->poll_timer.data = w;
        *ret = w;
        return 0;

fail:
        /* Nothing was sent: the client closes at once, its handles on the next loop turn. */
        w->stopped = true;
        aws_registrar_free(w->reg);
        w->reg = NULL;
        if (w->http)
                aws_http_close(w->http, NULL, NULL);
        w->http = NULL;
        issuer_free(w->issuer);
        free(w->creds_file);
        free(w->creds_profile);
        free(w);
        return r < 0 ? r : -EINVAL;
}

/* --- polling and claiming ------------------------------------------------- */

static bool sending(const struct aws_worker *w) {
        return w->started && !w->stopping && (w->mode != AWS_MODE_OFFLINE || w->draining);
}

static void on_claimed(struct db_req *req) {
        struct aws_worker *w = req->userdata;
        const cJSON *item;
        int n = 0;

        w->polling = false;
        if (req->result < 0) {
                log_warning("aws: outbox claim failed: %s", req->errmsg);
                aws_worker_poll_soon(w, POLL_MS);
                aws_worker_maybe_stopped(w);
                return;
        }
        cJSON_ArrayForEach(item, req->claim.items) {
                n++;
                aws_job_start(w, item);
        }
        cJSON_Delete(req->claim.items);
        req->claim.items = NULL;
        /* A full claim: more may be due. */
        aws_worker_poll_soon(w, n > 0 && (unsigned)n == req->claim.limit ? 0 : POLL_MS);
        aws_worker_maybe_stopped(w);
}

static void on_polled(struct db_req *req) {
        struct aws_worker *w = req->userdata;
        const struct db_query_outbox *q = &req->outbox;
        unsigned free_slots = w->concurrency > w->active ? w->concurrency - w->active : 0;
        int64_t now = wallclock_msec();

        w->polling = false;
        if (req->result < 0) {
                log_warning("aws: outbox poll failed: %s", req->errmsg);
                aws_worker_poll_soon(w, POLL_MS);
                aws_worker_maybe_stopped(w);
                return;
        }
        if (w->draining && q->pending == 0 && w->active == 0) {
                w->draining = false;
                log_notice("aws: drain complete: nothing pending");
        }
        if (!sending(w)) {
                aws_worker_maybe_stopped(w);
                return;
        }
        if (q->pending_due > 0 && free_slots > 0) {
                w->claim_req = (struct db_req) { .type = DB_OUTBOX_CLAIM };
                w->claim_req.claim.limit = (unsigned)MIN((uint64_t)MIN(free_slots, DB_OUTBOX_CLAIM_MAX), q->pending_due);
                w->claim_req.done = on_claimed;
                w->claim_req.userdata = w;
                w->polling = true;
                db_submit(w->db, &w->claim_req);
                return;
        }
        if (free_slots > 0 && q->next_due_ms != INT64_MAX && q->next_due_ms > now)
                aws_worker_poll_soon(w, (uint64_t)MIN(q->next_due_ms - now, POLL_MS));
        else
                aws_worker_poll_soon(w, POLL_MS);
}

static void on_poll_timer(uv_timer_t *t) {
        struct aws_worker *w = t->data;

        if (w->polling || w->stopping || !w->started)
                return;
        if (w->active >= w->concurrency)
                return;         /* a job ending polls again */
        w->poll_req = (struct db_req) { .type = DB_QUERY_OUTBOX };
        w->poll_req.outbox.summary_only = true;
        w->poll_req.done = on_polled;
        w->poll_req.userdata = w;
        w->polling = true;
        db_submit(w->db, &w->poll_req);
}

void aws_worker_poll_soon(struct aws_worker *w, uint64_t ms) {
        if (w->stopping || !w->started || uv_is_closing((uv_handle_t *)&w->poll_timer))
                return;
        if (ms == 0 || !uv_is_active((uv_handle_t *)&w->poll_timer) ||
            uv_timer_get_due_in(&w->poll_timer) > ms)
                uv_timer_start(&w->poll_timer, on_poll_timer, ms, 0);
}

void aws_worker_start(struct aws_worker *w) {
        if (!w || w->started)
                return;
        w->started = true;
        log_info("aws: registration worker started (mode %s, %u at once%s)", aws_mode_to_string(w->mode),
                 w->concurrency, w->mode == AWS_MODE_OFFLINE ? "; offline: queued until `provctl aws drain`" : "");
        /* Offline still polls: the status shows what is pending; nothing is claimed until a drain. */
        aws_worker_poll_soon(w, 0);
}

void aws_worker_drain(struct aws_worker *w) {
        char err[256];

        if (!w || w->stopping)
                return;
        if (!w->have_creds && aws_worker_load_creds(w, err, sizeof err) < 0)
                log_warning("aws: drain without credentials: %s", err);
        w->draining = true;
        log_notice("aws: draining the outbox");
        aws_worker_poll_soon(w, 0);
}

static void on_enqueued(struct db_req *req) {
        struct aws_worker *w = req->userdata;

        w->enqueue_busy = false;
        if (req->result < 0)
                log_error("aws: signer CA registration not queued: %s", req->errmsg);
        else if (req->enqueue.created)
                log_info("aws: signer %" PRId64 " queued for CA registration", req->enqueue.signer_id);
        w->hooks.job_end(w->hooks.userdata);
        aws_worker_poll_soon(w, 0);
}

int aws_worker_register_signer(struct aws_worker *w, int64_t signer_id, struct issuer *issuer) {
        if (!w || (w->mode != AWS_MODE_JITR && w->mode != AWS_MODE_JITP))
                return 0;
        if (signer_id <= 0 || !issuer)
                return -EINVAL;
        if (w->enqueue_busy || w->stopping)
                return -EBUSY;
        if (issuer != w->issuer) {
                issuer_free(w->issuer);
                w->issuer = issuer_ref(issuer);
        }
        w->signer_id = signer_id;
        snprintf(w->enqueue_payload, sizeof w->enqueue_payload, "{\"signer_id\":%" PRId64 ",\"mode\":\"%s\"}",
                 signer_id, aws_mode_to_string(w->mode));
        w->enqueue_req = (struct db_req) { .type = DB_OUTBOX_ENQUEUE };
        w->enqueue_req.enqueue.kind = DB_OUTBOX_REGISTER_CA;
        w->enqueue_req.enqueue.signer_id = signer_id;
        w->enqueue_req.enqueue.payload_json = w->enqueue_payload;
        w->enqueue_req.done = on_enqueued;
        w->enqueue_req.userdata = w;
        w->enqueue_busy = true;
        w->hooks.job_begin(w->hooks.userdata);
        db_submit(w->db, &w->enqueue_req);
        return 0;
}

void aws_worker_reload(struct aws_worker *w, const struct conf *c) {
        char err[256];

        if (!w)
                return;
        w->conf = c;
        if (set_creds_source(w, c) < 0) {
                log_oom();
                return;
        }
        if (aws_worker_load_creds(w, err, sizeof err) < 0)
                log_warning("aws: reload: credentials not reloaded, keeping the current ones: %s", err);
        else
                log_notice("aws: credentials reloaded from %s", w->creds_from);
}

/* --- stopping ------------------------------------------------------------- */

static void on_http_closed(void *userdata) {
        struct aws_worker *w = userdata;
        void (*done)(void *) = w->stop_done;

        w->http = NULL;
        w->stopped = true;
        w->stop_done = NULL;
        log_info("aws: worker stopped (%" PRIu64 " registered, %" PRIu64 " failed this run)", w->done_jobs,
                 w->failed_jobs);
        if (done)
                done(w->stop_userdata);
}

void aws_worker_maybe_stopped(struct aws_worker *w) {
        if (!w->stopping || w->active > 0 || w->polling || w->enqueue_busy || w->http_closing)
                return;
        w->http_closing = true;
        uv_close((uv_handle_t *)&w->poll_timer, NULL);
        aws_http_close(w->http, on_http_closed, w);
}

void aws_worker_stop(struct aws_worker *w, void (*done)(void *userdata), void *userdata) {
        if (!w || w->stopping)
                return;
        w->stopping = true;
        w->stop_done = done;
        w->stop_userdata = userdata;
        uv_timer_stop(&w->poll_timer);
        /* Jobs waiting for a token or a backoff go back to pending now; those in a call finish it. */
        for (struct job *j = w->jobs, *next; j; j = next) {
                next = j->next;
                if (!j->in_call && !j->settling && uv_is_active((uv_handle_t *)&j->timer)) {
                        uv_timer_stop(&j->timer);
                        aws_job_settle(j, DB_OUTBOX_RESULT_RETRY, 0, NULL, NULL);
                }
        }
        aws_worker_maybe_stopped(w);
}

void aws_worker_cancel(struct aws_worker *w) {
        if (!w || !w->stopping || w->http_closing)
                return;
        log_warning("aws: shutdown deadline: cancelling %u registration call(s); they stay pending", w->active);
        /* Closing the client completes every call now with "Cancelled" (retryable): settled as pending. */
        w->http_closing = true;
        uv_close((uv_handle_t *)&w->poll_timer, NULL);
        aws_http_close(w->http, on_http_closed, w);
}

cJSON *aws_worker_status(const struct aws_worker *w) {
        cJSON *o = cJSON_CreateObject(), *e;

        if (!o || !w)
                return o;
        cJSON_AddStringToObject(o, "mode", aws_mode_to_string(w->mode));
        cJSON_AddBoolToObject(o, "sending", sending(w));
        cJSON_AddBoolToObject(o, "draining", w->draining);
        cJSON_AddBoolToObject(o, "credentials", w->have_creds);
        if (w->have_creds)
                cJSON_AddStringToObject(o, "credentials_source", w->creds_from);
        cJSON_AddNumberToObject(o, "concurrency", w->concurrency);
        cJSON_AddNumberToObject(o, "active", w->active);
        cJSON_AddNumberToObject(o, "calls", (double)w->calls);
        cJSON_AddNumberToObject(o, "calls_ok", (double)w->ok);
        cJSON_AddNumberToObject(o, "retries", (double)w->retries);
        cJSON_AddNumberToObject(o, "throttled", (double)w->throttled);
        cJSON_AddNumberToObject(o, "registered", (double)w->done_jobs);
        cJSON_AddNumberToObject(o, "failed", (double)w->failed_jobs);
        cJSON_AddNumberToObject(o, "rate_per_s", rate_per_s(w));
        cJSON_AddBoolToObject(o, "policy_ready", w->reg && aws_registrar_policy_ready(w->reg));
        if (w->last_code[0]) {
                e = cJSON_AddObjectToObject(o, "last_error");
                cJSON_AddStringToObject(e, "code", w->last_code);
                cJSON_AddStringToObject(e, "message", w->last_message);
                cJSON_AddNumberToObject(e, "at", (double)w->last_error_ms);
        } else
                cJSON_AddNullToObject(o, "last_error");
        return o;
}

struct aws_worker *aws_worker_free(struct aws_worker *w) {
        if (!w)
                return NULL;
        aws_registrar_free(w->reg);
        issuer_free(w->issuer);
        free(w->creds_file);
        free(w->creds_profile);
        free(w);
        return NULL;
}
