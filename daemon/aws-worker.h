/* SPDX-License-Identifier: MIT */
/* The AWS outbox worker: drains aws_outbox through the registration flows, off the board path. */
#ifndef PROVD_AWS_WORKER_H
#define PROVD_AWS_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"

struct cJSON;
struct db;
struct issuer;

/*
 * Everything runs on the loop thread and nothing here blocks it: AWS calls
 * go through aws-http.c (libcurl multi on the loop), the database only
 * through db requests (the reader answers the polls, the writer the claims
 * and the progress), the verification certificate of JITR/JITP is made in
 * the thread pool (aws-register.c).
 *
 * A job's progress (its step, the certificate ARN, the tries of that step)
 * is written to its aws_outbox row when the row is settled; a CA job's also
 * after every step that succeeded. After a crash a device job starts again
 * from its last recorded step and repeats the calls it had made since;
 * every step is idempotent at AWS. A retryable
 * error puts the row back to pending with the backoff's next-attempt time;
 * a permanent one (or max_attempts tries of one step) fails it with AWS's
 * code and message. Done and failed are audited (db.h, DB_OUTBOX_COMPLETE).
 *
 * Modes: mar (a job per device), jitr/jitp (a job per signer; device rows
 * are settled without a call), offline (mar's flow, but nothing is sent
 * until aws_worker_drain()).
 */

struct aws_worker;

struct aws_worker_hooks {
        /* The shutdown drain (manager_job_begin/end): one per claimed job and one for the stop. */
        void (*job_begin)(void *userdata);
        void (*job_end)(void *userdata);
        void *userdata;
};

/**
 * Makes the worker for @c->aws (mode must not be off): HTTP client,
 * credentials, registrar (reads policy_template / jitp_template). @c is
 * borrowed for station name and [aws] values read at each job; @issuer is
 * referenced (the signer: its certificate is the CA of JITR/JITP and of
 * register_with_ca, its key signs the verification certificate).
 * Returns 0, -EINVAL (with @err), -ENOENT (no credentials, not offline), -ENOMEM.
 */
int aws_worker_new(uv_loop_t *loop, struct db *db, const struct conf *c, struct issuer *issuer,
                   const struct aws_worker_hooks *hooks, struct aws_worker **ret, char *err, size_t errlen);

/** Starts polling the outbox (offline: only after aws_worker_drain()). */
void aws_worker_start(struct aws_worker *w);

/**
 * JITR/JITP: queues the register_ca job of @signer_id (once: an existing
 * row is kept) and makes @issuer the one whose key signs its verification
 * certificate. Called at start and by signer rotation. A no-op in mar and
 * offline modes. Returns 0 or -errno (the request is queued on the writer).
 */
int aws_worker_register_signer(struct aws_worker *w, int64_t signer_id, struct issuer *issuer);

/** Offline mode (any mode: a no-op besides the flag): sends until no row is pending, then stops sending. */
void aws_worker_drain(struct aws_worker *w);

/** SIGHUP: reloads the credentials from @c's source (the other [aws] keys need a restart). */
void aws_worker_reload(struct aws_worker *w, const struct conf *c);

/**
 * Stops claiming; jobs finish the call in flight and are put back to
 * pending with their progress. @done runs once every job is settled and the
 * HTTP client is closed (the worker can then be freed).
 */
void aws_worker_stop(struct aws_worker *w, void (*done)(void *userdata), void *userdata);

/** The shutdown deadline: cancels the calls in flight (their jobs stay pending, never lost). */
void aws_worker_cancel(struct aws_worker *w);

/** What the worker knows in memory, for `provctl aws status`: a new object. */
struct cJSON *aws_worker_status(const struct aws_worker *w);

/** Only after aws_worker_stop()'s @done (or if never started). */
struct aws_worker *aws_worker_free(struct aws_worker *w);

#endif
