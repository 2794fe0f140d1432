#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Storage faults in one run (issue 14): kill -9 at random moments, a full disk and a foreign write lock.
#
# A 1,000-board run on provd-boardsim with replug cycles (as bench.py runs it)
# while provd is killed with SIGKILL at 20 random moments and restarted, the
# filesystem of the database (a tmpfs of its own, in a private mount namespace)
# is filled to the last byte for a while, and a second SQLite connection holds
# BEGIN IMMEDIATE for 20 s. Afterwards, with no board replugged by hand: every
# board that ever stored a certificate (it answered PUT_CERT with CERT_OK) is
# `provisioned` with that certificate current and its register_cert outbox job,
# no device has a second certificate, no board was told "failed" while holding
# one, and the audit chain verifies. The figures (kills, retries, refusals,
# time) are printed as TAP comments; nothing is timed.

import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from provdtest import Env, Failure, check, wait_until, run, TIMEOUT_SCALE  # noqa: E402

BOARDS = int(os.environ.get("STORAGE_FAULTS_BOARDS", "1000"))
PORTS = 64
# A restart takes longer on a sanitizer build (TIMEOUT_SCALE > 1): shorter uptimes there, so
# that the 20 kills fit in the run.
UPTIME = (0.2, 1.5) if TIMEOUT_SCALE == 1 else (0.1, 0.8)
KILLS = 20
LOCK_S = 20
FULL_S = 4
TMPFS_MB = 160
MIN_FREE_MB = 8


def in_private_mount_ns():
    """True in the private mount namespace main() re-runs this script in (as root), where it may mount."""
    return os.environ.get("STORAGE_FAULTS_NS") == "1"


class SimLog:
    """Follows the simulator's events: which board (serial) holds a certificate, what it was told."""

    def __init__(self, env):
        self.env = env
        self.pos = 0
        self.current = {}           # board name -> serial plugged there now
        self.holds_cert = set()     # serials that answered PUT_CERT with CERT_OK
        self.results = {}           # serial -> list of verdicts
        self.done = None

    def poll(self):
        lines = self.env.sim_lines()
        for line in lines[self.pos:]:
            w = line.split()
            if not w:
                continue
            if w[0] == "plug":
                m = re.search(r"serial=([0-9A-F]+)", line)
                self.current[w[1]] = m.group(1).lower() if m else None
            elif w[0] == "tx" and len(w) > 2 and w[2] == "CERT_OK":
                if self.current.get(w[1]):
                    self.holds_cert.add(self.current[w[1]])
            elif w[0] == "result":
                m = re.search(r"serial=([0-9A-Fa-f]+)", line)
                if m:
                    self.results.setdefault(m.group(1).lower(), []).append(w[2])
            elif w[0] == "done":
                self.done = line
        self.pos = len(lines)
        return self

    def n_results(self):
        return sum(len(v) for v in self.results.values())


def fill_disk(path):
    """Writes a file that takes every free byte of @path's filesystem; returns its path."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (1 << 20, 4096, 512):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_kill9_full_disk_and_lock():
    if not in_private_mount_ns():
        print("# not root: no private mount namespace for the tmpfs; skipped")
        return
    seed = int(os.environ.get("STORAGE_FAULTS_SEED", str(random.randrange(1 << 30))))
    rnd = random.Random(seed)
    print(f"# seed {seed} (STORAGE_FAULTS_SEED reproduces the kill moments)")
    env = Env("storage", database={"min_free_mb": str(MIN_FREE_MB)},
              timeouts={"response_ms": "2000", "keygen_ms": "4000", "retries": "3", "shutdown_ms": "5000",
                        "session_ms": "600000"})
    t0 = time.monotonic()
    lock_thread = None
    try:
        os.makedirs(env.state, mode=0o755)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0755", "storage-faults", env.state],
                       check=True)
        cycles = (BOARDS + PORTS - 1) // PORTS
        env.start_sim(PORTS, "--seed", str(seed), "--cycles", str(cycles), "--total", str(BOARDS),
                      "--wire-baud", "9600", "--exit-when-done", "--verbose")
        sim = SimLog(env)
        env.start_provd()
        # Kills come at random moments: each at a random uptime (UPTIME) of the provd it
        # kills, 64 boards on 9,600-baud lines (about two seconds per session) in every step. The
        # full disk comes at a random point of the run's second fifth to third, the foreign lock
        # around its middle, while most ports are in a session; no kill during them nor in the
        # 3 s after each (retries are at most 2 s apart): the records that met the fault commit
        # in this provd, which is checked below.
        full_at = rnd.randrange(BOARDS // 5, BOARDS * 7 // 20)
        lock_at = rnd.randrange(BOARDS * 9 // 20, BOARDS * 11 // 20)
        kills = []
        full_done = lock_done = False
        quiet_until = 0
        up_since, uptime = time.monotonic(), rnd.uniform(*UPTIME)

        def restart():
            env.provd.kill()
            env.provd.wait()
            env.provd = None
            env.start_provd()

        while sim.poll().done is None:
            if time.monotonic() - t0 > 600 * TIMEOUT_SCALE:
                raise Failure(f"run not done after 600 s: {sim.n_results()} results\n{env.log_tail()}")
            if env.provd.poll() is not None:
                raise Failure(f"provd exited {env.provd.returncode}:\n{env.log_tail()}")
            n = sim.n_results()
            if not full_done and n >= full_at:
                full_done = True
                # An empty WAL first, so that the next commits must grow it into the full disk
                # (frames written over the space of an old WAL would still fit).
                c = sqlite3.connect(env.db_path, timeout=10)
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                c.close()
                filler = fill_disk(env.state)
                st = os.statvfs(env.state)
                print(f"# disk full at {n} results: {st.f_bavail * st.f_frsize} bytes free, for {FULL_S} s")
                time.sleep(FULL_S)
                os.unlink(filler)
                quiet_until = time.monotonic() + 3
                continue
            if not lock_done and n >= lock_at:
                lock_done = True
                held = threading.Event()

                def hold_lock():
                    c = sqlite3.connect(env.db_path, timeout=30, isolation_level=None)
                    c.execute("BEGIN IMMEDIATE")
                    held.set()
                    time.sleep(LOCK_S)
                    c.execute("ROLLBACK")
                    c.close()
                lock_thread = threading.Thread(target=hold_lock)
                lock_thread.start()
                check(held.wait(60), "could not take the write lock")
                print(f"# foreign write lock at {n} results, for {LOCK_S} s")
                continue
            # No kill while the foreign lock is held: provd's start (db_open) needs the write lock
            # and gives up after busy_timeout_ms; that is the database engine's to change.
            locked_now = lock_thread is not None and lock_thread.is_alive()
            if locked_now:
                quiet_until = time.monotonic() + 3
            now = time.monotonic()
            # A third of the kills before the full disk, a third between it and the lock, the
            # rest after the lock.
            allowed = KILLS if lock_done else KILLS * 2 // 3 if full_done else KILLS // 3
            if len(kills) < allowed and now >= quiet_until and now - up_since >= uptime:
                kills.append((round(now - up_since, 2), n))
                restart()
                up_since, uptime = time.monotonic(), rnd.uniform(*UPTIME)
                continue
            time.sleep(0.02)
        if lock_thread:
            lock_thread.join()
        print(f"# kills (provd uptime s, RESULTs so far): {kills}")
        print(f"# sim: {sim.done}")
        check(len(kills) == KILLS, f"only {len(kills)} kills happened")
        check(full_done and lock_done, "the full disk or the lock did not happen")

        # Boards still waiting (a RESULT not delivered when provd was last killed) are finished
        # by the running provd; wait until no port is in a session.
        def idle():
            st = env.status()
            return st is not None and not any(p["state"] == "busy" for p in st["ports"])
        wait_until(idle, 60, "no port in a session")
        log = open(os.path.join(env.dir, "provd.log")).read()
        # First failure of each record (by serial) and the records that committed after retries.
        first = {}
        recovered = {"full": 0, "locked": 0}
        for line in log.splitlines():
            m = re.search(r"\[([0-9A-F]+)\]: ", line)
            if not m:
                continue
            if " yet (" in line and "retrying every" in line:
                first[m.group(1)] = "full" if "full" in line else "locked" if "locked" in line else "other"
            elif re.search(r"recorded after \d+ retries", line) and m.group(1) in first:
                recovered[first[m.group(1)]] = recovered.get(first[m.group(1)], 0) + 1
        failures = [line for line in log.splitlines() if " yet (" in line and "retrying every" in line]
        full = sum(1 for line in failures if "full" in line)
        locked = sum(1 for line in failures if "locked" in line)
        refusals = log.count("database disk nearly full")
        withheld = log.count("cannot record the issuance, certificate withheld")
        print(f"# records that could not commit at first: {len(failures)} ({full} disk full, {locked} locked); "
              f"committed later by the same provd after retries: {recovered['full']} of the disk full, "
              f"{recovered['locked']} of the locked (the others were finished after a restart); "
              f"sessions refused for lack of space: {refusals}; certificates withheld: {withheld}")
        check(full > 0 and recovered["full"] > 0, "no record met the full disk and committed after it")
        check(locked > 0 and recovered["locked"] > 0, "no record met the foreign lock and committed after it")
        check(refusals > 0, "no session was refused while the disk was full")

        db = env.db()
        rows = {r["serial"]: r for r in db.execute(
            "SELECT d.serial, d.state, d.current_cert_id, c.sha256 FROM devices d "
            "LEFT JOIN certificates c ON c.id = d.current_cert_id")}
        outbox = {r[0] for r in db.execute("SELECT cert_id FROM aws_outbox WHERE kind = 'register_cert'")}
        twice = db.execute("SELECT device_serial, count(*) FROM certificates GROUP BY device_serial "
                           "HAVING count(*) > 1").fetchall()
        check(not twice, f"a second certificate for a key: {[tuple(t) for t in twice][:10]}")
        check(sim.holds_cert, "no board stored a certificate")
        bad = []
        for serial in sorted(sim.holds_cert):
            r = rows.get(serial)
            if r is None or r["state"] != "provisioned" or r["current_cert_id"] not in outbox:
                bad.append((serial, r["state"] if r else None, sim.results.get(serial)))
            if "failed" in (sim.results.get(serial) or []):
                bad.append((serial, "told failed while holding a certificate", sim.results.get(serial)))
        check(not bad, f"{len(bad)} boards holding a certificate are not provisioned with an outbox job: "
              f"{bad[:10]}")
        # Every board told "provisioned" holds a recorded certificate.
        for serial, verdicts in sim.results.items():
            if "provisioned" in verdicts:
                check(serial in sim.holds_cert or rows.get(serial) is not None,
                      f"{serial} told provisioned without a record")
        n_prov = sum(1 for r in rows.values() if r["state"] == "provisioned")
        print(f"# {len(sim.holds_cert)} boards hold a certificate, {n_prov} devices provisioned, "
              f"{len(rows)} devices, {time.monotonic() - t0:.1f} s")
        db.close()
        r = env.ctl("audit", "verify", "--db", env.db_path, check_rc=False)
        check(r.returncode == 0 and "intact" in r.stdout, f"audit verify: {r.stdout}{r.stderr}")
        rc = env.stop_provd()
        check(rc == 0, f"provd exited {rc}")
    finally:
        if lock_thread:
            lock_thread.join()
        env.close()
        subprocess.run(["umount", "-l", env.state], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    if os.geteuid() == 0 and not in_private_mount_ns() and shutil.which("unshare"):
        os.environ["STORAGE_FAULTS_NS"] = "1"
        os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable, *sys.argv])
    run([test_kill9_full_disk_and_lock])
