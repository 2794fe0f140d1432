#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""provd throughput benchmark (docs/PERFORMANCE.md).

Starts provd on a real on-disk state directory (SQLite WAL, synchronous=FULL,
exactly as in production), starts provd-boardsim with N simulated boards on
pseudo-terminals that are swapped for fresh identities after every RESULT
until M boards went through, and prints:

  boards per second; provd's CPU time per board (user + sys, from
  /proc/<pid>/stat); p50/p99 time per session step added by provd; peak RSS
  and RSS per port; the crypto floor per board (CSR verify + certificate
  signature + PROOF verify with the same OpenSSL: bench-floor, measured
  before, during and after the run) and the ratio of provd's CPU per board
  to it; the simulator's own CPU per board.

The last line of output is one JSON object with every figure.
Exit status: 0 when all M boards were provisioned and nothing failed,
1 when a board failed, the count is short, or a process misbehaved,
2 on usage errors, 3 when --max-ratio was given and exceeded.

    /usr/bin/python3 bench/bench.py                    # 256 ports, 20,000 boards
    /usr/bin/python3 bench/bench.py --wire-baud 115200 --genkey-ms 100 --ports 64 --boards 640
    build/daemon/bench-db --make-db /var/tmp/provd-1m.db 1000000   # a database of 1,000,000 boards
    /usr/bin/python3 bench/bench.py --db-from /var/tmp/provd-1m.db --stats-every 0.2
    meson compile -C build bench                       # the default run, from a configured build
"""

import argparse
import json
import math
import os
import resource
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

TARGETS = {
    "provd": "daemon/provd",
    "provctl": "daemon/provctl",
    "boardsim": "station-proto/boardsim/provd-boardsim",
    "floor": "bench/bench-floor",
}
FAIL_OUTCOMES = ("failed", "rejected", "clone_suspected", "aborted")
# Session steps that are provd's own time (DB lookup, CSR check + signature on a worker,
# issuance commit, proof verification on a worker); the others wait for the board.
PROVD_STEPS = ("lookup", "issue", "record", "verify")


def percentile(sorted_v, p):
    if not sorted_v:
        return 0
    return sorted_v[min(len(sorted_v) - 1, int(p * len(sorted_v)))]


def summary(v):
    v = sorted(v)
    return {"n": len(v), "avg": round(sum(v) / len(v), 2) if v else 0,
            "p50": percentile(v, 0.50), "p99": percentile(v, 0.99), "max": v[-1] if v else 0}


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- /proc accounting -------------------------------------------------------

# Rates that never hold the registrations back (the fake answers a few hundred calls a second).
AWS_UNLIMITED = ("RegisterCertificateWithoutCA:1000/100 CreateThing:1000/100 AttachPolicy:1000/100 "
                 "AttachThingPrincipal:1000/100 CreatePolicy:1000/100 DescribeCertificate:1000/100")


def floor_average(pool):
    """The floor to compare provd with: the mean of the samples, without the lowest and the
    highest when there are five or more.

    provd's CPU per board is an average over the whole run and over both CPUs; each floor
    sample sees one CPU for ~80 ms. On a shared VM the samples are often bimodal (two host
    speeds that alternate within a run: 230-250 us and 300-350 us here), and a median then
    picks one of the two modes depending on how the samples happen to split, while the mean
    follows the run's average speed. The trimmed ends keep one odd sample from moving it.
    """
    s = sorted(pool, key=lambda f: f["total_us"])
    if len(s) >= 5:
        s = s[1:-1]
    avg = {k: sum(f[k] for f in s) / len(s)
           for k in ("csr_verify_us", "cert_sign_us", "proof_verify_us", "total_us")}
    avg["iterations"] = s[0].get("iterations")
    avg["samples"] = len(s)
    return avg


def proc_cpu(pid):
    """(user_s, sys_s) of the whole process (all threads, live and exited)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_minflt(pid):
    """Minor page faults of the whole process so far."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return int(s[s.rindex(")") + 2:].split()[7])


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                v = v.split()
                out[k] = int(v[0]) * (1024 if len(v) > 1 and v[1] == "kB" else 1)
    return out


def machine_cpu():
    """(busy, steal, total) CPU seconds of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    idle = v[3] + v[4]
    return (total - idle - v[7]) / CLK_TCK, v[7] / CLK_TCK, total / CLK_TCK


def syscall_counts(path, pid, boards):
    """Per-board syscall counts from `perf stat -x, --per-thread` output: {thread: {syscall: n}}."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                v = line.strip().split(",")
                if len(v) < 4 or not v[1].isdigit() or not v[3].startswith("syscalls:sys_enter_"):
                    continue
                tid = int(v[0].rsplit("-", 1)[1])
                name = v[3].removeprefix("syscalls:sys_enter_")
                out.setdefault(tid, {})[name] = out.setdefault(tid, {}).get(name, 0) + int(v[1])
    except OSError:
        return {}
    res = {}
    total = {}
    # Name the threads by what they do: the loop is the main thread; of the threads that write
    # files, the one with the most pwrite() is the DB writer, another one the checkpointer.
    writers = sorted((t for t, c in out.items() if t != pid and c.get("pwrite64")),
                     key=lambda t: -out[t]["pwrite64"])
    for tid, calls in sorted(out.items()):
        if not sum(calls.values()):
            continue
        if tid == pid:
            role = "loop"
        elif writers and tid == writers[0]:
            role = "db-writer"
        elif tid in writers:
            role = "db-ckpt" if len(writers) == 2 else f"db-{tid}"
        else:
            role = f"thread-{tid}"
        res[role] = {k: round(n / boards, 2) for k, n in sorted(calls.items(), key=lambda x: -x[1]) if n}
        for k, n in calls.items():
            total[k] = total.get(k, 0) + n
    res["total"] = {k: round(n / boards, 2) for k, n in sorted(total.items(), key=lambda x: -x[1]) if n}
    return res


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def proc_io(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            return {k: int(v) for k, v in (line.split(": ") for line in f)}
    except OSError:
        return {}


def wait4(proc, timeout):
    """Reaps proc with wait4() and returns (returncode, rusage)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.02)


def fs_of(path):
    """(source, fstype, mountpoint) of the filesystem holding path."""
    r = subprocess.run(["df", "--output=source,fstype,target", path], capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or len(lines) < 2:
        return ("?", "?", "?")
    return tuple(lines[1].split()[:3])


def source_state():
    """The commit the binaries were built from, and the tracked files modified on top of it."""
    src = os.environ.get("PROVD_SOURCE_DIR") or SRC
    try:
        head = subprocess.run(["git", "-C", src, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "modified": []}
    return {"commit": head or None, "modified": sorted(l[3:] for l in dirty if l.strip())}


def machine():
    m = {"cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            m["mem_gib"] = round(int(f.readline().split()[1]) / 1048576, 1)
    except OSError:
        pass
    m["kernel"] = os.uname().release
    r = subprocess.run(["openssl", "version"], capture_output=True, text=True)
    m["openssl"] = r.stdout.strip() if r.returncode == 0 else "?"
    return m


# --- the run ------------------------------------------------------------------

class Bench:
    def __init__(self, args, bins):
        self.a = args
        self.bins = bins
        self.provd = self.sim = self.perf = self.strace = self.pstat = None
        self.dir = self.links_dir = None

    # helpers
    def ctl(self, *args, timeout=60, sock=None):
        r = subprocess.run([self.bins["provctl"], "--socket", sock or self.sock, *args],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise BenchError(f"provctl {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return json.loads(r.stdout)

    def provd_log_tail(self, n=30):
        try:
            with open(os.path.join(self.dir, "provd.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def sim_lines(self):
        with open(self.sim_out_path, errors="replace") as f:
            return f.read().splitlines()

    def floor(self, iterations=None):
        r = subprocess.run([self.bins["floor"], str(iterations or self.a.floor_iterations)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"bench-floor failed: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def floor_start(self):
        """A short floor measurement in the background, under the run's own load."""
        return subprocess.Popen([self.bins["floor"], str(self.a.floor_iterations_during)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    @staticmethod
    def floor_collect(proc, wait=False):
        if proc is None or (not wait and proc.poll() is None):
            return None
        out, _ = proc.communicate(timeout=60)
        return json.loads(out) if proc.returncode == 0 and out.strip() else None

    def setup(self):
        a = self.a
        base = a.dir or os.path.join(self.bins["build"], "bench-runs")
        os.makedirs(base, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="run-", dir=base)
        os.chmod(self.dir, 0o755)
        # The simulator's port links play the part of /dev/ttyACM* and udev's /dev/serial/by-*
        # links, which live on devtmpfs: on a tmpfs, like those, unless --links-dir says otherwise.
        # On ext4 each replug's symlink create, rename and unlink goes through inode allocation
        # and the journal, CPU that no real line spends (the simulator's share went from ~12 % to
        # that). The database, CA and logs stay on the disk of the run directory.
        links_base = a.links_dir
        if links_base is None:
            links_base = "/dev/shm" if fs_of("/dev/shm")[1] == "tmpfs" else ""
        if links_base:
            try:
                self.links_dir = tempfile.mkdtemp(prefix="provd-bench-links-", dir=links_base)
            except OSError as e:
                if a.links_dir is not None:
                    raise BenchError(f"--links-dir {a.links_dir}: {e}")
                log(f"warning: no links directory on {links_base} ({e}); using the run directory")
                links_base = ""
        if links_base:
            self.boards = os.path.join(self.links_dir, "boards")
        else:
            self.links_dir = None
            self.boards = os.path.join(self.dir, "boards")
        self.state = os.path.join(self.dir, "state")
        self.ca = os.path.join(self.dir, "ca")
        self.sock = os.path.join(self.dir, "provd.sock")
        self.conf_path = os.path.join(self.dir, "provd.conf")
        self.sim_out_path = os.path.join(self.dir, "boardsim.out")
        os.makedirs(self.boards)
        os.makedirs(self.ca)
        subprocess.run([self.bins["provctl"], "ca", "init", "--dir", self.ca], check=True,
                       stdout=subprocess.DEVNULL)
        conf = {
            "station": {"name": "bench", "state_dir": self.state, "control_socket": self.sock,
                        "control_group": "", "max_ports": str(max(512, a.ports)),
                        "workers": str(a.workers), "log_level": a.log_level},
            "ports": {"glob": os.path.join(self.boards, "board-*"), "rescan_ms": "1000"},
            "signer": {"uri": "file:" + os.path.join(self.ca, "signer.key"),
                       "cert": os.path.join(self.ca, "signer.pem"),
                       "root": os.path.join(self.ca, "root.pem")},
            # The production defaults (packaging/provd.conf); [database] is left at its
            # defaults too: group commit, synchronous=FULL, nothing weakened.
            "timeouts": {"response_ms": "1000", "keygen_ms": "5000", "retries": "3",
                         "session_ms": "120000", "shutdown_ms": "10000"},
            "board": {"aws_endpoint": "bench-ats.iot.eu-west-1.amazonaws.com"},
            # The simulated line swaps boards with no hands (20,000 boards, hundreds a
            # minute per port): the issuance guards would stop it, so it sets them off.
            "profile": {"max_certs_per_hour": "0", "max_certs_per_port_per_minute": "0"},
        }
        self.fake = None
        self.conf_rate = ""
        if a.aws_fake or a.aws_drain:
            conf["aws"] = self.start_aws_fake()
        for item in a.conf:
            key, _, value = item.partition("=")
            sec, _, k = key.partition(".")
            if not sec or not k or not _:
                raise BenchError(f"--conf {item}: expected SECTION.KEY=VALUE")
            conf.setdefault(sec, {})[k] = value
        self.conf_text = "".join(f"[{sec}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items())
                                 for sec, kv in conf.items())
        with open(self.conf_path, "w") as f:
            f.write(self.conf_text)
        self.fs = fs_of(self.dir)
        self.db_base = {"provisioned_devices": 0, "certificates": 0, "last_attempt": 0}
        if a.db_from:
            self.seed_db(a.db_from)

    def start_aws_fake(self):
        """--aws-fake: AWS registration (MAR) on, against tests/fakes/aws_iot_fake.py on loopback.
        Beside the boards at provd's default rates (AWS's default quotas, as in production) or at
        --aws-rate-limit; with --aws-drain queued during the boards (mode offline) and sent by
        `provctl aws drain` afterwards, so that the registrations' CPU is measured alone."""
        a = self.a
        sys.path.insert(0, os.path.join(SRC, "tests", "fakes"))
        from aws_iot_fake import FakeProcess
        self.fake = FakeProcess(os.path.join(self.dir, "fake"), seed=1)
        info = self.fake.info
        creds = os.path.join(self.dir, "aws-credentials")
        with open(creds, "w") as f:
            f.write(f"[default]\naws_access_key_id = {info['access_key']}\n"
                    f"aws_secret_access_key = {info['secret_key']}\n")
        os.chmod(creds, 0o600)
        policy = os.path.join(self.dir, "policy.json")
        with open(policy, "w") as f:
            f.write('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", '
                    '"Resource": "*"}]}')
        conf = {"mode": "offline" if a.aws_drain else "mar", "endpoint": self.fake.endpoint,
                "region": info["region"], "ca_file": self.fake.ca_bundle, "credentials_file": creds,
                "policy_template": policy, "concurrency": "32", "max_connections": "8", "max_attempts": "100"}
        rate = a.aws_rate_limit or (AWS_UNLIMITED if a.aws_drain else "")
        if rate == "unlimited":
            rate = AWS_UNLIMITED
        if rate:
            conf["rate_limit"] = rate
        self.conf_rate = rate
        return conf

    def aws_registered(self):
        """The outbox's rows by state, from the totals provd keeps in its database, read through a
        read-only connection of the bench's own: asking provd (`provctl aws status`) every few
        tenths of a second would add its reader's work to the CPU measured per registration."""
        c = sqlite3.connect(f"file:{os.path.join(self.state, 'provd.db')}?mode=ro", uri=True, timeout=30)
        try:
            rows = c.execute("SELECT substr(name, 12), n FROM totals WHERE name LIKE 'aws\\_outbox.%' "
                             "ESCAPE '\\'").fetchall()
        except sqlite3.Error:
            return None
        finally:
            c.close()
        states = {"done": 0, "failed": 0, "in_flight": 0, "pending": 0}
        states.update({k: v for k, v in rows})
        return states

    def aws_phase(self, u1, s1):
        """After the boards: what registered beside them, then (--aws-drain, --aws-wait) the rest
        sent and waited for, with provd's CPU over that time per registration."""
        a = self.a
        during = self.aws_registered() or {}
        out = {"mode": "offline, drained after the boards" if a.aws_drain else "mar, beside the boards",
               "rate_limit": self.conf_rate or "provd's defaults (AWS's default quotas)",
               "registered_during_boards": during.get("done", 0)}
        if not (a.aws_drain or a.aws_wait):
            out["outbox"] = during
            return out
        left = a.boards - during.get("done", 0) - during.get("failed", 0)
        t_aws = time.monotonic()
        if a.aws_drain:
            self.ctl("aws", "drain", "--json")
        aws = during
        while time.monotonic() < t_aws + max(120, a.boards / 10):
            aws = self.aws_registered()
            if aws and aws.get("pending", 0) == 0 and aws.get("in_flight", 0) == 0:
                break
            time.sleep(0.5)
        u2, s2 = proc_cpu(self.provd.pid)
        out.update({"outbox": aws, "registered_after_boards": left,
                    "seconds_after_boards": round(time.monotonic() - t_aws, 2),
                    "cpu_per_registration_us": round((u2 - u1 + s2 - s1) * 1e6 / max(1, left), 1)})
        return out

    def seed_db(self, src):
        """Starts provd on a copy of an existing database (bench-db --make-db): the run's figures
        count only the rows it adds."""
        if os.path.exists(src + "-wal") and os.path.getsize(src + "-wal") > 0:
            raise BenchError(f"--db-from {src}: its WAL is not empty (another process has it open?)")
        os.makedirs(self.state, mode=0o750, exist_ok=True)
        dst = os.path.join(self.state, "provd.db")
        log(f"copying {src} ({os.path.getsize(src) / 1048576:.0f} MiB) to the run's state directory")
        shutil.copyfile(src, dst)
        c = sqlite3.connect(f"file:{dst}?mode=ro", uri=True)
        try:
            self.db_base = {
                "provisioned_devices": c.execute(
                    "SELECT count(*) FROM devices WHERE state = 'provisioned'").fetchone()[0],
                "certificates": c.execute("SELECT count(*) FROM certificates").fetchone()[0],
                "last_attempt": c.execute("SELECT coalesce(max(id), 0) FROM attempts").fetchone()[0],
            }
        finally:
            c.close()
        # The copy is cold in no cache but the page cache; read it once as a long-running line's would be.
        with open(dst, "rb") as f:
            while f.read(1 << 24):
                pass

    def stats_loop(self, period, stop, out):
        """provctl stats, every @period seconds (0: back to back), until @stop is set."""
        while not stop.is_set():
            t = time.monotonic()
            try:
                r = subprocess.run([self.bins["provctl"], "--socket", self.sock, "stats", "--json"],
                                   capture_output=True, text=True, timeout=60)
                ok = r.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            dt = time.monotonic() - t
            out.append((dt, ok))
            stop.wait(max(0.0, period - dt))

    def start_provd(self):
        self.provd_log = open(os.path.join(self.dir, "provd.log"), "w")
        wrapper = shlex.split(self.a.wrapper) if self.a.wrapper else []
        self.provd = self.spawn_provd([*wrapper, self.bins["provd"], "--config", self.conf_path],
                                      self.provd_log, self.sock)

    def spawn_provd(self, cmd, logf, sock):
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        # provd reads every page of its database before it answers (PRAGMA quick_check): about
        # 6 s per GB on an idle machine, several times that on a busy one.
        db = os.path.join(self.state, "provd.db")
        start_s = 30 + (os.path.getsize(db) / 2**30 * 60 if os.path.exists(db) else 0)
        deadline = time.monotonic() + start_s
        while True:
            if proc.poll() is not None:
                raise BenchError(f"provd exited at start ({proc.returncode}); see {logf.name}")
            if os.path.exists(sock):
                try:
                    self.ctl("ping", timeout=5, sock=sock)
                    return proc
                except (BenchError, json.JSONDecodeError, subprocess.TimeoutExpired):
                    pass
            if time.monotonic() > deadline:
                proc.kill()
                raise BenchError(f"provd did not open its control socket in {start_s:.0f} s")
            time.sleep(0.05)

    def rss_probe(self):
        """RSS per open port, apart from the database cache: a second provd on an empty
        database opens --ports idle pseudo-terminals that never answer (no session gets
        past HELLO, nothing is recorded); (RSS with them - RSS without) / ports."""
        n = self.a.ports
        pdir = os.path.join(self.dir, "rss-probe")
        ports = os.path.join(pdir, "ports")
        os.makedirs(ports)
        sock = os.path.join(pdir, "provd.sock")
        conf = self.conf_text.replace(self.boards, ports).replace(self.sock, sock).replace(
            self.state, os.path.join(pdir, "state"))
        conf = conf.replace("response_ms = 1000", "response_ms = 60000").replace("keygen_ms = 5000",
                                                                                 "keygen_ms = 60000")
        conf_path = os.path.join(pdir, "provd.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        fds = []
        logf = open(os.path.join(pdir, "provd.log"), "w")
        proc = self.spawn_provd([self.bins["provd"], "--config", conf_path], logf, sock)
        try:
            time.sleep(0.5)
            rss0 = proc_status(proc.pid)["VmRSS"]
            for i in range(n):
                master, slave = os.openpty()
                fds += [master, slave]
                os.symlink(os.ttyname(slave), os.path.join(ports, f"board-{i:03d}"))
            deadline = time.monotonic() + 30
            while len(self.ctl("status", "--json", sock=sock).get("ports", [])) < n:
                if time.monotonic() > deadline:
                    raise BenchError(f"RSS probe: provd did not open {n} ports in 30 s")
                time.sleep(0.2)
            time.sleep(0.5)
            rss1 = proc_status(proc.pid)["VmRSS"]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            logf.close()
            for fd in fds:
                os.close(fd)
        return {"ports": n, "rss0_kib": rss0 // 1024, "rss1_kib": rss1 // 1024,
                "per_port_kib": round((rss1 - rss0) / n / 1024, 1)}

    def start_profilers(self):
        pid = str(self.provd.pid)
        if self.a.perf:
            cg = ["--call-graph", self.a.perf_callgraph] if self.a.perf_callgraph != "none" else []
            self.perf = subprocess.Popen(["perf", "record", "-q", "-F", str(self.a.perf_freq), *cg,
                                          "-o", self.a.perf, "-p", pid],
                                         stdout=subprocess.DEVNULL, stderr=open(self.a.perf + ".log", "w"))
        if self.a.strace:
            self.strace = subprocess.Popen(["strace", "-c", "-f", "-o", self.a.strace, "-p", pid],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.a.syscalls:
            # Kernel tracepoints: exact counts per thread at a small cost, unlike strace.
            self.pstat = subprocess.Popen(["perf", "stat", "-x,", "--per-thread", "-e", "syscalls:sys_enter_*",
                                           "-p", pid, "-o", self.a.syscalls],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.perf or self.strace or self.pstat:
            time.sleep(1.0)     # let them attach before the first board

    def stop_profilers(self):
        for p in (self.perf, self.strace, self.pstat):
            if p and p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    p.kill()

    def start_sim(self):
        a = self.a
        cycles = math.ceil(a.boards / a.ports)
        cmd = [self.bins["boardsim"], "--count", str(a.ports), "--dir", self.boards,
               "--cycles", str(cycles), "--total", str(a.boards), "--exit-when-done",
               "--seed", str(a.seed)]
        if a.wire_baud:
            cmd += ["--wire-baud", str(a.wire_baud)]
        if a.genkey_ms:
            cmd += ["--genkey-ms", str(a.genkey_ms)]
        self.sim_cmd = cmd
        self.sim_out = open(self.sim_out_path, "w")
        self.sim_err = open(os.path.join(self.dir, "boardsim.log"), "w")
        self.sim = subprocess.Popen(cmd, stdout=self.sim_out, stderr=self.sim_err)

    def run(self):
        a = self.a
        res = {"config": {"ports": a.ports, "boards": a.boards, "wire_baud": a.wire_baud,
                          "genkey_ms": a.genkey_ms, "workers": a.workers, "seed": a.seed,
                          "log_level": a.log_level, "conf": a.conf}}
        self.setup()
        res["machine"] = machine()
        res["source"] = source_state()
        # Under meson the targets were rebuilt just before; otherwise only when bench.py built them.
        res["source"]["rebuilt"] = self.bins["built"] or bool(os.environ.get("PROVD_BUILD_DIR") or
                                                              os.environ.get("MESON_BUILD_ROOT"))
        res["machine"]["db_fs"] = {"source": self.fs[0], "type": self.fs[1], "mount": self.fs[2]}
        if self.fs[1] in ("tmpfs", "ramfs"):
            log(f"warning: {self.dir} is on {self.fs[1]}: fsync is free there, the figures are not "
                "production figures (use --dir on a disk)")

        log(f"measuring the crypto floor ({a.floor_iterations} iterations per operation)")
        floors = [self.floor() for _ in range(3)]

        self.start_provd()
        time.sleep(0.5)
        idle = proc_status(self.provd.pid)
        self.start_profilers()
        u0, s0 = proc_cpu(self.provd.pid)
        flt0 = proc_minflt(self.provd.pid)
        io0 = proc_io(self.provd.pid)
        log(f"provd pid {self.provd.pid} up (RSS {idle['VmRSS'] / 1048576:.1f} MiB, "
            f"{idle['Threads']} threads); starting {a.ports} boards, {a.boards} in all, in {self.dir}")

        load0 = loadavg()
        mc0 = machine_cpu()
        t0 = time.monotonic()
        self.start_sim()
        stats_stop, stats_calls, stats_thread = threading.Event(), [], None
        if a.stats_every is not None:
            stats_thread = threading.Thread(target=self.stats_loop, args=(a.stats_every, stats_stop, stats_calls),
                                            daemon=True)
            stats_thread.start()
        timeout = a.timeout or (120 + a.boards * 0.02 + math.ceil(a.boards / a.ports) * 2.0)
        rss_samples = []
        floor_proc, floor_next = None, t0 + a.floor_every
        floors_during = []
        t_ready = None
        done_line = None
        last_progress = 0.0
        while True:
            now = time.monotonic()
            if self.provd.poll() is not None:
                raise BenchError(f"provd exited during the run ({self.provd.returncode}):\n"
                                 f"{self.provd_log_tail()}")
            # Whether the simulator has exited is read before its output: its last line ('done')
            # is written before it exits, so a simulator seen gone with no 'done' really had none.
            # (waitid with WNOWAIT: the simulator stays unreaped for wait4() below.)
            sim_exited = os.waitid(os.P_PID, self.sim.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            lines = self.sim_lines()
            if t_ready is None and any(l.startswith("ready") for l in lines):
                t_ready = now
            done = [l for l in lines if l.startswith("done ")]
            if done:
                done_line = done[0]
                t_done = now
                break
            if sim_exited:
                raise BenchError(f"provd-boardsim exited ({self.sim.poll()}) without 'done'; "
                                 f"see {self.dir}/boardsim.log")
            if now - t0 > timeout:
                raise BenchError(f"timed out after {timeout:.0f} s; status: "
                                 f"{json.dumps(self.ctl('status', '--json').get('totals'))}")
            # The floor under the run's load too (a few % of one core), so that provd and
            # the floor see the same machine: its speed varies with the host's load.
            f = self.floor_collect(floor_proc)
            if f:
                floors_during.append(f)
                floor_proc = None
            if a.floor_every and floor_proc is None and now >= floor_next:
                floor_proc, floor_next = self.floor_start(), now + a.floor_every
            st = proc_status(self.provd.pid)
            rss_samples.append((now - t0, st["VmRSS"]))
            if now - last_progress >= a.progress:
                last_progress = now
                prov = sum(1 for l in lines if l.startswith("plug "))
                log(f"{now - t0:6.1f} s: {max(0, prov - a.ports)} boards swapped in, "
                    f"RSS {st['VmRSS'] / 1048576:.1f} MiB, provd CPU "
                    f"{sum(proc_cpu(self.provd.pid)) - u0 - s0:.1f} s")
            time.sleep(0.05 if a.boards <= 1000 else 0.25)

        # The sim saw every RESULT: provd recorded every outcome before sending it.
        mc1 = machine_cpu()
        if stats_thread:
            stats_stop.set()
            stats_thread.join(timeout=90)
            ms = sorted(dt * 1000 for dt, _ in stats_calls)
            res["stats_loop"] = {"period_s": a.stats_every, "calls": len(stats_calls),
                                 "failed": sum(1 for _, ok in stats_calls if not ok),
                                 "ms": {k: round(v, 1) for k, v in summary(ms).items() if k != "samples"}}
        if floor_proc is not None:
            f = self.floor_collect(floor_proc, wait=True)
            if f:
                floors_during.append(f)
        rc, sim_ru = wait4(self.sim, 60)
        if rc != 0:
            raise BenchError(f"provd-boardsim exited {rc}; see {self.dir}/boardsim.log")
        # Let provd close the ports the simulator just dropped, then take its accounting.
        deadline = time.monotonic() + 30
        while True:
            status = self.ctl("status", "--json")
            if status.get("active", 0) == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(0.3)
        u1, s1 = proc_cpu(self.provd.pid)
        flt1 = proc_minflt(self.provd.pid)
        io1 = proc_io(self.provd.pid)
        st_end = proc_status(self.provd.pid)
        self.stop_profilers()
        status = self.ctl("status", "--json")
        stats = self.ctl("stats", "--json")
        db = self.db_figures()
        aws = None
        if self.fake:
            aws = self.aws_phase(u1, s1)
        # The floor again after the run. The figure compared with provd is the average of the
        # measurements taken during the run when there are enough of them (they saw the same
        # machine as provd: on a shared VM its speed drifts by tens of percent), else of all.
        floors += floors_during + [self.floor() for _ in range(2)]
        pool = floors_during if len(floors_during) >= 3 else floors
        floor = floor_average(pool)
        floor_median = sorted(pool, key=lambda f: f["total_us"])[len(pool) // 2]
        quiet = sorted(f["total_us"] for f in floors if not any(f is g for g in floors_during))
        floor_idle = quiet[len(quiet) // 2]

        self.provd.send_signal(signal.SIGTERM)
        prc, provd_ru = wait4(self.provd, 60)
        probe = self.rss_probe() if a.rss_probe else None
        self.provd_log.close()
        if prc != 0:
            raise BenchError(f"provd exited {prc} on SIGTERM:\n{self.provd_log_tail()}")

        # --- figures -------------------------------------------------------------
        M = a.boards
        sim_f = dict(kv.split("=", 1) for kv in done_line.split()[1:])
        wall = t_done - (t_ready or t0)
        cpu_user, cpu_sys = u1 - u0, s1 - s0
        cpu_us = (cpu_user + cpu_sys) * 1e6 / M
        sim_cpu = sim_ru.ru_utime + sim_ru.ru_stime
        totals = status["totals"]
        lat = status["added_latency_us"]
        res["provd_database"] = status.get("database")
        if aws:
            res["aws"] = aws
            if "cpu_per_registration_us" in aws:
                res["aws"]["ratio_to_floor_with_registration"] = round(
                    (cpu_us + aws["cpu_per_registration_us"]) / floor["total_us"], 2)
        res["provd_minor_faults_per_board"] = round((flt1 - flt0) / M, 2)
        peak = st_end["VmHWM"]
        per_port = (peak - idle["VmRSS"]) / a.ports
        half = [r for t, r in rss_samples if t >= (rss_samples[-1][0] / 2)] if rss_samples else []
        res["dir"] = self.dir
        res["provd_pid"] = self.provd.pid
        res["perf"] = a.perf
        res["floor"] = floor
        res["floor_samples_us"] = [round(f["total_us"], 1) for f in floors]
        res["floor_samples_during_run"] = len(floors_during)
        res.update({
            "boards": M,
            "wall_s": round(wall, 3),
            "boards_per_s": round(M / wall, 1),
            "boards_per_min": round(M / wall * 60),
            "provd_cpu_s": {"user": round(cpu_user, 2), "sys": round(cpu_sys, 2)},
            "provd_cpu_per_board_us": round(cpu_us, 1),
            "provd_cpu_per_board_user_us": round(cpu_user * 1e6 / M, 1),
            "provd_cpu_per_board_sys_us": round(cpu_sys * 1e6 / M, 1),
            "provd_cores_busy": round((cpu_user + cpu_sys) / wall, 2),
            "floor_per_board_us": round(floor["total_us"], 1),
            "ratio_to_floor": round(cpu_us / floor["total_us"], 2),
            "floor_median_us": round(floor_median["total_us"], 1),
            "ratio_to_floor_median": round(cpu_us / floor_median["total_us"], 2),
            "floor_idle_us": round(floor_idle, 1),
            "ratio_to_idle_floor": round(cpu_us / floor_idle, 2),
            "added_latency_us": {"samples": lat["samples"], "p50": lat["p50"], "p99": lat["p99"],
                                 "steps_per_board": round(lat["samples"] / M, 2)},
            "provd_rss": {"idle_kib": idle["VmRSS"] // 1024, "peak_kib": peak // 1024,
                          "end_kib": st_end["VmRSS"] // 1024,
                          "per_port_kib": round(per_port / 1024, 1),
                          "second_half_min_kib": (min(half) // 1024) if half else None,
                          "second_half_max_kib": (max(half) // 1024) if half else None},
            "rss_probe": probe,
            "provd_threads": st_end["Threads"],
            "provd_ctx_switches_per_board": round((st_end["voluntary_ctxt_switches"] +
                                                   st_end["nonvoluntary_ctxt_switches"] -
                                                   idle["voluntary_ctxt_switches"] -
                                                   idle["nonvoluntary_ctxt_switches"]) / M, 1),
            "provd_syscalls_per_board": round((io1.get("syscr", 0) + io1.get("syscw", 0) -
                                               io0.get("syscr", 0) - io0.get("syscw", 0)) / M, 1)
                                        if io0 else None,
            "provd_disk_write_per_board_b": round((io1.get("write_bytes", 0) - io0.get("write_bytes", 0)) / M)
                                            if io0 else None,
            "provd_total_cpu_s_incl_start_stop": round(provd_ru.ru_utime + provd_ru.ru_stime, 2),
            "sim_cpu_s": round(sim_cpu, 2),
            # Everything else the machine ran meanwhile (other users, kernel threads): the
            # figures above are only as clean as this is small.
            "machine_load": {"loadavg_before": load0,
                             "others_cores_busy": round(max(0.0, (mc1[0] - mc0[0]) - (cpu_user + cpu_sys) - sim_cpu)
                                                        / (t_done - t0), 2),
                             "steal_cores": round((mc1[1] - mc0[1]) / (t_done - t0), 2)},
            "sim_cpu_per_board_us": round(sim_cpu * 1e6 / M, 1),
            "sim": sim_f,
            "totals": totals,
            "db": db,
            "db_stats": {k: stats.get(k) for k in ("devices", "certificates", "attempts")},
        })

        if a.syscalls:
            res["syscalls_per_board"] = syscall_counts(a.syscalls, self.provd.pid, M)

        # --- verdict ----------------------------------------------------------------
        problems = []
        for k in FAIL_OUTCOMES:
            if totals.get(k, 0):
                problems.append(f"{totals[k]} session(s) {k}")
        if totals.get("provisioned", 0) != M:
            problems.append(f"provd counted {totals.get('provisioned', 0)} provisioned, expected {M}")
        if int(sim_f.get("provisioned", -1)) != M or int(sim_f.get("failed", -1)) != 0:
            problems.append(f"simulator: {done_line}")
        if db["provisioned_devices"] != M or db["certificates"] != M:
            problems.append(f"database holds {db['provisioned_devices']} provisioned devices and "
                            f"{db['certificates']} certificates, expected {M}")
        res["problems"] = problems
        res["ok"] = not problems
        return res

    def db_figures(self):
        c = sqlite3.connect(f"file:{os.path.join(self.state, 'provd.db')}?mode=ro", uri=True, timeout=30)
        try:
            out = {
                "provisioned_devices": c.execute(
                    "SELECT count(*) FROM devices WHERE state = 'provisioned'").fetchone()[0]
                - self.db_base["provisioned_devices"],
                "certificates": c.execute("SELECT count(*) FROM certificates").fetchone()[0]
                - self.db_base["certificates"],
                "attempts": c.execute("SELECT count(*) FROM attempts WHERE id > ?",
                                      (self.db_base["last_attempt"],)).fetchone()[0],
                "journal_mode": c.execute("PRAGMA journal_mode").fetchone()[0],
            }
            if self.db_base["provisioned_devices"]:
                out["devices_before_run"] = self.db_base["provisioned_devices"]
            row = c.execute("SELECT avg(finished_at - started_at), max(finished_at - started_at) "
                            "FROM attempts WHERE outcome = 'provisioned' AND id > ?",
                            (self.db_base["last_attempt"],)).fetchone()
            out["session_ms_avg"] = round(row[0] or 0, 1)
            out["session_ms_max"] = row[1] or 0
            # Per-step durations of every provisioned session (whole ms, as provd records them).
            # provd leaves out the steps that took under 1 ms: they count as 0 here.
            rows = []
            for (tj,) in c.execute("SELECT timings FROM attempts WHERE outcome = 'provisioned' AND id > ?",
                                   (self.db_base["last_attempt"],)):
                try:
                    rows.append({k.removesuffix("_ms"): v for k, v in json.loads(tj or "{}").items()})
                except ValueError:
                    continue
            names = list(PROVD_STEPS) + sorted({k for t in rows for k in t} - set(PROVD_STEPS))
            steps = {k: [t.get(k, 0) for t in rows] for k in names}
            out["step_ms"] = {k: summary(v) for k, v in steps.items()}
            # provd's own steps: lookup, issue (CSR check + signature on a worker), record
            # (issuance commit), verify (proof on a worker); the others wait for the board.
            own = [v for k in PROVD_STEPS if k in steps for v in steps[k]]
            out["provd_step_ms"] = summary(own)
            per_board = [sum(x) for x in zip(*(steps[k] for k in PROVD_STEPS if k in steps))]
            out["provd_steps_ms_per_board"] = summary(per_board)
            return out
        finally:
            c.close()

    def cleanup(self, keep):
        self.stop_profilers()
        if getattr(self, "fake", None):
            self.fake.stop()
        for p in (self.sim, self.provd):
            if p and p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if self.links_dir:
            shutil.rmtree(self.links_dir, ignore_errors=True)
        if self.dir and not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- output -------------------------------------------------------------------



def report(r):
    c, m = r["config"], r["machine"]
    f, lat, rss = r["floor"], r["added_latency_us"], r["provd_rss"]
    if r.get("aws"):
        w, o = r["aws"], r["aws"]["outbox"] or {}
        log(f"AWS registration (--aws-fake, {w['mode']}, rate {w['rate_limit']}): "
            f"{w['registered_during_boards']} registered during the boards; now {o.get('done', 0)} registered, "
            f"{o.get('failed', 0)} failed, {o.get('pending', 0) + o.get('in_flight', 0)} still queued")
        if "cpu_per_registration_us" in w:
            log(f"AWS registration after the boards: {w['registered_after_boards']} in {w['seconds_after_boards']} s, "
                f"provd CPU {w['cpu_per_registration_us']} us per registration; boards + registration "
                f"{w['ratio_to_floor_with_registration']}x the crypto floor")
    wire = f"wire {c['wire_baud']} baud" if c["wire_baud"] else "no wire delay"
    gk = f", key generation {c['genkey_ms']} ms" if c["genkey_ms"] else ""
    p = print
    p("")
    p(f"provd throughput: {c['ports']} ports, {r['boards']} boards, {wire}{gk}, {c['workers'] or 'auto'} workers")
    p(f"  machine            {m.get('cpu', '?')}, {m['cpus']} CPUs, {m.get('mem_gib', '?')} GiB, {m['openssl']}")
    src = r["source"]
    p(f"  source             commit {src['commit']}" +
      (f" + local changes in {', '.join(src['modified'])}" if src["modified"] else " (clean)") +
      ("" if src["rebuilt"] else "; binaries not rebuilt by this run (--no-build): check they match"))
    p(f"  database           {r['dir']}/state on {m['db_fs']['source']} ({m['db_fs']['type']}), "
      f"journal {r['db']['journal_mode']}, synchronous=FULL (group commit)")
    p(f"  boards per second  {r['boards_per_s']:.1f}  ({r['boards_per_min']} per minute; "
      f"{r['boards']} boards in {r['wall_s']:.1f} s)")
    p(f"  provd CPU / board  {r['provd_cpu_per_board_us']:.0f} us  (user {r['provd_cpu_per_board_user_us']:.0f} "
      f"+ sys {r['provd_cpu_per_board_sys_us']:.0f}; {r['provd_cores_busy']:.2f} cores busy)")
    p(f"  crypto floor       {f['total_us']:.0f} us  (CSR verify {f['csr_verify_us']:.0f} + cert sign "
      f"{f['cert_sign_us']:.0f} + proof verify {f['proof_verify_us']:.0f})")
    nd = r["floor_samples_during_run"]
    p(f"                     mean of {'the ' + str(nd) + ' measurements during the run' if nd >= 3 else 'all'}"
      f"{' without the lowest and the highest' if (nd if nd >= 3 else len(r['floor_samples_us'])) >= 5 else ''}"
      f" ({len(r['floor_samples_us'])} taken: {', '.join(f'{x:.0f}' for x in r['floor_samples_us'])} us)")
    p(f"  ratio to floor     {r['ratio_to_floor']:.2f}x  (to their median, {r['floor_median_us']:.0f} us: "
      f"{r['ratio_to_floor_median']:.2f}x; to the floor measured with the machine idle, "
      f"{r['floor_idle_us']:.0f} us: {r['ratio_to_idle_floor']:.2f}x)")
    ps, db = r["db"]["provd_step_ms"], r["db"]
    p(f"  added per step     p50 {ps['p50']} ms, p99 {ps['p99']} ms, max {ps['max']} ms  (provd's own steps: "
      f"lookup, issue, record, verify = DB, worker queue, crypto, group commit; whole ms from the attempts table)")
    p("                     " + ", ".join(f"{k} {db['step_ms'][k]['p50']}/{db['step_ms'][k]['p99']}"
                                          for k in PROVD_STEPS if k in db["step_ms"]) + " ms (p50/p99)")
    p(f"  loop dispatch      p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us per step  (provd status added_latency_us: "
      f"{lat['samples']} steps, {lat['steps_per_board']} per board, response in -> next request out, "
      f"excluding the worker/DB time above)")
    sl = r.get("stats_loop")
    if sl:
        p(f"  provctl stats      {sl['calls']} calls during the run ({sl['failed']} failed), every "
          f"{sl['period_s']} s: p50 {sl['ms']['p50']} ms, p99 {sl['ms']['p99']} ms, max {sl['ms']['max']} ms")
    if r["db"].get("devices_before_run"):
        p(f"  database before    {r['db']['devices_before_run']} provisioned devices (--db-from)")
    dbm = r.get("provd_database")
    if dbm and dbm.get("batches"):
        # provd's "requests" count the reads too (the reader thread's lookups and queries), which commit nothing.
        p(f"  group commit       {dbm['requests'] / dbm['batches']:.1f} requests (reads included) per commit on average "
          f"({dbm['batches']} commits, largest {dbm['max_batch']}); {dbm['isolated_batches']} batches run again "
          f"with savepoints after a failed request, {dbm['requests_failed']} requests failed")
    p(f"  provd RSS          peak {rss['peak_kib'] / 1024:.1f} MiB (idle {rss['idle_kib'] / 1024:.1f} MiB before the "
      f"run; {rss['per_port_kib']:.1f} KiB per port if all the growth is counted against the ports); second half "
      f"of the run {(rss['second_half_min_kib'] or 0) / 1024:.1f}-{(rss['second_half_max_kib'] or 0) / 1024:.1f} MiB")
    if r.get("rss_probe"):
        pr = r["rss_probe"]
        p(f"  RSS per port       {pr['per_port_kib']:.1f} KiB  ({pr['ports']} idle ports opened by a second provd: "
          f"{pr['rss0_kib'] / 1024:.1f} -> {pr['rss1_kib'] / 1024:.1f} MiB; the rest of the peak is the SQLite page "
          f"cache and the threads' malloc arenas)")
    p(f"  simulator CPU      {r['sim_cpu_per_board_us']:.0f} us per board ({r['sim_cpu_s']:.1f} s: keys, CSR and "
      f"proof signatures of the boards)")
    ml = r["machine_load"]
    p(f"  rest of machine    {ml['others_cores_busy']:.2f} cores busy with other processes during the run, "
      f"steal {ml['steal_cores']:.2f}, load average {ml['loadavg_before']:.1f} before it")
    p(f"  per board          {r['provd_syscalls_per_board']} provd syscalls (read+write class), "
      f"{r['provd_ctx_switches_per_board']} context switches, "
      f"{r['provd_minor_faults_per_board']} page faults, "
      f"{r['provd_disk_write_per_board_b']} B written to disk")
    sess = db["session_ms_avg"]
    own = db["provd_steps_ms_per_board"]["avg"]
    own_hi = own + len(PROVD_STEPS) + lat["steps_per_board"] * lat["p99"] / 1000
    r["provd_share_of_session"] = round(own / sess, 4) if sess else None
    r["provd_share_of_session_max"] = round(own_hi / sess, 4) if sess else None
    if sess:
        p(f"  session            {sess:.1f} ms average, HELLO to outcome; provd's own steps {own:.2f} ms of it "
          f"= {100 * own / sess:.1f} % (at most {100 * own_hi / sess:.1f} % with rounding and dispatch); "
          f"provd CPU = {100 * r['provd_cpu_per_board_us'] / 1000 / sess:.2f} % of it")
        p("  step ms average    " + ", ".join(f"{k} {v['avg']}" for k, v in db["step_ms"].items()))
    p("  outcomes           " + ", ".join(f"{k} {v}" for k, v in r["totals"].items()))
    for role, calls in r.get("syscalls_per_board", {}).items():
        p(f"  syscalls {role:9s} {sum(calls.values()):.1f} per board: " +
          ", ".join(f"{k} {v}" for k, v in list(calls.items())[:10]))
    p(f"  verdict            {'OK' if r['ok'] else 'FAILED: ' + '; '.join(r['problems'])}")
    if r.get("perf"):
        p(f"  profile            {r['perf']} (perf record; shares of provd's samples, times as a share of its "
          f"{r['provd_cpu_per_board_us']:.0f} us per board):")
        try:
            import perfbreak
            r["profile"] = perfbreak.report(r["perf"], r["provd_pid"], r["provd_cpu_per_board_us"])
        except (ImportError, RuntimeError, OSError) as e:
            p(f"  (no breakdown: {e})")
    print(json.dumps(r, sort_keys=True), flush=True)


# --- build ----------------------------------------------------------------------

def locate(args):
    env_build = os.environ.get("PROVD_BUILD_DIR") or os.environ.get("MESON_BUILD_ROOT")
    build = os.path.abspath(args.build or env_build or os.path.join(SRC, "build"))
    # Under meson (test, benchmark, run_target) the targets were built as dependencies.
    may_build = not args.no_build and not env_build
    if may_build:
        if not os.path.exists(os.path.join(build, "build.ninja")):
            log(f"configuring {build} (meson setup)")
            subprocess.run(["meson", "setup", build, SRC], check=True, stdout=sys.stderr)
        log(f"building the benchmark's targets in {build}")
        subprocess.run(["ninja", "-C", build, *TARGETS.values()], check=True, stdout=sys.stderr)
    bins = {k: os.path.join(build, v) for k, v in TARGETS.items()}
    missing = [v for v in bins.values() if not os.access(v, os.X_OK)]
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: run `ninja -C {build}` first")
    bins["build"] = build
    bins["built"] = may_build
    return bins


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=256, help="simulated boards at once (default 256)")
    ap.add_argument("--boards", type=int, default=20000, help="boards to provision in all (default 20000)")
    ap.add_argument("--wire-baud", type=int, default=0, help="emulate a serial line at B baud (default: none)")
    ap.add_argument("--genkey-ms", type=int, default=0, help="board key generation time (default 0)")
    ap.add_argument("--workers", type=int, default=0,
                    help="provd [station] workers (default 0 = one per CPU, provd's default)")
    ap.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    ap.add_argument("--log-level", default="info", help="provd log_level (default info, as in production)")
    ap.add_argument("--conf", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a provd configuration key (repeatable), e.g. database.batch_delay_us=2000; "
                         "the documented figures use none")
    ap.add_argument("--aws-fake", action="store_true",
                    help="register every board with AWS IoT (MAR) against tests/fakes/aws_iot_fake.py, "
                         "beside the boards, at provd's default rates unless --aws-rate-limit")
    ap.add_argument("--aws-rate-limit", metavar="SPEC", default="",
                    help="[aws] rate_limit for --aws-fake ('unlimited': rates the fake cannot reach)")
    ap.add_argument("--aws-wait", action="store_true",
                    help="--aws-fake: after the boards, wait for every registration and measure its CPU")
    ap.add_argument("--aws-drain", action="store_true",
                    help="--aws-fake: queue only during the boards (mode offline), then `provctl aws drain` "
                         "at unlimited rates and measure the registrations' CPU alone")
    ap.add_argument("--floor-iterations", type=int, default=2000,
                    help="crypto floor iterations per operation (default 2000)")
    ap.add_argument("--floor-every", type=float, default=1.0,
                    help="also measure the floor every this many seconds during the run (0 = never; default 1)")
    ap.add_argument("--floor-iterations-during", type=int, default=200,
                    help="iterations per operation of each floor measurement during the run (default 200: "
                         "~60-90 ms of one core, so ~6-9 %% of a core at the default --floor-every)")
    ap.add_argument("--build", help="meson build directory (default $PROVD_BUILD_DIR or ./build; "
                                    "configured and built when needed)")
    ap.add_argument("--no-build", action="store_true", help="do not run meson/ninja")
    ap.add_argument("--dir", help="where the run directory (CA, database, logs) goes; must be a disk, "
                                  "not tmpfs (default BUILD/bench-runs)")
    ap.add_argument("--links-dir", help="where the simulated ports' links go, the /dev of the run "
                                        "(default: a new directory on /dev/shm when that is a tmpfs, "
                                        "as /dev is devtmpfs; '' = inside the run directory)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (database, logs)")
    ap.add_argument("--db-from", metavar="FILE",
                    help="start provd on a copy of this database (e.g. bench-db --make-db); "
                         "the figures count only the run's own rows")
    ap.add_argument("--stats-every", type=float, metavar="S",
                    help="run 'provctl stats' every S seconds during the run (0: back to back) and "
                         "report its latency")
    ap.add_argument("--no-rss-probe", dest="rss_probe", action="store_false",
                    help="skip measuring RSS per port with idle ports after the run")
    ap.add_argument("--timeout", type=float, default=0, help="seconds (default: from the board count)")
    ap.add_argument("--progress", type=float, default=5.0, help="progress line period, s (default 5)")
    ap.add_argument("--max-ratio", type=float, default=0,
                    help="exit 3 when provd's CPU per board exceeds this multiple of the floor")
    ap.add_argument("--perf", metavar="FILE", help="perf record -g provd during the run into FILE")
    ap.add_argument("--perf-freq", type=int, default=999, help="perf sampling frequency (default 999)")
    ap.add_argument("--perf-callgraph", default="dwarf,16384",
                    help="perf --call-graph mode: fp, dwarf[,size] or none (default dwarf,16384)")
    ap.add_argument("--wrapper", metavar="CMD",
                    help="run provd under CMD, e.g. 'valgrind --tool=callgrind --callgrind-out-file=F' "
                         "(profiling only: the CPU figures are then the wrapper's)")
    ap.add_argument("--syscalls", metavar="FILE",
                    help="count provd's syscalls per thread with perf stat tracepoints into FILE; "
                         "prints them per board")
    ap.add_argument("--strace", metavar="FILE", help="strace -c -f provd during the run into FILE (slow)")
    a = ap.parse_args()
    if a.ports < 1 or a.ports > 4096 or a.boards < 1 or a.workers < 0 or a.workers > 64:
        ap.error("need 1 <= --ports <= 4096, --boards >= 1, 0 <= --workers <= 64")
    for opt in ("perf", "strace", "syscalls"):
        if getattr(a, opt):
            setattr(a, opt, os.path.abspath(getattr(a, opt)))

    try:
        bins = locate(a)
    except (BenchError, subprocess.CalledProcessError) as e:
        log(str(e))
        return 1
    b = Bench(a, bins)
    ok = False
    try:
        r = b.run()
        ok = r["ok"]
        report(r)
    except (BenchError, subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, KeyError,
            ValueError) as e:
        log(f"FAILED: {e}")
        if b.dir:
            log(f"run directory kept: {b.dir}")
        b.cleanup(keep=True)
        return 1
    b.cleanup(keep=a.keep or not ok)
    if not ok:
        log(f"run directory kept: {b.dir}")
        return 1
    if a.max_ratio and r["ratio_to_floor"] > a.max_ratio:
        log(f"provd's CPU per board is {r['ratio_to_floor']}x the floor, over --max-ratio {a.max_ratio}")
        return 3
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),) * 2)
    sys.exit(main())
