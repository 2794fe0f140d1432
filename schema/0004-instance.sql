-- SPDX-License-Identifier: MIT
-- provd schema 4: the database's identity.
--
-- One row, made once, when the database is created or first migrated to
-- schema 4: a random 128-bit id. provd writes the same id into a marker file
-- beside the database (provd.db.id, daemon/db-identity.c) and compares the two
-- at every start, so that an emptied, deleted or replaced database file is
-- refused instead of being taken for a first start and silently recreated.

CREATE TABLE instance (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    id         TEXT NOT NULL
               CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    created_at INTEGER NOT NULL                 -- ms
) STRICT;

INSERT INTO instance (one, id, created_at)
    VALUES (1, lower(hex(randomblob(16))), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
