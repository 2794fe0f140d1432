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

/* How often the reader is asked for due rows when nothing is known to be due. */
#define POLL_MS 250
/* Calls per second are counted over this window for the status. */
#define RATE_WINDOW_S 10
/* A free slot is refilled after this long, so that one claim refills several. */
#define REFILL_MS 20
/* A credentials reload at most this often, however many calls were refused. */
#define CREDS_RELOAD_MS 2000

struct job {
        struct aws_worker *w;
        struct job *next, *prev;
        int64_t id;
        enum db_outbox_kind kind;
        int64_t signer_id;
        struct aws_mar_job *mar;
        struct aws_ca_job *ca;
        uint8_t *der;
        size_t der_len;
        char thing[DB_NAME_MAX], serial[DB_SERIAL_MAX], model[DB_NAME_MAX], fw[DB_LABEL_MAX];
        char signer[DB_SHA256_HEX_MAX];
        unsigned step_attempts;
        uv_timer_t timer;
        bool in_call, settling;
        struct db_req req;
        /* What a complete request borrows until its done(). */
        char step_name[64];
        char arn[AWS_ARN_MAX + 1];
        char code[AWS_CODE_MAX + 1];
        char ca_id[AWS_CERT_ID_LEN + 1];
};

struct aws_worker {
        uv_loop_t *loop;
        struct db *db;
        const struct conf *conf;
        enum aws_mode mode;
        struct aws_worker_hooks hooks;
        struct issuer *issuer;
        int64_t signer_id;              /* the signer @issuer is (register_signer) */
        struct aws_http *http;
        struct aws_registrar *reg;
        struct aws_creds_source creds_src;
        char *creds_file, *creds_profile;
        bool have_creds;
        uint64_t creds_loaded_ms;
        char creds_from[96];
        unsigned concurrency;
        unsigned max_attempts;

        struct job *jobs;
        unsigned active;
        uv_timer_t poll_timer;
        bool polling;                   /* a poll or claim request is out */
        bool started, draining, stopping, stopped, http_closing;
        struct db_req poll_req, claim_req;
        struct db_req enqueue_req;
        bool enqueue_busy;
        char enqueue_payload[128];
        void (*stop_done)(void *userdata);
        void *stop_userdata;

        /* Counters for the status. */
        uint64_t calls, ok, retries, throttled, failed_jobs, done_jobs, cancelled;
        uint32_t rate_ring[RATE_WINDOW_S];
        uint64_t rate_sec;
        char last_code[AWS_CODE_MAX + 1];
        char last_message[AWS_MESSAGE_MAX + 1];
        int64_t last_error_ms;
        uint32_t rng;
};

static void poll_soon(struct aws_worker *w, uint64_t ms);
static void run(struct job *j);
static void maybe_stopped(struct aws_worker *w);

static uint32_t rnd(struct aws_worker *w) {
        w->rng ^= w->rng << 13;
        w->rng ^= w->rng >> 17;
        w->rng ^= w->rng << 5;
        return w->rng;
}

static void count_call(struct aws_worker *w) {
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

static int load_creds(struct aws_worker *w, char *err, size_t errlen) {
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
        r = load_creds(w, err, errlen);
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

/* --- settling a job ------------------------------------------------------- */

static void on_job_closed(uv_handle_t *h) {
        struct job *j = h->data;
        struct aws_worker *w = j->w;

        aws_mar_job_free(j->mar);
        aws_ca_job_free(j->ca);
        free(j->der);
        free(j);
        w->hooks.job_end(w->hooks.userdata);
        maybe_stopped(w);
}

static void job_free(struct job *j) {
        struct aws_worker *w = j->w;

        if (j->prev)
                j->prev->next = j->next;
        else
                w->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        w->active--;
        uv_close((uv_handle_t *)&j->timer, on_job_closed);
        /* Soon, not at once: the jobs ending meanwhile are refilled by one poll and one claim. */
        if (!w->stopping)
                poll_soon(w, REFILL_MS);
}

static void on_settled(struct db_req *req) {
        struct job *j = req->userdata;

        if (req->result < 0)
                /* The row stays in_flight; db_open() returns it to pending at the next start. */
                log_error("aws: outbox row %" PRId64 " could not be settled: %s", j->id, req->errmsg);
        job_free(j);
}

static void settle(struct job *j, enum db_outbox_result result, int64_t retry_at, const char *code,
                   const char *message) {
        struct db_outbox_complete *c = &j->req.complete;

        j->settling = true;
        j->req = (struct db_req) { .type = DB_OUTBOX_COMPLETE };
        c->id = j->id;
        c->result = result;
        c->retry_at_ms = retry_at;
        c->set_step_attempts = true;
        c->step_attempts = j->step_attempts;
        c->step = j->step_name;
        if (j->arn[0])
                c->cert_arn = j->arn;
        if (code) {
                snprintf(j->code, sizeof j->code, "%s", code);
                c->code = j->code;
                snprintf(c->error, sizeof c->error, "%s: %s", code, message ? message : "");
        }
        if (result == DB_OUTBOX_RESULT_DONE && j->ca) {
                snprintf(j->ca_id, sizeof j->ca_id, "%s", aws_ca_job_cert_id(j->ca));
                c->ca_cert_id = j->ca_id;
                c->ca_cert_arn = j->arn;
                c->cert_arn = NULL;
        }
        j->req.done = on_settled;
        j->req.userdata = j;
        db_submit(j->w->db, &j->req);
}

static void note_progress(struct job *j) {
        if (j->mar) {
                snprintf(j->step_name, sizeof j->step_name, "%s", aws_mar_step_name(aws_mar_job_step(j->mar)));
                snprintf(j->arn, sizeof j->arn, "%s", aws_mar_job_cert_arn(j->mar));
        } else if (j->ca) {
                snprintf(j->step_name, sizeof j->step_name, "%s", aws_ca_step_name(aws_ca_job_step(j->ca)));
                snprintf(j->arn, sizeof j->arn, "%s", aws_ca_job_cert_arn(j->ca));
        }
}

static void on_progress(struct db_req *req) {
        struct job *j = req->userdata;

        if (req->result < 0) {
                log_error("aws: outbox row %" PRId64 ": progress not recorded: %s", j->id, req->errmsg);
                /* Not recorded: try again later from what is recorded (a step repeated, idempotent). */
                settle(j, DB_OUTBOX_RESULT_RETRY, wallclock_msec() + 1000, "ProgressNotRecorded", req->errmsg);
                return;
        }
        run(j);
}

static void persist_progress(struct job *j) {
        struct db_outbox_complete *c = &j->req.complete;

        j->req = (struct db_req) { .type = DB_OUTBOX_COMPLETE };
        c->id = j->id;
        c->result = DB_OUTBOX_RESULT_PROGRESS;
        c->step = j->step_name;
        if (j->arn[0])
                c->cert_arn = j->arn;
        c->set_step_attempts = true;
        c->step_attempts = 0;
        c->code = "";
        j->req.done = on_progress;
        j->req.userdata = j;
        db_submit(j->w->db, &j->req);
}

static bool job_done(const struct job *j) {
        return j->mar ? aws_mar_job_step(j->mar) == AWS_MAR_DONE : aws_ca_job_step(j->ca) == AWS_CA_DONE;
}

static void handle(struct job *j, const struct aws_response *r) {
        struct aws_worker *w = j->w;
        uint32_t delay;

        j->in_call = false;
        if (r->status != 0 || !streq(r->code, "Cancelled"))
                count_call(w);
        if (r->cls == AWS_OK) {
                w->ok++;
                j->step_attempts = 0;
                note_progress(j);
                if (job_done(j)) {
                        w->done_jobs++;
                        log_info("aws: %s %s registered (%s)", j->ca ? "signer CA" : "thing",
                                 j->ca ? aws_ca_job_cert_id(j->ca) : j->thing, j->arn);
                        settle(j, DB_OUTBOX_RESULT_DONE, 0, NULL, NULL);
                        return;
                }
                persist_progress(j);
                return;
        }

        snprintf(w->last_code, sizeof w->last_code, "%s", r->code);
        snprintf(w->last_message, sizeof w->last_message, "%s", r->message);
        w->last_error_ms = wallclock_msec();
        if (streq(r->code, "Cancelled") && w->stopping) {
                /* Shutdown: not a try of the step; pending again, due at once. */
                w->cancelled++;
                settle(j, DB_OUTBOX_RESULT_RETRY, 0, r->code, r->message);
                return;
        }
        if (r->cls == AWS_PERMANENT) {
                w->failed_jobs++;
                log_warning("aws: outbox row %" PRId64 " (%s) failed at %s: %s: %s", j->id, j->thing, j->step_name,
                            r->code, r->message);
                settle(j, DB_OUTBOX_RESULT_FAILED, 0, r->code, r->message);
                return;
        }
        if (r->cls == AWS_CREDENTIALS && uv_now(w->loop) - w->creds_loaded_ms >= CREDS_RELOAD_MS) {
                char err[256];
                if (load_creds(w, err, sizeof err) < 0)
                        log_warning("aws: credentials refused (%s) and not reloaded: %s", r->code, err);
                else
                        log_notice("aws: credentials refused (%s); reloaded from %s", r->code, w->creds_from);
        }
        if (streq(r->code, "ThrottlingException") || r->status == 429)
                w->throttled++;
        w->retries++;
        if (++j->step_attempts >= w->max_attempts) {
                w->failed_jobs++;
                log_warning("aws: outbox row %" PRId64 " (%s) failed at %s after %u tries: %s: %s", j->id, j->thing,
                            j->step_name, j->step_attempts, r->code, r->message);
                settle(j, DB_OUTBOX_RESULT_FAILED, 0, r->code, r->message);
                return;
        }
        delay = aws_registrar_backoff(w->reg, j->step_attempts - 1, rnd(w));
        settle(j, DB_OUTBOX_RESULT_RETRY, wallclock_msec() + delay, r->code, r->message);
}

static void mar_cb(struct aws_mar_job *mj, const struct aws_response *r, void *ud) {
        handle(ud, r);
}

static void ca_cb(struct aws_ca_job *cj, const struct aws_response *r, void *ud) {
        handle(ud, r);
}

static void on_job_timer(uv_timer_t *t) {
        run(t->data);
}

static void run(struct job *j) {
        struct aws_worker *w = j->w;
        enum aws_op op;
        uint64_t wait;
        int r;

        if (w->stopping) {
                /* Progress is recorded: pending again, due at once, for the next start. */
                settle(j, DB_OUTBOX_RESULT_RETRY, 0, NULL, NULL);
                return;
        }
        if (!w->have_creds) {
                settle(j, DB_OUTBOX_RESULT_RETRY, wallclock_msec() + 5000, "NoCredentials",
                       "no AWS credentials loaded");
                return;
        }
        op = j->mar ? aws_mar_next_op(w->reg, j->mar) : aws_ca_next_op(j->ca);
        if (op != AWS_OP_MAX) {
                wait = aws_registrar_take(w->reg, op, uv_now(w->loop));
                if (wait > 0) {
                        uv_timer_start(&j->timer, on_job_timer, wait, 0);
                        return;
                }
        }
        r = j->mar ? aws_mar_step(w->reg, j->mar, mar_cb, j) : aws_ca_step(w->reg, j->ca, ca_cb, j);
        if (r < 0) {
                char msg[96];

                snprintf(msg, sizeof msg, "step %s not started: %s", j->step_name, strerror(-r));
                w->failed_jobs++;
                settle(j, DB_OUTBOX_RESULT_FAILED, 0, "StepError", msg);
                return;
        }
        j->in_call = true;
}

/* --- making jobs from claimed rows ---------------------------------------- */

static const char *json_str(const cJSON *o, const char *name) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool json_int(const cJSON *o, const char *name, int64_t *ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

        /* JSON numbers are doubles: only integers below 2^53 are taken as ids. */
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740991.0 ||
            v->valuedouble != (double)(int64_t)v->valuedouble)
                return false;
        *ret = (int64_t)v->valuedouble;
        return true;
}

static int nibble(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int unhex(const char *s, uint8_t **ret, size_t *ret_len) {
        size_t n = s ? strlen(s) : 0;
        uint8_t *b;

        if (n == 0 || n % 2 || n > 2 * 16384)
                return -EINVAL;
        b = malloc(n / 2);
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < n / 2; i++) {
                int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        free(b);
                        return -EINVAL;
                }
                b[i] = (uint8_t)(hi << 4 | lo);
        }
        *ret = b;
        *ret_len = n / 2;
        return 0;
}

static void copy(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "");
}

/* Sets up j from its claimed row; -EINVAL with @err for a row that can never run. */
static int job_setup(struct job *j, const cJSON *item, char *err, size_t errlen) {
        struct aws_worker *w = j->w;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(item, "payload");
        const char *kind = json_str(item, "kind"), *step = json_str(p, "step"), *arn = json_str(p, "cert_arn");
        int64_t n;
        int r;

        if (json_int(p, "step_attempts", &n) && n >= 0 && n < 1000)
                j->step_attempts = (unsigned)n;
        copy(j->step_name, sizeof j->step_name, step);
        if (streq(kind ?: "", "register_ca")) {
                j->kind = DB_OUTBOX_REGISTER_CA;
                if (!json_int(item, "signer_id", &j->signer_id))
                        return snprintf(err, errlen, "register_ca row without a signer"), -EINVAL;
                copy(j->thing, sizeof j->thing, "signer CA");
                return 0;       /* the job itself is made in start_job (it needs the issuer) */
        }
        if (!streq(kind ?: "", "register_cert"))
                return snprintf(err, errlen, "outbox kind %s is not handled by this provd", kind ?: "?"), -EINVAL;
        j->kind = DB_OUTBOX_REGISTER_CERT;
        copy(j->thing, sizeof j->thing, json_str(p, "thing_name"));
        copy(j->serial, sizeof j->serial, json_str(p, "serial"));
        copy(j->model, sizeof j->model, json_str(item, "model"));
        copy(j->fw, sizeof j->fw, json_str(item, "fw_version"));
        copy(j->signer, sizeof j->signer, json_str(item, "signer_sha256"));
        if (w->mode == AWS_MODE_JITR || w->mode == AWS_MODE_JITP)
                return 0;       /* no per-device call: settled in start_job */
        r = unhex(json_str(item, "certificate_der"), &j->der, &j->der_len);
        if (r < 0)
                return snprintf(err, errlen, "outbox row without its certificate"), r;
        struct aws_device dev = {
                .cert_der = j->der, .cert_len = j->der_len, .thing_name = j->thing, .serial = j->serial,
                .model = j->model, .firmware = j->fw, .station = w->conf->name, .signer = j->signer,
        };
        r = aws_mar_job_new(&dev, &j->mar, err, errlen);
        if (r < 0)
                return r;
        if (step) {
                for (int s = 0; s <= AWS_MAR_DONE; s++)
                        if (streq(step, aws_mar_step_name((enum aws_mar_step)s))) {
                                /* A record that does not resume (no ARN) starts over: every step is idempotent. */
                                if (aws_mar_job_resume(j->mar, (enum aws_mar_step)s, arn) < 0)
                                        log_debug("aws: row %" PRId64 " starts over from %s", j->id, step);
                                break;
                        }
        }
        note_progress(j);
        return 0;
}

static void start_job(struct aws_worker *w, const cJSON *item) {
        _cleanup_free_ char *tmpl = NULL;
        struct job *j;
        char err[256] = "";
        int r;

        j = calloc(1, sizeof *j);
        if (!j) {
                log_oom();
                return;         /* stays in_flight until the next start returns it to pending */
        }
        j->w = w;
        if (!json_int(item, "id", &j->id)) {
                free(j);
                return;
        }
        uv_timer_init(w->loop, &j->timer);
        j->timer.data = j;
        j->next = w->jobs;
        if (w->jobs)
                w->jobs->prev = j;
        w->jobs = j;
        w->active++;
        w->hooks.job_begin(w->hooks.userdata);

        r = job_setup(j, item, err, sizeof err);
        if (r < 0) {
                w->failed_jobs++;
                log_warning("aws: outbox row %" PRId64 " cannot be registered: %s", j->id, err);
                settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidJob", err);
                return;
        }
        if (j->kind == DB_OUTBOX_REGISTER_CERT && !j->mar) {
                /* JITR/JITP: AWS registers the device at its first connection. */
                struct db_outbox_complete *c = &j->req.complete;

                snprintf(j->step_name, sizeof j->step_name, "%s", aws_mode_to_string(w->mode));
                j->settling = true;
                j->req = (struct db_req) { .type = DB_OUTBOX_COMPLETE };
                c->id = j->id;
                c->result = DB_OUTBOX_RESULT_DONE;
                c->step = j->step_name;
                c->quiet = true;
                j->req.done = on_settled;
                j->req.userdata = j;
                db_submit(w->db, &j->req);
                return;
        }
        if (j->kind == DB_OUTBOX_REGISTER_CA) {
                const uint8_t *der;
                size_t len;

                if (w->mode != AWS_MODE_JITR && w->mode != AWS_MODE_JITP) {
                        settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidJob", "register_ca needs mode = jitr or jitp");
                        return;
                }
                if (j->signer_id != w->signer_id) {
                        settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidJob",
                               "the signer of this row is not the one provd holds: its key cannot sign the "
                               "verification certificate");
                        return;
                }
                if (w->mode == AWS_MODE_JITP &&
                    aws_conf_load_template(w->conf, w->conf->aws.jitp_template, AWS_TEMPLATE_BODY_MAX, &tmpl, err,
                                           sizeof err) < 0) {
                        settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidTemplate", err);
                        return;
                }
                der = issuer_signer_cert_der(w->issuer, &len);
                struct aws_ca_params p = {
                        .issuer = w->conf->aws.sni_only ? NULL : w->issuer, .ca_der = der, .ca_len = len,
                        .sni_only = w->conf->aws.sni_only, .template_body = tmpl,
                        .role_arn = w->mode == AWS_MODE_JITP ? w->conf->aws.jitp_role_arn : NULL,
                };
                r = aws_ca_job_new(&p, &j->ca, err, sizeof err);
                if (r < 0) {
                        settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidJob", err);
                        return;
                }
                /* The steps before register change nothing at AWS: a resumed job starts over (aws-register.h). */
                note_progress(j);
        }
        run(j);
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
                poll_soon(w, POLL_MS);
                maybe_stopped(w);
                return;
        }
        cJSON_ArrayForEach(item, req->claim.items) {
                n++;
                start_job(w, item);
        }
        cJSON_Delete(req->claim.items);
        req->claim.items = NULL;
        /* A full claim: more may be due. */
        poll_soon(w, n > 0 && (unsigned)n == req->claim.limit ? 0 : POLL_MS);
        maybe_stopped(w);
}

static void on_polled(struct db_req *req) {
        struct aws_worker *w = req->userdata;
        const struct db_query_outbox *q = &req->outbox;
        unsigned free_slots = w->concurrency > w->active ? w->concurrency - w->active : 0;
        int64_t now = wallclock_msec();

        w->polling = false;
        if (req->result < 0) {
                log_warning("aws: outbox poll failed: %s", req->errmsg);
                poll_soon(w, POLL_MS);
                maybe_stopped(w);
                return;
        }
        if (w->draining && q->pending == 0 && w->active == 0) {
                w->draining = false;
                log_notice("aws: drain complete: nothing pending");
        }
        if (!sending(w)) {
                maybe_stopped(w);
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
                poll_soon(w, (uint64_t)MIN(q->next_due_ms - now, POLL_MS));
        else
                poll_soon(w, POLL_MS);
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

static void poll_soon(struct aws_worker *w, uint64_t ms) {
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
        poll_soon(w, 0);
}

void aws_worker_drain(struct aws_worker *w) {
        char err[256];

        if (!w || w->stopping)
                return;
        if (!w->have_creds && load_creds(w, err, sizeof err) < 0)
                log_warning("aws: drain without credentials: %s", err);
        w->draining = true;
        log_notice("aws: draining the outbox");
        poll_soon(w, 0);
}

static void on_enqueued(struct db_req *req) {
        struct aws_worker *w = req->userdata;

        w->enqueue_busy = false;
        if (req->result < 0)
                log_error("aws: signer CA registration not queued: %s", req->errmsg);
        else if (req->enqueue.created)
                log_info("aws: signer %" PRId64 " queued for CA registration", req->enqueue.signer_id);
        w->hooks.job_end(w->hooks.userdata);
        poll_soon(w, 0);
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
        if (load_creds(w, err, sizeof err) < 0)
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

static void maybe_stopped(struct aws_worker *w) {
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
                        settle(j, DB_OUTBOX_RESULT_RETRY, 0, NULL, NULL);
                }
        }
        maybe_stopped(w);
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
