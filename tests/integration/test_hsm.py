# SPDX-License-Identifier: MIT
"""provd with its signer key in SoftHSM2: the key is made in the token by provctl, certified by an
offline root, installed with provctl signer import, and signs 64 boards' certificates without ever
leaving the token."""

import json
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from provdtest import PROVCTL, PROVD, Env, check, run  # noqa: E402

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "hsm-pin-7351"            # distinctive: searched for in logs and the database


def have_tools():
    return os.path.exists(MODULE) and all(
        subprocess.run(["sh", "-c", f"command -v {t}"], capture_output=True).returncode == 0
        for t in ("softhsm2-util", "pkcs11-tool", "openssl"))


def sh(*args, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    check(r.returncode == 0, f"{' '.join(args)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r.stdout


class Hsm:
    """A SoftHSM2 token of this test's own (per-test SOFTHSM2_CONF)."""

    def __init__(self, env):
        self.dir = os.path.join(env.dir, "hsm")
        os.makedirs(os.path.join(self.dir, "tokens"))
        conf = os.path.join(self.dir, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write(f"directories.tokendir = {self.dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = conf      # provctl and provd inherit it
        sh("softhsm2-util", "--init-token", "--free", "--label", "provd-hsm", "--pin", PIN, "--so-pin", "97531")
        self.pin_file = os.path.join(self.dir, "pin")
        with open(self.pin_file, "w") as f:
            f.write(PIN + "\n")
        os.chmod(self.pin_file, 0o600)
        self.uri = f"pkcs11:token=provd-hsm;object=signer;id=%01?module-path={MODULE}"

    def list_privkeys(self):
        return sh("pkcs11-tool", "--module", MODULE, "--token-label", "provd-hsm", "--login", "--pin", PIN,
                  "--list-objects", "--type", "privkey")

    def pubkey_der(self, path):
        sh("pkcs11-tool", "--module", MODULE, "--token-label", "provd-hsm", "--read-object", "--type", "pubkey",
           "--label", "signer", "-o", path)
        with open(path, "rb") as f:
            return f.read()


def offline_root_signs(env, csr, out):
    """What the offline root does with the signer CSR (here: the Env's file root)."""
    ext = os.path.join(env.dir, "signer-ext.cnf")
    with open(ext, "w") as f:
        f.write("[v3]\nbasicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n")
    sh("openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(env.ca, "root.pem"),
       "-CAkey", os.path.join(env.ca, "root.key"), "-days", "3650", "-sha256", "-extfile", ext,
       "-extensions", "v3", "-out", out)


def private_key_files(top):
    """Every file under @top holding a PEM private key, with its public key (DER)."""
    found = []
    for root, _, files in os.walk(top):
        for name in files:
            p = os.path.join(root, name)
            try:
                # Regular files only: the run directory holds pty links and the simulator's FIFO.
                if not stat.S_ISREG(os.lstat(p).st_mode):
                    continue
                with open(p, "rb") as f:
                    data = f.read(1 << 20)
            except OSError:
                continue
            if b"PRIVATE KEY-----" in data:
                r = subprocess.run(["openssl", "pkey", "-in", p, "-pubout", "-outform", "DER"], capture_output=True)
                found.append((p, r.stdout if r.returncode == 0 else b""))
    return found


def test_64_boards_hsm_signer():
    env = Env("hsm")
    try:
        hsm = Hsm(env)
        out = os.path.join(env.dir, "hsmca")
        os.makedirs(out)

        # A PIN in the URI is refused, and the refusal does not repeat it.
        r = subprocess.run([PROVCTL, "ca", "init", "--dir", out, "--signer-uri", hsm.uri + "&pin-value=" + PIN],
                           capture_output=True, text=True)
        check(r.returncode != 0, "ca init accepted pin-value= in the URI")
        check(PIN not in r.stdout + r.stderr, f"the PIN was printed: {r.stderr}")

        # The key is made in the token, non-extractable, and the CSR signed there.
        r = json.loads(sh(PROVCTL, "--json", "ca", "init", "--dir", out, "--signer-uri", hsm.uri,
                          "--pin-file", hsm.pin_file).splitlines()[0])
        check(r["sensitive"] and not r["extractable"] and r["never_extractable"] and r["always_sensitive"]
              and r["token"] and not r["value_readable"], f"key attributes: {r}")
        check(PIN not in r["key"], "the URI shown carries the PIN")
        csr = os.path.join(out, "signer.csr")
        sh("openssl", "req", "-in", csr, "-noout", "-verify")
        hsm_pub = hsm.pubkey_der(os.path.join(env.dir, "hsm-pub.der"))
        csr_pub = subprocess.run(["openssl", "req", "-in", csr, "-noout", "-pubkey"], capture_output=True,
                                 check=True).stdout
        csr_pub_der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=csr_pub,
                                     capture_output=True, check=True).stdout
        check(csr_pub_der == hsm_pub, "the CSR's key is not the token's")

        # The offline root certifies it; import checks it against key and root.
        signed = os.path.join(env.dir, "from-root.pem")
        offline_root_signs(env, csr, signed)
        signer_pem = os.path.join(out, "signer.pem")
        r = subprocess.run([PROVCTL, "signer", "import", os.path.join(env.ca, "signer.pem"), "--root",
                            os.path.join(env.ca, "root.pem"), "--signer-uri", hsm.uri, "--pin-file", hsm.pin_file,
                            "--out", signer_pem], capture_output=True, text=True)
        check(r.returncode != 0 and "does not hold the signer key" in r.stderr,
              f"import of another key's certificate: {r.returncode} {r.stderr}")
        sh(PROVCTL, "signer", "import", signed, "--root", os.path.join(env.ca, "root.pem"), "--signer-uri", hsm.uri,
           "--pin-file", hsm.pin_file, "--out", signer_pem)
        st = json.loads(sh(PROVCTL, "--json", "signer", "status", "--cert", signer_pem))
        check(3648 <= st["days_left"] <= 3650 and not st["expired"], f"signer status: {st}")

        # provd signs with it: 64 boards at once.
        env.conf["signer"] = {"uri": hsm.uri, "cert": signer_pem, "root": os.path.join(env.ca, "root.pem"),
                              "pin_file": hsm.pin_file}
        env.write_conf()
        env.start_sim(64, "--seed", "77")
        env.start_provd()
        env.wait_totals(timeout=240, provisioned=64)
        db = env.db()
        certs = db.execute("SELECT * FROM certificates").fetchall()
        span = (max(c["issued_at"] for c in certs) - min(c["issued_at"] for c in certs)) / 1000
        print(f"# {len(certs)} boards signed through SoftHSM2: first to last certificate {span:.2f} s"
              f" ({(len(certs) - 1) / span if span > 0 else float('inf'):.0f} boards/s, 64 ports at once)")
        check(len(certs) == 64, f"expected 64 certificates, found {len(certs)}")
        signer_end = st["not_after"]
        for c in certs:
            p = os.path.join(env.dir, "dev.der")
            with open(p, "wb") as f:
                f.write(c["der"])
            pem = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", p], capture_output=True,
                                 check=True).stdout
            v = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile",
                                os.path.join(env.ca, "root.pem"), "-untrusted", signer_pem],
                               input=pem, capture_output=True)
            check(v.returncode == 0, f"certificate of {c['device_serial']} does not verify: {v.stdout + v.stderr}")
            # validity_days = 0 asks for no expiry; the signer ends in ten years, so does the device.
            check(c["not_after"] // 1000 == signer_end,
                  f"{c['device_serial']}: notAfter {c['not_after']} outlives or misses the signer's {signer_end}")
        for i in range(64):
            check(env.board_file(i, "device.der") is not None, f"board {i} stored no certificate")
        rc = env.stop_provd()
        check(rc == 0, f"provd exited {rc} on SIGTERM")

        # The key never left the token: it is still there, sensitive and never
        # extractable, and no private key anywhere in the run has its public key.
        objs = hsm.list_privkeys()
        check("signer" in objs and "never extractable" in objs and "sensitive" in objs, f"token objects: {objs}")
        for path, pub in private_key_files(env.dir):
            check(pub != hsm_pub, f"{path} holds the HSM signer's private key")
        # Nor its PIN in the log or the database.
        with open(os.path.join(env.dir, "provd.log")) as f:
            check(PIN not in f.read(), "the PIN is in provd's log")
        for row in db.execute("SELECT key_uri FROM signers"):
            check(PIN not in (row[0] or ""), "the PIN is in the database")
        db.close()

        # provd itself refuses a PIN in the URI at start.
        env.conf["signer"]["uri"] = hsm.uri + "&pin-value=" + PIN
        env.write_conf()
        r = subprocess.run([PROVD, "--config", env.conf_path], capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "pin_file" in r.stderr, f"provd with pin-value=: {r.returncode} {r.stderr}")
    finally:
        env.close()


if __name__ == "__main__":
    if not have_tools():
        print("1..0 # SKIP SoftHSM2, OpenSC pkcs11-tool or openssl not installed")
        sys.exit(0)
    run([test_64_boards_hsm_signer])
