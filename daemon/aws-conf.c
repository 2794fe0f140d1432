/* SPDX-License-Identifier: MIT */
/* From the [aws] configuration to the AWS client's options: endpoint, region, templates, rates. */

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws-conf.h"
#include "basic/secret-file.h"
#include "util.h"

static int region_of(const struct conf *c, char region[40], char *err, size_t errlen) {
        const struct conf_aws *a = &c->aws;

        if (a->region) {
                snprintf(region, 40, "%s", a->region);
                return 0;
        }
        if (!a->endpoint || aws_endpoint_region(a->endpoint, region, 40) < 0)
                return snprintf(err, errlen, "[aws] region is not set and the endpoint does not name one"), -EINVAL;
        return 0;
}

int aws_conf_http_opts(const struct conf *c, char region[40], struct aws_http_opts *ret, char *err, size_t errlen) {
        const struct conf_aws *a = &c->aws;
        int r = region_of(c, region, err, errlen);

        if (r < 0)
                return r;
        *ret = (struct aws_http_opts) {
                .endpoint = a->endpoint,
                .region = region,
                .service = a->signing_service,
                .ca_file = a->ca_file,
                .proxy = a->proxy,
                .timeout_ms = a->timeout_ms,
                .connect_timeout_ms = a->connect_timeout_ms,
                .max_body = a->max_response,
                .max_connections = a->max_connections,
        };
        return 0;
}

/* A template: a bounded regular file, text without NUL. */
static int read_text(const char *path, size_t max, char **ret) {
        char *buf = NULL;
        size_t len = 0;
        int r;

        r = file_read_bounded(path, max, &buf, &len);
        if (r < 0)
                return r == -EFBIG ? -E2BIG : r;
        if (memchr(buf, 0, len)) {
                free(buf);
                return -EINVAL;
        }
        *ret = buf;
        return 0;
}

int aws_conf_load_template(const struct conf *c, const char *path, size_t max, char **ret, char *err,
                           size_t errlen) {
        _cleanup_free_ char *text = NULL, *out = NULL;
        char region[40], msg[200];
        int r;

        r = region_of(c, region, err, errlen);
        if (r < 0)
                return r;
        r = read_text(path, max, &text);
        if (r < 0)
                return snprintf(err, errlen, "%s: %s", path,
                                r == -E2BIG ? "larger than AWS accepts" : r == -EINVAL ? "has a NUL byte" : strerror(-r)),
                       r;
        const struct aws_template_var vars[] = {
                { "region", region },
                { "account", c->aws.account_id },
                { "station", c->name },
                { "policy", c->aws.policy_name },
                { "thing_type", c->aws.thing_type },
        };
        r = aws_template_expand(text, vars, ELEMENTSOF(vars), &out, msg, sizeof msg);
        if (r < 0)
                return snprintf(err, errlen, "%s: %s", path, msg), r;
        cJSON *j = cJSON_Parse(out);
        bool ok = cJSON_IsObject(j);
        cJSON_Delete(j);
        if (!ok)
                return snprintf(err, errlen, "%s: not a JSON object after expansion", path), -EINVAL;
        *ret = TAKE_PTR(out);
        return 0;
}

int aws_conf_registrar_opts(const struct conf *c, const char *ca_pem, struct aws_registrar_opts *ret,
                            char **ret_policy, char *err, size_t errlen) {
        const struct conf_aws *a = &c->aws;
        _cleanup_free_ char *policy = NULL;
        struct aws_registrar_opts o = {
                .register_with_ca = a->register_with_ca,
                .ca_pem = ca_pem,
                .policy_name = a->policy_name,
                .thing_type = a->thing_type,
                .backoff = { .base_ms = a->backoff_base_ms, .max_ms = a->backoff_max_ms },
        };
        int r;

        if (a->register_with_ca && !ca_pem)
                return snprintf(err, errlen, "register_with_ca needs the signer certificate"), -EINVAL;
        o.attrs = a->thing_attributes_set ? a->thing_attributes :
                  a->thing_type ? AWS_ATTR_ALL : AWS_ATTR_SERIAL | AWS_ATTR_MODEL | AWS_ATTR_FIRMWARE;
        for (int i = 0; i < AWS_OP_MAX; i++)
                o.rates[i] = (struct aws_rate) { a->rate_milli[i], a->burst[i] };
        if (aws_mode_is_mar(a->mode)) {
                if (!a->policy_template)
                        return snprintf(err, errlen, "[aws] mode = mar needs policy_template"), -EINVAL;
                r = aws_conf_load_template(c, a->policy_template, AWS_POLICY_MAX, &policy, err, errlen);
                if (r < 0)
                        return r;
                o.policy_document = policy;
        }
        *ret = o;
        *ret_policy = TAKE_PTR(policy);
        return 0;
}

void aws_conf_creds_source(const struct conf *c, struct aws_creds_source *ret) {
        *ret = (struct aws_creds_source) { .file = c->aws.credentials_file, .profile = c->aws.profile };
}
