/* SPDX-License-Identifier: MIT */
/* Control socket: JSON lines over a Unix socket, for root and the provd group only. */
#ifndef PROVD_CONTROL_H
#define PROVD_CONTROL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#define CONTROL_MAX_LINE (64 * 1024)    /* a request longer than this closes the connection */
#define CONTROL_MAX_CLIENTS 64
#define CONTROL_SERIAL_MAX 64

enum control_cmd {
        CONTROL_PING,
        CONTROL_STATUS,
        CONTROL_DEVICES,
        CONTROL_REISSUE,
        CONTROL_STATS,
        CONTROL_AWS_STATUS,
        CONTROL_AWS_RETRY,
        CONTROL_AWS_DRAIN,
        _CONTROL_CMD_MAX,
};

struct control_request {
        enum control_cmd cmd;
        int64_t since_ms;               /* DEVICES: wall clock ms, 0 = all */
        unsigned limit;                 /* DEVICES: rows in this page; 0 = the most a page holds */
        bool pem;                       /* DEVICES: include certificate PEM */
        char after[CONTROL_SERIAL_MAX + 1];     /* DEVICES: page after this serial at since_ms; "" = none */
        char serial[CONTROL_SERIAL_MAX + 1];    /* REISSUE: hex, either case */
        int64_t id;                     /* AWS_RETRY: outbox row; 0 with all_failed */
        bool all_failed;                /* AWS_RETRY: every failed row */
};

/**
 * Parses one request line (without the newline). Strict: an object with a
 * known "cmd", the fields that command takes with the right types and
 * bounds, nothing else required; unknown fields are ignored. On error
 * returns -EINVAL/-EBADMSG/-E2BIG and a message in @err.
 */
int control_parse_request(const char *line, size_t len, struct control_request *ret, char *err, size_t errlen);

struct control;
struct control_client;

struct control_peer {
        pid_t pid;
        uid_t uid;
        gid_t gid;
};

/**
 * Handles one parsed request. Reply now or later with control_reply() (the
 * client is kept alive until a reply or a disconnect; control_client_ref()
 * must be taken by the handler when it replies asynchronously).
 */
typedef void (*control_handler)(struct control_client *c, const struct control_peer *peer,
                                const struct control_request *req, void *userdata);

/**
 * Listens on @path (replacing a stale socket), mode 0660, group @gid (or
 * unchanged when (gid_t)-1). Peers are admitted when their uid is 0 or ours,
 * or @gid is their primary or a supplementary group (SO_PEERCRED, SO_PEERGROUPS).
 */
int control_new(struct control **ret, uv_loop_t *loop, const char *path, gid_t gid,
                control_handler handler, void *userdata);
/** Closes the listener and every client; frees once the handles are closed. */
void control_free(struct control *c);

/** Sends @reply (one line) and takes ownership of it. No-op if the client has gone. */
void control_reply(struct control_client *c, cJSON *reply);
void control_reply_error(struct control_client *c, int error, const char *msg);
struct control_client *control_client_ref(struct control_client *c);
struct control_client *control_client_unref(struct control_client *c);

#endif
