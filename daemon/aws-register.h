/* SPDX-License-Identifier: MIT */
/* AWS IoT registration flows (MAR per device, JITR/JITP per signer) as restartable step machines. */
#ifndef PROVD_AWS_REGISTER_H
#define PROVD_AWS_REGISTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws-http.h"
#include "aws-iot.h"
#include "aws-limit.h"

struct issuer;

/*
 * How the outbox worker drives a flow (all on the loop thread):
 *
 *   op = aws_mar_next_op(reg, job);            which call the next step makes
 *   wait = aws_registrar_take(reg, op, now);   its token bucket; 0 = go
 *   aws_mar_step(reg, job, cb, ud);            one step, one HTTP call
 *   cb(job, resp, ud):
 *     resp->cls == AWS_OK       job->step advanced: persist job->step and
 *                               job->cert_arn, then next step (or done)
 *     AWS_RETRY                 wait aws_registrar_backoff(reg, attempt, rnd), same step again
 *     AWS_CREDENTIALS           reload credentials (aws_http_set_creds()), then retry
 *     AWS_PERMANENT             give up; resp->code and resp->message say why
 *
 * Every step is idempotent at AWS, so a job resumed after a crash from its
 * last recorded step only repeats calls whose effect is already there.
 *
 * CreatePolicy is sent once per registrar: a job reaching create-policy while
 * another job's CreatePolicy is out waits for it (no call of its own; the
 * token it took is simply not used) and its callback gets that call's outcome.
 * Callbacks never run from inside aws_mar_step()/aws_ca_step().
 *
 * Ownership: jobs and the registrar belong to the caller; the registrar
 * borrows the aws_http; responses passed to callbacks live for the call only.
 */

enum aws_attr {
        AWS_ATTR_SERIAL = 1u << 0,
        AWS_ATTR_MODEL = 1u << 1,
        AWS_ATTR_FIRMWARE = 1u << 2,
        AWS_ATTR_STATION = 1u << 3,
        AWS_ATTR_SIGNER = 1u << 4,
        AWS_ATTR_ALL = (1u << 5) - 1,
};
/** "serial" -> AWS_ATTR_SERIAL; -EINVAL if unknown. */
int aws_attr_from_name(const char *name);

struct aws_rate {
        uint32_t rate_milli;            /* tokens per second * 1000; 0: the default for the operation */
        uint32_t burst;                 /* 0: the default */
};
/** AWS's published per-account rate for @op (tokens/s * 1000), used when none is configured. */
uint32_t aws_default_rate_milli(enum aws_op op);

struct aws_registrar_opts {
        bool register_with_ca;          /* MAR: RegisterCertificate with @ca_pem instead of RegisterCertificateWithoutCA */
        const char *ca_pem;             /* the signer certificate (register_with_ca) */
        const char *policy_name;        /* MAR: created once, attached to every certificate */
        const char *policy_document;    /* MAR: the expanded template (JSON) */
        const char *thing_type;         /* NULL: none (then AWS allows at most 3 attributes) */
        unsigned attrs;                 /* enum aws_attr mask of attributes sent */
        struct aws_rate rates[AWS_OP_MAX];
        struct aws_backoff backoff;     /* 0/0: 200 ms base, 30 s max */
};

struct aws_registrar;

/** @http is borrowed (must outlive the registrar). Strings are copied. -EINVAL, -ENOMEM.
 *  Free it only when no job's step is in flight (close @http first: that
 *  completes every call with "Cancelled"). */
int aws_registrar_new(struct aws_http *http, const struct aws_registrar_opts *opts, struct aws_registrar **ret);
struct aws_registrar *aws_registrar_free(struct aws_registrar *reg);

/** Token bucket of @op at @now_ms (any monotonic ms clock): 0 = a token was taken, go;
 *  else milliseconds to wait before asking again. */
uint64_t aws_registrar_take(struct aws_registrar *reg, enum aws_op op, uint64_t now_ms);
/** Delay before retry number @attempt (0-based) with the caller's 32-bit @random. */
uint32_t aws_registrar_backoff(const struct aws_registrar *reg, unsigned attempt, uint32_t random);
/** True once CreatePolicy succeeded or found the policy (then later jobs skip it). */
bool aws_registrar_policy_ready(const struct aws_registrar *reg);

/* ---- MAR: one device ---- */

enum aws_mar_step {
        AWS_MAR_REGISTER_CERT,          /* RegisterCertificate[WithoutCA], status ACTIVE */
        AWS_MAR_DESCRIBE_CERT,          /* only after 409: it exists; its ARN and status */
        AWS_MAR_ACTIVATE_CERT,          /* only if it exists INACTIVE */
        AWS_MAR_CREATE_THING,
        AWS_MAR_UPDATE_THING,           /* only after 409: the thing exists with other attributes */
        AWS_MAR_CREATE_POLICY,          /* skipped once the registrar knows the policy exists */
        AWS_MAR_ATTACH_POLICY,
        AWS_MAR_ATTACH_PRINCIPAL,       /* EXCLUSIVE_THING */
        AWS_MAR_DONE,
};
const char *aws_mar_step_name(enum aws_mar_step s);

struct aws_device {
        const uint8_t *cert_der;
        size_t cert_len;
        const char *thing_name;         /* aws_thing_name_valid() */
        const char *serial;             /* attribute values (NULL/"" = not sent); aws_attr_value_valid() */
        const char *model;
        const char *firmware;
        const char *station;
        const char *signer;
};

struct aws_mar_job;
typedef void (*aws_mar_cb)(struct aws_mar_job *job, const struct aws_response *resp, void *userdata);

/** Copies everything out of @dev. -EINVAL (with a reason in @err) for a
 *  thing name or attribute AWS would refuse or provd cannot send. */
int aws_mar_job_new(const struct aws_device *dev, struct aws_mar_job **ret, char *err, size_t errlen);
/** Not while a step is in flight (its callback has not run yet). */
struct aws_mar_job *aws_mar_job_free(struct aws_mar_job *job);

/** Restores persisted progress. Steps after the certificate's need its ARN
 *  (-EINVAL without a valid one). */
int aws_mar_job_resume(struct aws_mar_job *job, enum aws_mar_step step, const char *cert_arn);

enum aws_mar_step aws_mar_job_step(const struct aws_mar_job *job);
const char *aws_mar_job_cert_id(const struct aws_mar_job *job);
const char *aws_mar_job_cert_arn(const struct aws_mar_job *job);      /* "" until known */
const char *aws_mar_job_thing(const struct aws_mar_job *job);

/** The operation the next aws_mar_step() calls; AWS_OP_MAX when done. */
enum aws_op aws_mar_next_op(const struct aws_registrar *reg, const struct aws_mar_job *job);

/** Runs one step; @cb runs once, later, on the loop. 0, -EALREADY (done),
 *  -EBUSY (a step is in flight), or aws_http_send()'s error. */
int aws_mar_step(struct aws_registrar *reg, struct aws_mar_job *job, aws_mar_cb cb, void *userdata);

/* ---- JITR / JITP: one signer CA ---- */

enum aws_ca_step {
        AWS_CA_GET_CODE,                /* GetRegistrationCode */
        AWS_CA_MAKE_VERIFICATION,       /* CN = code, signed by the signer (thread pool, not the loop) */
        AWS_CA_REGISTER,                /* RegisterCACertificate setAsActive, allowAutoRegistration */
        AWS_CA_DESCRIBE,                /* only after 409: it is registered already */
        AWS_CA_DONE,
};
const char *aws_ca_step_name(enum aws_ca_step s);

struct aws_ca_params {
        struct issuer *issuer;          /* referenced (issuer_ref) while the job lives; NULL with sni_only */
        const uint8_t *ca_der;          /* the CA to register (the signer certificate) */
        size_t ca_len;
        bool sni_only;                  /* certificateMode SNI_ONLY: no registration code, no verification */
        const char *template_body;      /* JITP: provisioning template (JSON); NULL for JITR */
        const char *role_arn;           /* JITP: the role AWS IoT assumes to run it */
};

struct aws_ca_job;
typedef void (*aws_ca_cb)(struct aws_ca_job *job, const struct aws_response *resp, void *userdata);

int aws_ca_job_new(const struct aws_ca_params *p, struct aws_ca_job **ret, char *err, size_t errlen);
/** Not while a step is in flight (its callback has not run yet). */
struct aws_ca_job *aws_ca_job_free(struct aws_ca_job *job);
/** Steps before AWS_CA_REGISTER change nothing at AWS and keep nothing worth
 *  persisting: a job resumed there starts at the beginning. */
int aws_ca_job_resume(struct aws_ca_job *job, enum aws_ca_step step);
enum aws_ca_step aws_ca_job_step(const struct aws_ca_job *job);
/** Results once AWS_CA_DONE: the CA certificate id and ARN. */
const char *aws_ca_job_cert_id(const struct aws_ca_job *job);
const char *aws_ca_job_cert_arn(const struct aws_ca_job *job);
enum aws_op aws_ca_next_op(const struct aws_ca_job *job);     /* AWS_OP_MAX: no call (done, or the local step) */
int aws_ca_step(struct aws_registrar *reg, struct aws_ca_job *job, aws_ca_cb cb, void *userdata);

#endif
