-- SPDX-License-Identifier: MIT
-- provd schema 1: signers, devices, certificates, provisioning attempts, the
-- AWS outbox and the hash-chained audit log.
--
-- No counter tables or triggers: `provctl stats` counts with GROUP BY when an
-- operator asks, so the per-board writes (the hot path) stay as few as possible.
--
-- Conventions, for every table:
--   * Times are INTEGER milliseconds since 1970-01-01T00:00:00Z (UTC). Columns
--     are named *_at, ts, not_before and not_after. A certificate validity
--     "no expiry" (99991231235959Z) is 253402300799000.
--   * Identifiers people and AWS read are lowercase hex TEXT: device serials,
--     certificate serials, SHA-256 fingerprints (certificates.sha256 is the AWS
--     IoT certificate id). Raw bytes are BLOBs: DER, public keys, audit hashes.
--     Writers lowercase hex before storing; the CHECKs refuse anything else.
--   * STRICT tables: a value of the wrong type is an error, never a silent
--     conversion.
--   * migrate.c runs this file in one transaction together with
--     PRAGMA user_version = 1 and a schema_history row: no BEGIN/COMMIT here,
--     and a failing statement leaves the database untouched.
--   * Changing a CHECK later means rebuilding the table in a new migration
--     (SQLite cannot ALTER a constraint), so the value sets below are meant to
--     be complete for the design (docs/ARCHITECTURE.md).
--   * Value sets are written `x = 'a' OR x = 'b'`, not `x IN ('a', 'b')`:
--     SQLite 3.40 evaluates a constant IN list in a CHECK or trigger by
--     building a temporary index on every insert and update, which was a
--     third of the writer thread's instructions per board (docs/PERFORMANCE.md).

-- 0x70726f76 = 'prov': lets schema_open() tell a provd database from any
-- other SQLite file before it migrates anything into it.
PRAGMA application_id = 1886547830;

-- One row per applied migration (written by migrate.c, not by the SQL).
CREATE TABLE schema_history (
    version    INTEGER PRIMARY KEY,             -- migration number; user_version after it
    name       TEXT NOT NULL,                   -- file name without .sql, e.g. '0001-init'
    sha256     TEXT NOT NULL                    -- of the SQL text embedded in the binary
               CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    applied_at INTEGER NOT NULL                 -- ms
) STRICT;

-- Signer CAs that issue device certificates. The private key lives behind
-- key_uri (a file path or an RFC 7512 pkcs11: URI); no secret is ever stored.
CREATE TABLE signers (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL                   -- operator's label, e.g. 'line1-2025'
                CHECK (length(name) BETWEEN 1 AND 128),
    key_uri     TEXT NOT NULL                   -- where the key is; a PIN in the URI is refused
                CHECK (length(key_uri) BETWEEN 1 AND 1024
                       AND key_uri NOT LIKE '%pin-value=%'),
    cert_der    BLOB NOT NULL                   -- the signer certificate, DER
                CHECK (length(cert_der) BETWEEN 1 AND 16384),
    cert_sha256 TEXT NOT NULL UNIQUE            -- SHA-256 of cert_der, hex: the signer's identity
                CHECK (length(cert_sha256) = 64 AND cert_sha256 NOT GLOB '*[^0-9a-f]*'),
    subject     TEXT NOT NULL,                  -- RFC 2253 subject, for people
    not_before  INTEGER NOT NULL,               -- ms, from the certificate
    not_after   INTEGER NOT NULL                -- ms, from the certificate
                CHECK (not_after >= not_before),
    state       TEXT NOT NULL DEFAULT 'active'  -- retired: kept for the record, issues nothing new
                CHECK ((state = 'active' OR state = 'retired')),
    created_at  INTEGER NOT NULL,               -- ms, first seen by provd
    retired_at  INTEGER,                        -- ms, set exactly when state = 'retired'
    CHECK ((state = 'retired') = (retired_at IS NOT NULL))
) STRICT;

-- One row per board (secure element serial). Created by the first issuance.
CREATE TABLE devices (
    serial            TEXT PRIMARY KEY NOT NULL -- secure element serial, hex (ATECC: 9 bytes)
                      CHECK (length(serial) BETWEEN 2 AND 64 AND length(serial) % 2 = 0
                             AND serial NOT GLOB '*[^0-9a-f]*'),
    model             TEXT NOT NULL             -- as the board reported it in HELLO
                      CHECK (length(model) <= 128),
    fw_version        TEXT NOT NULL             -- as the board reported it in HELLO
                      CHECK (length(fw_version) <= 64),
    pubkey            BLOB NOT NULL             -- device public key, uncompressed P-256 point
                      CHECK (length(pubkey) = 65 AND substr(pubkey, 1, 1) = x'04'),
    state             TEXT NOT NULL             -- issued: certificate signed, not yet proven;
                                                -- provisioned: board proved it holds it;
                                                -- clone_suspected: same serial showed another key
                      CHECK ((state = 'issued' OR state = 'provisioned' OR state = 'clone_suspected')),
    reissue_requested INTEGER NOT NULL DEFAULT 0 -- operator asked for a new certificate next time
                      CHECK ((reissue_requested = 0 OR reissue_requested = 1)),
    first_seen        INTEGER NOT NULL,         -- ms, first issuance
    provisioned_at    INTEGER,                  -- ms, last successful proof
    updated_at        INTEGER NOT NULL,         -- ms, last change of this row (query cursor)
    current_cert_id   INTEGER                   -- the certificate the board should hold now
                      REFERENCES certificates (id),
    CHECK (state <> 'provisioned' OR provisioned_at IS NOT NULL)
) STRICT, WITHOUT ROWID;
CREATE INDEX devices_updated ON devices (updated_at);

-- Every certificate ever signed. A row is committed before the certificate
-- leaves the daemon (the durability invariant, docs/ARCHITECTURE.md).
CREATE TABLE certificates (
    id            INTEGER PRIMARY KEY,
    device_serial TEXT NOT NULL REFERENCES devices (serial),
    signer_id     INTEGER NOT NULL REFERENCES signers (id),
    serial_hex    TEXT NOT NULL UNIQUE          -- certificate serial number, hex (RFC 5280: <= 20 octets,
                                                -- 21 with a sign byte)
                  CHECK (length(serial_hex) BETWEEN 2 AND 42 AND length(serial_hex) % 2 = 0
                         AND serial_hex NOT GLOB '*[^0-9a-f]*'),
    sha256        TEXT NOT NULL UNIQUE          -- SHA-256 of der, hex = AWS IoT certificate id
                  CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    der           BLOB NOT NULL
                  CHECK (length(der) BETWEEN 1 AND 16384),
    thing_name    TEXT NOT NULL                 -- AWS IoT thing name ([a-zA-Z0-9:_-]{1,128})
                  CHECK (length(thing_name) BETWEEN 1 AND 128
                         AND thing_name NOT GLOB '*[^a-zA-Z0-9:_-]*'),
    not_before    INTEGER NOT NULL,             -- ms
    not_after     INTEGER NOT NULL              -- ms
                  CHECK (not_after >= not_before),
    issued_at     INTEGER NOT NULL,             -- ms, when provd recorded the signature
    proven_at     INTEGER,                      -- ms, when the board proved it holds the key + cert
    status        TEXT NOT NULL DEFAULT 'issued'
                  -- issued: signed, sent or about to be; active: proven on the board;
                  -- superseded: replaced by a newer certificate for the device;
                  -- revoked: withdrawn by an operator
                  CHECK ((status = 'issued' OR status = 'active' OR status = 'superseded' OR status = 'revoked')),
    status_at     INTEGER NOT NULL,             -- ms, last status change
    CHECK (status <> 'active' OR proven_at IS NOT NULL)
) STRICT;
CREATE INDEX certificates_device ON certificates (device_serial);
CREATE INDEX certificates_signer ON certificates (signer_id);

-- One row per provisioning session on a port, whatever its end.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    port        TEXT NOT NULL                   -- device path, e.g. /dev/ttyACM3
                CHECK (length(port) BETWEEN 1 AND 255),
    slot        TEXT NOT NULL                   -- slot label the operator sees
                CHECK (length(slot) BETWEEN 1 AND 63),
    serial      TEXT                            -- NULL when the board never identified itself; no
                                                -- foreign key: a rejected board has no devices row
                CHECK (serial IS NULL OR (length(serial) BETWEEN 2 AND 64 AND length(serial) % 2 = 0
                                          AND serial NOT GLOB '*[^0-9a-f]*')),
    started_at  INTEGER NOT NULL,               -- ms (no ordering CHECK against finished_at:
    finished_at INTEGER NOT NULL,               -- ms  a wall-clock step must not lose a record)
    outcome     TEXT NOT NULL
                CHECK ((outcome = 'provisioned' OR outcome = 'already_provisioned' OR outcome = 'failed'
                        OR outcome = 'rejected' OR outcome = 'clone_suspected' OR outcome = 'aborted')),
    step        TEXT NOT NULL                   -- last step reached (identify, csr, write, prove, ...)
                CHECK (length(step) BETWEEN 1 AND 63),
    error       TEXT                            -- operator-readable reason; NULL when none
                CHECK (error IS NULL OR length(error) <= 255),
    cert_id     INTEGER REFERENCES certificates (id),  -- the certificate this attempt issued/proved
    timings     TEXT                            -- per-step durations, JSON object, e.g. {"csr_ms":120}
                CHECK (timings IS NULL OR (json_valid(timings) AND json_type(timings) = 'object')),
    CHECK (outcome <> 'provisioned' OR (serial IS NOT NULL AND cert_id IS NOT NULL))
) STRICT;
CREATE INDEX attempts_serial ON attempts (serial) WHERE serial IS NOT NULL;
CREATE INDEX attempts_started ON attempts (started_at);

-- Durable queue of AWS IoT calls. A row is enqueued in the same transaction
-- as the state change that needs it, so a crash loses none; the unique
-- indexes make "enqueue" idempotent (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE aws_outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL
                    -- register_cert: MAR (certificate, thing, policy, attach) for cert_id;
                    -- register_ca: JITR/JITP CA registration of signer_id;
                    -- revoke_cert: deactivate/revoke cert_id in AWS
                    CHECK ((kind = 'register_cert' OR kind = 'register_ca' OR kind = 'revoke_cert')),
    cert_id         INTEGER REFERENCES certificates (id),
    signer_id       INTEGER REFERENCES signers (id),
    payload         TEXT NOT NULL DEFAULT '{}'  -- JSON object: what the call needs beyond the ids
                    CHECK (json_valid(payload) AND json_type(payload) = 'object'),
    state           TEXT NOT NULL DEFAULT 'pending'
                    -- pending: due at next_attempt_at; in_flight: claimed by the AWS worker
                    -- (reset to pending when provd starts); done; failed: permanent error
                    CHECK ((state = 'pending' OR state = 'in_flight' OR state = 'done' OR state = 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0  -- times claimed
                    CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,           -- ms
    last_error      TEXT,                       -- last failure, for `provctl aws status`
    created_at      INTEGER NOT NULL,           -- ms
    done_at         INTEGER,                    -- ms, set exactly when state = 'done'
    CHECK (((kind = 'register_cert' OR kind = 'revoke_cert') AND cert_id IS NOT NULL AND signer_id IS NULL)
           OR (kind = 'register_ca' AND signer_id IS NOT NULL AND cert_id IS NULL)),
    CHECK ((state = 'done') = (done_at IS NOT NULL))
) STRICT;
CREATE UNIQUE INDEX aws_outbox_once_cert ON aws_outbox (kind, cert_id) WHERE cert_id IS NOT NULL;
CREATE UNIQUE INDEX aws_outbox_once_signer ON aws_outbox (kind, signer_id) WHERE signer_id IS NOT NULL;
CREATE INDEX aws_outbox_due ON aws_outbox (next_attempt_at) WHERE state = 'pending';
-- db_open() returns rows a crash left in_flight to pending without a table scan.
CREATE INDEX aws_outbox_in_flight ON aws_outbox (id) WHERE state = 'in_flight';

-- Append-only audit log with a hash chain.
--
--   hash = SHA-256( "provd-audit-v1" 0x00
--                   || prev_hash                      32 bytes
--                   || be64(id) || be64(ts)           two's complement, big endian
--                   || str(actor) || str(action) || str(serial) || str(details) )
--   str(x)    = be32(byte length of x) || x          (UTF-8 as stored, no NUL)
--   str(NULL) = be32(0xffffffff)                      (serial only)
--
-- The first row (id 1) has prev_hash = 32 zero bytes; every next row has the
-- previous row's hash and id + 1. daemon/audit.c computes and verifies this.
-- The triggers stop ordinary UPDATE/DELETE and an INSERT that does not extend
-- the chain; someone with write access to the file can drop them, which is
-- what the chain (`provctl audit verify`) is there to detect.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT, -- contiguous from 1; AUTOINCREMENT keeps the
                                                 -- highest id ever used in sqlite_sequence, so a
                                                 -- deleted last row leaves a gap too
    ts        INTEGER NOT NULL,                  -- ms
    actor     TEXT NOT NULL                      -- 'provd' or 'uid:<n>' (control socket caller)
              CHECK (length(actor) BETWEEN 1 AND 63),
    action    TEXT NOT NULL                      -- 'noun.verb', e.g. 'cert.issue'
              CHECK (length(action) BETWEEN 3 AND 63 AND action GLOB '[a-z]*.[a-z]*'
                     AND action NOT GLOB '*[^a-z0-9._]*'),
    serial    TEXT                               -- device concerned, hex; NULL when none
              CHECK (serial IS NULL OR (length(serial) BETWEEN 2 AND 64 AND length(serial) % 2 = 0
                                        AND serial NOT GLOB '*[^0-9a-f]*')),
    details   TEXT NOT NULL DEFAULT '{}'         -- JSON object, hashed byte for byte as stored
              CHECK (json_valid(details) AND json_type(details) = 'object'),
    prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash      BLOB NOT NULL CHECK (length(hash) = 32)
) STRICT;
CREATE INDEX audit_log_ts ON audit_log (ts);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- The id must be the next one ever handed out and prev_hash the hash of the
-- last row, so a writer with a stale idea of the chain head fails instead of
-- forking the chain.
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
WHEN NEW.id IS NOT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0) + 1
  OR NEW.prev_hash IS NOT coalesce((SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), zeroblob(32))
BEGIN
    SELECT RAISE(ABORT, 'audit_log: row does not extend the hash chain');
END;



