/* SPDX-License-Identifier: MIT */
/* AWS IoT control-plane requests: method, path, query and JSON body of each operation, inputs validated. */

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws-iot.h"
#include "util.h"
#include "aws-iot-internal.h"

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
