/* SPDX-License-Identifier: MIT */
/* AWS IoT control-plane operations: request building (paths, queries, JSON bodies) and response/error parsing. */
#ifndef PROVD_AWS_IOT_H
#define PROVD_AWS_IOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Everything here is pure (no I/O, no clock): aws-http.c sends what is built here. */

enum aws_op {
        AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA,
        AWS_OP_REGISTER_CERTIFICATE,
        AWS_OP_DESCRIBE_CERTIFICATE,
        AWS_OP_UPDATE_CERTIFICATE,
        AWS_OP_CREATE_THING,
        AWS_OP_UPDATE_THING,
        AWS_OP_CREATE_POLICY,
        AWS_OP_ATTACH_POLICY,
        AWS_OP_ATTACH_THING_PRINCIPAL,
        AWS_OP_LIST_ATTACHED_POLICIES,
        AWS_OP_GET_REGISTRATION_CODE,
        AWS_OP_REGISTER_CA_CERTIFICATE,
        AWS_OP_DESCRIBE_CA_CERTIFICATE,
        AWS_OP_MAX,
};

/** The AWS API name ("CreateThing"); "?" for an unknown value. */
const char *aws_op_name(enum aws_op op);
/** Case-sensitive inverse of aws_op_name(); -EINVAL if unknown. */
int aws_op_from_name(const char *name);

#define AWS_PATH_MAX 1024
#define AWS_QUERY_MAX 512
#define AWS_ARN_MAX 1011                /* AWS IoT's own limit for ARNs in its API */
#define AWS_CODE_MAX 64
#define AWS_MESSAGE_MAX 256
#define AWS_CERT_ID_LEN 64              /* SHA-256 of the DER, lowercase hex */
#define AWS_REG_CODE_MAX 64
#define AWS_NAME_MAX 128                /* thing and policy names */
#define AWS_ATTR_VALUE_MAX 800
#define AWS_POLICY_MAX 20480            /* template file, after expansion */
#define AWS_TEMPLATE_BODY_MAX 10240     /* JITP templateBody */
#define AWS_LIST_MAX 8                  /* ListAttachedPolicies names kept */

struct aws_request {
        enum aws_op op;
        const char *method;             /* static: "GET", "POST", "PUT", "PATCH" */
        char path[AWS_PATH_MAX];        /* each segment percent-encoded exactly once */
        char query[AWS_QUERY_MAX];      /* "k=v&k=v", keys sorted, encoded; "" for none */
        char *body;                     /* JSON (malloc'ed) or NULL for no body */
        size_t body_len;
        char principal[AWS_ARN_MAX + 1]; /* x-amzn-principal header value, "" if none */
};
/** Frees the body; idempotent. */
void aws_request_done(struct aws_request *r);

/* ---- encoding ---- */

/** RFC 3986 percent-encoding as SigV4 wants it: A-Z a-z 0-9 - _ . ~ kept, all
 *  else %XX (upper case). Returns the length, -ENOBUFS if @size is too small. */
int aws_uri_encode(const char *s, size_t len, char *buf, size_t size);
/** Appends "/" and @seg encoded to the NUL-terminated path in @buf. -ENOBUFS, -EINVAL (empty, ".", ".."). */
int aws_path_append(char *buf, size_t size, const char *seg);

struct aws_query_param {
        const char *key;
        const char *value;
};
/** Builds a canonical query string (sorted by encoded key, then value; each
 *  encoded). libcurl signs the query as given, so it must already be canonical. */
int aws_query_build(const struct aws_query_param *params, size_t n, char *buf, size_t size);

/* ---- names ---- */

/** Thing names provd sends: [A-Za-z0-9_-]{1,128}. AWS also allows ':', which
 *  would have to be percent-encoded in the path, and a path that needs
 *  encoding is signed differently by libcurl and AWS: refused instead. */
bool aws_thing_name_valid(const char *s);
/** Policy names: [A-Za-z0-9_.-]{1,128}, not all dots (same reason). */
bool aws_policy_name_valid(const char *s);
/** Thing attribute name/value character sets of the CreateThing API. */
bool aws_attr_name_valid(const char *s);
bool aws_attr_value_valid(const char *s);
/** 64 lowercase hex digits. */
bool aws_cert_id_valid(const char *s);
/** Printable ASCII without spaces starting "arn:", at most AWS_ARN_MAX. */
bool aws_arn_valid(const char *s);

/* ---- requests ---- (each returns 0, -EINVAL for an argument AWS would refuse or a name above, -ENOBUFS, -ENOMEM) */

int aws_req_register_certificate(struct aws_request *ret, const char *cert_pem, const char *ca_pem);
int aws_req_describe_certificate(struct aws_request *ret, const char *cert_id);
/** @status: "ACTIVE" or "INACTIVE". */
int aws_req_update_certificate(struct aws_request *ret, const char *cert_id, const char *status);

struct aws_thing_attr {
        const char *name;
        const char *value;
};
/** @thing_type may be NULL. @attrs: at most 50. Attribute values must be
 *  aws_attr_value_valid() (empty values are left out). */
int aws_req_create_thing(struct aws_request *ret, const char *thing, const char *thing_type,
                         const struct aws_thing_attr *attrs, size_t n_attrs);
/** UpdateThing with merge: the same attributes onto an existing thing. */
int aws_req_update_thing(struct aws_request *ret, const char *thing, const char *thing_type,
                         const struct aws_thing_attr *attrs, size_t n_attrs);
/** @document must be a JSON object (checked). */
int aws_req_create_policy(struct aws_request *ret, const char *policy, const char *document);
int aws_req_attach_policy(struct aws_request *ret, const char *policy, const char *target_arn);
/** Always EXCLUSIVE_THING: a device certificate belongs to one thing. */
int aws_req_attach_thing_principal(struct aws_request *ret, const char *thing, const char *principal_arn);
/** The ARN is one path segment, ':' and '/' percent-encoded once, as AWS
 *  wants it on the wire; aws_http_send() refuses it (-ENOTSUP, see there). */
int aws_req_list_attached_policies(struct aws_request *ret, const char *target_arn, unsigned page_size);
int aws_req_get_registration_code(struct aws_request *ret);

struct aws_ca_registration {
        const char *ca_pem;
        const char *verification_pem;   /* NULL: certificateMode SNI_ONLY */
        const char *template_body;      /* JITP: registrationConfig.templateBody, NULL for JITR */
        const char *role_arn;           /* JITP: registrationConfig.roleArn */
        bool allow_auto_registration;
        bool set_as_active;
};
int aws_req_register_ca_certificate(struct aws_request *ret, const struct aws_ca_registration *reg);
int aws_req_describe_ca_certificate(struct aws_request *ret, const char *ca_cert_id);

/* ---- responses ---- */

enum aws_class {
        AWS_OK,
        AWS_RETRY,              /* throttled, 429, 5xx, timeout, connection error: back off, try again */
        AWS_PERMANENT,          /* the request is wrong or refused: retrying changes nothing */
        AWS_CREDENTIALS,        /* refused for the credentials (expired token, bad signature):
                                 * permanent until they are reloaded */
};
const char *aws_class_name(enum aws_class c);

struct aws_response {
        long status;                    /* HTTP status, 0 if none came */
        enum aws_class cls;
        char code[AWS_CODE_MAX + 1];    /* AWS error code or provd's own ("Timeout"), "" on success */
        char message[AWS_MESSAGE_MAX + 1]; /* for display, printable ASCII */

        /* What the operation returned (empty strings if not part of its answer). */
        char certificate_id[AWS_CERT_ID_LEN + 1];
        char certificate_arn[AWS_ARN_MAX + 1];
        char certificate_status[32];    /* Describe*Certificate: ACTIVE, INACTIVE, REVOKED, ... */
        char thing_arn[AWS_ARN_MAX + 1];
        char policy_arn[AWS_ARN_MAX + 1];
        char registration_code[AWS_REG_CODE_MAX + 1];
        char policies[AWS_LIST_MAX][AWS_NAME_MAX + 1];
        size_t n_policies;
        bool truncated_list;            /* ListAttachedPolicies: more than AWS_LIST_MAX or a nextMarker */

        /* Filled by aws-http.c: connections opened for this call (0: an idle one was reused). */
        unsigned new_connections;
};

/**
 * Parses the answer to @op: HTTP @status, the x-amzn-ErrorType header value
 * (@error_type, NULL if absent) and the body (any bytes, @len bounded by the
 * caller). Never fails on the body's content: a 2xx whose body lacks what the
 * operation must return becomes AWS_RETRY with code "BadResponse" (every
 * operation is idempotent). Returns 0, or -EINVAL for bad arguments.
 */
int aws_response_parse(enum aws_op op, long status, const char *error_type, const char *body, size_t len,
                       struct aws_response *ret);

/** The AWS error code from an x-amzn-ErrorType value: up to the first ':',
 *  only [A-Za-z0-9_.]; "" if none. */
void aws_error_type_code(const char *value, char buf[AWS_CODE_MAX + 1]);

/** Classifies an HTTP status and AWS error code. */
enum aws_class aws_classify(long status, const char *code);

/** Fills @ret for a request that got no HTTP answer (@code: provd's name for
 *  it, e.g. "Timeout"; @retryable). */
void aws_response_transport(struct aws_response *ret, const char *code, const char *message, bool retryable);

/* ---- helpers ---- */

/** PEM ("-----BEGIN CERTIFICATE-----", 64-column base64) of @der; malloc'ed into @ret. */
int aws_pem_from_der(const uint8_t *der, size_t len, char **ret);
/** AWS IoT certificate id: lowercase hex SHA-256 of @der. */
int aws_cert_id(const uint8_t *der, size_t len, char ret[AWS_CERT_ID_LEN + 1]);

struct aws_template_var {
        const char *name;               /* "region": the template says ${provd:region} */
        const char *value;              /* NULL: known but not set (an error if used) */
};
/**
 * Expands ${provd:NAME} in @tmpl from @vars; every other ${...} (AWS policy
 * variables such as ${iot:Connection.Thing.ThingName}, JITP parameters such
 * as ${AWS::IoT::Certificate::CommonName}) is left as it is. An unknown or
 * unset provd variable is -EINVAL with the name in @err. Values are inserted
 * verbatim: callers pass only values checked to need no JSON escaping.
 */
int aws_template_expand(const char *tmpl, const struct aws_template_var *vars, size_t n_vars, char **ret,
                        char *err, size_t errlen);

/**
 * Region from an AWS IoT control-plane host: iot.REGION.amazonaws.com (also
 * .amazonaws.com.cn and iot-fips.). @endpoint may be a URL or a bare host.
 * Returns the region length, -ENOENT if the host is not of that form (an
 * endpoint override: the region must then be configured), -ENOBUFS.
 */
int aws_endpoint_region(const char *endpoint, char *buf, size_t size);
/** [a-z0-9-]{1,32}: what a region name can be. */
bool aws_region_valid(const char *s);

#endif
