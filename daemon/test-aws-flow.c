/* SPDX-License-Identifier: MIT */
/* Test driver: runs the MAR or JITR/JITP flows from a provd.conf [aws] section against an endpoint (the fake). */

/*
 * Usage: test-aws-flow CONFIG mar DER...        one MAR job per device certificate
 *        test-aws-flow CONFIG ca                 the signer CA (JITR, JITP or SNI_ONLY by config)
 *        test-aws-flow CONFIG list ARN           ListAttachedPolicies of ARN (an ARN in the path)
 *        test-aws-flow CONFIG register-inactive DER   registers DER with status INACTIVE (as
 *                                                another tool might have), for the MAR recovery path
 * Options (before CONFIG):
 *   --repeat-steps    every step of the first job is run twice: after it
 *                     succeeds the job is dropped and resumed from the step
 *                     persisted before it (a crash between AWS applying a
 *                     call and provd recording it)
 *   --station NAME    the station attribute
 *   --firmware V      the firmware attribute (default 1.2.3)
 * Prints one JSON line per job and exits 0 if every job reached done. This
 * is the loop the outbox worker will run: token bucket, step, backoff.
 */

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <certs-hsm/cert.h>
#include <certs-hsm/signer.h>

#include "aws-conf.h"
#include "util.h"

struct job {
        struct aws_registrar *reg;
        struct aws_mar_job *mar;
        struct aws_ca_job *ca;
        struct aws_device dev;
        uint8_t *der;
        char thing[AWS_NAME_MAX + 1];
        char serial[40];
        uv_timer_t timer;
        unsigned attempt, max_attempts;
        unsigned steps, retries, repeats;
        bool repeat_steps;
        int persisted_step;
        char persisted_arn[AWS_ARN_MAX + 1];
        bool done, failed;
        char error[AWS_CODE_MAX + AWS_MESSAGE_MAX + 8];
};

static struct aws_http *http;
static struct aws_creds_source creds_src;
static size_t running;
static uint32_t rng = 12345;

static uint32_t rnd(void) {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        return rng;
}

static void run(struct job *j);

static void timer_cb(uv_timer_t *t) {
        run(container_of(t, struct job, timer));
}

static void finish(struct job *j, bool ok, const struct aws_response *r) {
        j->done = ok;
        j->failed = !ok;
        if (!ok && r)
                snprintf(j->error, sizeof j->error, "%s: %s", r->code, r->message);
        if (--running == 0)
                aws_http_close(http, NULL, NULL);
}

static void retry_later(struct job *j, const struct aws_response *r) {
        if (++j->attempt >= j->max_attempts) {
                finish(j, false, r);
                return;
        }
        j->retries++;
        uv_timer_start(&j->timer, timer_cb, aws_registrar_backoff(j->reg, j->attempt - 1, rnd()), 0);
}

static void reload_creds(void) {
        struct aws_creds *c = NULL;
        char err[256];

        if (aws_creds_load(&creds_src, NULL, &c, err, sizeof err) >= 0) {
                aws_http_set_creds(http, c);
                aws_creds_free(c);
        }
}

static void handle(struct job *j, const struct aws_response *r) {
        switch (r->cls) {
        case AWS_OK:
                j->attempt = 0;
                j->steps++;
                if (j->mar) {
                        enum aws_mar_step now = aws_mar_job_step(j->mar);
                        if (j->repeat_steps && now != AWS_MAR_DONE && j->persisted_step >= 0 &&
                            j->persisted_step != (int)now) {
                                /* Crash before persisting: a new job from the old record. */
                                char err[256];
                                struct aws_mar_job *n = NULL;
                                if (aws_mar_job_new(&j->dev, &n, err, sizeof err) < 0 ||
                                    aws_mar_job_resume(n, (enum aws_mar_step)j->persisted_step,
                                                       j->persisted_arn[0] ? j->persisted_arn : NULL) < 0) {
                                        fprintf(stderr, "resume failed: %s\n", err);
                                        exit(2);
                                }
                                aws_mar_job_free(j->mar);
                                j->mar = n;
                                j->repeats++;
                                j->persisted_step = -1;         /* the repeat is then persisted */
                                break;
                        }
                        j->persisted_step = (int)aws_mar_job_step(j->mar);
                        snprintf(j->persisted_arn, sizeof j->persisted_arn, "%s", aws_mar_job_cert_arn(j->mar));
                        if (now == AWS_MAR_DONE)
                                return finish(j, true, NULL);
                } else if (aws_ca_job_step(j->ca) == AWS_CA_DONE)
                        return finish(j, true, NULL);
                break;
        case AWS_RETRY:
                return retry_later(j, r);
        case AWS_CREDENTIALS:
                reload_creds();
                return retry_later(j, r);
        case AWS_PERMANENT:
                return finish(j, false, r);
        }
        run(j);
}

static void mar_cb(struct aws_mar_job *mj, const struct aws_response *r, void *ud) {
        handle(ud, r);
}

static void ca_cb(struct aws_ca_job *cj, const struct aws_response *r, void *ud) {
        handle(ud, r);
}

static void run(struct job *j) {
        enum aws_op op = j->mar ? aws_mar_next_op(j->reg, j->mar) : aws_ca_next_op(j->ca);
        uint64_t wait = aws_registrar_take(j->reg, op, uv_now(uv_default_loop()));
        int r;

        if (wait > 0) {
                uv_timer_start(&j->timer, timer_cb, wait, 0);
                return;
        }
        r = j->mar ? aws_mar_step(j->reg, j->mar, mar_cb, j) : aws_ca_step(j->reg, j->ca, ca_cb, j);
        if (r < 0) {
                struct aws_response resp;
                char msg[64];
                snprintf(msg, sizeof msg, "step not started: %s", strerror(-r));
                aws_response_transport(&resp, "StepError", msg, false);
                finish(j, false, &resp);
        }
}

static void list_cb(const struct aws_response *r, void *ud) {
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "policies");

        cJSON_AddStringToObject(o, "class", aws_class_name(r->cls));
        cJSON_AddStringToObject(o, "code", r->code);
        for (size_t i = 0; i < r->n_policies; i++)
                cJSON_AddItemToArray(a, cJSON_CreateString(r->policies[i]));
        char *t = cJSON_PrintUnformatted(o);
        printf("%s\n", t);
        free(t);
        cJSON_Delete(o);
        *(int *)ud = r->cls == AWS_OK ? 0 : 1;
        aws_http_close(http, NULL, NULL);
}

static int read_all(const char *path, uint8_t **ret, size_t *len) {
        FILE *f = fopen(path, "rbe");
        uint8_t *b;

        if (!f)
                return -errno;
        b = malloc(65536);
        *len = fread(b, 1, 65536, f);
        fclose(f);
        *ret = b;
        return 0;
}

int main(int argc, char **argv) {
        struct conf c;
        char err[512], region[40];
        const char *station = "station-1", *firmware = "1.2.3";
        bool repeat = false;
        int i = 1, r;

        for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
                if (streq(argv[i], "--repeat-steps"))
                        repeat = true;
                else if (streq(argv[i], "--station") && i + 1 < argc)
                        station = argv[++i];
                else if (streq(argv[i], "--firmware") && i + 1 < argc)
                        firmware = argv[++i];
                else
                        return fprintf(stderr, "unknown option %s\n", argv[i]), 2;
        }
        if (argc - i < 2)
                return fprintf(stderr, "usage: test-aws-flow [--repeat-steps] CONFIG mar|ca [DER...]\n"), 2;
        conf_init(&c);
        r = conf_load(&c, argv[i], err, sizeof err);
        if (r < 0)
                return fprintf(stderr, "config: %s\n", err), 1;
        const char *what = argv[i + 1];
        char **ders = argv + i + 2;
        size_t n_ders = (size_t)(argc - i - 2);

        /* The signer: its certificate is the CA registered (JITR) or sent (register_with_ca). */
        struct signer *s = NULL;
        struct issuer *is = NULL;
        r = signer_open(&s, c.signer_uri, c.signer_cert, NULL);
        if (r < 0)
                return fprintf(stderr, "signer: %s\n", signer_strerror(r)), 1;
        r = issuer_new(&is, s, NULL);
        if (r < 0)
                return fprintf(stderr, "issuer: %s\n", strerror(-r)), 1;
        size_t ca_len;
        const uint8_t *ca_der = issuer_signer_cert_der(is, &ca_len);
        _cleanup_free_ char *ca_pem = NULL;
        if (aws_pem_from_der(ca_der, ca_len, &ca_pem) < 0)
                return 1;

        struct aws_http_opts ho;
        if (aws_conf_http_opts(&c, region, &ho, err, sizeof err) < 0 ||
            aws_http_new(uv_default_loop(), &ho, &http, err, sizeof err) < 0)
                return fprintf(stderr, "http: %s\n", err), 1;
        aws_conf_creds_source(&c, &creds_src);
        struct aws_creds *cr = NULL;
        if (aws_creds_load(&creds_src, NULL, &cr, err, sizeof err) < 0)
                return fprintf(stderr, "credentials: %s\n", err), 1;
        aws_http_set_creds(http, cr);
        cr = aws_creds_free(cr);

        struct aws_registrar_opts ro;
        _cleanup_free_ char *policy = NULL;
        struct aws_registrar *reg = NULL;
        if (aws_conf_registrar_opts(&c, ca_pem, &ro, &policy, err, sizeof err) < 0)
                return fprintf(stderr, "registrar: %s\n", err), 1;
        if (aws_registrar_new(http, &ro, &reg) < 0)
                return fprintf(stderr, "registrar: invalid options\n"), 1;

        if (streq(what, "list")) {
                struct aws_request req;
                int rc = 1;
                if (n_ders != 1 || aws_req_list_attached_policies(&req, ders[0], 25) < 0)
                        return fprintf(stderr, "list: bad ARN\n"), 1;
                r = aws_http_send(http, &req, list_cb, &rc);
                if (r < 0) {
                        printf("{\"path\": \"%s\", \"send\": \"%s\"}\n", req.path, strerror(-r));
                        aws_request_done(&req);
                        aws_http_close(http, NULL, NULL);
                        uv_run(uv_default_loop(), UV_RUN_DEFAULT);
                        aws_registrar_free(reg);
                        issuer_free(is);
                        conf_deinit(&c);
                        return 3;
                }
                aws_request_done(&req);
                uv_run(uv_default_loop(), UV_RUN_DEFAULT);
                aws_registrar_free(reg);
                issuer_free(is);
                conf_deinit(&c);
                return rc;
        }

        if (streq(what, "register-inactive")) {
                struct aws_request req;
                uint8_t *der = NULL;
                size_t len = 0;
                char *pem = NULL;
                int rc = 1;
                if (n_ders != 1 || read_all(ders[0], &der, &len) < 0 || aws_pem_from_der(der, len, &pem) < 0 ||
                    aws_req_register_certificate(&req, pem, NULL) < 0)
                        return fprintf(stderr, "register-inactive: bad certificate\n"), 1;
                /* The request as provd builds it, but INACTIVE: what a console user might have done. */
                char *act = strstr(req.body, "\"ACTIVE\"");
                if (!act)
                        return 1;
                size_t need = req.body_len + 3;
                char *b = malloc(need);
                snprintf(b, need, "%.*s\"INACTIVE\"%s", (int)(act - req.body), req.body, act + 8);
                free(req.body);
                req.body = b;
                req.body_len = strlen(b);
                if (aws_http_send(http, &req, list_cb, &rc) < 0)
                        return 1;
                aws_request_done(&req);
                free(pem);
                free(der);
                uv_run(uv_default_loop(), UV_RUN_DEFAULT);
                aws_registrar_free(reg);
                issuer_free(is);
                conf_deinit(&c);
                return rc;
        }

        size_t n_jobs = streq(what, "mar") ? n_ders : 1;
        struct job *jobs = calloc(n_jobs, sizeof *jobs);
        for (size_t k = 0; k < n_jobs; k++) {
                struct job *j = &jobs[k];
                j->reg = reg;
                j->max_attempts = c.aws.max_attempts;
                j->persisted_step = 0;
                uv_timer_init(uv_default_loop(), &j->timer);
                if (streq(what, "mar")) {
                        size_t len = 0;
                        const char *base = strrchr(ders[k], '/');
                        base = base ? base + 1 : ders[k];
                        snprintf(j->thing, sizeof j->thing, "%.*s", (int)strcspn(base, "."), base);
                        snprintf(j->serial, sizeof j->serial, "SN-%zu", k);
                        if (read_all(ders[k], &j->der, &len) < 0)
                                return fprintf(stderr, "%s: cannot read\n", ders[k]), 1;
                        j->dev = (struct aws_device) {
                                .cert_der = j->der, .cert_len = len, .thing_name = j->thing,
                                .serial = j->serial, .model = "board-x1", .firmware = firmware,
                                .station = station, .signer = "provd-signer",
                        };
                        r = aws_mar_job_new(&j->dev, &j->mar, err, sizeof err);
                        if (r < 0)
                                return fprintf(stderr, "job %s: %s\n", j->thing, err), 1;
                        j->repeat_steps = repeat && k == 0;
                } else {
                        _cleanup_free_ char *tmpl = NULL;
                        if (c.aws.mode == AWS_MODE_JITP &&
                            aws_conf_load_template(&c, c.aws.jitp_template, AWS_TEMPLATE_BODY_MAX, &tmpl, err,
                                                   sizeof err) < 0)
                                return fprintf(stderr, "jitp: %s\n", err), 1;
                        struct aws_ca_params p = {
                                .issuer = c.aws.sni_only ? NULL : is, .ca_der = ca_der, .ca_len = ca_len,
                                .sni_only = c.aws.sni_only, .template_body = tmpl,
                                .role_arn = c.aws.mode == AWS_MODE_JITP ? c.aws.jitp_role_arn : NULL,
                        };
                        r = aws_ca_job_new(&p, &j->ca, err, sizeof err);
                        if (r < 0)
                                return fprintf(stderr, "ca job: %s\n", err), 1;
                        snprintf(j->thing, sizeof j->thing, "ca");
                }
        }
        running = n_jobs;
        for (size_t k = 0; k < n_jobs; k++)
                run(&jobs[k]);
        if (n_jobs == 0)
                aws_http_close(http, NULL, NULL);
        uv_run(uv_default_loop(), UV_RUN_DEFAULT);

        int bad = 0;
        for (size_t k = 0; k < n_jobs; k++) {
                struct job *j = &jobs[k];
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "job", j->thing);
                cJSON_AddBoolToObject(o, "done", j->done);
                cJSON_AddNumberToObject(o, "steps", j->steps);
                cJSON_AddNumberToObject(o, "retries", j->retries);
                cJSON_AddNumberToObject(o, "repeats", j->repeats);
                if (j->mar) {
                        cJSON_AddStringToObject(o, "step", aws_mar_step_name(aws_mar_job_step(j->mar)));
                        cJSON_AddStringToObject(o, "certificate_id", aws_mar_job_cert_id(j->mar));
                        cJSON_AddStringToObject(o, "certificate_arn", aws_mar_job_cert_arn(j->mar));
                } else {
                        cJSON_AddStringToObject(o, "step", aws_ca_step_name(aws_ca_job_step(j->ca)));
                        cJSON_AddStringToObject(o, "certificate_id", aws_ca_job_cert_id(j->ca));
                        cJSON_AddStringToObject(o, "certificate_arn", aws_ca_job_cert_arn(j->ca));
                }
                if (j->failed)
                        cJSON_AddStringToObject(o, "error", j->error);
                char *t = cJSON_PrintUnformatted(o);
                printf("%s\n", t);
                free(t);
                cJSON_Delete(o);
                bad += !j->done;
                aws_mar_job_free(j->mar);
                aws_ca_job_free(j->ca);
                free(j->der);
                uv_close((uv_handle_t *)&j->timer, NULL);
        }
        uv_run(uv_default_loop(), UV_RUN_DEFAULT);
        printf("{\"policy_ready\": %s}\n", aws_registrar_policy_ready(reg) ? "true" : "false");
        aws_registrar_free(reg);
        issuer_free(is);
        free(jobs);
        conf_deinit(&c);
        return bad ? 1 : 0;
}
