/* SPDX-License-Identifier: MIT */
/* AWS IoT registration flows (MAR per device, JITR/JITP per signer) as restartable step machines. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <certs-hsm/cert.h>

#include "aws-register.h"
#include "util.h"

struct aws_registrar {
        struct aws_http *http;
        bool register_with_ca;
        char *ca_pem;
        char *policy_name;
        char *policy_document;
        char *thing_type;
        unsigned attrs;
        struct aws_bucket buckets[AWS_OP_MAX];
        struct aws_backoff backoff;
        bool policy_ready;
        bool policy_inflight;           /* one job's CreatePolicy is out: the others wait for it */
        struct aws_mar_job *policy_waiters;
};

static const char *const attr_names[] = { "serial", "model", "firmware", "station", "signer" };

int aws_attr_from_name(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(attr_names); i++)
                if (streq(attr_names[i], name))
                        return (int)(1u << i);
        return -EINVAL;
}

/*
 * AWS IoT Core's default per-account "API TPS" quotas (requests per second):
 * certificate calls 10/s, thing and attach calls 15/s. They differ by
 * account and region and AWS raises them on request, hence [aws] rate_limit.
 */
uint32_t aws_default_rate_milli(enum aws_op op) {
        switch (op) {
        case AWS_OP_CREATE_THING:
        case AWS_OP_UPDATE_THING:
        case AWS_OP_ATTACH_POLICY:
        case AWS_OP_ATTACH_THING_PRINCIPAL:
        case AWS_OP_LIST_ATTACHED_POLICIES:
                return 15000;
        default:
                return 10000;
        }
}

int aws_registrar_new(struct aws_http *http, const struct aws_registrar_opts *o, struct aws_registrar **ret) {
        struct aws_registrar *r;

        if (!http || !o || (o->register_with_ca && !o->ca_pem) ||
            (o->policy_name && !aws_policy_name_valid(o->policy_name)) ||
            (o->thing_type && !aws_thing_name_valid(o->thing_type)) || (o->attrs & ~(unsigned)AWS_ATTR_ALL))
                return -EINVAL;
        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->http = http;
        r->register_with_ca = o->register_with_ca;
        r->attrs = o->attrs;
        r->ca_pem = o->ca_pem ? strdup(o->ca_pem) : NULL;
        r->policy_name = o->policy_name ? strdup(o->policy_name) : NULL;
        r->policy_document = o->policy_document ? strdup(o->policy_document) : NULL;
        r->thing_type = o->thing_type ? strdup(o->thing_type) : NULL;
        if ((o->ca_pem && !r->ca_pem) || (o->policy_name && !r->policy_name) ||
            (o->policy_document && !r->policy_document) || (o->thing_type && !r->thing_type))
                return aws_registrar_free(r), -ENOMEM;
        for (int i = 0; i < AWS_OP_MAX; i++) {
                uint32_t rate = o->rates[i].rate_milli ? o->rates[i].rate_milli : aws_default_rate_milli(i);
                unsigned burst = o->rates[i].burst ? o->rates[i].burst : MAX(1u, rate / 1000);
                aws_bucket_init(&r->buckets[i], rate, burst);
        }
        r->backoff = o->backoff;
        if (!r->backoff.base_ms)
                r->backoff.base_ms = 200;
        if (!r->backoff.max_ms)
                r->backoff.max_ms = 30000;
        *ret = r;
        return 0;
}

struct aws_registrar *aws_registrar_free(struct aws_registrar *r) {
        if (!r)
                return NULL;
        free(r->ca_pem);
        free(r->policy_name);
        free(r->policy_document);
        free(r->thing_type);
        free(r);
        return NULL;
}

uint64_t aws_registrar_take(struct aws_registrar *r, enum aws_op op, uint64_t now_ms) {
        if ((unsigned)op >= AWS_OP_MAX)
                return 0;
        return aws_bucket_take(&r->buckets[op], now_ms);
}

uint32_t aws_registrar_backoff(const struct aws_registrar *r, unsigned attempt, uint32_t random) {
        return aws_backoff_delay(&r->backoff, attempt, random);
}

bool aws_registrar_policy_ready(const struct aws_registrar *r) {
        return r->policy_ready;
}

/* ---- MAR ---- */

struct aws_mar_job {
        char *cert_pem;
        char cert_id[AWS_CERT_ID_LEN + 1];
        char thing[AWS_NAME_MAX + 1];
        char *attr_values[ELEMENTSOF(attr_names)];

        enum aws_mar_step step;
        char cert_arn[AWS_ARN_MAX + 1];

        bool busy;
        struct aws_registrar *reg;
        aws_mar_cb cb;
        void *userdata;
        struct aws_mar_job *next_waiter;
};

static const char *const mar_step_names[] = {
        [AWS_MAR_REGISTER_CERT] = "register-certificate",
        [AWS_MAR_DESCRIBE_CERT] = "describe-certificate",
        [AWS_MAR_ACTIVATE_CERT] = "activate-certificate",
        [AWS_MAR_CREATE_THING] = "create-thing",
        [AWS_MAR_UPDATE_THING] = "update-thing",
        [AWS_MAR_CREATE_POLICY] = "create-policy",
        [AWS_MAR_ATTACH_POLICY] = "attach-policy",
        [AWS_MAR_ATTACH_PRINCIPAL] = "attach-thing-principal",
        [AWS_MAR_DONE] = "done",
};

const char *aws_mar_step_name(enum aws_mar_step s) {
        return (unsigned)s <= AWS_MAR_DONE ? mar_step_names[s] : "?";
}

int aws_mar_job_new(const struct aws_device *d, struct aws_mar_job **ret, char *err, size_t errlen) {
        struct aws_mar_job *j;
        const char *vals[ELEMENTSOF(attr_names)];
        int r;

        if (!d || !d->cert_der || d->cert_len == 0)
                return snprintf(err, errlen, "no certificate"), -EINVAL;
        if (!aws_thing_name_valid(d->thing_name))
                return snprintf(err, errlen, "thing name '%.128s' is not 1-128 of A-Z a-z 0-9 _ - (provd sends no "
                                "name that needs percent-encoding; ':' does)", d->thing_name ? d->thing_name : ""),
                       -EINVAL;
        vals[0] = d->serial, vals[1] = d->model, vals[2] = d->firmware, vals[3] = d->station, vals[4] = d->signer;
        for (size_t i = 0; i < ELEMENTSOF(vals); i++)
                if (vals[i] && !aws_attr_value_valid(vals[i]))
                        return snprintf(err, errlen, "attribute %s '%.64s' has characters AWS IoT refuses in "
                                        "attribute values (or is longer than 800)", attr_names[i], vals[i]), -EINVAL;
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        r = aws_pem_from_der(d->cert_der, d->cert_len, &j->cert_pem);
        if (r >= 0)
                r = aws_cert_id(d->cert_der, d->cert_len, j->cert_id);
        if (r < 0) {
                aws_mar_job_free(j);
                return snprintf(err, errlen, "certificate: %s", strerror(-r)), r;
        }
        snprintf(j->thing, sizeof j->thing, "%s", d->thing_name);
        for (size_t i = 0; i < ELEMENTSOF(vals); i++)
                if (!isempty(vals[i]) && !(j->attr_values[i] = strdup(vals[i])))
                        return aws_mar_job_free(j), -ENOMEM;
        *ret = j;
        return 0;
}

struct aws_mar_job *aws_mar_job_free(struct aws_mar_job *j) {
        if (!j)
                return NULL;
        free(j->cert_pem);
        for (size_t i = 0; i < ELEMENTSOF(j->attr_values); i++)
                free(j->attr_values[i]);
        free(j);
        return NULL;
}

int aws_mar_job_resume(struct aws_mar_job *j, enum aws_mar_step step, const char *cert_arn) {
        if (j->busy)
                return -EBUSY;
        if ((unsigned)step > AWS_MAR_DONE)
                return -EINVAL;
        if (step > AWS_MAR_DESCRIBE_CERT && !aws_arn_valid(cert_arn))
                return -EINVAL;
        j->step = step;
        snprintf(j->cert_arn, sizeof j->cert_arn, "%s", cert_arn && aws_arn_valid(cert_arn) ? cert_arn : "");
        return 0;
}

enum aws_mar_step aws_mar_job_step(const struct aws_mar_job *j) {
        return j->step;
}

const char *aws_mar_job_cert_id(const struct aws_mar_job *j) {
        return j->cert_id;
}

const char *aws_mar_job_cert_arn(const struct aws_mar_job *j) {
        return j->cert_arn;
}

const char *aws_mar_job_thing(const struct aws_mar_job *j) {
        return j->thing;
}

static void skip_known(const struct aws_registrar *reg, struct aws_mar_job *j) {
        if (j->step == AWS_MAR_CREATE_POLICY && reg->policy_ready)
                j->step = AWS_MAR_ATTACH_POLICY;
}

enum aws_op aws_mar_next_op(const struct aws_registrar *reg, const struct aws_mar_job *j) {
        enum aws_mar_step s = j->step;

        if (s == AWS_MAR_CREATE_POLICY && reg->policy_ready)
                s = AWS_MAR_ATTACH_POLICY;
        switch (s) {
        case AWS_MAR_REGISTER_CERT:
                return reg->register_with_ca ? AWS_OP_REGISTER_CERTIFICATE : AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA;
        case AWS_MAR_DESCRIBE_CERT: return AWS_OP_DESCRIBE_CERTIFICATE;
        case AWS_MAR_ACTIVATE_CERT: return AWS_OP_UPDATE_CERTIFICATE;
        case AWS_MAR_CREATE_THING: return AWS_OP_CREATE_THING;
        case AWS_MAR_UPDATE_THING: return AWS_OP_UPDATE_THING;
        case AWS_MAR_CREATE_POLICY: return AWS_OP_CREATE_POLICY;
        case AWS_MAR_ATTACH_POLICY: return AWS_OP_ATTACH_POLICY;
        case AWS_MAR_ATTACH_PRINCIPAL: return AWS_OP_ATTACH_THING_PRINCIPAL;
        case AWS_MAR_DONE: break;
        }
        return AWS_OP_MAX;
}

static bool already_exists(const struct aws_response *r) {
        return r->status == 409 || streq(r->code, "ResourceAlreadyExistsException");
}

static void fail_local(struct aws_response *r, const char *code, const char *msg) {
        aws_response_transport(r, code, msg, false);
}

static void mar_done(const struct aws_response *resp, void *userdata) {
        struct aws_mar_job *j = userdata;
        struct aws_registrar *reg = j->reg;
        struct aws_response r = *resp;

        switch (j->step) {
        case AWS_MAR_REGISTER_CERT:
                if (r.cls == AWS_OK) {
                        if (!streq(r.certificate_id, j->cert_id)) {
                                fail_local(&r, "CertificateIdMismatch", "AWS IoT returned a certificate id that is "
                                           "not the SHA-256 of the certificate sent");
                                break;
                        }
                        snprintf(j->cert_arn, sizeof j->cert_arn, "%s", r.certificate_arn);
                        j->step = AWS_MAR_CREATE_THING;
                } else if (already_exists(&r)) {
                        /* Registered before (by us after a crash, or by hand): look it up by id. */
                        j->step = AWS_MAR_DESCRIBE_CERT;
                        r.cls = AWS_OK;
                }
                break;
        case AWS_MAR_DESCRIBE_CERT:
                if (r.cls != AWS_OK)
                        break;
                if (!streq(r.certificate_id, j->cert_id)) {
                        fail_local(&r, "CertificateIdMismatch", "DescribeCertificate answered for another certificate");
                        break;
                }
                snprintf(j->cert_arn, sizeof j->cert_arn, "%s", r.certificate_arn);
                if (streq(r.certificate_status, "ACTIVE"))
                        j->step = AWS_MAR_CREATE_THING;
                else if (streq(r.certificate_status, "INACTIVE"))
                        j->step = AWS_MAR_ACTIVATE_CERT;
                else {
                        char msg[128];
                        snprintf(msg, sizeof msg, "the certificate is registered with status %s; provd only "
                                 "activates INACTIVE ones", r.certificate_status);
                        fail_local(&r, "CertificateNotActivatable", msg);
                }
                break;
        case AWS_MAR_ACTIVATE_CERT:
                if (r.cls == AWS_OK)
                        j->step = AWS_MAR_CREATE_THING;
                break;
        case AWS_MAR_CREATE_THING:
                if (r.cls == AWS_OK)
                        j->step = AWS_MAR_CREATE_POLICY;
                else if (already_exists(&r)) {
                        /* Same name, other attributes (a reissue, new firmware): merge ours in. */
                        j->step = AWS_MAR_UPDATE_THING;
                        r.cls = AWS_OK;
                }
                break;
        case AWS_MAR_UPDATE_THING:
                if (r.cls == AWS_OK)
                        j->step = AWS_MAR_CREATE_POLICY;
                break;
        case AWS_MAR_CREATE_POLICY:
                if (r.cls == AWS_OK || already_exists(&r)) {
                        reg->policy_ready = true;
                        r.cls = AWS_OK;
                        j->step = AWS_MAR_ATTACH_POLICY;
                }
                reg->policy_inflight = false;
                /* The jobs that waited for this call share its outcome (a failure:
                 * they retry, and one of them sends CreatePolicy again). */
                for (struct aws_mar_job *w = TAKE_PTR(reg->policy_waiters), *next; w; w = next) {
                        next = w->next_waiter;
                        w->next_waiter = NULL;
                        if (r.cls == AWS_OK)
                                w->step = AWS_MAR_ATTACH_POLICY;
                        w->busy = false;
                        w->cb(w, &r, w->userdata);
                }
                break;
        case AWS_MAR_ATTACH_POLICY:
                if (r.cls == AWS_OK)
                        j->step = AWS_MAR_ATTACH_PRINCIPAL;
                break;
        case AWS_MAR_ATTACH_PRINCIPAL:
                if (r.cls == AWS_OK)
                        j->step = AWS_MAR_DONE;
                break;
        case AWS_MAR_DONE:
                break;
        }
        j->busy = false;
        j->cb(j, &r, j->userdata);
}

static size_t job_attrs(const struct aws_registrar *reg, const struct aws_mar_job *j, struct aws_thing_attr *out) {
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(attr_names); i++)
                if ((reg->attrs & (1u << i)) && j->attr_values[i])
                        out[n++] = (struct aws_thing_attr) { attr_names[i], j->attr_values[i] };
        return n;
}

int aws_mar_step(struct aws_registrar *reg, struct aws_mar_job *j, aws_mar_cb cb, void *userdata) {
        struct aws_request req = {};
        struct aws_thing_attr attrs[ELEMENTSOF(attr_names)];
        size_t n;
        int r;

        if (j->busy)
                return -EBUSY;
        skip_known(reg, j);
        switch (j->step) {
        case AWS_MAR_REGISTER_CERT:
                r = aws_req_register_certificate(&req, j->cert_pem, reg->register_with_ca ? reg->ca_pem : NULL);
                break;
        case AWS_MAR_DESCRIBE_CERT:
                r = aws_req_describe_certificate(&req, j->cert_id);
                break;
        case AWS_MAR_ACTIVATE_CERT:
                r = aws_req_update_certificate(&req, j->cert_id, "ACTIVE");
                break;
        case AWS_MAR_CREATE_THING:
        case AWS_MAR_UPDATE_THING:
                n = job_attrs(reg, j, attrs);
                r = (j->step == AWS_MAR_CREATE_THING ? aws_req_create_thing : aws_req_update_thing)(
                        &req, j->thing, reg->thing_type, attrs, n);
                break;
        case AWS_MAR_CREATE_POLICY:
                if (!reg->policy_name || !reg->policy_document)
                        return -EINVAL;
                if (reg->policy_inflight) {
                        /* Once per registrar: wait for the call already out (completed from mar_done()). */
                        j->reg = reg;
                        j->cb = cb;
                        j->userdata = userdata;
                        j->busy = true;
                        j->next_waiter = reg->policy_waiters;
                        reg->policy_waiters = j;
                        return 0;
                }
                r = aws_req_create_policy(&req, reg->policy_name, reg->policy_document);
                break;
        case AWS_MAR_ATTACH_POLICY:
                if (!reg->policy_name)
                        return -EINVAL;
                r = aws_req_attach_policy(&req, reg->policy_name, j->cert_arn);
                break;
        case AWS_MAR_ATTACH_PRINCIPAL:
                r = aws_req_attach_thing_principal(&req, j->thing, j->cert_arn);
                break;
        default:
                return -EALREADY;
        }
        if (r < 0)
                return r;
        j->reg = reg;
        j->cb = cb;
        j->userdata = userdata;
        r = aws_http_send(reg->http, &req, mar_done, j);
        aws_request_done(&req);
        if (r < 0)
                return r;
        j->busy = true;
        if (j->step == AWS_MAR_CREATE_POLICY)
                reg->policy_inflight = true;
        return 0;
}

/* ---- JITR / JITP ---- */

struct aws_ca_job {
        struct issuer *issuer;
        char *ca_pem;
        char ca_id[AWS_CERT_ID_LEN + 1];
        bool sni_only;
        char *template_body;
        char *role_arn;

        enum aws_ca_step step;
        char code[AWS_REG_CODE_MAX + 1];
        char *verification_pem;
        char cert_arn[AWS_ARN_MAX + 1];

        bool busy;
        uv_work_t work;
        int work_result;
        struct aws_registrar *reg;
        aws_ca_cb cb;
        void *userdata;
};

static const char *const ca_step_names[] = {
        [AWS_CA_GET_CODE] = "get-registration-code",
        [AWS_CA_MAKE_VERIFICATION] = "make-verification-certificate",
        [AWS_CA_REGISTER] = "register-ca-certificate",
        [AWS_CA_DESCRIBE] = "describe-ca-certificate",
        [AWS_CA_DONE] = "done",
};

const char *aws_ca_step_name(enum aws_ca_step s) {
        return (unsigned)s <= AWS_CA_DONE ? ca_step_names[s] : "?";
}

int aws_ca_job_new(const struct aws_ca_params *p, struct aws_ca_job **ret, char *err, size_t errlen) {
        struct aws_ca_job *j;
        int r;

        if (!p || !p->ca_der || !p->ca_len)
                return snprintf(err, errlen, "no CA certificate"), -EINVAL;
        if (!p->sni_only && !p->issuer)
                return snprintf(err, errlen, "a verification certificate needs the signer"), -EINVAL;
        if ((p->template_body == NULL) != (p->role_arn == NULL))
                return snprintf(err, errlen, "JITP needs both the template and the role ARN"), -EINVAL;
        if (p->role_arn && !aws_arn_valid(p->role_arn))
                return snprintf(err, errlen, "role ARN '%.100s' is not an ARN", p->role_arn), -EINVAL;
        if (p->template_body && strlen(p->template_body) > AWS_TEMPLATE_BODY_MAX)
                return snprintf(err, errlen, "provisioning template longer than %d bytes", AWS_TEMPLATE_BODY_MAX),
                       -EINVAL;
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        j->sni_only = p->sni_only;
        j->step = p->sni_only ? AWS_CA_REGISTER : AWS_CA_GET_CODE;
        r = aws_pem_from_der(p->ca_der, p->ca_len, &j->ca_pem);
        if (r >= 0)
                r = aws_cert_id(p->ca_der, p->ca_len, j->ca_id);
        if (r >= 0 && p->template_body && !(j->template_body = strdup(p->template_body)))
                r = -ENOMEM;
        if (r >= 0 && p->role_arn && !(j->role_arn = strdup(p->role_arn)))
                r = -ENOMEM;
        if (r < 0) {
                aws_ca_job_free(j);
                return snprintf(err, errlen, "CA certificate: %s", strerror(-r)), r;
        }
        if (p->issuer)
                j->issuer = issuer_ref(p->issuer);
        *ret = j;
        return 0;
}

struct aws_ca_job *aws_ca_job_free(struct aws_ca_job *j) {
        if (!j)
                return NULL;
        issuer_free(j->issuer);
        free(j->ca_pem);
        free(j->template_body);
        free(j->role_arn);
        free(j->verification_pem);
        free(j);
        return NULL;
}

int aws_ca_job_resume(struct aws_ca_job *j, enum aws_ca_step step) {
        if (j->busy)
                return -EBUSY;
        if ((unsigned)step > AWS_CA_DONE)
                return -EINVAL;
        if (step == AWS_CA_DONE)
                return -EINVAL;         /* done needs its ARN: the caller has it persisted already */
        if (step == AWS_CA_DESCRIBE)
                j->step = step;
        else
                j->step = j->sni_only ? AWS_CA_REGISTER : AWS_CA_GET_CODE;
        return 0;
}

enum aws_ca_step aws_ca_job_step(const struct aws_ca_job *j) {
        return j->step;
}

const char *aws_ca_job_cert_id(const struct aws_ca_job *j) {
        return j->ca_id;
}

const char *aws_ca_job_cert_arn(const struct aws_ca_job *j) {
        return j->cert_arn;
}

enum aws_op aws_ca_next_op(const struct aws_ca_job *j) {
        switch (j->step) {
        case AWS_CA_GET_CODE: return AWS_OP_GET_REGISTRATION_CODE;
        case AWS_CA_REGISTER: return AWS_OP_REGISTER_CA_CERTIFICATE;
        case AWS_CA_DESCRIBE: return AWS_OP_DESCRIBE_CA_CERTIFICATE;
        default: return AWS_OP_MAX;
        }
}

static void ca_finish(struct aws_ca_job *j, struct aws_response *r) {
        j->busy = false;
        j->cb(j, r, j->userdata);
}

static void ca_done(const struct aws_response *resp, void *userdata) {
        struct aws_ca_job *j = userdata;
        struct aws_response r = *resp;

        switch (j->step) {
        case AWS_CA_GET_CODE:
                if (r.cls == AWS_OK) {
                        snprintf(j->code, sizeof j->code, "%s", r.registration_code);
                        j->step = AWS_CA_MAKE_VERIFICATION;
                }
                break;
        case AWS_CA_REGISTER:
                if (r.cls == AWS_OK) {
                        if (!streq(r.certificate_id, j->ca_id)) {
                                fail_local(&r, "CertificateIdMismatch", "AWS IoT returned a CA certificate id that "
                                           "is not the SHA-256 of the certificate sent");
                                break;
                        }
                        snprintf(j->cert_arn, sizeof j->cert_arn, "%s", r.certificate_arn);
                        j->step = AWS_CA_DONE;
                } else if (already_exists(&r)) {
                        j->step = AWS_CA_DESCRIBE;
                        r.cls = AWS_OK;
                }
                break;
        case AWS_CA_DESCRIBE:
                if (r.cls != AWS_OK)
                        break;
                if (!streq(r.certificate_id, j->ca_id)) {
                        fail_local(&r, "CertificateIdMismatch", "DescribeCACertificate answered for another CA");
                        break;
                }
                if (!streq(r.certificate_status, "ACTIVE")) {
                        char msg[128];
                        snprintf(msg, sizeof msg, "the CA is registered already with status %s; activate it in "
                                 "AWS IoT", r.certificate_status);
                        fail_local(&r, "CACertificateNotActive", msg);
                        break;
                }
                snprintf(j->cert_arn, sizeof j->cert_arn, "%s", r.certificate_arn);
                j->step = AWS_CA_DONE;
                break;
        default:
                break;
        }
        ca_finish(j, &r);
}

/* Thread pool: the signer (an HSM perhaps) signs off the loop. */
static void verification_work(uv_work_t *w) {
        struct aws_ca_job *j = container_of(w, struct aws_ca_job, work);
        struct issued_cert c = {};

        j->work_result = issuer_verification_cert(j->issuer, j->code, &c);
        if (j->work_result >= 0) {
                free(j->verification_pem);
                j->verification_pem = NULL;
                j->work_result = aws_pem_from_der(c.der, c.der_len, &j->verification_pem);
        }
        issued_cert_done(&c);
}

static void verification_done(uv_work_t *w, int status) {
        struct aws_ca_job *j = container_of(w, struct aws_ca_job, work);
        struct aws_response r = {};

        if (status < 0 || j->work_result < 0) {
                char msg[160];
                snprintf(msg, sizeof msg, "making the verification certificate failed: %s",
                         strerror(-(status < 0 ? status : j->work_result)));
                /* An HSM that failed once may answer the next time; a bad code will not get better. */
                aws_response_transport(&r, "VerificationCertificate", msg, j->work_result != -EINVAL);
        } else {
                r.cls = AWS_OK;
                j->step = AWS_CA_REGISTER;
        }
        ca_finish(j, &r);
}

int aws_ca_step(struct aws_registrar *reg, struct aws_ca_job *j, aws_ca_cb cb, void *userdata) {
        struct aws_request req = {};
        int r;

        if (j->busy)
                return -EBUSY;
        j->reg = reg;
        j->cb = cb;
        j->userdata = userdata;
        switch (j->step) {
        case AWS_CA_GET_CODE:
                r = aws_req_get_registration_code(&req);
                break;
        case AWS_CA_MAKE_VERIFICATION:
                r = uv_queue_work(aws_http_loop(reg->http), &j->work, verification_work, verification_done);
                if (r < 0)
                        return r;
                j->busy = true;
                return 0;
        case AWS_CA_REGISTER:
                if (!j->sni_only && !j->verification_pem) {
                        j->step = AWS_CA_GET_CODE;
                        return aws_ca_step(reg, j, cb, userdata);
                }
                r = aws_req_register_ca_certificate(&req, &(struct aws_ca_registration) {
                        .ca_pem = j->ca_pem,
                        .verification_pem = j->sni_only ? NULL : j->verification_pem,
                        .template_body = j->template_body,
                        .role_arn = j->role_arn,
                        .allow_auto_registration = true,
                        .set_as_active = true,
                });
                break;
        case AWS_CA_DESCRIBE:
                r = aws_req_describe_ca_certificate(&req, j->ca_id);
                break;
        default:
                return -EALREADY;
        }
        if (r < 0)
                return r;
        r = aws_http_send(reg->http, &req, ca_done, j);
        aws_request_done(&req);
        if (r < 0)
                return r;
        j->busy = true;
        return 0;
}
