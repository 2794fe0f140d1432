# SPDX-License-Identifier: MIT
"""provd provisions the QEMU reference board (station-proto/firmware/qemu): a bare-metal
Cortex-M3 image with the board library and mbedTLS, its UART on a pty, end to end."""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from provdtest import BUILD, Env, Failure, check, run, sha256, wait_until  # noqa: E402

SRC = os.environ.get("PROVD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
PORT_DIR = os.path.join(SRC, "station-proto", "firmware", "qemu")
OUT = os.path.join(BUILD, "station-proto", "firmware", "qemu")
IMAGE = os.path.join(OUT, "provd-qemu-board.elf")
SERIAL = "51454d550000000001"


def build_image():
    """Builds (or finds cached) the image; exits 77 (skip) when mbedTLS cannot be fetched."""
    t = time.monotonic()
    r = subprocess.run(["sh", os.path.join(PORT_DIR, "build.sh"), OUT], capture_output=True, text=True)
    if r.returncode == 77:
        print(f"1..0 # SKIP {r.stdout.strip()}")
        sys.exit(77)
    if r.returncode != 0:
        print(f"# build.sh failed:\n{r.stdout}{r.stderr}")
        sys.exit(1)
    print(f"# image built in {time.monotonic() - t:.1f} s")
    for line in r.stdout.splitlines():
        print(f"# {line}")


class Qemu:
    def __init__(self, env):
        self.log = os.path.join(env.dir, "uart1.log")
        self.out = open(os.path.join(env.dir, "qemu.out"), "w+")
        self.proc = subprocess.Popen(
            ["qemu-system-arm", "-M", "mps2-an385", "-display", "none", "-nodefaults", "-monitor", "none",
             "-kernel", IMAGE, "-serial", "pty", "-serial", "file:" + self.log],
            stdout=self.out, stderr=subprocess.STDOUT)

        def pty():
            self.out.seek(0)
            m = re.search(r"redirected to (/dev/pts/\d+) \(label serial0\)", self.out.read())
            return m.group(1) if m else None
        self.pty = wait_until(lambda: self.proc.poll() is not None or pty(), 20, "QEMU's pty")
        check(self.proc.poll() is None, f"qemu exited: {self.text()}")
        wait_until(lambda: "ready" in self.uart1(), 20, "the board's ready line on UART1")

    def text(self):
        self.out.seek(0)
        return self.out.read()

    def uart1(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def test_provd_provisions_the_qemu_board():
    env = Env("qemu", profile={"lock": "yes"})
    qemu = None
    try:
        qemu = Qemu(env)
        # provd's port glob matches a symlink to QEMU's pty, like a udev name for a USB adapter.
        os.symlink(qemu.pty, os.path.join(env.boards, "board-qemu"))
        t = time.monotonic()
        env.start_provd()
        try:
            env.wait_totals(timeout=45, provisioned=1)
        except Failure as e:
            raise Failure(f"{e}\nUART1:\n{qemu.uart1()}")
        print(f"# provisioned in {time.monotonic() - t:.2f} s")

        db = env.db()
        dev = db.execute("SELECT * FROM devices WHERE serial = ?", (SERIAL,)).fetchone()
        check(dev is not None, f"no device {SERIAL} in the database")
        check(dev["state"] == "provisioned", f"device state {dev['state']}")
        certs = db.execute("SELECT * FROM certificates WHERE device_serial = ?", (SERIAL,)).fetchall()
        check(len(certs) == 1, f"{len(certs)} certificates for the QEMU board")
        c = certs[0]
        ok, msg = env.openssl_verify(c["der"])
        check(ok, f"the QEMU board's certificate does not verify: {msg}")
        check(c["proven_at"] is not None and c["status"] == "active",
              f"the certificate was not proven by the board (status {c['status']})")
        check(c["sha256"] == sha256(c["der"]), "certificate hash column")
        # The certificate carries the key the board generated (its IDENT/CSR PUBKEY).
        pem = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-pubkey"], input=c["der"],
                             capture_output=True, check=True).stdout
        spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem,
                              capture_output=True, check=True).stdout
        pub = bytes(dev["pubkey"]) if not isinstance(dev["pubkey"], str) else bytes.fromhex(dev["pubkey"])
        check(spki.endswith(pub), "the certificate's key is not the board's PUBKEY")
        thing = c["thing_name"]
        log = qemu.uart1()
        for step in ("get_csr: csr written", f"config: thing_name = {thing}\n", "config: aws_endpoint\n",
                     "prove: signed", "lock: locked", "result: provisioned"):
            check(step in log, f"the board's log lacks '{step}':\n{log}")
        rc = env.stop_provd()
        check(rc == 0, f"provd exited {rc} on SIGTERM")
    finally:
        if qemu:
            qemu.close()
        env.close()


if __name__ == "__main__":
    build_image()
    run([test_provd_provisions_the_qemu_board])
