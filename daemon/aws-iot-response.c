/* SPDX-License-Identifier: MIT */
/* AWS IoT control-plane responses: error codes classified, success bodies parsed and validated. */

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws-iot.h"
#include "util.h"
#include "aws-iot-internal.h"

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
        return aws_charset(s, 1, AWS_REG_CODE_MAX, "");
}

static bool status_valid(const char *s) {
        return aws_charset(s, 1, 31, "_");
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
