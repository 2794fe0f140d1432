/* SPDX-License-Identifier: MIT */
/* One port and the provisioning session of the board on it. */
#ifndef PROVD_STATION_H
#define PROVD_STATION_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "station-env.h"

/*
 * Glossary
 *   station   one serial port (real tty or pty) and the session of the board on it
 *   session   HELLO → lookup → GET_CSR → issue → record → PUT_CERT → PUT_CONFIG →
 *             PROVE → verify → [LOCK] → commit → RESULT (docs/ARCHITECTURE.md)
 *   step      one of the above; requests to the board have a timeout and retries,
 *             worker and database steps run off the loop thread
 */

enum station_state {
        STATION_HELLO,
        STATION_LOOKUP,
        STATION_CSR,
        STATION_ISSUE,
        STATION_RECORD,
        STATION_PUT_CERT,
        STATION_PUT_CONFIG,
        STATION_PROVE,
        STATION_VERIFY,
        STATION_LOCK,
        STATION_COMMIT,
        STATION_RESULT,
        STATION_DONE,
        STATION_FAILED,
        _STATION_STATE_MAX,
};

struct station_info {
        const char *path;
        const char *slot;
        const char *usb_location;       /* may be NULL */
        dev_t rdev;                     /* the device @path named when the manager checked it */
};

/**
 * Opens the port and starts a session. Returns -errno when the port cannot be
 * opened. @env must outlive the station (until its station_gone hook).
 */
int station_new(struct station **ret, const struct station_env *env, const struct station_info *info);
/**
 * The same on an already open, non-blocking descriptor (taken, also on
 * failure): a tty, or one end of a socketpair in tests. @info->rdev is not checked.
 */
int station_new_fd(struct station **ret, const struct station_env *env, const struct station_info *info, int fd);
/** Closes the port; an unfinished session is recorded as aborted. Frees later. */
void station_close(struct station *st, const char *why);
/** Manager shutdown: close now if idle, else let the session finish. */
void station_shutdown(struct station *st);

const char *station_path(const struct station *st);
dev_t station_rdev(const struct station *st);
const char *station_serial(const struct station *st);   /* "" before IDENT */
/* The serial under which the owner indexes the station (the serial_in_use hook); "" = none. */
const char *station_claimed_serial(const struct station *st);
void station_set_claimed_serial(struct station *st, const char *serial);
bool station_is_active(const struct station *st);      /* a session in flight */
bool station_is_closing(const struct station *st);
/** Adds one JSON object describing the slot to @array. */
void station_status(const struct station *st, cJSON *array);
/** Frees a station whose handles are closed; called by its owner only (from the station_gone hook). */
void station_free(struct station *st);

#endif
