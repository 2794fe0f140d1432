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
#define CONTROL_MAX_PER_UID 8           /* connections of one uid other than root's and ours */
#define CONTROL_IDLE_MS 10000           /* no request, or no progress on the replies, for this long: closed */
/*
 * Reply bytes a client may leave unread: past this, provd reads no further
 * request from it (one reply can be larger: a page of 1000 devices with PEMs
 * is ~1.5 MB); if the client still does not read, the idle timeout closes it.
 */
#define CONTROL_MAX_QUEUED (4u * 1024 * 1024)
#define CONTROL_SERIAL_MAX 64

enum control_cmd {
        CONTROL_PING,
        CONTROL_STATUS,
        CONTROL_DEVICES,
        CONTROL_REISSUE,
        CONTROL_STATS,
        CONTROL_RELOAD,                 /* re-read the configuration; a new signer is switched to live */
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

struct control_metrics {
        unsigned clients;
        uint64_t queued_bytes;          /* reply bytes written to no client yet, over every client */
        uint64_t max_queued_bytes;      /* the most one client had queued at once, since start */
        uint64_t idle_closed;           /* connections closed by the idle timeout */
        uint64_t refused;               /* turned away: too many connections, per uid or in all */
};

void control_get_metrics(const struct control *c, struct control_metrics *ret);

/** Sends @reply (one line) and takes ownership of it. No-op if the client has gone. */
void control_reply(struct control_client *c, cJSON *reply);
void control_reply_error(struct control_client *c, int error, const char *msg);
struct control_client *control_client_ref(struct control_client *c);
struct control_client *control_client_unref(struct control_client *c);

#endif
