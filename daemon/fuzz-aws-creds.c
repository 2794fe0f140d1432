/* SPDX-License-Identifier: MIT */
/* Fuzz target: the AWS shared-credentials file parser and the template expander. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aws-creds.h"
#include "aws-iot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct aws_creds *c = NULL;
        char err[256], *text, *out = NULL;

        if (size > 70000)
                return 0;
        if (aws_creds_parse((const char *)data, size, "default", &c, err, sizeof err) == 0) {
                /* Whatever was accepted can go into an HTTP header as it is. */
                for (const char *p = c->secret_access_key; *p; p++)
                        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                                abort();
                if (c->session_token && strpbrk(c->session_token, "\r\n "))
                        abort();
                if (strlen(c->access_key_id) < 16)
                        abort();
        }
        aws_creds_free(c);

        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        const struct aws_template_var vars[] = {
                { "region", "eu-west-1" }, { "account", "123456789012" }, { "station", NULL }, { "policy", "p" },
        };
        if (aws_template_expand(text, vars, 4, &out, err, sizeof err) == 0) {
                if (strlen(out) > AWS_POLICY_MAX || strstr(out, "${provd:region}"))
                        abort();
                free(out);
        }
        free(text);
        return 0;
}
