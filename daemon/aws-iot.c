/* SPDX-License-Identifier: MIT */
/* AWS IoT control-plane operations: request building (paths, queries, JSON bodies) and response/error parsing. */

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws-iot.h"
#include "util.h"

static const char *const op_names[AWS_OP_MAX] = {
        [AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA] = "RegisterCertificateWithoutCA",
        [AWS_OP_REGISTER_CERTIFICATE] = "RegisterCertificate",
        [AWS_OP_DESCRIBE_CERTIFICATE] = "DescribeCertificate",
        [AWS_OP_UPDATE_CERTIFICATE] = "UpdateCertificate",
        [AWS_OP_CREATE_THING] = "CreateThing",
        [AWS_OP_UPDATE_THING] = "UpdateThing",
        [AWS_OP_CREATE_POLICY] = "CreatePolicy",
        [AWS_OP_ATTACH_POLICY] = "AttachPolicy",
        [AWS_OP_ATTACH_THING_PRINCIPAL] = "AttachThingPrincipal",
        [AWS_OP_LIST_ATTACHED_POLICIES] = "ListAttachedPolicies",
        [AWS_OP_GET_REGISTRATION_CODE] = "GetRegistrationCode",
        [AWS_OP_REGISTER_CA_CERTIFICATE] = "RegisterCACertificate",
        [AWS_OP_DESCRIBE_CA_CERTIFICATE] = "DescribeCACertificate",
};

const char *aws_op_name(enum aws_op op) {
        return (unsigned)op < AWS_OP_MAX ? op_names[op] : "?";
}

int aws_op_from_name(const char *name) {
        for (int i = 0; i < AWS_OP_MAX; i++)
                if (streq(op_names[i], name))
                        return i;
        return -EINVAL;
}

const char *aws_class_name(enum aws_class c) {
        switch (c) {
        case AWS_OK: return "ok";
        case AWS_RETRY: return "retryable";
        case AWS_PERMANENT: return "permanent";
        case AWS_CREDENTIALS: return "credentials";
        }
        return "?";
}

void aws_request_done(struct aws_request *r) {
        if (!r)
                return;
        r->body = (free(r->body), NULL);
        r->body_len = 0;
}

/* ---- encoding ---- */

static bool unreserved(unsigned char ch) {
        return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
               ch == '-' || ch == '_' || ch == '.' || ch == '~';
}

int aws_uri_encode(const char *s, size_t len, char *buf, size_t size) {
        static const char hex[] = "0123456789ABCDEF";
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)s[i];
                if (unreserved(ch)) {
                        if (o + 1 >= size)
                                return -ENOBUFS;
                        buf[o++] = (char)ch;
                } else {
                        if (o + 3 >= size)
                                return -ENOBUFS;
                        buf[o++] = '%';
                        buf[o++] = hex[ch >> 4];
                        buf[o++] = hex[ch & 15];
                }
        }
        if (o >= size)
                return -ENOBUFS;
        buf[o] = 0;
        return (int)o;
}

int aws_path_append(char *buf, size_t size, const char *seg) {
        size_t used = strnlen(buf, size);

        /* "." and ".." would be removed by URI normalisation on either side. */
        if (!seg || !*seg || streq(seg, ".") || streq(seg, ".."))
                return -EINVAL;
        if (used + 2 > size)
                return -ENOBUFS;
        buf[used] = '/';
        int r = aws_uri_encode(seg, strlen(seg), buf + used + 1, size - used - 1);
        if (r < 0) {
                buf[used] = 0;
                return r;
        }
        return 0;
}

struct enc_param {
        char key[128];
        char value[AWS_QUERY_MAX];
};

static int cmp_param(const void *a, const void *b) {
        const struct enc_param *x = a, *y = b;
        int c = strcmp(x->key, y->key);
        return c ? c : strcmp(x->value, y->value);
}

int aws_query_build(const struct aws_query_param *params, size_t n, char *buf, size_t size) {
        _cleanup_free_ struct enc_param *e = NULL;
        size_t o = 0;
        int r;

        if (size == 0)
                return -ENOBUFS;
        buf[0] = 0;
        if (n == 0)
                return 0;
        if (n > 16)
                return -E2BIG;
        e = calloc(n, sizeof *e);
        if (!e)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (isempty(params[i].key) || !params[i].value)
                        return -EINVAL;
                r = aws_uri_encode(params[i].key, strlen(params[i].key), e[i].key, sizeof e[i].key);
                if (r < 0)
                        return r;
                r = aws_uri_encode(params[i].value, strlen(params[i].value), e[i].value, sizeof e[i].value);
                if (r < 0)
                        return r;
        }
        /* SigV4 sorts by the encoded names (byte order). */
        qsort(e, n, sizeof *e, cmp_param);
        for (size_t i = 0; i < n; i++) {
                int w = snprintf(buf + o, size - o, "%s%s=%s", i ? "&" : "", e[i].key, e[i].value);
                if (w < 0 || (size_t)w >= size - o) {
                        buf[0] = 0;
                        return -ENOBUFS;
                }
                o += (size_t)w;
        }
        return (int)o;
}

/* ---- names ---- */

static bool charset(const char *s, size_t min, size_t max, const char *extra) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, max + 1);
        if (n < min || n > max)
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)s[i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                      (ch && strchr(extra, ch))))
                        return false;
        }
        return true;
}

bool aws_thing_name_valid(const char *s) {
        return charset(s, 1, AWS_NAME_MAX, "_-");
}

bool aws_policy_name_valid(const char *s) {
        if (!charset(s, 1, AWS_NAME_MAX, "_.-"))
                return false;
        return strspn(s, ".") != strlen(s);
}

bool aws_attr_name_valid(const char *s) {
        return charset(s, 1, 128, "_.,@/:#-");
}

bool aws_attr_value_valid(const char *s) {
        return charset(s, 0, AWS_ATTR_VALUE_MAX, "_.,@/:#=[]-");
}

bool aws_cert_id_valid(const char *s) {
        if (!s || strnlen(s, AWS_CERT_ID_LEN + 1) != AWS_CERT_ID_LEN)
                return false;
        for (size_t i = 0; i < AWS_CERT_ID_LEN; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

bool aws_arn_valid(const char *s) {
        size_t n;

        if (!s || strncmp(s, "arn:", 4) != 0)
                return false;
        n = strnlen(s, AWS_ARN_MAX + 1);
        if (n > AWS_ARN_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
                        return false;
        return true;
}

bool aws_region_valid(const char *s) {
        return charset(s, 1, 32, "-") && strpbrk(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == NULL;
}

/* ---- requests ---- */

static int begin(struct aws_request *r, enum aws_op op, const char *method, const char *first) {
        *r = (struct aws_request) { .op = op, .method = method };
        snprintf(r->path, sizeof r->path, "%s", first);
        return 0;
}

/* Takes @json: the body is its unformatted text. */
static int set_body(struct aws_request *r, cJSON *json) {
        char *text;

        if (!json)
                return -ENOMEM;
        text = cJSON_PrintUnformatted(json);
        cJSON_Delete(json);
        if (!text)
                return -ENOMEM;
        r->body = text;
        r->body_len = strlen(text);
        return 0;
}

static bool add_str(cJSON *o, const char *k, const char *v) {
        return cJSON_AddStringToObject(o, k, v) != NULL;
}

static bool pem_plausible(const char *pem) {
        return pem && strncmp(pem, "-----BEGIN CERTIFICATE-----", 27) == 0 && strlen(pem) <= 65536;
}

int aws_req_register_certificate(struct aws_request *ret, const char *cert_pem, const char *ca_pem) {
        struct aws_request r;
        cJSON *j;

        if (!pem_plausible(cert_pem) || (ca_pem && !pem_plausible(ca_pem)))
                return -EINVAL;
        if (ca_pem)
                begin(&r, AWS_OP_REGISTER_CERTIFICATE, "POST", "/certificate/register");
        else
                begin(&r, AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA, "POST", "/certificate/register-no-ca");
        j = cJSON_CreateObject();
        if (!j || !add_str(j, "certificatePem", cert_pem) ||
            (ca_pem && !add_str(j, "caCertificatePem", ca_pem)) || !add_str(j, "status", "ACTIVE"))
                return cJSON_Delete(j), -ENOMEM;
        int e = set_body(&r, j);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

static int cert_path(struct aws_request *r, enum aws_op op, const char *method, const char *first,
                     const char *id) {
        if (!aws_cert_id_valid(id))
                return -EINVAL;
        begin(r, op, method, first);
        return aws_path_append(r->path, sizeof r->path, id);
}

int aws_req_describe_certificate(struct aws_request *ret, const char *cert_id) {
        struct aws_request r;
        int e = cert_path(&r, AWS_OP_DESCRIBE_CERTIFICATE, "GET", "/certificates", cert_id);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

int aws_req_update_certificate(struct aws_request *ret, const char *cert_id, const char *status) {
        struct aws_request r;
        int e;

        if (!status || (!streq(status, "ACTIVE") && !streq(status, "INACTIVE")))
                return -EINVAL;
        e = cert_path(&r, AWS_OP_UPDATE_CERTIFICATE, "PUT", "/certificates", cert_id);
        if (e < 0)
                return e;
        e = aws_query_build(&(struct aws_query_param) { "newStatus", status }, 1, r.query, sizeof r.query);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

static cJSON *attr_payload(const struct aws_thing_attr *attrs, size_t n, bool merge) {
        cJSON *p = cJSON_CreateObject(), *a = cJSON_AddObjectToObject(p, "attributes");

        if (!p || !a)
                return cJSON_Delete(p), NULL;
        for (size_t i = 0; i < n; i++) {
                if (isempty(attrs[i].value))
                        continue;
                if (!add_str(a, attrs[i].name, attrs[i].value))
                        return cJSON_Delete(p), NULL;
        }
        if (merge && !cJSON_AddBoolToObject(p, "merge", true))
                return cJSON_Delete(p), NULL;
        return p;
}

static int thing_req(struct aws_request *ret, enum aws_op op, const char *method, const char *thing,
                     const char *thing_type, const struct aws_thing_attr *attrs, size_t n) {
        struct aws_request r;
        cJSON *j, *p;
        int e;

        if (!aws_thing_name_valid(thing) || (thing_type && !aws_thing_name_valid(thing_type)) || n > 50 ||
            (n && !attrs))
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (!aws_attr_name_valid(attrs[i].name) || !aws_attr_value_valid(attrs[i].value ? attrs[i].value : ""))
                        return -EINVAL;
        begin(&r, op, method, "/things");
        e = aws_path_append(r.path, sizeof r.path, thing);
        if (e < 0)
                return e;
        j = cJSON_CreateObject();
        if (!j)
                return -ENOMEM;
        if (thing_type && !add_str(j, "thingTypeName", thing_type))
                return cJSON_Delete(j), -ENOMEM;
        p = attr_payload(attrs, n, op == AWS_OP_UPDATE_THING);
        if (!p || !cJSON_AddItemToObject(j, "attributePayload", p))
                return cJSON_Delete(p), cJSON_Delete(j), -ENOMEM;
        e = set_body(&r, j);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

int aws_req_create_thing(struct aws_request *ret, const char *thing, const char *thing_type,
                         const struct aws_thing_attr *attrs, size_t n_attrs) {
        return thing_req(ret, AWS_OP_CREATE_THING, "POST", thing, thing_type, attrs, n_attrs);
}

int aws_req_update_thing(struct aws_request *ret, const char *thing, const char *thing_type,
                         const struct aws_thing_attr *attrs, size_t n_attrs) {
        return thing_req(ret, AWS_OP_UPDATE_THING, "PATCH", thing, thing_type, attrs, n_attrs);
}

int aws_req_create_policy(struct aws_request *ret, const char *policy, const char *document) {
        struct aws_request r;
        cJSON *doc, *j;
        int e;

        if (!aws_policy_name_valid(policy) || !document || strlen(document) > AWS_POLICY_MAX)
                return -EINVAL;
        doc = cJSON_Parse(document);
        bool ok = cJSON_IsObject(doc);
        cJSON_Delete(doc);
        if (!ok)
                return -EINVAL;
        begin(&r, AWS_OP_CREATE_POLICY, "POST", "/policies");
        e = aws_path_append(r.path, sizeof r.path, policy);
        if (e < 0)
                return e;
        /* policyDocument is a string holding JSON, sent as the operator wrote it. */
        j = cJSON_CreateObject();
        if (!j || !add_str(j, "policyDocument", document))
                return cJSON_Delete(j), -ENOMEM;
        e = set_body(&r, j);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

int aws_req_attach_policy(struct aws_request *ret, const char *policy, const char *target_arn) {
        struct aws_request r;
        cJSON *j;
        int e;

        if (!aws_policy_name_valid(policy) || !aws_arn_valid(target_arn))
                return -EINVAL;
        begin(&r, AWS_OP_ATTACH_POLICY, "PUT", "/target-policies");
        e = aws_path_append(r.path, sizeof r.path, policy);
        if (e < 0)
                return e;
        j = cJSON_CreateObject();
        if (!j || !add_str(j, "target", target_arn))
                return cJSON_Delete(j), -ENOMEM;
        e = set_body(&r, j);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

int aws_req_attach_thing_principal(struct aws_request *ret, const char *thing, const char *principal_arn) {
        struct aws_request r;
        int e;

        if (!aws_thing_name_valid(thing) || !aws_arn_valid(principal_arn))
                return -EINVAL;
        begin(&r, AWS_OP_ATTACH_THING_PRINCIPAL, "PUT", "/things");
        e = aws_path_append(r.path, sizeof r.path, thing);
        if (e < 0)
                return e;
        if (strlen(r.path) + sizeof "/principals" > sizeof r.path)
                return -ENOBUFS;
        strcat(r.path, "/principals");
        e = aws_query_build(&(struct aws_query_param) { "thingPrincipalType", "EXCLUSIVE_THING" }, 1,
                            r.query, sizeof r.query);
        if (e < 0)
                return e;
        snprintf(r.principal, sizeof r.principal, "%s", principal_arn);
        *ret = r;
        return 0;
}

int aws_req_list_attached_policies(struct aws_request *ret, const char *target_arn, unsigned page_size) {
        struct aws_request r;
        char ps[16];
        int e;

        if (!aws_arn_valid(target_arn) || page_size == 0 || page_size > 250)
                return -EINVAL;
        /* POST with no body: that is how the API is defined. The ARN is one
         * path segment, its ':' and '/' encoded once. */
        begin(&r, AWS_OP_LIST_ATTACHED_POLICIES, "POST", "/attached-policies");
        e = aws_path_append(r.path, sizeof r.path, target_arn);
        if (e < 0)
                return e;
        snprintf(ps, sizeof ps, "%u", page_size);
        e = aws_query_build((const struct aws_query_param[]) { { "recursive", "false" }, { "pageSize", ps } }, 2,
                            r.query, sizeof r.query);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

int aws_req_get_registration_code(struct aws_request *ret) {
        begin(ret, AWS_OP_GET_REGISTRATION_CODE, "GET", "/registrationcode");
        return 0;
}

int aws_req_register_ca_certificate(struct aws_request *ret, const struct aws_ca_registration *reg) {
        struct aws_request r;
        cJSON *j;
        int e;

        if (!reg || !pem_plausible(reg->ca_pem) || (reg->verification_pem && !pem_plausible(reg->verification_pem)))
                return -EINVAL;
        if ((reg->template_body == NULL) != (reg->role_arn == NULL) ||
            (reg->template_body && strlen(reg->template_body) > AWS_TEMPLATE_BODY_MAX) ||
            (reg->role_arn && !aws_arn_valid(reg->role_arn)))
                return -EINVAL;
        begin(&r, AWS_OP_REGISTER_CA_CERTIFICATE, "POST", "/cacertificate");
        e = aws_query_build((const struct aws_query_param[]) {
                                { "setAsActive", reg->set_as_active ? "true" : "false" },
                                { "allowAutoRegistration", reg->allow_auto_registration ? "true" : "false" } },
                            2, r.query, sizeof r.query);
        if (e < 0)
                return e;
        j = cJSON_CreateObject();
        if (!j || !add_str(j, "caCertificate", reg->ca_pem) ||
            !add_str(j, "certificateMode", reg->verification_pem ? "DEFAULT" : "SNI_ONLY") ||
            (reg->verification_pem && !add_str(j, "verificationCertificate", reg->verification_pem)))
                return cJSON_Delete(j), -ENOMEM;
        if (reg->template_body) {
                cJSON *rc = cJSON_AddObjectToObject(j, "registrationConfig");
                if (!rc || !add_str(rc, "templateBody", reg->template_body) || !add_str(rc, "roleArn", reg->role_arn))
                        return cJSON_Delete(j), -ENOMEM;
        }
        e = set_body(&r, j);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

int aws_req_describe_ca_certificate(struct aws_request *ret, const char *ca_cert_id) {
        struct aws_request r;
        int e = cert_path(&r, AWS_OP_DESCRIBE_CA_CERTIFICATE, "GET", "/cacertificate", ca_cert_id);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

/* ---- responses ---- */

static void copy_code(const char *s, size_t n, char buf[AWS_CODE_MAX + 1]) {
        size_t o = 0;

        for (size_t i = 0; i < n && s[i] && o < AWS_CODE_MAX; i++) {
                char ch = s[i];
                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                    ch == '_' || ch == '.')
                        buf[o++] = ch;
                else
                        break;
        }
        buf[o] = 0;
}

void aws_error_type_code(const char *value, char buf[AWS_CODE_MAX + 1]) {
        buf[0] = 0;
        if (!value)
                return;
        while (*value == ' ' || *value == '\t')
                value++;
        size_t n = strcspn(value, ":");
        copy_code(value, n, buf);
}

/* Printable ASCII only, so a message can go to a log line or a terminal as it is. */
static void copy_message(const char *s, char buf[AWS_MESSAGE_MAX + 1]) {
        size_t o = 0;

        for (; *s && o < AWS_MESSAGE_MAX; s++) {
                unsigned char ch = (unsigned char)*s;
                buf[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
        }
        buf[o] = 0;
}

static const char *const retry_codes[] = {
        "ThrottlingException", "TooManyRequestsException", "ServiceUnavailableException",
        "InternalFailureException", "InternalException", "InternalServerException",
        "RequestTimeoutException", "RequestTimeout", "ConflictingResourceUpdateException",
};

static const char *const credential_codes[] = {
        "ExpiredTokenException", "ExpiredToken", "UnrecognizedClientException", "InvalidSignatureException",
        "SignatureDoesNotMatch", "InvalidClientTokenId", "IncompleteSignature",
};

enum aws_class aws_classify(long status, const char *code) {
        if (status >= 200 && status < 300)
                return AWS_OK;
        if (status == 429 || status >= 500)
                return AWS_RETRY;
        if (code)
                for (size_t i = 0; i < ELEMENTSOF(retry_codes); i++)
                        if (streq(code, retry_codes[i]))
                                return AWS_RETRY;
        if (code)
                for (size_t i = 0; i < ELEMENTSOF(credential_codes); i++)
                        if (streq(code, credential_codes[i]))
                                return AWS_CREDENTIALS;
        return AWS_PERMANENT;
}

void aws_response_transport(struct aws_response *ret, const char *code, const char *message, bool retryable) {
        *ret = (struct aws_response) { .cls = retryable ? AWS_RETRY : AWS_PERMANENT };
        copy_code(code, strlen(code), ret->code);
        copy_message(message ? message : "", ret->message);
}

static const char *jstr(const cJSON *o, const char *k) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool take(const cJSON *o, const char *k, char *buf, size_t size, bool (*valid)(const char *)) {
        const char *v = jstr(o, k);

        if (!v || strlen(v) >= size || (valid && !valid(v)))
                return false;
        memcpy(buf, v, strlen(v) + 1);
        return true;
}

static bool reg_code_valid(const char *s) {
        return charset(s, 1, AWS_REG_CODE_MAX, "");
}

static bool status_valid(const char *s) {
        return charset(s, 1, 31, "_");
}

static bool parse_success(enum aws_op op, const cJSON *j, struct aws_response *r) {
        const cJSON *d;

        switch (op) {
        case AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA:
        case AWS_OP_REGISTER_CERTIFICATE:
        case AWS_OP_REGISTER_CA_CERTIFICATE:
                return take(j, "certificateId", r->certificate_id, sizeof r->certificate_id, aws_cert_id_valid) &&
                       take(j, "certificateArn", r->certificate_arn, sizeof r->certificate_arn, aws_arn_valid);
        case AWS_OP_DESCRIBE_CERTIFICATE:
        case AWS_OP_DESCRIBE_CA_CERTIFICATE:
                d = cJSON_GetObjectItemCaseSensitive(j, "certificateDescription");
                return cJSON_IsObject(d) &&
                       take(d, "certificateId", r->certificate_id, sizeof r->certificate_id, aws_cert_id_valid) &&
                       take(d, "certificateArn", r->certificate_arn, sizeof r->certificate_arn, aws_arn_valid) &&
                       take(d, "status", r->certificate_status, sizeof r->certificate_status, status_valid);
        case AWS_OP_CREATE_THING:
                return take(j, "thingArn", r->thing_arn, sizeof r->thing_arn, aws_arn_valid);
        case AWS_OP_CREATE_POLICY:
                return take(j, "policyArn", r->policy_arn, sizeof r->policy_arn, aws_arn_valid);
        case AWS_OP_GET_REGISTRATION_CODE:
                return take(j, "registrationCode", r->registration_code, sizeof r->registration_code,
                            reg_code_valid);
        case AWS_OP_LIST_ATTACHED_POLICIES: {
                const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "policies"), *p;
                if (!cJSON_IsArray(list))
                        return false;
                cJSON_ArrayForEach(p, list) {
                        if (r->n_policies == AWS_LIST_MAX) {
                                r->truncated_list = true;
                                break;
                        }
                        if (!take(p, "policyName", r->policies[r->n_policies], AWS_NAME_MAX + 1, NULL))
                                return false;
                        r->n_policies++;
                }
                if (jstr(j, "nextMarker"))
                        r->truncated_list = true;
                return true;
        }
        case AWS_OP_UPDATE_CERTIFICATE:
        case AWS_OP_UPDATE_THING:
        case AWS_OP_ATTACH_POLICY:
        case AWS_OP_ATTACH_THING_PRINCIPAL:
        case AWS_OP_MAX:
                break;
        }
        return true;            /* no body expected: whatever came is fine */
}

static bool needs_body(enum aws_op op) {
        switch (op) {
        case AWS_OP_UPDATE_CERTIFICATE:
        case AWS_OP_UPDATE_THING:
        case AWS_OP_ATTACH_POLICY:
        case AWS_OP_ATTACH_THING_PRINCIPAL:
                return false;
        default:
                return true;
        }
}

int aws_response_parse(enum aws_op op, long status, const char *error_type, const char *body, size_t len,
                       struct aws_response *ret) {
        struct aws_response r = { .status = status };
        cJSON *j = NULL;

        if ((unsigned)op >= AWS_OP_MAX || !ret || (len && !body))
                return -EINVAL;
        if (len)
                j = cJSON_ParseWithLength(body, len);
        r.cls = aws_classify(status, NULL);
        if (r.cls == AWS_OK) {
                if (needs_body(op) && (!cJSON_IsObject(j) || !parse_success(op, j, &r))) {
                        /* Fields may be half filled: start over with only the error. */
                        r = (struct aws_response) { .status = status, .cls = AWS_RETRY };
                        snprintf(r.code, sizeof r.code, "BadResponse");
                        snprintf(r.message, sizeof r.message, "%s answered HTTP %ld without the expected fields",
                                 aws_op_name(op), status);
                }
                cJSON_Delete(j);
                *ret = r;
                return 0;
        }

        /* Error: the header names the code; the body is the fallback. */
        aws_error_type_code(error_type, r.code);
        if (cJSON_IsObject(j)) {
                const char *t = jstr(j, "__type");
                if (!r.code[0] && t) {
                        const char *hash = strrchr(t, '#');
                        aws_error_type_code(hash ? hash + 1 : t, r.code);
                }
                if (!r.code[0] && (t = jstr(j, "code")))
                        aws_error_type_code(t, r.code);
                if (!r.code[0] && (t = jstr(j, "Code")))
                        aws_error_type_code(t, r.code);
                const char *m = jstr(j, "message");
                if (!m)
                        m = jstr(j, "Message");
                if (!m)
                        m = jstr(j, "errorMessage");
                if (m)
                        copy_message(m, r.message);
        }
        cJSON_Delete(j);
        if (!r.message[0])
                snprintf(r.message, sizeof r.message, "HTTP %ld%s%s", status, r.code[0] ? " " : "", r.code);
        r.cls = aws_classify(status, r.code);
        *ret = r;
        return 0;
}

/* ---- helpers ---- */

int aws_pem_from_der(const uint8_t *der, size_t len, char **ret) {
        static const char head[] = "-----BEGIN CERTIFICATE-----\n", tail[] = "-----END CERTIFICATE-----\n";
        _cleanup_free_ char *b64 = NULL, *pem = NULL;
        size_t b64len, o = 0;

        if (!der || len == 0 || len > 32768)
                return -EINVAL;
        b64 = malloc(4 * ((len + 2) / 3) + 1);
        if (!b64)
                return -ENOMEM;
        b64len = (size_t)EVP_EncodeBlock((unsigned char *)b64, der, (int)len);
        pem = malloc(sizeof head + b64len + b64len / 64 + 2 + sizeof tail);
        if (!pem)
                return -ENOMEM;
        memcpy(pem, head, sizeof head - 1);
        o = sizeof head - 1;
        for (size_t i = 0; i < b64len; i += 64) {
                size_t n = MIN((size_t)64, b64len - i);
                memcpy(pem + o, b64 + i, n);
                o += n;
                pem[o++] = '\n';
        }
        memcpy(pem + o, tail, sizeof tail);
        *ret = TAKE_PTR(pem);
        return 0;
}

int aws_cert_id(const uint8_t *der, size_t len, char ret[AWS_CERT_ID_LEN + 1]) {
        uint8_t md[32];
        unsigned mdlen = 0;

        if (!der || len == 0)
                return -EINVAL;
        if (!EVP_Digest(der, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
                return -EIO;
        hex_encode(md, 32, ret, false);
        return 0;
}

int aws_template_expand(const char *tmpl, const struct aws_template_var *vars, size_t n_vars, char **ret,
                        char *err, size_t errlen) {
        static const char prefix[] = "${provd:";
        _cleanup_free_ char *out = NULL;
        size_t cap, o = 0, tlen;

        if (!tmpl)
                return -EINVAL;
        tlen = strlen(tmpl);
        if (tlen > AWS_POLICY_MAX)
                return snprintf(err, errlen, "template longer than %d bytes", AWS_POLICY_MAX), -E2BIG;
        cap = AWS_POLICY_MAX + 1;
        out = malloc(cap);
        if (!out)
                return -ENOMEM;
        for (const char *p = tmpl; *p;) {
                const char *v = NULL;
                size_t skip = 1;

                if (strncmp(p, prefix, sizeof prefix - 1) == 0) {
                        const char *name = p + sizeof prefix - 1, *end = strchr(name, '}');
                        size_t nlen = end ? (size_t)(end - name) : 0;
                        size_t i;

                        if (!end)
                                return snprintf(err, errlen, "unterminated ${provd:"), -EINVAL;
                        for (i = 0; i < n_vars; i++)
                                if (strlen(vars[i].name) == nlen && strncmp(vars[i].name, name, nlen) == 0)
                                        break;
                        if (i == n_vars)
                                return snprintf(err, errlen, "unknown variable ${provd:%.*s}", (int)MIN(nlen, (size_t)64),
                                                name), -EINVAL;
                        if (!vars[i].value)
                                return snprintf(err, errlen, "${provd:%s} is used but not configured",
                                                vars[i].name), -EINVAL;
                        v = vars[i].value;
                        /* Inserted verbatim, inside JSON strings: nothing that would need escaping. */
                        for (const char *q = v; *q; q++)
                                if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f || *q == '"' || *q == '\\')
                                        return snprintf(err, errlen, "the value of ${provd:%s} has a character that "
                                                        "cannot go into JSON unescaped", vars[i].name), -EINVAL;
                        skip = (size_t)(end - p) + 1;
                }
                size_t n = v ? strlen(v) : 1;
                if (o + n >= cap)
                        return snprintf(err, errlen, "expanded template longer than %d bytes", AWS_POLICY_MAX), -E2BIG;
                memcpy(out + o, v ? v : p, n);
                o += n;
                p += skip;
        }
        out[o] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

int aws_endpoint_region(const char *endpoint, char *buf, size_t size) {
        const char *h = endpoint, *end, *dot;
        size_t hlen, n;

        if (!endpoint)
                return -EINVAL;
        if (strncasecmp(h, "https://", 8) == 0)
                h += 8;
        else if (strncasecmp(h, "http://", 7) == 0)
                h += 7;
        hlen = strcspn(h, ":/");
        if (hlen > 4 && strncasecmp(h, "iot.", 4) == 0)
                h += 4, hlen -= 4;
        else if (hlen > 9 && strncasecmp(h, "iot-fips.", 9) == 0)
                h += 9, hlen -= 9;
        else
                return -ENOENT;
        dot = memchr(h, '.', hlen);
        if (!dot)
                return -ENOENT;
        end = h + hlen;
        if (!((size_t)(end - dot) == strlen(".amazonaws.com") && strncasecmp(dot, ".amazonaws.com", 14) == 0) &&
            !((size_t)(end - dot) == strlen(".amazonaws.com.cn") && strncasecmp(dot, ".amazonaws.com.cn", 17) == 0))
                return -ENOENT;
        n = (size_t)(dot - h);
        if (n + 1 > size)
                return -ENOBUFS;
        memcpy(buf, h, n);
        buf[n] = 0;
        if (!aws_region_valid(buf))
                return -ENOENT;
        return (int)n;
}
