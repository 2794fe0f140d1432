/* SPDX-License-Identifier: MIT */
/* Unit tests: AWS credentials from the environment, the shared credentials file, a configured file. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws-creds.h"

#define KEY "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

static const char *env_names[16], *env_values[16];
static size_t n_env;

static const char *fake_getenv(const char *name) {
        for (size_t i = 0; i < n_env; i++)
                if (strcmp(env_names[i], name) == 0)
                        return env_values[i];
        return NULL;
}

static void setenv_fake(const char *n, const char *v) {
        env_names[n_env] = n;
        env_values[n_env++] = v;
}

static int reset(void **state) {
        n_env = 0;
        return 0;
}

static char dir[] = "/tmp/provd-aws-creds-XXXXXX";

static const char *write_file(const char *name, const char *text) {
        static char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        return path;
}

static void test_parse_profiles(void **state) {
        static const char text[] =
                "# comment\n"
                "[default]\n"
                "aws_access_key_id = AKIADEFAULTDEFAULT00\n"
                "aws_secret_access_key=defaultsecret\n"
                "\n"
                "[profile factory]\r\n"
                "  aws_access_key_id =  " KEY "  \r\n"
                "AWS_SECRET_ACCESS_KEY = " SECRET "\n"
                "aws_session_token = FQoGZXIvYXdzEXAMPLE+/=\n"
                "region = eu-west-1\n"
                "; another comment\n"
                "[other]\n"
                "aws_access_key_id = AKIAOTHEROTHEROTHER0\n";
        struct aws_creds *c = NULL;
        char err[256];

        assert_int_equal(aws_creds_parse(text, strlen(text), "factory", &c, err, sizeof err), 0);
        assert_string_equal(c->access_key_id, KEY);
        assert_string_equal(c->secret_access_key, SECRET);
        assert_string_equal(c->session_token, "FQoGZXIvYXdzEXAMPLE+/=");
        assert_string_equal(c->source, "[factory]");
        c = aws_creds_free(c);
        assert_null(c);

        assert_int_equal(aws_creds_parse(text, strlen(text), NULL, &c, err, sizeof err), 0);
        assert_string_equal(c->access_key_id, "AKIADEFAULTDEFAULT00");
        assert_null(c->session_token);
        aws_creds_free(c);

        assert_int_equal(aws_creds_parse(text, strlen(text), "missing", &c, err, sizeof err), -ENOENT);
        assert_string_equal(err, "no profile [missing]");
        /* [other] has no secret */
        assert_int_equal(aws_creds_parse(text, strlen(text), "other", &c, err, sizeof err), -ENOENT);
}

static void test_parse_refuses(void **state) {
        struct aws_creds *c = NULL;
        char err[256], big[AWS_CREDS_FILE_MAX + 2];
        const char *bad[] = {
                "[p]\naws_access_key_id = akia-lower-case0000\naws_secret_access_key = s\n",
                "[p]\naws_access_key_id = AKIASHORT\naws_secret_access_key = s\n",
                "[p]\naws_access_key_id = " KEY "\naws_secret_access_key = wJalr XUtnFEMI\n",
                "[p]\naws_access_key_id = " KEY "\naws_secret_access_key =\n",
                "[p\naws_access_key_id = " KEY "\n",
                "[p]\njust words\n",
                "[p]\naws_access_key_id = " KEY "\naws_secret_access_key = s\naws_session_token = a\x01b\n",
        };

        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                err[0] = 0;
                assert_int_equal(aws_creds_parse(bad[i], strlen(bad[i]), "p", &c, err, sizeof err), -EINVAL);
                assert_non_null(strstr(err, "line "));
                /* The message names the line and key, never the secret. */
                assert_null(strstr(err, "XUtn"));
        }
        const char nul[] = "[p]\naws_access_key_id = " KEY "\0\n";
        assert_int_equal(aws_creds_parse(nul, sizeof nul - 1, "p", &c, err, sizeof err), -EINVAL);
        memset(big, '#', sizeof big);
        assert_int_equal(aws_creds_parse(big, sizeof big, "p", &c, err, sizeof err), -E2BIG);
}

static void test_environment(void **state) {
        struct aws_creds *c = NULL;
        char err[256];

        setenv_fake("AWS_ACCESS_KEY_ID", KEY);
        setenv_fake("AWS_SECRET_ACCESS_KEY", SECRET);
        setenv_fake("AWS_SESSION_TOKEN", "tok");
        setenv_fake("HOME", "/nonexistent");
        assert_int_equal(aws_creds_load(NULL, fake_getenv, &c, err, sizeof err), 0);
        assert_string_equal(c->source, "environment");
        assert_string_equal(c->session_token, "tok");
        aws_creds_free(c);

        reset(NULL);
        setenv_fake("AWS_ACCESS_KEY_ID", KEY);
        assert_int_equal(aws_creds_load(NULL, fake_getenv, &c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "together"));
}

static void test_shared_file_and_profile(void **state) {
        struct aws_creds *c = NULL;
        char err[512];
        const char *p = write_file("shared", "[default]\naws_access_key_id = AKIADEFAULTDEFAULT00\n"
                                             "aws_secret_access_key = d\n[line2]\naws_access_key_id = " KEY "\n"
                                             "aws_secret_access_key = " SECRET "\n");
        char path[512];
        snprintf(path, sizeof path, "%s", p);

        setenv_fake("AWS_SHARED_CREDENTIALS_FILE", path);
        assert_int_equal(aws_creds_load(&(struct aws_creds_source) { .profile = "line2" }, fake_getenv, &c, err,
                                        sizeof err), 0);
        assert_string_equal(c->access_key_id, KEY);
        assert_non_null(strstr(c->source, "[line2]"));
        aws_creds_free(c);
        /* $AWS_PROFILE wins over the configured profile, as with the AWS CLI. */
        setenv_fake("AWS_PROFILE", "default");
        assert_int_equal(aws_creds_load(&(struct aws_creds_source) { .profile = "line2" }, fake_getenv, &c, err,
                                        sizeof err), 0);
        assert_string_equal(c->access_key_id, "AKIADEFAULTDEFAULT00");
        aws_creds_free(c);

        /* $HOME/.aws/credentials when nothing else is there. */
        reset(NULL);
        char aws_dir[512];
        snprintf(aws_dir, sizeof aws_dir, "%s/.aws", dir);
        mkdir(aws_dir, 0700);
        write_file(".aws/credentials", "[default]\naws_access_key_id = " KEY "\naws_secret_access_key = x\n");
        setenv_fake("HOME", dir);
        assert_int_equal(aws_creds_load(NULL, fake_getenv, &c, err, sizeof err), 0);
        aws_creds_free(c);
        reset(NULL);
        setenv_fake("HOME", "/nonexistent");
        assert_int_equal(aws_creds_load(NULL, fake_getenv, &c, err, sizeof err), -ENOENT);
        assert_non_null(strstr(err, "no AWS credentials"));
}

static void test_configured_file(void **state) {
        struct aws_creds *c = NULL;
        char err[512], path[512];

        snprintf(path, sizeof path, "%s", write_file("aws", "[default]\naws_access_key_id = " KEY "\n"
                                                            "aws_secret_access_key = " SECRET "\n"));
        /* The environment does not override a configured file. */
        setenv_fake("AWS_ACCESS_KEY_ID", "AKIAENVENVENVENVENV0");
        setenv_fake("AWS_SECRET_ACCESS_KEY", "envsecret");
        assert_int_equal(aws_creds_load(&(struct aws_creds_source) { .file = path }, fake_getenv, &c, err, sizeof err),
                         0);
        assert_string_equal(c->access_key_id, KEY);
        aws_creds_free(c);

        /* A bare name is looked up in $CREDENTIALS_DIRECTORY (systemd LoadCredential=). */
        assert_int_equal(aws_creds_load(&(struct aws_creds_source) { .file = "aws" }, fake_getenv, &c, err, sizeof err),
                         -ENOENT);
        assert_non_null(strstr(err, "CREDENTIALS_DIRECTORY"));
        setenv_fake("CREDENTIALS_DIRECTORY", dir);
        assert_int_equal(aws_creds_load(&(struct aws_creds_source) { .file = "aws" }, fake_getenv, &c, err, sizeof err),
                         0);
        assert_string_equal(c->secret_access_key, SECRET);
        aws_creds_free(c);

        /* Missing or broken configured file: an error, no fallback to the environment. */
        assert_int_equal(aws_creds_load(&(struct aws_creds_source) { .file = "missing" }, fake_getenv, &c, err,
                                        sizeof err), -ENOENT);
        write_file("broken", "[default]\naws_access_key_id = " KEY "\naws_secret_access_key = two words\n");
        assert_int_equal(aws_creds_load(&(struct aws_creds_source) { .file = "broken" }, fake_getenv, &c, err,
                                        sizeof err), -EINVAL);
        assert_non_null(strstr(err, "line 3"));
        assert_null(strstr(err, "two words"));
        /* A directory is not a credentials file. */
        assert_int_equal(aws_creds_load(&(struct aws_creds_source) { .file = dir }, fake_getenv, &c, err, sizeof err),
                         -EBADFD);
}

static void test_dup(void **state) {
        struct aws_creds *c = NULL, *d;
        char err[64];
        const char t[] = "[default]\naws_access_key_id = " KEY "\naws_secret_access_key = s\naws_session_token = t\n";

        assert_int_equal(aws_creds_parse(t, strlen(t), NULL, &c, err, sizeof err), 0);
        d = aws_creds_dup(c);
        assert_non_null(d);
        assert_ptr_not_equal(d->session_token, c->session_token);
        assert_string_equal(d->session_token, "t");
        aws_creds_free(c);
        aws_creds_free(d);
        assert_null(aws_creds_free(NULL));
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
                cmocka_unit_test_setup(test_parse_profiles, reset),
                cmocka_unit_test_setup(test_parse_refuses, reset),
                cmocka_unit_test_setup(test_environment, reset),
                cmocka_unit_test_setup(test_shared_file_and_profile, reset),
                cmocka_unit_test_setup(test_configured_file, reset),
                cmocka_unit_test_setup(test_dup, reset),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
