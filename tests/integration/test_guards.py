# SPDX-License-Identifier: MIT
"""Guards against a compromised or abused station: issuance budget, port rate, allow-list, secrets, control socket."""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from provdtest import PROVCTL, PROVD, Env, check, run, wait_until  # noqa: E402


def serial_of(env, idx):
    return env.board_file(idx, "serial").decode().strip().lower()


def test_budget_survives_restart():
    env = Env("gbudget", profile={"max_certs_per_hour": "3"})
    try:
        env.start_sim(3, "--seed", "31")
        env.start_provd()
        env.wait_totals(timeout=60, provisioned=3)
        check(env.stop_provd() == 0, "provd did not exit 0")
        env.start_provd()
        env.sim_control("add 1")
        env.wait_totals(timeout=60, failed=1)
        db = env.db()
        n = db.execute("SELECT count(*) FROM certificates").fetchone()[0]
        check(n == 3, f"a restart refilled the budget: {n} certificates for a budget of 3")
        err = db.execute("SELECT error FROM attempts WHERE outcome = 'failed'").fetchone()[0]
        check("budget" in err and "max_certs_per_hour" in err, f"refusal not explained: {err}")
        st = env.status()
        check(st["issuance_budget"]["last_hour"] == 3, f"status budget: {st['issuance_budget']}")
    finally:
        env.close()


def test_bad_csrs_spend_nothing():
    env = Env("gbad", profile={"max_certs_per_hour": "5"})
    try:
        env.start_sim(20, "--seed", "32", "--fault", "badsig@0-19")
        env.start_provd()
        env.wait_totals(timeout=90, rejected=20)
        env.sim_control("add 1")
        env.wait_totals(timeout=60, provisioned=1)
        check(env.board_file(20, "device.der") is not None, "the good board after 20 bad CSRs got no certificate")
    finally:
        env.close()


def test_port_rate():
    env = Env("grate", profile={"max_certs_per_port_per_minute": "2"})
    try:
        env.start_sim(1, "--seed", "33", "--cycles", "5")
        env.start_provd()
        env.wait_totals(timeout=60, provisioned=2, failed=3)
        db = env.db()
        n = db.execute("SELECT count(*) FROM certificates").fetchone()[0]
        check(n == 2, f"port rate of 2 a minute, {n} certificates on one port")
        errs = [r[0] for r in db.execute("SELECT error FROM attempts WHERE outcome = 'failed'")]
        check(errs and all("rate of this port" in e for e in errs), f"rate refusals not explained: {errs}")
    finally:
        env.close()


def test_serial_allowlist():
    env = Env("gallow")
    try:
        env.start_sim(3, "--seed", "34")
        allow = os.path.join(env.dir, "serials.txt")
        with open(allow, "w") as f:
            f.write(f"# manifest\n{serial_of(env, 0).upper()}\n\n{serial_of(env, 1)}  # second\n")
        os.chmod(allow, 0o644)
        env.conf["profile"] = {"serial_allowlist": allow}
        env.write_conf()
        env.start_provd()
        env.wait_totals(timeout=60, provisioned=2, rejected=1)
        db = env.db()
        err = db.execute("SELECT error FROM attempts WHERE outcome = 'rejected'").fetchone()[0]
        check(serial_of(env, 2) in err.lower() and "allow-list" in err, f"refusal not explained: {err}")
        check(env.board_file(2, "device.der") is None, "a serial off the list got a certificate")
        check(env.stop_provd() == 0, "provd did not exit 0")
        os.chmod(allow, 0o666)
        r = subprocess.run([PROVD, "--check-config", "--config", env.conf_path], capture_output=True, text=True)
        check(r.returncode != 0 and "writable by group or others" in r.stderr, f"writable list: {r.stderr}")
    finally:
        env.close()


def grep_everything(env, needle):
    hits = []
    for root, _, files in os.walk(env.dir):
        for name in files:
            p = os.path.join(root, name)
            if p.endswith(".pin") or p.endswith(".psk") or not stat.S_ISREG(os.lstat(p).st_mode):
                continue        # the secret's own file; links to ptys
            try:
                with open(p, "rb") as f:
                    if needle.encode() in f.read():
                        hits.append(p)
            except OSError:
                pass
    return hits


def test_pin_never_logged():
    env = Env("gpin")
    try:
        pin = "Zq7PINSECRET93"
        key = os.path.join(env.ca, "signer.key")
        env.conf["signer"]["uri"] = f"pkcs11:token=provd;object=signer?pin-value={pin}"
        env.write_conf()
        os.chmod(env.conf_path, 0o600)          # even a private file may not hold the PIN in the URI
        for args in (["--check-config"], []):
            r = subprocess.run([PROVD, *args, "--config", env.conf_path], capture_output=True, text=True, timeout=30)
            check(r.returncode != 0, f"provd {args} accepted pin-value=")
            check("pin_file" in r.stderr, f"no pointer to pin_file: {r.stderr}")
            check(pin[:4] not in r.stdout + r.stderr, f"PIN in the output: {r.stderr}")
        # A PIN in pin_file: not in any log line, table or audit row.
        pinf = os.path.join(env.dir, "signer.pin")
        with open(pinf, "w") as f:
            f.write(pin + "\n")
        os.chmod(pinf, 0o600)
        env.conf["signer"]["uri"] = "file:" + key
        env.conf["signer"]["pin_file"] = pinf
        env.write_conf()
        env.start_sim(2, "--seed", "35")
        env.start_provd()
        env.wait_totals(timeout=60, provisioned=2)
        check(env.stop_provd() == 0, "provd did not exit 0")
        check(not grep_everything(env, pin), f"the PIN is in {grep_everything(env, pin)}")
    finally:
        env.close()


SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


def test_hsm_pin_never_logged():
    """The signer in SoftHSM, its PIN in pin_file: no log line, table or audit row holds any of it."""
    if not os.path.exists(SOFTHSM) or not shutil.which("softhsm2-util"):
        print("# skipped: no SoftHSM2")
        return
    env = Env("ghsm")
    try:
        pin = "Zq7HsmPin5521"
        tokens = os.path.join(env.dir, "tokens")
        os.makedirs(tokens)
        hconf = os.path.join(env.dir, "softhsm2.conf")
        with open(hconf, "w") as f:
            f.write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = hconf
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "provd", "--pin", pin,
                        "--so-pin", "5678"], check=True, capture_output=True)
        k8 = os.path.join(env.dir, "k8.pem")
        subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", os.path.join(env.ca, "signer.key"),
                        "-out", k8], check=True, capture_output=True)
        subprocess.run(["softhsm2-util", "--import", k8, "--token", "provd", "--label", "signer", "--id", "01",
                        "--pin", pin], check=True, capture_output=True)
        os.unlink(k8)
        os.unlink(os.path.join(env.ca, "signer.key"))
        pinf = os.path.join(env.dir, "signer.pin")
        with open(pinf, "w") as f:
            f.write(pin + "\n")
        os.chmod(pinf, 0o600)
        env.conf["signer"]["uri"] = f"pkcs11:token=provd;object=signer;type=private?module-path={SOFTHSM}"
        env.conf["signer"]["pin_file"] = pinf
        env.write_conf()
        r = subprocess.run([PROVD, "--check-config", "--config", env.conf_path], capture_output=True, text=True)
        check(r.returncode == 0, f"--check-config with the token: {r.stdout}{r.stderr}")
        env.start_sim(2, "--seed", "40")
        env.start_provd()
        env.wait_totals(timeout=60, provisioned=2)
        env.provd.send_signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in env.log_tail(), 10, "reload")
        check(env.stop_provd() == 0, "provd did not exit 0")
        db = env.db()
        uri = db.execute("SELECT key_uri FROM signers").fetchone()[0]
        check(uri.startswith("pkcs11:") and pin not in uri, f"signers.key_uri: {uri}")
        db.close()
        # Any 5 characters of the PIN, anywhere: logs, the database and its WAL, the audit rows.
        hits = {pin[i:i + 5]: grep_everything(env, pin[i:i + 5]) for i in range(len(pin) - 4)}
        check(not any(hits.values()), f"parts of the PIN found: {hits}")
        # A wrong PIN: start refused, still nothing of it logged.
        with open(pinf, "w") as f:
            f.write("Wr0ngPinXy77\n")
        r = subprocess.run([PROVD, "--config", env.conf_path], capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "Wr0ng" not in r.stdout + r.stderr, f"wrong PIN: {r.stderr}")
    finally:
        os.environ.pop("SOFTHSM2_CONF", None)
        env.close()


def test_psk_only_in_a_private_file():
    env = Env("gpsk")
    try:
        psk = "horse-battery-Q9"
        env.conf["board"].update({"wifi_ssid": "factory", "wifi_psk": psk})
        env.write_conf()
        os.chmod(env.conf_path, 0o640)          # what the provd group may read
        r = subprocess.run([PROVD, "--check-config", "--config", env.conf_path], capture_output=True, text=True)
        check(r.returncode != 0 and "wifi_psk_file" in r.stderr, f"inline PSK in a group-readable file: {r.stderr}")
        pskf = os.path.join(env.dir, "wifi.psk")
        with open(pskf, "w") as f:
            f.write(psk + "\n")
        os.chmod(pskf, 0o640)
        del env.conf["board"]["wifi_psk"]
        env.conf["board"]["wifi_psk_file"] = pskf
        env.write_conf()
        os.chmod(env.conf_path, 0o644)
        r = subprocess.run([PROVD, "--check-config", "--config", env.conf_path], capture_output=True, text=True)
        check(r.returncode != 0 and "chmod 600" in r.stderr, f"group-readable PSK file: {r.stderr}")
        os.chmod(pskf, 0o600)
        env.start_sim(1, "--seed", "36")
        env.start_provd()
        env.wait_totals(timeout=60, provisioned=1)
        cfg = b"".join(env.board_file(0, n) or b"" for n in os.listdir(env.board_dir(0)))
        check(psk.encode() in cfg, "the board did not get the PSK from wifi_psk_file")
        check(env.stop_provd() == 0, "provd did not exit 0")
        with open(env.conf_path) as f:
            check(psk not in f.read(), "the PSK is in provd.conf")
    finally:
        env.close()


def test_check_config_and_reload_check_the_key():
    env = Env("gkey")
    try:
        key = os.path.join(env.ca, "signer.key")
        r = subprocess.run([PROVD, "--check-config", "--config", env.conf_path], capture_output=True, text=True)
        check(r.returncode == 0 and "valid" in r.stdout, f"a good configuration: {r.stdout} {r.stderr}")
        os.chmod(key, 0o644)
        r = subprocess.run([PROVD, "--check-config", "--config", env.conf_path], capture_output=True, text=True)
        check(r.returncode == 1 and "chmod 600" in r.stderr, f"world-readable key said valid: {r.stdout}{r.stderr}")
        os.chmod(key, 0o600)
        env.start_sim(1, "--seed", "37")
        env.start_provd()
        env.wait_totals(timeout=60, provisioned=1)
        os.rename(key, key + ".gone")
        r = subprocess.run([PROVD, "--check-config", "--config", env.conf_path], capture_output=True, text=True)
        check(r.returncode == 1 and "valid\n" not in r.stdout, f"missing key said valid: {r.stdout}{r.stderr}")
        env.conf["station"]["name"] = "renamed"
        env.write_conf()
        env.provd.send_signal(signal.SIGHUP)
        wait_until(lambda: "keeping the current configuration" in env.log_tail(), 10, "reload refused")
        check("signer key" in env.log_tail(), f"reload refusal does not name the key: {env.log_tail()}")
        check(env.status()["station"] == "gkey", "the refused reload was applied")
        os.rename(key + ".gone", key)
        env.provd.send_signal(signal.SIGHUP)
        wait_until(lambda: (env.status() or {}).get("station") == "renamed", 10, "reload with the key back")
        # provd's umask (027): the database, its WAL and SHM, while it runs.
        files = {n: os.stat(os.path.join(env.state, n)).st_mode for n in os.listdir(env.state)}
        check(any(n.endswith("-wal") for n in files), f"no WAL to look at: {files}")
        check(all(m & 0o007 == 0 for m in files.values()), f"open to others: { {n: oct(m) for n, m in files.items()} }")
        check(env.stop_provd() == 0, "provd did not exit 0")
        mode = os.stat(env.db_path).st_mode
        check(mode & 0o007 == 0, f"database mode {oct(mode)} is open to others (umask)")
    finally:
        env.close()


def test_ca_init_creates_dir():
    env = Env("gca")
    try:
        d = os.path.join(env.dir, "new", "ca")
        os.makedirs(os.path.dirname(d))
        r = subprocess.run([PROVCTL, "ca", "init", "--dir", d], capture_output=True, text=True)
        check(r.returncode == 0, f"ca init in a missing directory: {r.stderr}")
        check(os.stat(d).st_mode & 0o777 == 0o700, f"mode {oct(os.stat(d).st_mode)}")
        check(os.path.exists(os.path.join(d, "signer.key")), "no signer key")
    finally:
        env.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_control_socket_limits():
    env = Env("gctl")
    try:
        env.start_sim(1, "--seed", "38")
        env.start_provd()
        env.wait_totals(timeout=60, provisioned=1)
        idle = []
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(env.sock)
            idle.append(s)
        r = env.ctl("status", "--json", check_rc=False)
        check(r.returncode == 0, f"64 idle connections lock provctl out: {r.stderr}")
        for s in idle:
            s.close()
        # A client that pipelines requests and never reads its replies.
        before = rss_kb(env.provd.pid)
        greedy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        greedy.connect(env.sock)
        greedy.setblocking(False)
        line = b'{"cmd":"status"}\n' * 4096
        sent = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sent < 200 * len(line):
            try:
                sent += greedy.send(line)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
        st = env.status()
        ctl = st["control"]
        after = rss_kb(env.provd.pid)
        print(f"# greedy client: sent {sent} bytes of requests; provd queued at most {ctl['max_queued_bytes']} "
              f"bytes (cap {ctl['queued_cap']}); RSS {before} -> {after} KiB")
        check(ctl["max_queued_bytes"] <= ctl["queued_cap"] + 256 * 1024,
              f"queued {ctl['max_queued_bytes']} bytes of replies for one client, cap {ctl['queued_cap']}")
        # Under ASan freed memory sits in the allocator's quarantine (256 MiB by default), so RSS
        # says nothing about what provd holds; the queued-bytes figure above still does.
        if "ASAN_OPTIONS" not in os.environ:
            check(after - before < 64 * 1024, f"provd grew from {before} to {after} KiB")
        greedy.close()
        # Turned away: provctl says why instead of dying of SIGPIPE.
        os.chmod(env.sock, 0o666)
        r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                            PROVCTL, "--socket", env.sock, "status"], capture_output=True, text=True)
        check(r.returncode == 1 and "permission denied" in r.stderr, f"refusal not printed: rc {r.returncode} {r.stderr!r}")
    finally:
        env.close()


QUOTA_CLIENT = r'''
import socket, sys
conns, replies = [], []
for i in range(9):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.settimeout(0.5)
    try:
        replies.append(s.recv(4096).decode())
    except socket.timeout:
        replies.append("")
    conns.append(s)
print(repr(replies))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
'''


def test_control_quota_per_uid():
    env = Env("gquota", station={"control_group": "nogroup"})
    try:
        env.start_provd()
        r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                            "/usr/bin/python3", "-c", QUOTA_CLIENT, env.sock], capture_output=True, text=True,
                           timeout=60)
        replies = eval(r.stdout.strip() or "[]")  # noqa: S307 - our own child's repr()
        check(len(replies) == 9, f"quota client: {r.stdout} {r.stderr}")
        check(all(x == "" for x in replies[:8]), f"the first 8 connections were turned away: {replies}")
        check("too many control connections from your uid" in replies[8], f"9th connection: {replies[8]!r}")
        check(env.status()["control"]["refused"] >= 1, "refusal not counted")
    finally:
        env.close()


def test_provctl_escapes_port_paths():
    env = Env("gesc")
    try:
        env.start_sim(1, "--seed", "39")
        evil = os.path.join(env.boards, "board-\x1b]0;owned\x07\x1b[2J")
        os.symlink(os.readlink(os.path.join(env.boards, "board-000")), evil)
        os.unlink(os.path.join(env.boards, "board-000"))
        env.start_provd()
        env.wait_totals(timeout=60, provisioned=1)
        r = env.ctl("status")
        check("\x1b" not in r.stdout and "\x07" not in r.stdout, f"raw escapes in provctl status: {r.stdout!r}")
        check("\\x1b" in r.stdout, f"the escaped path is not shown: {r.stdout!r}")
    finally:
        env.close()


if __name__ == "__main__":
    run([test_budget_survives_restart, test_bad_csrs_spend_nothing, test_port_rate, test_serial_allowlist,
         test_pin_never_logged, test_hsm_pin_never_logged, test_psk_only_in_a_private_file, test_check_config_and_reload_check_the_key,
         test_ca_init_creates_dir, test_control_socket_limits, test_control_quota_per_uid,
         test_provctl_escapes_port_paths])
