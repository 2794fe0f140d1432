#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Live signer rotation: `provctl signer rotate` in the middle of a 200-board run.

No board fails; every certificate chains to the signer recorded with it; those
issued before the switch verify under the old signer and not the new one, those
after under the new one; a board's stored signer certificate (PUT_CERT's chain)
is the one of its certificate's signer; the old signer is kept, retired; the
rotation is audited with the caller's uid; provd never restarted."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from provdtest import PROVCTL, Env, check, run, sha256, wait_until  # noqa: E402

PORTS = 8
BOARDS = 200


def pem_of(der, path):
    p = subprocess.run(["openssl", "x509", "-inform", "DER", "-out", path], input=der, capture_output=True)
    check(p.returncode == 0, f"openssl x509: {p.stderr.decode()}")


def verify_all(env, paths, signer_pem):
    """openssl verify of many certificates under root + one signer: the names that failed."""
    r = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", os.path.join(env.ca, "root.pem"),
                        "-untrusted", signer_pem, *paths], capture_output=True, text=True)
    ok = {line.rsplit(":", 1)[0] for line in r.stdout.splitlines() if line.endswith(": OK")}
    return [p for p in paths if p not in ok]


def test_rotation_mid_run():
    env = Env("rotate")
    try:
        env.start_provd()
        pid = env.provd.pid
        cycles = BOARDS // PORTS
        # 150 ms key generation per board: the run lasts a few seconds, so the
        # rotation lands in its middle with boards in flight on every port.
        env.start_sim(PORTS, "--cycles", cycles, "--total", BOARDS, "--genkey-ms", 150)
        env.wait_totals(timeout=120, provisioned=BOARDS * 3 // 10)

        r = subprocess.run([PROVCTL, "--socket", env.sock, "signer", "rotate", "--dir", env.ca,
                            "--config", env.conf_path], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"signer rotate failed ({r.returncode}): {r.stdout}{r.stderr}\n{env.log_tail()}")
        check("replaces signer" in r.stdout, f"no rotation reported: {r.stdout}")
        switched = env.totals().get("provisioned", 0)
        check(switched < BOARDS, f"the rotation came after the run ({switched} provisioned already)")

        wait_until(lambda: any(l.startswith("done") for l in env.sim_lines()), 180, "boardsim done")
        done = [l for l in env.sim_lines() if l.startswith("done")][0]
        check(f"provisioned={BOARDS}" in done and "failed=0" in done, f"boards failed across the rotation: {done}")
        check(env.provd.poll() is None and env.provd.pid == pid, "provd restarted")
        st = env.status()
        check(st["totals"]["failed"] == 0 and st["totals"]["rejected"] == 0, f"failures: {st['totals']}")

        db = env.db()
        signers = db.execute("SELECT id, cert_der, cert_sha256, state, retired_at FROM signers ORDER BY id").fetchall()
        check(len(signers) == 2, f"expected the old and the new signer, got {len(signers)}")
        old, new = signers
        check(old["state"] == "retired" and old["retired_at"] is not None, "old signer not kept as retired")
        check(new["state"] == "active", "new signer not active")
        check(st["signer"]["id"] == new["id"], f"status shows signer {st['signer']['id']}, not {new['id']}")

        pems = {}
        for s in signers:
            p = os.path.join(env.dir, f"signer-{s['id']}.pem")
            pem_of(s["cert_der"], p)
            pems[s["id"]] = p
        by_signer = {old["id"]: [], new["id"]: []}
        certs = db.execute("SELECT id, signer_id, der, issued_at FROM certificates ORDER BY id").fetchall()
        check(len(certs) == BOARDS, f"{len(certs)} certificates for {BOARDS} boards")
        for c in certs:
            p = os.path.join(env.dir, f"cert-{c['id']}.pem")
            pem_of(c["der"], p)
            by_signer[c["signer_id"]].append(p)
        n_old, n_new = len(by_signer[old["id"]]), len(by_signer[new["id"]])
        check(n_old >= BOARDS * 3 // 10 and n_new > 0, f"old signer issued {n_old}, new {n_new}")
        for sid, paths in by_signer.items():
            other = new["id"] if sid == old["id"] else old["id"]
            bad = verify_all(env, paths, pems[sid])
            check(not bad, f"{len(bad)} certificates of signer {sid} do not verify under it: {bad[:3]}")
            wrong = verify_all(env, paths, pems[other])
            check(len(wrong) == len(paths), f"{len(paths) - len(wrong)} certificates of signer {sid} verify "
                                            f"under signer {other} too")
        # Issued in order: everything the new signer signed came after the old one's last switch-time cert.
        first_new = min(c["issued_at"] for c in certs if c["signer_id"] == new["id"])
        late_old = [c for c in certs if c["signer_id"] == old["id"] and c["issued_at"] > first_new + 5000]
        check(not late_old, f"{len(late_old)} certificates of the old signer issued long after the switch")

        # PUT_CERT's chain: each slot's last board holds its certificate's signer.
        signer_der = {s["id"]: bytes(s["cert_der"]) for s in signers}
        for i in range(PORTS):
            dev, chain = env.board_file(i, "device.der"), env.board_file(i, "signer.der")
            check(dev is not None and chain is not None, f"board {i} holds no certificate")
            row = db.execute("SELECT signer_id FROM certificates WHERE sha256 = ?", (sha256(dev),)).fetchone()
            check(row is not None, f"board {i}'s certificate is not recorded")
            check(chain == signer_der[row["signer_id"]], f"board {i} got another signer's certificate as its chain")

        audit = db.execute("SELECT actor, details FROM audit_log WHERE action = 'signer.rotate'").fetchall()
        check(len(audit) == 1 and audit[0]["actor"] == f"uid:{os.geteuid()}", f"rotation audit: {audit}")
        check(new["cert_sha256"] in audit[0]["details"] and old["cert_sha256"] in audit[0]["details"],
              "the audit row does not name both signers")
        check(db.execute("SELECT count(*) FROM audit_log WHERE action = 'signer.retire'").fetchone()[0] == 1,
              "no signer.retire audit row")
        db.close()
        print(f"# old signer issued {n_old}, new signer {n_new}; {switched} boards provisioned at the switch")
        r = env.ctl("signer", "status", "--db", env.db_path, "--json", check_rc=False)
        check(r.returncode == 0, f"signer status: {r.stdout}{r.stderr}")
        rows = {o["id"]: o for o in json.loads(r.stdout)}
        check(rows[old["id"]]["state"] == "retired" and rows[old["id"]]["certificates"] == n_old and
              rows[new["id"]]["state"] == "active" and rows[new["id"]]["certificates"] == n_new,
              f"signer status disagrees with the records: {r.stdout}")
        r = env.ctl("audit", "verify", "--db", env.db_path, check_rc=False)
        check(r.returncode == 0, f"audit chain: {r.stdout}{r.stderr}")

        # The next start uses the new signer (the drop-in names it), no second rotation.
        check(env.stop_provd() == 0, "provd did not exit cleanly")
        env.start_provd()
        st = env.status()
        check(st["signer"]["id"] == new["id"], "after a restart provd does not use the rotated signer")
        # A reload that names the same signer is no rotation.
        r = env.ctl("reload", "--json", check_rc=False)
        check(r.returncode == 0 and json.loads(r.stdout).get("rotated") is False, f"plain reload: {r.stdout}{r.stderr}")
        check(len(env.db().execute("SELECT id FROM signers").fetchall()) == 2, "a reload added a signer")
    finally:
        env.close()


def test_rotation_refused_keeps_signer():
    env = Env("rotate-bad")
    try:
        env.start_provd()
        before = env.status()["signer"]["id"]
        # A drop-in naming a key provd must refuse (world-readable): the old signer stays.
        bad_key = os.path.join(env.ca, "bad.key")
        with open(os.path.join(env.ca, "signer.key"), "rb") as f:
            data = f.read()
        with open(bad_key, "wb") as f:
            f.write(data)
        os.chmod(bad_key, 0o644)
        os.makedirs(env.conf_path + ".d", exist_ok=True)
        with open(env.conf_path + ".d/90-signer-rotation.conf", "w") as f:
            f.write(f"[signer]\nuri = file:{bad_key}\ncert = {os.path.join(env.ca, 'signer.pem')}\n")
        r = env.ctl("reload", check_rc=False)
        check(r.returncode != 0, "a world-readable signer key was switched to")
        time.sleep(0.2)
        check(env.status()["signer"]["id"] == before, "the signer changed after a refused rotation")
        check("chmod 600" in env.log_tail(), f"no clear reason in the log: {env.log_tail()}")
        env.start_sim(2, "--cycles", 2, "--total", 4)
        env.wait_totals(timeout=60, provisioned=4)
    finally:
        env.close()


def test_refused_rotation_leaves_no_dropin():
    """provctl signer rotate --cert with a certificate that is not the key's: provd refuses it, and
    provctl takes its drop-in back, so the next start still uses the signer provd kept."""
    env = Env("rotate-undo")
    try:
        env.start_provd()
        before = env.status()["signer"]["id"]
        other = os.path.join(env.dir, "other")
        subprocess.run([PROVCTL, "ca", "init", "--dir", other], check=True, stdout=subprocess.DEVNULL)
        r = subprocess.run([PROVCTL, "--socket", env.sock, "signer", "rotate", "--config", env.conf_path,
                            "--cert", os.path.join(other, "signer.pem"),
                            "--signer-uri", "file:" + os.path.join(env.ca, "signer.key")],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode != 0, f"a signer whose certificate is not its key's was switched to: {r.stdout}")
        dropin = env.conf_path + ".d/90-signer-rotation.conf"
        check(not os.path.exists(dropin), "the refused signer's drop-in was left for the next start")
        check(env.status()["signer"]["id"] == before, "the signer changed after a refused rotation")
        check(env.stop_provd() == 0, "provd did not exit cleanly")
        env.start_provd()
        check(env.status()["signer"]["id"] == before, "the next start does not use the kept signer")
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(run([test_rotation_mid_run, test_rotation_refused_keeps_signer, test_refused_rotation_leaves_no_dropin]))
