# SPDX-License-Identifier: MIT
"""Harness for provd integration tests: a temporary CA, provd-boardsim on ptys,
provd itself, provctl, and the SQLite database, all real."""

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("PROVD_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
PROVD = os.path.join(BUILD, "daemon", "provd")
PROVCTL = os.path.join(BUILD, "daemon", "provctl")
BOARDSIM = os.path.join(BUILD, "station-proto", "boardsim", "provd-boardsim")

# Slow builds (tests/meson.build sets 4 for a sanitizer build): provd's
# per-request timeouts (SCALED_TIMEOUTS) and every wait of the harness are
# multiplied by this, so that a board answering slowly is not taken for a board
# that does not answer. Waits are upper bounds, never timing assertions. The
# session limit is not scaled: a test sets it below a delay it gives the
# simulator (which is not scaled either) and expects it to be exceeded.
TIMEOUT_SCALE = float(os.environ.get("PROVD_TEST_TIMEOUT_SCALE", "1") or "1")
SCALED_TIMEOUTS = ("response_ms", "keygen_ms")

# Temporary directories of the Envs made by the test run() is running: removed when it
# passes, kept (and named) when it fails.
_env_dirs = []


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_until(pred, timeout, what):
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    raise Failure(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Env:
    def __init__(self, name, **conf):
        self.dir = tempfile.mkdtemp(prefix=f"provd-{name}-")
        _env_dirs.append(self.dir)
        os.chmod(self.dir, 0o755)
        self.boards = os.path.join(self.dir, "boards")
        self.boardstate = os.path.join(self.dir, "boardstate")
        self.state = os.path.join(self.dir, "state")
        self.sock = os.path.join(self.dir, "provd.sock")
        self.conf_path = os.path.join(self.dir, "provd.conf")
        self.db_path = os.path.join(self.state, "provd.db")
        self.ca = os.path.join(self.dir, "ca")
        os.makedirs(self.ca)
        os.makedirs(self.boards)
        subprocess.run([PROVCTL, "ca", "init", "--dir", self.ca], check=True, stdout=subprocess.DEVNULL)
        self.conf = {
            "station": {"name": name, "state_dir": self.state, "control_socket": self.sock,
                        "control_group": ""},
            "ports": {"glob": os.path.join(self.boards, "board-*"), "rescan_ms": "200"},
            "signer": {"uri": "file:" + os.path.join(self.ca, "signer.key"),
                       "cert": os.path.join(self.ca, "signer.pem"),
                       "root": os.path.join(self.ca, "root.pem")},
            "timeouts": {"response_ms": "500", "keygen_ms": "2000", "retries": "3",
                         "shutdown_ms": "5000"},
            "board": {"aws_endpoint": "test-ats.iot.eu-west-1.amazonaws.com"},
        }
        for sec, kv in conf.items():
            self.conf.setdefault(sec, {}).update(kv)
        if TIMEOUT_SCALE != 1:
            t = self.conf["timeouts"]
            for k in SCALED_TIMEOUTS:
                if k in t:
                    t[k] = str(int(float(t[k]) * TIMEOUT_SCALE))
        self.write_conf()
        self.sim = None
        self.provd = None
        self.sim_out = []

    def write_conf(self, extra=""):
        with open(self.conf_path, "w") as f:
            for sec, kv in self.conf.items():
                f.write(f"[{sec}]\n")
                for k, v in kv.items():
                    f.write(f"{k} = {v}\n")
            f.write(extra)

    # --- simulator ---------------------------------------------------------
    def start_sim(self, count, *args):
        self.sim_log = open(os.path.join(self.dir, "boardsim.log"), "w")
        cmd = [BOARDSIM, "--count", str(count), "--dir", self.boards, "--state-dir", self.boardstate,
               *map(str, args)]
        self.sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.sim_log, text=True, bufsize=1)
        os.set_blocking(self.sim.stdout.fileno(), False)
        wait_until(lambda: any(l.startswith("ready") for l in self.sim_lines()), 30, "boardsim ready")

    def sim_lines(self):
        while True:
            try:
                line = self.sim.stdout.readline()
            except (BlockingIOError, TypeError):
                line = ""
            if not line:
                break
            self.sim_out.append(line.rstrip("\n"))
        return self.sim_out

    def sim_control(self, line):
        with open(os.path.join(self.boards, "control"), "w") as f:
            f.write(line + "\n")

    # --- provd ---------------------------------------------------------------
    def start_provd(self):
        self.provd_log = open(os.path.join(self.dir, "provd.log"), "a")
        if os.path.exists(self.sock):
            os.unlink(self.sock)        # left by a killed provd: wait for the new one
        self.provd = subprocess.Popen([PROVD, "--config", self.conf_path], stdout=self.provd_log,
                                      stderr=subprocess.STDOUT)
        wait_until(lambda: self.provd.poll() is not None or
                   (os.path.exists(self.sock) and self.ctl("ping", check_rc=False).returncode == 0),
                   20, "provd answering")
        check(self.provd.poll() is None, f"provd exited at start: {self.log_tail()}")

    def log_tail(self, n=40):
        try:
            with open(os.path.join(self.dir, "provd.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def ctl(self, *args, check_rc=True):
        r = subprocess.run([PROVCTL, "--socket", self.sock, *args], capture_output=True, text=True, timeout=60)
        if check_rc and r.returncode != 0:
            raise Failure(f"provctl {' '.join(args)} failed: {r.stderr}")
        return r

    def status(self):
        r = self.ctl("status", "--json", check_rc=False)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def totals(self):
        s = self.status()
        return s["totals"] if s else {}

    def wait_totals(self, timeout=60, **want):
        def ok():
            t = self.totals()
            return t if all(t.get(k, 0) >= v for k, v in want.items()) else None
        try:
            return wait_until(ok, timeout, f"totals {want}")
        except Failure as e:
            raise Failure(f"{e}\nstatus: {json.dumps(self.status(), indent=1)[:4000]}\nlog:\n{self.log_tail()}")

    def stop_provd(self, sig=signal.SIGTERM, timeout=30):
        if not self.provd:
            return None
        self.provd.send_signal(sig)
        rc = self.provd.wait(timeout=timeout)
        self.provd = None
        return rc

    def db(self):
        c = sqlite3.connect(self.db_path, timeout=10)
        c.row_factory = sqlite3.Row
        return c

    def board_dir(self, idx):
        return os.path.join(self.boardstate, f"board-{idx:03d}")

    def board_file(self, idx, name):
        p = os.path.join(self.board_dir(idx), name)
        if not os.path.exists(p):
            return None
        with open(p, "rb") as f:
            return f.read()

    def openssl_verify(self, der):
        p = os.path.join(self.dir, "verify.der")
        with open(p, "wb") as f:
            f.write(der)
        pem = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", p], capture_output=True, check=True).stdout
        r = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(self.ca, "root.pem"),
                            "-untrusted", os.path.join(self.ca, "signer.pem")],
                           input=pem, capture_output=True)
        return r.returncode == 0, (r.stdout + r.stderr).decode()

    def close(self):
        if self.provd and self.provd.poll() is None:
            self.provd.kill()
            self.provd.wait()
        if self.sim and self.sim.poll() is None:
            self.sim.send_signal(signal.SIGTERM)
            try:
                self.sim.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait()


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def run(tests):
    """Runs test functions in order, printing TAP."""
    print(f"1..{len(tests)}")
    failed = 0
    for i, t in enumerate(tests, 1):
        del _env_dirs[:]
        try:
            t()
            print(f"ok {i} - {t.__name__}")
            for d in _env_dirs:
                try:
                    shutil.rmtree(d)
                except OSError as e:
                    print(f"# cannot remove {d}: {e}")
        except Exception as e:  # noqa: BLE001 - report every failure as TAP
            failed += 1
            print(f"not ok {i} - {t.__name__}")
            for line in str(e).splitlines() or [repr(e)]:
                print(f"# {line}")
            for d in _env_dirs:
                print(f"# kept {d}")
        sys.stdout.flush()
    sys.exit(1 if failed else 0)
