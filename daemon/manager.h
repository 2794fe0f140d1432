/* SPDX-License-Identifier: MIT */
/* The daemon's top object: configuration, ports, signer, database, control socket, counters. */
#ifndef PROVD_MANAGER_H
#define PROVD_MANAGER_H

#include <uv.h>

struct manager;
struct signing_ctx;

int manager_new(struct manager **ret, uv_loop_t *loop, const char *config_path);
struct manager *manager_free(struct manager *m);
int manager_start(struct manager *m);
/** Starts an orderly shutdown: no new sessions, in-flight steps get conf.shutdown_ms. */
void manager_stop(struct manager *m);
/** --check-config: what start would refuse of the signer (key, PIN file, certificates), logged. */
int manager_check(struct manager *m);
/** Re-reads the configuration; on error logs it and keeps the current one. */
int manager_reload(struct manager *m);
/** The process's exit status once the loop has run dry. */
int manager_exit_code(const struct manager *m);
/** [station] workers (0 = the default, one per CPU). */
unsigned manager_workers(const struct manager *m);

/**
 * The one shutdown drain. Any subsystem doing work on behalf of the daemon
 * (a worker job, a database request, an AWS call) brackets it with these:
 * after manager_stop() the database closes and the loop ends only when every
 * begun job has ended (stations still open are closed at shutdown_ms).
 * Loop thread only.
 */
void manager_job_begin(struct manager *m);
void manager_job_end(struct manager *m);

/**
 * Replaces the current signing context (takes a new reference to @ctx; the
 * previous one is dropped). Sessions that already started issuance keep
 * theirs until RESULT. Loop thread only.
 */
void manager_set_signing_ctx(struct manager *m, struct signing_ctx *ctx);
/** The current signing context, borrowed (NULL before the signer is recorded). */
struct signing_ctx *manager_signing_ctx(const struct manager *m);

#endif
