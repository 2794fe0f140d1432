/* SPDX-License-Identifier: MIT */
/* The daemon's database: one writer thread, group commit, requests completed on the libuv loop. */
#ifndef PROVD_DB_H
#define PROVD_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>
#include <uv.h>

/*
 * Glossary
 *   request   struct db_req, owned by the caller (embedded in its session
 *             struct: no malloc per request). Filled in, handed to
 *             db_submit(), untouched by the caller until done() runs.
 *   writer    the one thread that owns the read-write SQLite connection.
 *   reader    a thread with a read-only connection that runs the reads
 *             (DB_LOOKUP_DEVICE, DB_QUERY_DEVICES, DB_QUERY_STATS): WAL
 *             lets it read the last commit while the writer appends, so
 *             reads neither wait for a batch nor take the write lock. A read
 *             runs after every write submitted before it has completed.
 *   checkpointer  a second thread and connection that copies the WAL back
 *             into the database file (PASSIVE), so no batch waits for that.
 *   batch     what the writer took from the queue in one go (<= max_batch):
 *             BEGIN IMMEDIATE, the requests, the totals they changed, COMMIT.
 *   done()    runs on the loop thread after the batch holding the request
 *             COMMITTED (durably: synchronous=FULL), or failed. A request
 *             whose own statements failed was rolled back alone (its
 *             savepoint) and the rest of its batch still committed.
 *
 * Threading: db_open(), db_submit(), db_close() and db_get_metrics() are
 * for the loop thread only and never wait for SQLite (db_open() does, once,
 * at startup: it migrates). done() callbacks may submit new requests.
 *
 * Strings: fixed-size char arrays in a request are copied in by the caller
 * and must be NUL-terminated inside the array (else -EINVAL). Pointers
 * marked "borrowed" must stay valid and unchanged until done() runs.
 * Hex inputs (serials, fingerprints) are accepted in either case and stored
 * lowercase; outputs are lowercase.
 *
 * Times are int64 milliseconds since the epoch, UTC (*_ms), as in the schema.
 */

#define DB_SERIAL_MAX      65   /* device serial hex + NUL: up to 32 bytes */
#define DB_SHA256_HEX_MAX  65   /* 64 hex + NUL */
#define DB_CERT_SERIAL_MAX 43   /* certificate serial hex + NUL: up to 21 bytes */
#define DB_NAME_MAX        129  /* model, thing name (AWS: 128), signer name */
#define DB_LABEL_MAX       64   /* slot, step, actor, action, firmware version */
#define DB_PORT_MAX        256  /* port path */
#define DB_TEXT_MAX        256  /* error texts */
#define DB_ERRMSG_MAX      256
#define DB_PUBKEY_LEN      65   /* uncompressed P-256 point, 0x04 || X || Y */
#define DB_QUERY_LIMIT_MAX 1000                /* rows per DB_QUERY_DEVICES page */
#define DB_OUTBOX_CLAIM_MAX 256

struct db;
struct cJSON;

enum db_device_state {
        DB_DEVICE_ISSUED,               /* certificate signed, not yet proven on the board */
        DB_DEVICE_PROVISIONED,
        DB_DEVICE_CLONE_SUSPECTED,      /* the serial came back with another key */
        _DB_DEVICE_STATE_MAX,
};

enum db_cert_status {
        DB_CERT_ISSUED,
        DB_CERT_ACTIVE,                 /* proven on the board */
        DB_CERT_SUPERSEDED,
        DB_CERT_REVOKED,
        _DB_CERT_STATUS_MAX,
};

/* Same order as the daemon's enum outcome. */
enum db_outcome {
        DB_OUTCOME_PROVISIONED,
        DB_OUTCOME_ALREADY_PROVISIONED,
        DB_OUTCOME_FAILED,
        DB_OUTCOME_REJECTED,
        DB_OUTCOME_CLONE_SUSPECTED,
        DB_OUTCOME_ABORTED,
        _DB_OUTCOME_MAX,
};

enum db_outbox_state {
        DB_OUTBOX_PENDING,
        DB_OUTBOX_IN_FLIGHT,
        DB_OUTBOX_DONE,
        DB_OUTBOX_FAILED,
        _DB_OUTBOX_STATE_MAX,
};

enum db_outbox_kind {
        DB_OUTBOX_REGISTER_CERT,        /* MAR: certificate, thing, policy, attachments */
        DB_OUTBOX_REGISTER_CA,          /* JITR/JITP: the signer CA */
        DB_OUTBOX_REVOKE_CERT,
        _DB_OUTBOX_KIND_MAX,
};

/* The database spelling of each value ("clone_suspected", "register_cert", ...). */
const char *db_device_state_to_string(enum db_device_state s);
const char *db_cert_status_to_string(enum db_cert_status s);
const char *db_outcome_to_string(enum db_outcome o);
const char *db_outbox_state_to_string(enum db_outbox_state s);
const char *db_outbox_kind_to_string(enum db_outbox_kind k);

enum db_req_type {
        DB_LOOKUP_DEVICE,
        DB_RECORD_ISSUANCE,
        DB_RECORD_OUTCOME,
        DB_AUDIT,
        DB_REISSUE_REQUEST,
        DB_SIGNER_ENSURE,
        DB_SIGNER_RETIRE,
        DB_QUERY_DEVICES,
        DB_QUERY_STATS,
        DB_OUTBOX_CLAIM,
        DB_OUTBOX_COMPLETE,
        DB_QUERY_ISSUED,
        DB_OUTBOX_ENQUEUE,
        DB_OUTBOX_REQUEUE,
        DB_QUERY_OUTBOX,                /* reader */
        _DB_REQ_TYPE_MAX,
};

/*
 * DB_LOOKUP_DEVICE: the device row and its current certificate. result 0
 * whether or not it exists (see found). A read (reader thread): it never
 * takes the write lock, so another process holding that lock does not fail
 * it; it waits only for the writes submitted before it.
 */
struct db_lookup_device {
        /* in */
        char serial[DB_SERIAL_MAX];
        bool want_der;                          /* also return the current certificate's DER */
        /* out */
        bool found;
        enum db_device_state state;
        uint8_t pubkey[DB_PUBKEY_LEN];
        bool reissue_requested;
        int64_t cert_id;                        /* current certificate; 0 = none */
        enum db_cert_status cert_status;
        char cert_sha256[DB_SHA256_HEX_MAX];    /* "" when no certificate */
        char thing_name[DB_NAME_MAX];
        int64_t cert_not_after_ms;
        uint8_t *cert_der;                      /* want_der: malloc()ed, caller frees; else NULL */
        size_t cert_der_len;
};

/*
 * DB_RECORD_ISSUANCE, in one transaction: creates the device (state issued)
 * or, for a known device with the same key, supersedes its current
 * certificate; inserts the certificate (status issued) and makes it current;
 * appends audit 'cert.issue'. Commit this before the certificate leaves the
 * daemon.
 *   -EKEYREJECTED  known serial with a different public key (clone)
 *   -EPERM         device is clone_suspected and no reissue was requested
 *   -EEXIST        certificate serial already recorded (schema 2: the SHA-256 follows from it)
 *   -ENOENT        unknown signer_id
 *   -EINVAL        a field out of its domain (bad hex, thing name, sizes,
 *                  cert_sha256 given but not the SHA-256 of the DER)
 */
struct db_record_issuance {
        /* in */
        char serial[DB_SERIAL_MAX];
        char model[DB_NAME_MAX];
        char fw_version[DB_LABEL_MAX];
        uint8_t pubkey[DB_PUBKEY_LEN];
        const uint8_t *cert_der;                /* borrowed */
        size_t cert_der_len;
        char cert_serial[DB_CERT_SERIAL_MAX];   /* hex */
        char cert_sha256[DB_SHA256_HEX_MAX];    /* in: "" or checked; out: always set */
        int64_t not_before_ms;
        int64_t not_after_ms;
        int64_t signer_id;
        char thing_name[DB_NAME_MAX];
        char port[DB_PORT_MAX];                 /* for the audit record */
        char slot[DB_LABEL_MAX];
        /* out */
        int64_t cert_id;
        int64_t superseded_cert_id;             /* the previous current certificate; 0 = none */
};

/*
 * DB_RECORD_OUTCOME: one attempts row, plus per outcome:
 *   provisioned      certificate cert_id -> active (proven_at = finished_ms),
 *                    device -> provisioned, reissue flag cleared, AWS
 *                    register_cert queued once (a second outcome for the
 *                    same certificate does not queue it again).
 *   clone_suspected  device -> clone_suspected (when known), audit
 *                    'device.clone_suspected' with both keys' SHA-256.
 *   others           the attempts row only.
 *   -ENOENT  provisioned with an unknown cert_id
 *   -EINVAL  provisioned without serial/cert_id, or the certificate belongs
 *            to another device; timings not a JSON object
 *   -ESTALE  provisioned with a certificate that is superseded or revoked
 */
struct db_record_outcome {
        /* in */
        char port[DB_PORT_MAX];
        char slot[DB_LABEL_MAX];
        char serial[DB_SERIAL_MAX];             /* "" = board never identified */
        int64_t started_ms;
        int64_t finished_ms;
        enum db_outcome outcome;
        char step[DB_LABEL_MAX];                /* last step reached */
        char error[DB_TEXT_MAX];                /* "" = none */
        const char *timings_json;               /* borrowed; NULL = none; a JSON object */
        int64_t cert_id;                        /* 0 = none */
        bool have_presented_pubkey;             /* clone_suspected: the key the board showed */
        uint8_t presented_pubkey[DB_PUBKEY_LEN];
        /* out */
        int64_t attempt_id;
        int64_t outbox_id;                      /* provisioned: the register_cert row */
};

/* DB_AUDIT: appends one audit_log row to the hash chain. */
struct db_audit {
        /* in */
        char actor[DB_LABEL_MAX];               /* "provd" or "uid:<n>" */
        char action[DB_LABEL_MAX];              /* "noun.verb": [a-z0-9_.], e.g. "signer.rotate" */
        char serial[DB_SERIAL_MAX];             /* "" = none */
        const char *details_json;               /* borrowed; NULL = "{}"; a JSON object */
        /* out */
        int64_t id;
};

/* DB_REISSUE_REQUEST: sets the device's reissue flag, audit 'device.reissue_request'. -ENOENT: unknown serial. */
struct db_reissue_request {
        /* in */
        char serial[DB_SERIAL_MAX];
        char actor[DB_LABEL_MAX];
};

/*
 * DB_SIGNER_ENSURE: finds the signer by the SHA-256 of its certificate or
 * inserts it (audit 'signer.add'). Subject and validity come from the
 * certificate. With enqueue_register_ca, also queues AWS register_ca once.
 *   -EBADMSG  cert_der is not a certificate
 *   -EINVAL   key_uri carries a PIN (pin-value=) or a field is out of range
 */
struct db_signer_ensure {
        /* in */
        char name[DB_NAME_MAX];
        const char *key_uri;                    /* borrowed; never a secret */
        const uint8_t *cert_der;                /* borrowed */
        size_t cert_der_len;
        char actor[DB_LABEL_MAX];               /* "" = "provd" */
        bool enqueue_register_ca;
        /* out */
        int64_t signer_id;
        bool created;
        bool retired;                           /* the existing signer is retired */
        char cert_sha256[DB_SHA256_HEX_MAX];
};

/* DB_SIGNER_RETIRE: state retired (idempotent), audit 'signer.retire'. -ENOENT: unknown id. */
struct db_signer_retire {
        /* in */
        int64_t signer_id;
        char actor[DB_LABEL_MAX];
};

/*
 * DB_QUERY_DEVICES: devices whose row changed at or after since_ms, oldest
 * change first (devices.updated_at; feed the last "updated_at" back as
 * since_ms to page on, which repeats the rows at that instant). Each element:
 * {"serial","model","fw_version","state","first_seen","provisioned_at"
 * (null if never),"updated_at","reissue_requested","cert_id","thing_name",
 * "cert_sha256","cert_serial","not_after","cert_status"[,"certificate_pem"]}.
 */
struct db_query_devices {
        /* in: devices ordered by (updated_at, serial), from (since_ms, after_serial) exclusive */
        int64_t since_ms;
        char after_serial[DB_SERIAL_MAX];       /* "" = from the first device updated at since_ms */
        unsigned limit;                         /* 0 = DB_QUERY_LIMIT_MAX; at most that */
        bool include_pem;
        /* out */
        struct cJSON *devices;                  /* array; caller cJSON_Delete()s */
        bool more;                              /* a full page: ask again from the last row */
};

/*
 * DB_QUERY_STATS: exact counts, read from the totals the writer keeps in the
 * same transactions as the rows (schema 3): constant time, whatever the size
 * of the database.
 */
struct db_stats {
        uint64_t devices[_DB_DEVICE_STATE_MAX];
        uint64_t certificates;                  /* ever issued */
        uint64_t certificates_by_status[_DB_CERT_STATUS_MAX];
        uint64_t attempts[_DB_OUTCOME_MAX];
        uint64_t outbox[_DB_OUTBOX_STATE_MAX];
};

/*
 * DB_OUTBOX_CLAIM: takes up to limit pending rows due at now_ms (0 = now),
 * oldest due first, marks them in_flight and bumps their attempts. Each
 * element: {"id","kind","attempts","cert_id"|"signer_id","payload":{...},
 * "certificate_pem","certificate_der" (lowercase hex)} of the device
 * certificate (register_cert, revoke_cert; then also "model", "fw_version"
 * of the device and "signer_sha256") or the signer certificate
 * (register_ca). The array is sorted by (due, id) in C (RETURNING has no
 * order). A row whose certificate or signer is gone is failed with the
 * reason and left out; the rest are claimed. Ids are JSON numbers (exact:
 * rowids stay far below 2^53). Rows left in_flight by a crash return to
 * pending at db_open().
 */
struct db_outbox_claim {
        /* in */
        unsigned limit;                         /* 1..DB_OUTBOX_CLAIM_MAX */
        int64_t now_ms;
        /* out */
        struct cJSON *items;                    /* array; caller cJSON_Delete()s */
};

enum db_outbox_result {
        DB_OUTBOX_RESULT_DONE,
        DB_OUTBOX_RESULT_RETRY,                 /* pending again at retry_at_ms */
        DB_OUTBOX_RESULT_FAILED,                /* permanent; shown, not retried */
        DB_OUTBOX_RESULT_PROGRESS,              /* a step succeeded: stays in_flight, progress kept */
};

/*
 * DB_OUTBOX_COMPLETE: settles a claimed row, or (PROGRESS) records how far
 * its job got. -ENOENT unknown id, -ESTALE not in_flight.
 *
 * The job's progress lives in the row's payload (so a restart resumes it):
 * "step" (the next step's name), "cert_arn" (MAR: the certificate's ARN),
 * "step_attempts" (tries of that step so far), "code" (AWS's error code of
 * the last failure), and for register_ca "ca_certificate_id" and
 * "ca_certificate_arn" (the signer's registration: one row per signer).
 * A NULL field (or set_step_attempts false) leaves the payload's value as it is.
 *
 * DONE and FAILED append an audit record in the same transaction:
 * 'aws.registered' (register_cert), 'aws.ca_registered' (register_ca) or
 * 'aws.failed', with the row id, kind, step, ARN or code and message.
 */
struct db_outbox_complete {
        /* in */
        int64_t id;
        enum db_outbox_result result;
        int64_t retry_at_ms;                    /* RETRY */
        char error[DB_TEXT_MAX];                /* RETRY, FAILED: "Code: message" */
        const char *step;                       /* borrowed; NULL = unchanged */
        const char *cert_arn;                   /* borrowed; NULL = unchanged */
        const char *code;                       /* borrowed; NULL = unchanged ("" clears) */
        const char *ca_cert_id;                 /* borrowed; register_ca DONE */
        const char *ca_cert_arn;                /* borrowed; register_ca DONE */
        bool set_step_attempts;                 /* else step_attempts is ignored */
        unsigned step_attempts;
        bool quiet;                             /* DONE without the audit record (nothing was registered) */
};

/*
 * DB_OUTBOX_ENQUEUE: queues @kind once for cert_id (register_cert,
 * revoke_cert) or signer_id (register_ca), like the provisioned outcome
 * does; an existing row (in any state) is returned as it is.
 */
struct db_outbox_enqueue {
        /* in */
        enum db_outbox_kind kind;
        int64_t cert_id;
        int64_t signer_id;
        const char *payload_json;               /* borrowed; NULL = "{}"; a JSON object */
        /* out */
        int64_t id;
        bool created;
};

/*
 * DB_OUTBOX_REQUEUE: an operator's retry: failed rows (id, or all when id
 * is 0) become pending, due now, with their step's tries reset; audit
 * 'aws.retry'. -ENOENT unknown id, -ESTALE the row is not failed.
 */
struct db_outbox_requeue {
        /* in */
        int64_t id;                             /* 0 = every failed row */
        char actor[DB_LABEL_MAX];
        /* out */
        uint64_t count;
};

/*
 * DB_QUERY_OUTBOX (reader): the outbox for `provctl aws status` and the
 * worker's polling. report (unless summary_only) is an object:
 *   {"pending":{STEP:n,...},"in_flight":{...},"failed":{...} (by kind/step),
 *    "oldest_pending":{"id","created_at","next_attempt_at"}|null,
 *    "errors":[{"id","kind","state","step","code","error","attempts"},...]
 *    (the most recent failures, newest first, at most 10)}
 * Counting by step reads the pending, in_flight and failed rows (not done).
 */
struct db_query_outbox {
        /* in */
        bool summary_only;
        /* out */
        uint64_t pending;
        uint64_t pending_due;                   /* due at now_ms, counted up to 1024 */
        int64_t next_due_ms;                    /* earliest pending next_attempt_at; INT64_MAX = none */
        int64_t now_ms;                         /* in: 0 = now */
        struct cJSON *report;                   /* caller cJSON_Delete()s; NULL with summary_only */
};

/*
 * DB_QUERY_ISSUED (a read): the certificates recorded at or after since_ms,
 * counted by the minute they were recorded in, walking back from the newest
 * row (certificates are append-only, so their ids follow issued_at) and
 * stopping at the first older row or after max_rows rows: the cost is what
 * the last hour issued, never the size of the table. The issuance budget's
 * durable count (a restart does not refill it).
 */
#define DB_ISSUED_MINUTES 60
struct db_query_issued {
        /* in */
        int64_t since_ms;
        unsigned max_rows;                      /* 1.. */
        /* out */
        uint64_t count;
        uint32_t per_minute[DB_ISSUED_MINUTES]; /* [(issued_at / 60000) % 60] */
};

struct db_req;
typedef void (*db_done_cb)(struct db_req *req);

struct db_req {
        enum db_req_type type;
        union {
                struct db_lookup_device lookup;
                struct db_record_issuance issuance;
                struct db_record_outcome outcome;
                struct db_audit audit;
                struct db_reissue_request reissue;
                struct db_signer_ensure signer;
                struct db_signer_retire retire;
                struct db_query_devices devices;
                struct db_stats stats;          /* DB_QUERY_STATS: out */
                struct db_outbox_claim claim;
                struct db_outbox_complete complete;
                struct db_query_issued issued;
                struct db_outbox_enqueue enqueue;
                struct db_outbox_requeue requeue;
                struct db_query_outbox outbox;
        };
        /* out: 0 or -errno; on failure nothing of this request was written */
        int result;
        char errmsg[DB_ERRMSG_MAX];             /* why, when result < 0 */
        uint64_t batch;                         /* sequence number of the batch that ran it */

        db_done_cb done;
        void *userdata;

        /* private */
        struct db_req *queue_next;
        uint64_t read_after;                    /* reads: the writes submitted before it */
};

struct db_options {
        unsigned max_batch;                     /* requests per transaction; 0 = 256 */
        unsigned batch_delay_us;                /* wait this long for a batch to fill; 0 = never */
        unsigned busy_timeout_ms;               /* another process holding the lock; 0 = 5000 */
        unsigned checkpoint_pages;              /* WAL pages after a commit that start a checkpoint; 0 = 4000 */
        uint64_t wal_limit_bytes;               /* a WAL larger than this is checkpointed and truncated as soon
                                                 * as no reader holds it; 0 = 64 MiB */
        bool no_integrity_check;                /* skip PRAGMA quick_check at open (tests, tools) */
        unsigned known_filter_min;              /* the known-serials filter's least capacity (tests); 0 = 65536 */
        char *errbuf;                           /* optional: db_open() failure reason */
        size_t errbuf_size;
};

struct db_metrics {
        uint64_t batches;                       /* committed or failed */
        uint64_t requests;                      /* completed (reads included) */
        uint64_t requests_failed;               /* (reads included) */
        uint64_t commit_failures;               /* batches whose COMMIT failed */
        uint64_t isolated_batches;              /* run again with a savepoint per request after one failed */
        uint64_t checkpoints;                   /* WAL checkpoints run by the checkpoint thread */
        uint64_t checkpoint_retries;            /* found the WAL busy, tried again */
        uint64_t checkpoint_failures;           /* any other error */
        uint64_t checkpoint_truncates;          /* WAL over wal_limit_bytes, checkpointed whole and truncated */
        uint64_t reads;                         /* completed by the reader thread */
        uint64_t lookups_unread;                /* db_device_maybe_known() said unknown: no lookup needed */
        bool known_filter_ready;                /* ... it has scanned the table and is not over capacity */
        uint64_t known_filter_grown;            /* ... replaced by a larger one (it was over capacity) */
        unsigned max_batch_seen;
        unsigned queued;                        /* waiting for the writer now */
};

/**
 * Opens (creating) and migrates the database at @path, checks it (PRAGMA
 * quick_check: every page of every table and index is read), checks its
 * identity against the marker file @path.id (written at the first start),
 * resets AWS outbox rows a crash left in_flight, prepares every statement
 * and starts the writer thread, the reader thread and a checkpoint thread
 * (copies the WAL back into the database with its own connection, off the
 * writer's path). Synchronous: call at startup. @opt may be NULL. Errors:
 *   -EBADMSG          not a database, or damaged (errbuf names the damage
 *                     and, when SQLite tells, the table or index)
 *   -EPROTONOSUPPORT  written by a newer provd (the file is not touched)
 *   -EMEDIUMTYPE      not a provd database
 *   -ENODATA          @path is an empty (0-byte) file: never taken for a new database
 *   -ENOENT           @path is missing but its marker remains (the database was lost)
 *   -ESTALE           @path is another database than the marker names (replaced)
 * A first start is @path and @path.id both absent.
 */
int db_open(struct db **ret, uv_loop_t *loop, const char *path, const struct db_options *opt);

/**
 * Stops accepting requests (later db_submit() calls complete with
 * -ESHUTDOWN), lets the writer finish and commit everything queued, stops
 * it, closes the connection and the async handle, then calls @done (may be
 * NULL) on the loop thread. @db is freed after @done returns. Returns at
 * once; never blocks the loop on SQLite.
 */
void db_close(struct db *db, void (*done)(struct db *db, void *userdata), void *userdata);

/**
 * Queues @req (set type, inputs, done, userdata first). Never blocks on
 * SQLite; no allocation. req->done runs later on the loop thread, also for
 * errors. The caller must not touch @req until then.
 */
void db_submit(struct db *db, struct db_req *req);

/** Counters since db_open(); loop thread. */
void db_get_metrics(struct db *db, struct db_metrics *ret);

/**
 * False only when no device with @serial is in the database or in an
 * issuance submitted through db_submit(): its DB_LOOKUP_DEVICE would answer
 * "not found", and the caller may go on without it (no reader hand-off).
 * True when it may be known (about 1 % of the unknown ones), while the table
 * is still being scanned at start, or for a serial that is not well formed:
 * then the lookup answers. No SQLite, no system call; loop thread. A Bloom
 * filter kept by db_submit() and the reader thread (daemon/db-known.c).
 */
bool db_device_maybe_known(struct db *db, const char *serial);

/**
 * Free space, in bytes, that provd may use on the filesystem holding the
 * database (statvfs(): f_bavail * f_frsize of its directory), at most 10 ms
 * old. At most one system call, no SQLite: for the loop thread only, e.g. by the station before
 * it starts a session, to refuse one that could not be recorded. A board
 * needs about 40 KB (docs/PERFORMANCE.md: ~22-35 KB written per board,
 * plus the WAL up to wal_limit_bytes).
 */
int db_free_space(struct db *db, uint64_t *ret_bytes);

/* --- offline tools (provctl without the daemon) --------------------------- */

/**
 * Opens an existing provd database read-only for reports (audit verify and
 * export, device listings). Refuses newer (-EPROTONOSUPPORT), corrupt
 * (-EBADMSG), empty (-ENODATA) databases. Close with sqlite3_close().
 */
int db_open_readonly(sqlite3 **ret, const char *path);
/** The same, with a one-line reason in @errbuf on failure. */
int db_open_readonly_err(sqlite3 **ret, const char *path, char *errbuf, size_t errlen);

/**
 * PRAGMA quick_check (@full: integrity_check) on @conn: 0 when clean;
 * -EBADMSG when damaged, with up to ten problems in @errbuf, each naming the
 * table or index when SQLite says which b-tree; other -errno when the check
 * could not run.
 */
int db_check_integrity(sqlite3 *conn, bool full, char *errbuf, size_t errlen);
/** The totals behind DB_QUERY_STATS against a count of the rows: 0 equal, -EBADMSG naming the first that differs. */
int db_check_totals(sqlite3 *conn, char *errbuf, size_t errlen);

/** The SQLite→errno mapping of schema_errno(). */
int db_errno(int sqlite_rc);

/** Lowercase hex of SHA-256(@data); @ret has DB_SHA256_HEX_MAX bytes. */
void db_sha256_hex(const void *data, size_t len, char ret[DB_SHA256_HEX_MAX]);

/** PEM ("-----BEGIN CERTIFICATE-----") of @der, malloc()ed; NULL on ENOMEM. */
char *db_der_to_pem(const uint8_t *der, size_t len);

#endif
