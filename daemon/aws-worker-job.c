/* SPDX-License-Identifier: MIT */
/* The AWS outbox worker's jobs: a claimed row made into a flow, run step by step, settled. */

#include <errno.h>
#include <inttypes.h>
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

/* --- settling a job ------------------------------------------------------- */

static void on_job_closed(uv_handle_t *h) {
        struct job *j = h->data;
        struct aws_worker *w = j->w;

        aws_mar_job_free(j->mar);
        aws_ca_job_free(j->ca);
        free(j->der);
        free(j);
        w->hooks.job_end(w->hooks.userdata);
        aws_worker_maybe_stopped(w);
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
                aws_worker_poll_soon(w, REFILL_MS);
}

static void on_settled(struct db_req *req) {
        struct job *j = req->userdata;

        if (req->result < 0)
                /* The row stays in_flight; db_open() returns it to pending at the next start. */
                log_error("aws: outbox row %" PRId64 " could not be settled: %s", j->id, req->errmsg);
        job_free(j);
}

void aws_job_settle(struct job *j, enum db_outbox_result result, int64_t retry_at, const char *code,
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
                aws_job_settle(j, DB_OUTBOX_RESULT_RETRY, wallclock_msec() + 1000, "ProgressNotRecorded", req->errmsg);
                return;
        }
        aws_job_run(j);
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
                aws_worker_count_call(w);
        if (r->cls == AWS_OK) {
                w->ok++;
                j->step_attempts = 0;
                note_progress(j);
                if (job_done(j)) {
                        w->done_jobs++;
                        log_info("aws: %s %s registered (%s)", j->ca ? "signer CA" : "thing",
                                 j->ca ? aws_ca_job_cert_id(j->ca) : j->thing, j->arn);
                        aws_job_settle(j, DB_OUTBOX_RESULT_DONE, 0, NULL, NULL);
                        return;
                }
                /*
                 * A device's steps are not recorded one by one: each is idempotent at AWS
                 * (aws-register.h), so a crash that loses them repeats them, at the cost of a
                 * few calls once, while a record per step would cost a write and a group
                 * commit per call for every device. The step and ARN are recorded when the
                 * row is settled (a retry resumes from them). A CA job's steps are recorded:
                 * it runs once per signer, and its verification certificate is not repeated
                 * for nothing.
                 */
                if (j->ca)
                        persist_progress(j);
                else
                        aws_job_run(j);
                return;
        }

        snprintf(w->last_code, sizeof w->last_code, "%s", r->code);
        snprintf(w->last_message, sizeof w->last_message, "%s", r->message);
        w->last_error_ms = wallclock_msec();
        if (streq(r->code, "Cancelled") && w->stopping) {
                /* Shutdown: not a try of the step; pending again, due at once. */
                w->cancelled++;
                aws_job_settle(j, DB_OUTBOX_RESULT_RETRY, 0, r->code, r->message);
                return;
        }
        if (r->cls == AWS_PERMANENT) {
                w->failed_jobs++;
                log_warning("aws: outbox row %" PRId64 " (%s) failed at %s: %s: %s", j->id, j->thing, j->step_name,
                            r->code, r->message);
                aws_job_settle(j, DB_OUTBOX_RESULT_FAILED, 0, r->code, r->message);
                return;
        }
        if (r->cls == AWS_CREDENTIALS && uv_now(w->loop) - w->creds_loaded_ms >= CREDS_RELOAD_MS) {
                char err[256];
                if (aws_worker_load_creds(w, err, sizeof err) < 0)
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
                aws_job_settle(j, DB_OUTBOX_RESULT_FAILED, 0, r->code, r->message);
                return;
        }
        delay = aws_registrar_backoff(w->reg, j->step_attempts - 1, aws_worker_rnd(w));
        aws_job_settle(j, DB_OUTBOX_RESULT_RETRY, wallclock_msec() + delay, r->code, r->message);
}

static void mar_cb(struct aws_mar_job *mj, const struct aws_response *r, void *ud) {
        handle(ud, r);
}

static void ca_cb(struct aws_ca_job *cj, const struct aws_response *r, void *ud) {
        handle(ud, r);
}

static void on_job_timer(uv_timer_t *t) {
        aws_job_run(t->data);
}

void aws_job_run(struct job *j) {
        struct aws_worker *w = j->w;
        enum aws_op op;
        uint64_t wait;
        int r;

        if (w->stopping) {
                /* Progress is recorded: pending again, due at once, for the next start. */
                aws_job_settle(j, DB_OUTBOX_RESULT_RETRY, 0, NULL, NULL);
                return;
        }
        if (!w->have_creds) {
                aws_job_settle(j, DB_OUTBOX_RESULT_RETRY, wallclock_msec() + 5000, "NoCredentials",
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
                aws_job_settle(j, DB_OUTBOX_RESULT_FAILED, 0, "StepError", msg);
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

void aws_job_start(struct aws_worker *w, const cJSON *item) {
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
                aws_job_settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidJob", err);
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
                        aws_job_settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidJob", "register_ca needs mode = jitr or jitp");
                        return;
                }
                if (j->signer_id != w->signer_id) {
                        aws_job_settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidJob",
                               "the signer of this row is not the one provd holds: its key cannot sign the "
                               "verification certificate");
                        return;
                }
                if (w->mode == AWS_MODE_JITP &&
                    aws_conf_load_template(w->conf, w->conf->aws.jitp_template, AWS_TEMPLATE_BODY_MAX, &tmpl, err,
                                           sizeof err) < 0) {
                        aws_job_settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidTemplate", err);
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
                        aws_job_settle(j, DB_OUTBOX_RESULT_FAILED, 0, "InvalidJob", err);
                        return;
                }
                /* The steps before register change nothing at AWS: a resumed job starts over (aws-register.h). */
                note_progress(j);
        }
        aws_job_run(j);
}
