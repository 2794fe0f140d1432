-- SPDX-License-Identifier: MIT
-- provd schema 3: the totals behind `provctl stats`, kept as they change.
--
-- Schema 2 counted them on demand (GROUP BY over devices, certificates,
-- attempts and aws_outbox): a scan of every table, about a second per million
-- devices, on the connection that records the boards. From schema 3 the writer
-- adds each batch's changes to these rows in the batch's own transaction
-- (daemon/db-common.c, db_totals_flush()), so a count is always that of the
-- committed rows and reading them costs the same on any database. Triggers
-- per row would do the same at a cost per board (docs/PERFORMANCE.md).
--
-- One row per counter, named as the stats query names them: 'devices.<state>',
-- 'certificates.total', 'certificates.<status>', 'attempts.<outcome>',
-- 'aws_outbox.<state>'. A name provd does not know is ignored when read.

CREATE TABLE totals (
    name TEXT PRIMARY KEY
         CHECK (length(name) BETWEEN 1 AND 64),
    n    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO totals (name, n)
    SELECT 'devices.' || s.column1, (SELECT count(*) FROM devices WHERE state = s.column1)
    FROM (VALUES ('issued'), ('provisioned'), ('clone_suspected')) AS s;
INSERT INTO totals (name, n) SELECT 'certificates.total', count(*) FROM certificates;
INSERT INTO totals (name, n)
    SELECT 'certificates.' || s.column1, (SELECT count(*) FROM certificates WHERE status = s.column1)
    FROM (VALUES ('issued'), ('active'), ('superseded'), ('revoked')) AS s;
INSERT INTO totals (name, n)
    SELECT 'attempts.' || s.column1, (SELECT count(*) FROM attempts WHERE outcome = s.column1)
    FROM (VALUES ('provisioned'), ('already_provisioned'), ('failed'), ('rejected'), ('clone_suspected'),
                 ('aborted')) AS s;
INSERT INTO totals (name, n)
    SELECT 'aws_outbox.' || s.column1, (SELECT count(*) FROM aws_outbox WHERE state = s.column1)
    FROM (VALUES ('pending'), ('in_flight'), ('done'), ('failed')) AS s;
