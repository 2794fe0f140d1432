/* SPDX-License-Identifier: MIT */
/* Unit tests: the [aws] configuration section, its validation and the templates it names. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "aws-conf.h"
#include "conf.h"

static const char base[] =
        "[station]\nname = line-1\n"
        "[signer]\nuri = file:/etc/provd/signer.key\ncert = /etc/provd/signer.pem\nroot = /etc/provd/root.pem\n"
        "[ports]\nglob = /dev/ttyACM*\n";

static char dir[] = "/tmp/provd-aws-conf-XXXXXX";

static int load(struct conf *c, const char *aws, char *err, size_t errlen) {
        char text[4096];
        int r;

        snprintf(text, sizeof text, "%s[aws]\n%s", base, aws);
        conf_init(c);
        r = conf_parse_string(c, text, "t.conf", err, errlen);
        if (r < 0)
                return r;
        return conf_validate(c, err, errlen);
}

static void test_off_by_default(void **state) {
        struct conf c;
        char err[512];

        conf_init(&c);
        assert_int_equal(conf_parse_string(&c, base, "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), 0);
        assert_int_equal(c.aws.mode, AWS_MODE_OFF);
        assert_string_equal(c.aws.signing_service, "iot");
        assert_string_equal(c.aws.policy_name, "provd-device");
        assert_int_equal(c.aws.timeout_ms, 30000);
        assert_int_equal(c.aws.max_response, 65536);
        assert_null(c.aws.proxy);
        conf_deinit(&c);
}

static void test_mar_keys(void **state) {
        struct conf c;
        char err[512] = "";

        assert_int_equal(load(&c, "mode = MAR\nendpoint = https://iot.eu-west-1.amazonaws.com\n"
                                  "policy_template = /etc/provd/policy.json\nthing_type = board\n"
                                  "credentials_file = aws\nprofile = factory\nproxy =\n"
                                  "rate_limit = CreateThing:20 RegisterCertificateWithoutCA:0.5/3\n"
                                  "thing_attributes = serial, station signer\naccount_id = 123456789012\n"
                                  "timeout_ms = 5000\nmax_response = 8192\n", err, sizeof err), 0);
        assert_int_equal(c.aws.mode, AWS_MODE_MAR);
        assert_string_equal(c.aws.credentials_file, "aws");
        assert_string_equal(c.aws.proxy, "");           /* empty: no proxy at all */
        assert_int_equal(c.aws.rate_milli[AWS_OP_CREATE_THING], 20000);
        assert_int_equal(c.aws.burst[AWS_OP_CREATE_THING], 0);
        assert_int_equal(c.aws.rate_milli[AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA], 500);
        assert_int_equal(c.aws.burst[AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA], 3);
        assert_int_equal(c.aws.thing_attributes, AWS_ATTR_SERIAL | AWS_ATTR_STATION | AWS_ATTR_SIGNER);

        char region[40];
        struct aws_http_opts ho;
        assert_int_equal(aws_conf_http_opts(&c, region, &ho, err, sizeof err), 0);
        assert_string_equal(ho.region, "eu-west-1");
        assert_string_equal(ho.service, "iot");
        assert_int_equal(ho.timeout_ms, 5000);
        assert_int_equal(ho.max_body, 8192);
        conf_deinit(&c);
}

static void test_refused(void **state) {
        static const struct {
                const char *aws, *msg;
        } cases[] = {
                { "mode = mar\n", "needs endpoint" },
                { "mode = mar\nendpoint = https://127.0.0.1:8443\npolicy_template = /p\n", "set region" },
                { "mode = mar\nendpoint = iot.eu-west-1.amazonaws.com\nregion = us-east-1\npolicy_template = /p\n",
                  "does not match" },
                { "mode = mar\nendpoint = iot.eu-west-1.amazonaws.com\n", "needs policy_template" },
                { "mode = mar\nendpoint = iot.eu-west-1.amazonaws.com\npolicy_template = /p\n"
                  "thing_attributes = serial model firmware station\n", "3 attributes" },
                { "mode = jitp\nendpoint = iot.eu-west-1.amazonaws.com\n", "jitp_template and jitp_role_arn" },
                { "mode = jitp\nendpoint = iot.eu-west-1.amazonaws.com\njitp_template = /t\n"
                  "jitp_role_arn = arn:aws:iam::1:role/r\n[profile]\nthing_name = ski\n", "names things from the certificate CN" },
                { "mode = jitr\nendpoint = iot.eu-west-1.amazonaws.com\njitp_template = /t\n", "for mode = jitp" },
                { "mode = jitr\nendpoint = iot.eu-west-1.amazonaws.com\nregister_with_ca = yes\n", "for mode = mar" },
                { "mode = mar\nendpoint = iot.eu-west-1.amazonaws.com\npolicy_template = /p\nsni_only = yes\n",
                  "for mode = jitr" },
                { "mode = mar\nendpoint = iot.eu-west-1.amazonaws.com\npolicy_template = /p\nbackoff_base_ms = 500\n"
                  "backoff_max_ms = 100\n", "backoff_base_ms" },
                /* Refused while parsing: */
                { "mode = sometimes\n", "[aws] mode" },
                { "policy_name = a+b\n", "[aws] policy_name" },
                { "thing_type = has:colon\n", "[aws] thing_type" },
                { "account_id = 12345\n", "[aws] account_id" },
                { "jitp_role_arn = role/x\n", "[aws] jitp_role_arn" },
                { "credentials_file = ../aws\n", "[aws] credentials_file" },
                { "rate_limit = CreateThing\n", "[aws] rate_limit" },
                { "rate_limit = NoSuchOp:1\n", "[aws] rate_limit" },
                { "rate_limit = CreateThing:0\n", "[aws] rate_limit" },
                { "rate_limit = CreateThing:1.2345\n", "[aws] rate_limit" },
                { "thing_attributes = serial colour\n", "[aws] thing_attributes" },
                { "region = EU-WEST-1\n", "[aws] region" },
                { "max_response = 10\n", "[aws] max_response" },
                { "signing_service = a b\n", "[aws] signing_service" },
                { "nope = 1\n", "unknown key [aws] nope" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                struct conf c;
                char err[512] = "";
                int r = load(&c, cases[i].aws, err, sizeof err);
                if (r >= 0 || !strstr(err, cases[i].msg))
                        fail_msg("case %zu: r=%d err='%s', want '%s'", i, r, err, cases[i].msg);
                conf_deinit(&c);
        }
}

/* offline is mar's flow, queued: the same keys are required; concurrency is bounded. */
static void test_offline_and_concurrency(void **state) {
        struct conf c;
        char err[512] = "";

        assert_int_equal(load(&c, "mode = offline\nendpoint = iot.eu-west-1.amazonaws.com\n", err, sizeof err),
                         -EINVAL);
        assert_non_null(strstr(err, "mode = offline needs policy_template"));
        conf_deinit(&c);
        assert_int_equal(load(&c, "mode = offline\nendpoint = iot.eu-west-1.amazonaws.com\npolicy_template = /p\n"
                                  "concurrency = 3\n", err, sizeof err), 0);
        assert_int_equal(c.aws.mode, AWS_MODE_OFFLINE);
        assert_true(aws_mode_is_mar(c.aws.mode));
        assert_string_equal(aws_mode_to_string(c.aws.mode), "offline");
        assert_int_equal(c.aws.concurrency, 3);
        conf_deinit(&c);
        assert_int_equal(load(&c, "mode = mar\nendpoint = iot.eu-west-1.amazonaws.com\npolicy_template = /p\n",
                              err, sizeof err), 0);
        assert_int_equal(c.aws.concurrency, 8);
        conf_deinit(&c);
        assert_true(load(&c, "concurrency = 0\n", err, sizeof err) < 0);
        conf_deinit(&c);
        assert_true(load(&c, "concurrency = 257\n", err, sizeof err) < 0);
        assert_non_null(strstr(err, "concurrency"));
        conf_deinit(&c);
}

static const char *write_file(const char *name, const char *text) {
        static char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        return path;
}

static void test_policy_template(void **state) {
        struct conf c;
        char err[512] = "", aws[1024];
        const char *p = write_file("policy.json",
                                   "{\"Statement\":[{\"Resource\":\"arn:aws:iot:${provd:region}:${provd:account}:"
                                   "client/${iot:Connection.Thing.ThingName}\",\"S\":\"${provd:station}\"}]}\n");

        snprintf(aws, sizeof aws, "mode = mar\nendpoint = iot.eu-west-1.amazonaws.com\npolicy_template = %s\n"
                 "account_id = 123456789012\n", p);
        assert_int_equal(load(&c, aws, err, sizeof err), 0);
        struct aws_registrar_opts o;
        char *policy = NULL;
        assert_int_equal(aws_conf_registrar_opts(&c, NULL, &o, &policy, err, sizeof err), 0);
        assert_string_equal(policy, "{\"Statement\":[{\"Resource\":\"arn:aws:iot:eu-west-1:123456789012:client/"
                                    "${iot:Connection.Thing.ThingName}\",\"S\":\"line-1\"}]}\n");
        assert_ptr_equal(o.policy_document, policy);
        assert_int_equal(o.attrs, AWS_ATTR_SERIAL | AWS_ATTR_MODEL | AWS_ATTR_FIRMWARE);
        free(policy);
        conf_deinit(&c);

        /* ${provd:account} without account_id: refused with the variable's name. */
        snprintf(aws, sizeof aws, "mode = mar\nendpoint = iot.eu-west-1.amazonaws.com\npolicy_template = %s\n", p);
        assert_int_equal(load(&c, aws, err, sizeof err), 0);
        assert_int_equal(aws_conf_registrar_opts(&c, NULL, &o, &policy, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "${provd:account} is used but not configured"));
        conf_deinit(&c);

        /* Not JSON after expansion; a missing file. */
        const char *bad = write_file("bad.json", "{\"a\": ${provd:region}}");
        assert_int_equal(load(&c, "mode = off\nendpoint = iot.eu-west-1.amazonaws.com\n", err, sizeof err), 0);
        assert_int_equal(aws_conf_load_template(&c, bad, 1000, &policy, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "not a JSON object"));
        assert_int_equal(aws_conf_load_template(&c, "/nonexistent/x.json", 1000, &policy, err, sizeof err), -ENOENT);
        assert_int_equal(aws_conf_load_template(&c, p, 10, &policy, err, sizeof err), -E2BIG);
        conf_deinit(&c);
}

static int setup(void **state) {
        assert_non_null(mkdtemp(dir));
        return 0;
}

static int teardown(void **state) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_off_by_default),
                cmocka_unit_test(test_mar_keys),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_offline_and_concurrency),
                cmocka_unit_test(test_policy_template),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
