/* SPDX-License-Identifier: MIT */
/* HTTPS client for the AWS IoT control plane: libcurl multi driven by the libuv loop, SigV4 by libcurl. */
#ifndef PROVD_AWS_HTTP_H
#define PROVD_AWS_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "aws-creds.h"
#include "aws-iot.h"

/*
 * One struct aws_http per endpoint. Everything runs on the loop thread and
 * nothing blocks it: sockets are uv_poll handles and libcurl's timeout a
 * uv_timer (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION); names are
 * resolved by libcurl's threaded resolver. Connections stay in the multi
 * handle's cache between calls (keep-alive, TCP keepalive probes), so a run of
 * calls to one endpoint shares one TLS session.
 *
 * Proxy: none configured means libcurl's own environment handling:
 * https_proxy or HTTPS_PROXY for https:// endpoints, http_proxy (lower case
 * only) for http://, ALL_PROXY/all_proxy as fallback, NO_PROXY/no_proxy for
 * exceptions.
 */

struct aws_http_opts {
        const char *endpoint;           /* "https://iot.eu-west-1.amazonaws.com" or an override URL (no path) */
        const char *region;             /* signing region; required */
        const char *service;            /* signing service; NULL: "iot" */
        const char *ca_file;            /* NULL: the system's CA store */
        const char *proxy;              /* NULL: from the environment (above); "" disables any proxy */
        unsigned timeout_ms;            /* whole call; 0: 30000 */
        unsigned connect_timeout_ms;    /* 0: 10000 */
        size_t max_body;                /* larger response bodies fail the call; 0: 65536 */
        unsigned max_connections;       /* to the endpoint at once; 0: 4 */
};

struct aws_http;
struct aws_http_call;

/** The parsed answer: @resp is valid during the call only. */
typedef void (*aws_http_cb)(const struct aws_response *resp, void *userdata);

/**
 * Creates a client on @loop. @opts strings are copied. Returns 0, -EINVAL
 * (bad endpoint URL, region, service: the message in @err), -ENOMEM, -EIO
 * (libcurl could not be initialised).
 */
int aws_http_new(uv_loop_t *loop, const struct aws_http_opts *opts, struct aws_http **ret, char *err,
                 size_t errlen);

/** Sets (replaces: reload) the credentials for calls started from now on; copied. */
int aws_http_set_creds(struct aws_http *h, const struct aws_creds *creds);

/**
 * Sends @req (copied: it may be freed on return). @cb runs exactly once on the
 * loop, never from inside this function. Returns 0, -ENOKEY (no
 * credentials set), -ESHUTDOWN (closing), -ENOTSUP (a path with a
 * percent-encoded character: AWS signs such a path encoded twice and libcurl
 * (7.88, checked against the fake) once, so it could only fail), -ENOMEM, -EIO.
 */
int aws_http_send(struct aws_http *h, const struct aws_request *req, aws_http_cb cb, void *userdata);

/** The loop the client runs on. */
uv_loop_t *aws_http_loop(const struct aws_http *h);

/** Calls in flight. */
size_t aws_http_pending(const struct aws_http *h);

/**
 * Cancels every call in flight (their callbacks run now with code
 * "Cancelled", retryable) and closes the client; @done (may be NULL) runs when
 * the last libuv handle is closed, after which @h is freed. May be called
 * from a callback.
 */
void aws_http_close(struct aws_http *h, void (*done)(void *userdata), void *userdata);

#endif
