/* SPDX-License-Identifier: MIT */
/* Unit tests: AWS IoT request building (encoding, names, bodies) and response/error parsing. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "aws-iot.h"

#define ARN "arn:aws:iot:eu-west-1:123456789012:cert/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CERT_ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define PEM "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

static void test_uri_encode(void **state) {
        char buf[64];

        assert_int_equal(aws_uri_encode("AZaz09-_.~", 10, buf, sizeof buf), 10);
        assert_string_equal(buf, "AZaz09-_.~");
        assert_int_equal(aws_uri_encode("a b/c:d", 7, buf, sizeof buf), 13);
        assert_string_equal(buf, "a%20b%2Fc%3Ad");
        /* Upper-case hex, every byte of UTF-8, '%' itself encoded (nothing left that decodes twice). */
        aws_uri_encode("\xc3\xa9%+=", 5, buf, sizeof buf);
        assert_string_equal(buf, "%C3%A9%25%2B%3D");
        /* Too small: refused, not truncated. */
        assert_int_equal(aws_uri_encode("abc", 3, buf, 3), -ENOBUFS);
        assert_int_equal(aws_uri_encode(":", 1, buf, 3), -ENOBUFS);
        assert_int_equal(aws_uri_encode(":", 1, buf, 4), 3);
}

static void test_path_append(void **state) {
        char path[64] = "/certificates";

        assert_int_equal(aws_path_append(path, sizeof path, "abc"), 0);
        assert_string_equal(path, "/certificates/abc");
        assert_int_equal(aws_path_append(path, sizeof path, ""), -EINVAL);
        assert_int_equal(aws_path_append(path, sizeof path, "."), -EINVAL);
        assert_int_equal(aws_path_append(path, sizeof path, ".."), -EINVAL);
        char small[24] = "/certificates";
        assert_int_equal(aws_path_append(small, sizeof small, "0123456789ab"), -ENOBUFS);
        assert_string_equal(small, "/certificates");    /* unchanged on failure */
}

static void test_query_sorted_and_encoded(void **state) {
        char q[128];
        const struct aws_query_param p[] = {
                { "setAsActive", "true" }, { "allowAutoRegistration", "true" }, { "a b", "x/y" },
                { "Zed", "1" }, { "pageSize", "2" },
        };

        /* Byte order of the encoded names: upper case sorts before lower case, "%" before letters. */
        assert_true(aws_query_build(p, 5, q, sizeof q) > 0);
        assert_string_equal(q, "Zed=1&a%20b=x%2Fy&allowAutoRegistration=true&pageSize=2&setAsActive=true");
        const struct aws_query_param same[] = { { "k", "b" }, { "k", "a" } };
        aws_query_build(same, 2, q, sizeof q);
        assert_string_equal(q, "k=a&k=b");
        assert_int_equal(aws_query_build(p, 0, q, sizeof q), 0);
        assert_string_equal(q, "");
        assert_int_equal(aws_query_build(p, 5, q, 20), -ENOBUFS);
        assert_int_equal(aws_query_build(&(struct aws_query_param) { "", "x" }, 1, q, sizeof q), -EINVAL);
}

static void test_names(void **state) {
        char long_name[130];

        assert_true(aws_thing_name_valid("board-007_A"));
        assert_false(aws_thing_name_valid("a:b"));      /* AWS allows it; needs encoding */
        assert_false(aws_thing_name_valid("a b"));
        assert_false(aws_thing_name_valid(""));
        assert_false(aws_thing_name_valid(NULL));
        memset(long_name, 'a', 128);
        long_name[128] = 0;
        assert_true(aws_thing_name_valid(long_name));
        long_name[128] = 'a', long_name[129] = 0;
        assert_false(aws_thing_name_valid(long_name));

        assert_true(aws_policy_name_valid("provd.device-policy_1"));
        assert_false(aws_policy_name_valid("..."));
        assert_false(aws_policy_name_valid("a+b"));     /* AWS allows +=,@; they need encoding */
        assert_false(aws_policy_name_valid("a@b"));

        assert_true(aws_attr_value_valid(""));
        assert_true(aws_attr_value_valid("1.2.3-rc1/b#4"));
        assert_false(aws_attr_value_valid("has space"));
        assert_false(aws_attr_value_valid("quote\""));
        assert_true(aws_cert_id_valid(CERT_ID));
        assert_false(aws_cert_id_valid("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
        assert_false(aws_cert_id_valid("0123"));
        assert_true(aws_arn_valid(ARN));
        assert_false(aws_arn_valid("arn:with space"));
        assert_false(aws_arn_valid("nope"));
}

static cJSON *body(const struct aws_request *r) {
        cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
        assert_non_null(j);
        return j;
}

static void test_requests(void **state) {
        struct aws_request r;
        cJSON *j;

        assert_int_equal(aws_req_register_certificate(&r, PEM, NULL), 0);
        assert_int_equal(r.op, AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA);
        assert_string_equal(r.method, "POST");
        assert_string_equal(r.path, "/certificate/register-no-ca");
        j = body(&r);
        assert_string_equal(cJSON_GetObjectItem(j, "certificatePem")->valuestring, PEM);
        assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "ACTIVE");
        assert_null(cJSON_GetObjectItem(j, "caCertificatePem"));
        cJSON_Delete(j);
        aws_request_done(&r);

        assert_int_equal(aws_req_register_certificate(&r, PEM, PEM), 0);
        assert_string_equal(r.path, "/certificate/register");
        j = body(&r);
        assert_non_null(cJSON_GetObjectItem(j, "caCertificatePem"));
        cJSON_Delete(j);
        aws_request_done(&r);
        assert_int_equal(aws_req_register_certificate(&r, "not a pem", NULL), -EINVAL);

        assert_int_equal(aws_req_describe_certificate(&r, CERT_ID), 0);
        assert_string_equal(r.path, "/certificates/" CERT_ID);
        assert_null(r.body);
        assert_int_equal(aws_req_describe_certificate(&r, "../x"), -EINVAL);

        assert_int_equal(aws_req_update_certificate(&r, CERT_ID, "ACTIVE"), 0);
        assert_string_equal(r.method, "PUT");
        assert_string_equal(r.query, "newStatus=ACTIVE");
        assert_int_equal(aws_req_update_certificate(&r, CERT_ID, "REVOKED"), -EINVAL);

        const struct aws_thing_attr attrs[] = { { "serial", "0A1B" }, { "model", "" }, { "firmware", "1.2" } };
        assert_int_equal(aws_req_create_thing(&r, "board-1", "board", attrs, 3), 0);
        assert_string_equal(r.path, "/things/board-1");
        j = body(&r);
        assert_string_equal(cJSON_GetObjectItem(j, "thingTypeName")->valuestring, "board");
        cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "attributePayload"), "attributes");
        assert_int_equal(cJSON_GetArraySize(a), 2);     /* the empty value is left out */
        assert_string_equal(cJSON_GetObjectItem(a, "serial")->valuestring, "0A1B");
        assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "attributePayload"), "merge"));
        cJSON_Delete(j);
        aws_request_done(&r);
        assert_int_equal(aws_req_create_thing(&r, "a:b", NULL, NULL, 0), -EINVAL);
        assert_int_equal(aws_req_create_thing(&r, "ok", NULL, (struct aws_thing_attr[]) { { "s", "a b" } }, 1),
                         -EINVAL);

        assert_int_equal(aws_req_update_thing(&r, "board-1", NULL, attrs, 1), 0);
        assert_string_equal(r.method, "PATCH");
        j = body(&r);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "attributePayload"), "merge")));
        cJSON_Delete(j);
        aws_request_done(&r);

        /* The document goes as a string, exactly as written; AWS policy variables untouched. */
        const char *doc = "{\"Statement\":[{\"Resource\":\"x/${iot:Connection.Thing.ThingName}\"}]}";
        assert_int_equal(aws_req_create_policy(&r, "provd-device", doc), 0);
        assert_string_equal(r.path, "/policies/provd-device");
        j = body(&r);
        assert_string_equal(cJSON_GetObjectItem(j, "policyDocument")->valuestring, doc);
        cJSON_Delete(j);
        aws_request_done(&r);
        assert_int_equal(aws_req_create_policy(&r, "p", "[1]"), -EINVAL);
        assert_int_equal(aws_req_create_policy(&r, "p", "{"), -EINVAL);

        assert_int_equal(aws_req_attach_policy(&r, "provd-device", ARN), 0);
        assert_string_equal(r.method, "PUT");
        assert_string_equal(r.path, "/target-policies/provd-device");
        j = body(&r);
        assert_string_equal(cJSON_GetObjectItem(j, "target")->valuestring, ARN);
        cJSON_Delete(j);
        aws_request_done(&r);

        assert_int_equal(aws_req_attach_thing_principal(&r, "board-1", ARN), 0);
        assert_string_equal(r.path, "/things/board-1/principals");
        assert_string_equal(r.query, "thingPrincipalType=EXCLUSIVE_THING");
        assert_string_equal(r.principal, ARN);
        assert_null(r.body);

        /* The ARN in the path: ':' and '/' encoded exactly once. */
        assert_int_equal(aws_req_list_attached_policies(&r, "arn:aws:iot:eu-west-1:1:cert/ab", 10), 0);
        assert_string_equal(r.path, "/attached-policies/arn%3Aaws%3Aiot%3Aeu-west-1%3A1%3Acert%2Fab");
        assert_string_equal(r.query, "pageSize=10&recursive=false");

        assert_int_equal(aws_req_get_registration_code(&r), 0);
        assert_string_equal(r.method, "GET");
        assert_string_equal(r.path, "/registrationcode");

        struct aws_ca_registration reg = { .ca_pem = PEM, .verification_pem = PEM, .allow_auto_registration = true,
                                           .set_as_active = true };
        assert_int_equal(aws_req_register_ca_certificate(&r, &reg), 0);
        assert_string_equal(r.path, "/cacertificate");
        assert_string_equal(r.query, "allowAutoRegistration=true&setAsActive=true");
        j = body(&r);
        assert_string_equal(cJSON_GetObjectItem(j, "certificateMode")->valuestring, "DEFAULT");
        assert_null(cJSON_GetObjectItem(j, "registrationConfig"));
        cJSON_Delete(j);
        aws_request_done(&r);
        reg.verification_pem = NULL;
        reg.template_body = "{\"Resources\":{}}";
        reg.role_arn = "arn:aws:iam::123456789012:role/JITP";
        assert_int_equal(aws_req_register_ca_certificate(&r, &reg), 0);
        j = body(&r);
        assert_string_equal(cJSON_GetObjectItem(j, "certificateMode")->valuestring, "SNI_ONLY");
        assert_null(cJSON_GetObjectItem(j, "verificationCertificate"));
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "registrationConfig"), "roleArn")->valuestring,
                            reg.role_arn);
        cJSON_Delete(j);
        aws_request_done(&r);
        reg.role_arn = NULL;            /* a template without a role */
        assert_int_equal(aws_req_register_ca_certificate(&r, &reg), -EINVAL);
}

static struct aws_response parse(enum aws_op op, long status, const char *hdr, const char *b) {
        struct aws_response r;
        assert_int_equal(aws_response_parse(op, status, hdr, b, b ? strlen(b) : 0, &r), 0);
        return r;
}

static void test_error_code_sources(void **state) {
        struct aws_response r;
        char code[AWS_CODE_MAX + 1];

        aws_error_type_code("ResourceAlreadyExistsException:http://internal.amazon.com/coral/com.amazonaws.iot/", code);
        assert_string_equal(code, "ResourceAlreadyExistsException");
        aws_error_type_code("  ThrottlingException", code);
        assert_string_equal(code, "ThrottlingException");
        aws_error_type_code("", code);
        assert_string_equal(code, "");

        /* Header first, whatever the body says. */
        r = parse(AWS_OP_CREATE_THING, 409, "ResourceAlreadyExistsException:http://x/",
                  "{\"__type\":\"com.amazonaws#Other\",\"message\":\"Thing board-1 already exists\"}");
        assert_string_equal(r.code, "ResourceAlreadyExistsException");
        assert_string_equal(r.message, "Thing board-1 already exists");
        assert_int_equal(r.cls, AWS_PERMANENT);
        /* Body __type after '#'. */
        r = parse(AWS_OP_CREATE_THING, 400, NULL, "{\"__type\":\"com.amazonaws.iot#ThrottlingException\",\"message\":\"Rate exceeded\"}");
        assert_string_equal(r.code, "ThrottlingException");
        assert_int_equal(r.cls, AWS_RETRY);
        /* Body "code"; "Message" capitalised. */
        r = parse(AWS_OP_CREATE_THING, 400, NULL, "{\"code\":\"InvalidRequestException\",\"Message\":\"bad\"}");
        assert_string_equal(r.code, "InvalidRequestException");
        assert_string_equal(r.message, "bad");
        assert_int_equal(r.cls, AWS_PERMANENT);
        /* HTML, empty, truncated JSON: status only, still classified. */
        r = parse(AWS_OP_CREATE_THING, 503, NULL, "<html><body>Service Unavailable</body></html>");
        assert_string_equal(r.code, "");
        assert_string_equal(r.message, "HTTP 503");
        assert_int_equal(r.cls, AWS_RETRY);
        r = parse(AWS_OP_CREATE_THING, 404, NULL, NULL);
        assert_int_equal(r.cls, AWS_PERMANENT);
        r = parse(AWS_OP_CREATE_THING, 400, NULL, "{\"__type\":\"Thrott");
        assert_int_equal(r.cls, AWS_PERMANENT);
        assert_string_equal(r.message, "HTTP 400");
        r = parse(AWS_OP_CREATE_THING, 429, NULL, "");
        assert_int_equal(r.cls, AWS_RETRY);
        /* Control characters never reach a message; codes keep their charset only. */
        r = parse(AWS_OP_CREATE_THING, 400, "Bad\x1b[31mCode", "{\"message\":\"a\\nb\\u0007c\"}");
        assert_string_equal(r.code, "Bad");
        assert_string_equal(r.message, "a?b?c");
}

static void test_classify(void **state) {
        assert_int_equal(aws_classify(200, NULL), AWS_OK);
        assert_int_equal(aws_classify(204, NULL), AWS_OK);
        assert_int_equal(aws_classify(400, "ThrottlingException"), AWS_RETRY);
        assert_int_equal(aws_classify(429, NULL), AWS_RETRY);
        assert_int_equal(aws_classify(500, "InternalFailureException"), AWS_RETRY);
        assert_int_equal(aws_classify(502, NULL), AWS_RETRY);
        assert_int_equal(aws_classify(503, "ServiceUnavailableException"), AWS_RETRY);
        assert_int_equal(aws_classify(403, "ExpiredTokenException"), AWS_CREDENTIALS);
        assert_int_equal(aws_classify(403, "InvalidSignatureException"), AWS_CREDENTIALS);
        assert_int_equal(aws_classify(403, "UnrecognizedClientException"), AWS_CREDENTIALS);
        assert_int_equal(aws_classify(403, "AccessDeniedException"), AWS_PERMANENT);
        assert_int_equal(aws_classify(400, "InvalidRequestException"), AWS_PERMANENT);
        assert_int_equal(aws_classify(409, "ResourceAlreadyExistsException"), AWS_PERMANENT);
        assert_int_equal(aws_classify(404, NULL), AWS_PERMANENT);
        /* Case matters: AWS codes are exact. */
        assert_int_equal(aws_classify(400, "throttlingexception"), AWS_PERMANENT);
}

static void test_success_bodies(void **state) {
        struct aws_response r;

        r = parse(AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA, 200, NULL,
                  "{\"certificateArn\":\"" ARN "\",\"certificateId\":\"" CERT_ID "\"}");
        assert_int_equal(r.cls, AWS_OK);
        assert_string_equal(r.certificate_id, CERT_ID);
        assert_string_equal(r.certificate_arn, ARN);
        /* A 200 without what the operation returns: retryable BadResponse, no half-filled fields. */
        r = parse(AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA, 200, NULL, "{\"certificateArn\":\"" ARN "\"}");
        assert_int_equal(r.cls, AWS_RETRY);
        assert_string_equal(r.code, "BadResponse");
        assert_string_equal(r.certificate_arn, "");
        r = parse(AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA, 200, NULL,
                  "{\"certificateArn\":\"not an arn\",\"certificateId\":\"" CERT_ID "\"}");
        assert_int_equal(r.cls, AWS_RETRY);
        r = parse(AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA, 200, NULL, "<html>");
        assert_int_equal(r.cls, AWS_RETRY);

        r = parse(AWS_OP_DESCRIBE_CERTIFICATE, 200, NULL,
                  "{\"certificateDescription\":{\"certificateArn\":\"" ARN "\",\"certificateId\":\"" CERT_ID
                  "\",\"status\":\"INACTIVE\",\"other\":[1,2,{}]}}");
        assert_int_equal(r.cls, AWS_OK);
        assert_string_equal(r.certificate_status, "INACTIVE");

        r = parse(AWS_OP_GET_REGISTRATION_CODE, 200, NULL, "{\"registrationCode\":\"abc123\"}");
        assert_string_equal(r.registration_code, "abc123");
        r = parse(AWS_OP_GET_REGISTRATION_CODE, 200, NULL, "{\"registrationCode\":\"abc 123\"}");
        assert_int_equal(r.cls, AWS_RETRY);      /* not a CN the verification certificate could take */

        /* Operations without an answer body accept any body, even none. */
        r = parse(AWS_OP_ATTACH_POLICY, 200, NULL, NULL);
        assert_int_equal(r.cls, AWS_OK);
        r = parse(AWS_OP_ATTACH_THING_PRINCIPAL, 200, NULL, "garbage");
        assert_int_equal(r.cls, AWS_OK);

        r = parse(AWS_OP_LIST_ATTACHED_POLICIES, 200, NULL,
                  "{\"policies\":[{\"policyName\":\"a\",\"policyArn\":\"x\"},{\"policyName\":\"b\"}],"
                  "\"nextMarker\":\"m\"}");
        assert_int_equal(r.cls, AWS_OK);
        assert_int_equal(r.n_policies, 2);
        assert_string_equal(r.policies[1], "b");
        assert_true(r.truncated_list);

        assert_int_equal(aws_response_parse(AWS_OP_MAX, 200, NULL, NULL, 0, &r), -EINVAL);
}

static void test_pem_and_id(void **state) {
        /* 48 bytes -> 64 base64 characters: exactly one full line. */
        uint8_t der[100];
        char *pem = NULL, id[65];

        memset(der, 0xab, sizeof der);
        assert_int_equal(aws_pem_from_der(der, 48, &pem), 0);
        assert_string_equal(pem, "-----BEGIN CERTIFICATE-----\n"
                                 "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6ur\n"
                                 "-----END CERTIFICATE-----\n");
        free(pem);
        assert_int_equal(aws_pem_from_der(der, 49, &pem), 0);
        assert_non_null(strstr(pem, "q6ur\nqw==\n-----END"));
        free(pem);
        /* SHA-256("abc"), the FIPS 180-2 example. */
        assert_int_equal(aws_cert_id((const uint8_t *)"abc", 3, id), 0);
        assert_string_equal(id, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_template(void **state) {
        const struct aws_template_var vars[] = {
                { "region", "eu-west-1" }, { "account", "123456789012" }, { "unset", NULL }, { "bad", "a\"b" },
        };
        char err[128] = "", *out = NULL;

        assert_int_equal(aws_template_expand("arn:aws:iot:${provd:region}:${provd:account}:client/"
                                             "${iot:Connection.Thing.ThingName} ${AWS::IoT::Certificate::Id} ${x} $",
                                             vars, 4, &out, err, sizeof err), 0);
        assert_string_equal(out, "arn:aws:iot:eu-west-1:123456789012:client/${iot:Connection.Thing.ThingName} "
                                 "${AWS::IoT::Certificate::Id} ${x} $");
        free(out);
        assert_int_equal(aws_template_expand("${provd:nope}", vars, 4, &out, err, sizeof err), -EINVAL);
        assert_string_equal(err, "unknown variable ${provd:nope}");
        assert_int_equal(aws_template_expand("${provd:unset}", vars, 4, &out, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "not configured"));
        assert_int_equal(aws_template_expand("${provd:bad}", vars, 4, &out, err, sizeof err), -EINVAL);
        assert_int_equal(aws_template_expand("${provd:region", vars, 4, &out, err, sizeof err), -EINVAL);
}

static void test_endpoint_region(void **state) {
        char region[40];

        assert_int_equal(aws_endpoint_region("iot.eu-west-1.amazonaws.com", region, sizeof region), 9);
        assert_string_equal(region, "eu-west-1");
        assert_true(aws_endpoint_region("https://iot.us-east-1.amazonaws.com/", region, sizeof region) > 0);
        assert_string_equal(region, "us-east-1");
        assert_true(aws_endpoint_region("https://iot-fips.us-gov-west-1.amazonaws.com:443", region, sizeof region) > 0);
        assert_string_equal(region, "us-gov-west-1");
        assert_true(aws_endpoint_region("iot.cn-north-1.amazonaws.com.cn", region, sizeof region) > 0);
        assert_string_equal(region, "cn-north-1");
        assert_int_equal(aws_endpoint_region("https://127.0.0.1:8443", region, sizeof region), -ENOENT);
        assert_int_equal(aws_endpoint_region("abc-ats.iot.eu-west-1.amazonaws.com", region, sizeof region), -ENOENT);
        assert_int_equal(aws_endpoint_region("iot.eu-west-1.amazonaws.com.evil.example", region, sizeof region), -ENOENT);
        assert_int_equal(aws_endpoint_region("iot.EU.amazonaws.com", region, sizeof region), -ENOENT);
        assert_int_equal(aws_endpoint_region("iot.eu-west-1.amazonaws.com", region, 5), -ENOBUFS);
}

static void test_op_names(void **state) {
        for (int i = 0; i < AWS_OP_MAX; i++)
                assert_int_equal(aws_op_from_name(aws_op_name(i)), i);
        assert_int_equal(aws_op_from_name("creatething"), -EINVAL);
        assert_string_equal(aws_op_name(AWS_OP_MAX), "?");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uri_encode),
                cmocka_unit_test(test_path_append),
                cmocka_unit_test(test_query_sorted_and_encoded),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_requests),
                cmocka_unit_test(test_error_code_sources),
                cmocka_unit_test(test_classify),
                cmocka_unit_test(test_success_bodies),
                cmocka_unit_test(test_pem_and_id),
                cmocka_unit_test(test_template),
                cmocka_unit_test(test_endpoint_region),
                cmocka_unit_test(test_op_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
