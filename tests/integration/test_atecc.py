#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The ATECC compressed-certificate profile end to end: provd issues
[profile] format = atecc-compressed under a signer made by `provctl ca init
--compressed`, and sends PUT_CERT's COMPRESSED_CERT (72 bytes, PROTOCOL.md
§6.3) to boards whose CAPS say COMPRESSED_CERT, and only to those.

The bytes a board received are checked against the certificate it got, field
by field as atcacert defines them: r and s of the certificate's signature, the
dates encoded from its notBefore and notAfter, the signer id, template and
chain ids, the serial-number source and format version."""

import os
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

sys.path.insert(0, os.path.dirname(__file__))
from provdtest import PROVCTL, Env, check, run  # noqa: E402

BOARDS = 8
SIGNER_ID = 0xC4F1


def test_compressed_put_cert():
    env = Env("atecc")
    try:
        # A CA within the compressed-signer limits, replacing the Env's default one.
        ca = os.path.join(env.dir, "ca-atecc")
        subprocess.run([PROVCTL, "ca", "init", "--dir", ca, "--compressed", "--signer-id", str(SIGNER_ID)],
                       check=True, stdout=subprocess.DEVNULL)
        env.ca = ca
        env.conf["signer"] = {"uri": "file:" + os.path.join(ca, "signer.key"),
                              "cert": os.path.join(ca, "signer.pem"), "root": os.path.join(ca, "root.pem")}
        env.conf["profile"] = {"format": "atecc-compressed", "validity_days": str(365 * 10),
                               "signer_id": str(SIGNER_ID), "template_id": "2", "chain_id": "1"}
        env.write_conf()
        env.start_provd()
        # Boards 0-5 are ATECC-style (CAPS COMPRESSED_CERT); 6 and 7 are not.
        env.start_sim(BOARDS, "--fault", "compressed@0-5")
        env.wait_totals(timeout=60, provisioned=BOARDS)

        for i in range(BOARDS):
            der = env.board_file(i, "device.der")
            comp = env.board_file(i, "compressed.bin")
            check(der is not None, f"board {i} holds no certificate")
            ok, out = env.openssl_verify(der)
            check(ok, f"board {i}'s certificate does not verify: {out}")
            if i >= 6:
                check(comp is None, f"board {i} lacks COMPRESSED_CERT in its CAPS but was sent the compressed form")
                continue
            check(comp is not None and len(comp) == 72, f"board {i} got no 72-byte compressed certificate")
            cert = x509.load_der_x509_certificate(der)
            r, s = decode_dss_signature(cert.signature)
            check(comp[0:32] == r.to_bytes(32, "big") and comp[32:64] == s.to_bytes(32, "big"),
                  f"board {i}: the compressed signature is not the certificate's")
            nb, na = cert.not_valid_before, cert.not_valid_after
            check(nb.minute == 0 and nb.second == 0, f"board {i}: notBefore {nb} is not on the hour")
            years = na.year - nb.year
            enc = ((nb.year - 2000) << 19) | (nb.month << 15) | (nb.day << 10) | (nb.hour << 5) | years
            check(comp[64:67] == enc.to_bytes(3, "big"), f"board {i}: dates {comp[64:67].hex()} != {enc:06x}")
            check(int.from_bytes(comp[67:69], "big") == SIGNER_ID, f"board {i}: signer id {comp[67:69].hex()}")
            check(comp[69] == 0x21, f"board {i}: template/chain byte {comp[69]:02x}")
            check(comp[70] == 0xA0 and comp[71] == 0, f"board {i}: format bytes {comp[70:72].hex()}")
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(run([test_compressed_put_cert]))
