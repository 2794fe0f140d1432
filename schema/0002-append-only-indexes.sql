-- SPDX-License-Identifier: MIT
-- provd schema 2: every index written per board grows at its end, except the
-- devices primary key.
--
-- Each index keyed by a random value (a board serial, a fingerprint) makes
-- every provisioned board dirty one more B-tree page at a random place, and
-- every such page is a 4 KiB write to the WAL, its checksum, and a second
-- write at the checkpoint. Schema 1 had five per board; at 256 ports that
-- was about a sixth of provd's CPU beyond the cryptography
-- (docs/PERFORMANCE.md, "Fourth round"). Schema 2 keeps one, the devices
-- primary key that the lookup of every HELLO needs:
--
--   * attempts_serial (attempts by board serial) and certificates_device
--     (certificates by board serial): nothing in provd reads through them.
--     An operator's history query for one board scans attempts (about 10 ms
--     per 100,000 rows); certificates are reached from devices through
--     devices.current_cert_id. Devices are never deleted and their serial
--     never changes, so the foreign key certificates.device_serial never
--     needs the child index either.
--   * certificates.sha256 loses its UNIQUE constraint (and with it the index
--     SQLite built for it; a column constraint cannot be dropped, hence the
--     rebuild below). The uniqueness it guarded still holds: serial_hex is
--     UNIQUE, two certificates with different serials differ in DER and so in
--     SHA-256, and the DER is stored beside its fingerprint.
--   * certificates.serial_hex stays UNIQUE: from schema 2 on, provd writes
--     serials that begin with the issuance time in milliseconds
--     (certs-hsm/cert.c), so that index grows at its end too.
--
-- The rebuild follows SQLite's procedure for changing a table definition
-- (https://www.sqlite.org/lang_altertable.html#otheralter): migrate.c runs
-- migrations with foreign_keys off and checks foreign keys before COMMIT.
-- Rows keep their ids, so every reference to them stays valid. The CHECK
-- constraints are the same as in schema 1.

DROP INDEX attempts_serial;
DROP INDEX certificates_device;

CREATE TABLE certificates_v2 (
    id            INTEGER PRIMARY KEY,
    device_serial TEXT NOT NULL REFERENCES devices (serial),
    signer_id     INTEGER NOT NULL REFERENCES signers (id),
    serial_hex    TEXT NOT NULL UNIQUE          -- certificate serial number, hex (RFC 5280: <= 20 octets,
                                                -- 21 with a sign byte)
                  CHECK (length(serial_hex) BETWEEN 2 AND 42 AND length(serial_hex) % 2 = 0
                         AND serial_hex NOT GLOB '*[^0-9a-f]*'),
    sha256        TEXT NOT NULL                 -- SHA-256 of der, hex = AWS IoT certificate id
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

INSERT INTO certificates_v2 (id, device_serial, signer_id, serial_hex, sha256, der, thing_name, not_before,
                             not_after, issued_at, proven_at, status, status_at)
    SELECT id, device_serial, signer_id, serial_hex, sha256, der, thing_name, not_before,
           not_after, issued_at, proven_at, status, status_at
    FROM certificates;

DROP TABLE certificates;
ALTER TABLE certificates_v2 RENAME TO certificates;
-- signer_id is the same for long runs of rows: this index grows at its end.
CREATE INDEX certificates_signer ON certificates (signer_id);
