/* SPDX-License-Identifier: MIT */
/* From the [aws] configuration to the AWS client's options: endpoint, region, templates, rates. */
#ifndef PROVD_AWS_CONF_H
#define PROVD_AWS_CONF_H

#include <stddef.h>

#include "aws-creds.h"
#include "aws-http.h"
#include "aws-register.h"
#include "conf.h"

/*
 * Template variables (policy_template and jitp_template), all per
 * deployment, none per device: the policy is created once and shared, so a
 * per-device value can only come from AWS's own policy variables at connect
 * time (${iot:Connection.Thing.ThingName}, ${iot:ClientId}, ...), and in a
 * JITP template from its parameters (${AWS::IoT::Certificate::CommonName},
 * ...). provd replaces ${provd:NAME} only and leaves every other ${...}:
 *   ${provd:region}      the signing region
 *   ${provd:account}     [aws] account_id
 *   ${provd:station}     [station] name
 *   ${provd:policy}      [aws] policy_name
 *   ${provd:thing_type}  [aws] thing_type
 */

/** HTTP options from @c->aws; strings borrowed from @c, the region written to @region. */
int aws_conf_http_opts(const struct conf *c, char region[40], struct aws_http_opts *ret, char *err, size_t errlen);

/** Reads @path (at most @max bytes), expands the variables above and checks
 *  the result is a JSON object. Returns 0 and a malloc'ed text, or -errno with @err. */
int aws_conf_load_template(const struct conf *c, const char *path, size_t max, char **ret, char *err,
                           size_t errlen);

/**
 * Registrar options from @c->aws. For MAR reads and expands policy_template
 * into *@ret_policy (the caller frees it once aws_registrar_new() has copied
 * it); @ca_pem is the signer certificate (borrowed, for register_with_ca).
 */
int aws_conf_registrar_opts(const struct conf *c, const char *ca_pem, struct aws_registrar_opts *ret,
                            char **ret_policy, char *err, size_t errlen);

/** The credential source of @c->aws (borrowed strings). */
void aws_conf_creds_source(const struct conf *c, struct aws_creds_source *ret);

#endif
