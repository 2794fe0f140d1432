# SPDX-License-Identifier: MIT
"""provd's AWS IoT client (daemon/aws-*.c) against the strict fake (tests/fakes/aws_iot_fake.py):
the MAR flow per device and the JITR/JITP/SNI_ONLY flows per signer, driven by
build/daemon/test-aws-flow (the loop the outbox worker will run). Every run asserts
the fake's end state and that the fake rejected nothing."""

import datetime
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fakes"))
from provdtest import BUILD, Env, Failure, check, run, sha256  # noqa: E402
from aws_iot_fake import FakeProcess  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

FLOW = os.path.join(BUILD, "daemon", "test-aws-flow")

POLICY = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:${provd:region}:${provd:account}:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:${provd:region}:${provd:account}:topic/${provd:station}/${iot:Connection.Thing.ThingName}/*"}
  ]
}
"""

# As docs/AWS.md: provd's certificates carry CN = the board serial and no subject
# serialNumber, so the template takes the thing name and the serial attribute from the CN.
JITP = """{
  "Parameters": {
    "AWS::IoT::Certificate::CommonName": {"Type": "String"},
    "AWS::IoT::Certificate::Id": {"Type": "String"}
  },
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {
      "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
      "AttributePayload": {"serial": {"Ref": "AWS::IoT::Certificate::CommonName"},
                           "station": "${provd:station}"}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
      "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "${provd:policy}"}}
  }
}
"""


def device_certs(env, n, prefix="board"):
    """n device certificates signed by the Env's signer, CN = thing name; DER files."""
    with open(os.path.join(env.ca, "signer.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(env.ca, "signer.pem"), "rb") as f:
        issuer = x509.load_pem_x509_certificate(f.read())
    paths = []
    now = datetime.datetime.now(datetime.timezone.utc)
    for i in range(n):
        name = f"{prefix}-{i:03d}"
        dkey = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(issuer.subject)
                .public_key(dkey.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=365))
                .sign(key, hashes.SHA256()))
        p = os.path.join(env.dir, name + ".der")
        with open(p, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.DER))
        paths.append(p)
    return paths


def setup(name, fake_opts=None, aws=None, creds_token=None):
    env = Env(name)
    fake = FakeProcess(os.path.join(env.dir, "fake"), **{"seed": 7, **(fake_opts or {})})
    env.fake = fake
    info = fake.info
    creds = os.path.join(env.dir, "aws-credentials")
    with open(creds, "w") as f:
        f.write("[other]\naws_access_key_id = AKIAOTHEROTHEROTHER\naws_secret_access_key = nope\n\n")
        f.write(f"[factory]\naws_access_key_id = {info['access_key']}\n"
                f"aws_secret_access_key = {info['secret_key']}\n")
        if creds_token:
            f.write(f"aws_session_token = {creds_token}\n")
    os.chmod(creds, 0o600)
    with open(os.path.join(env.dir, "policy.json"), "w") as f:
        f.write(POLICY)
    with open(os.path.join(env.dir, "jitp.json"), "w") as f:
        f.write(JITP)
    env.conf["aws"] = {
        "mode": "mar",
        "endpoint": fake.endpoint,
        "region": info["region"],
        "ca_file": fake.ca_bundle,
        "credentials_file": creds,
        "profile": "factory",
        "account_id": info["account"],
        "policy_name": "provd-device",
        "policy_template": os.path.join(env.dir, "policy.json"),
        "timeout_ms": "10000",
        "backoff_base_ms": "20",
        "backoff_max_ms": "200",
        "max_attempts": "40",
    }
    env.conf["aws"].update(aws or {})
    env.write_conf()
    return env


NO_PROXY_ENV = {"http_proxy": "", "https_proxy": "", "HTTPS_PROXY": "", "ALL_PROXY": "", "all_proxy": "",
                "NO_PROXY": "", "no_proxy": ""}


def flow(env, *args, expect_rc=0, extra_env=None):
    p = subprocess.run([FLOW, *args], capture_output=True, text=True, timeout=240,
                       env={**os.environ, **NO_PROXY_ENV, **(extra_env or {})})
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != expect_rc:
        raise Failure(f"test-aws-flow exited {p.returncode}: {p.stderr.strip()} {lines}")
    return lines


def close(env):
    try:
        rej = env.fake.rejections()
        check(not rej, f"the fake rejected requests: {json.dumps(rej)[:4000]}")
    finally:
        env.fake.stop()
        env.close()


def check_mar_state(env, certs, st, thing_type=None, attrs=("serial", "model", "firmware")):
    info = env.fake.info
    for p in certs:
        with open(p, "rb") as f:
            der = f.read()
        cid = sha256(der)
        thing = os.path.basename(p).split(".")[0]
        cert = st["certificates"].get(cid) if isinstance(st["certificates"], dict) else \
            next((c for c in st["certificates"] if c.get("certificateId") == cid), None)
        check(cert is not None, f"certificate {cid} not registered")
        check(cert["status"] == "ACTIVE", f"certificate {cid} is {cert['status']}")
        arn = f"arn:aws:iot:{info['region']}:{info['account']}:cert/{cid}"
        things = st["things"]
        t = things.get(thing) if isinstance(things, dict) else next(x for x in things if x["thingName"] == thing)
        check(t is not None, f"thing {thing} missing")
        got = t.get("attributes", {})
        check(sorted(got) == sorted(attrs), f"thing {thing} attributes {got}, want {attrs}")
        check(got.get("model", "board-x1") == "board-x1" and got.get("firmware", "1.2.3") == "1.2.3",
              f"thing {thing} attributes {got}")
        if thing_type:
            check(t.get("thingTypeName") == thing_type, f"thing {thing} type {t.get('thingTypeName')}")
        check(arn in st["policyAttachments"].get("provd-device", []), f"policy not attached to {arn}")
        tp = [x for x in st["thingPrincipals"] if x["principal"] == arn]
        check(len(tp) == 1 and tp[0]["thingName"] == thing and tp[0]["thingPrincipalType"] == "EXCLUSIVE_THING",
              f"thing principals of {arn}: {tp}")
    pol = st["policies"]["provd-device"] if isinstance(st["policies"], dict) else \
        next(x for x in st["policies"] if x["policyName"] == "provd-device")
    doc = pol["versions"][pol["defaultVersionId"]]["document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    res = doc["Statement"][0]["Resource"]
    check(res == f"arn:aws:iot:{info['region']}:{info['account']}:client/${{iot:Connection.Thing.ThingName}}",
          f"policy variables not expanded as documented: {res}")


def test_mar():
    env = setup("aws-mar")
    try:
        certs = device_certs(env, 6)
        out = flow(env, env.conf_path, "mar", *certs)
        check(all(o.get("done") for o in out[:-1]), f"jobs: {out}")
        check(out[-1] == {"policy_ready": True}, f"{out[-1]}")
        st = env.fake.state()
        check_mar_state(env, certs, st)
        stats = env.fake.admin("/stats")
        ops = stats["by_operation"]
        check(ops.get("CreatePolicy") == 1, f"CreatePolicy called {ops.get('CreatePolicy')} times, want once")
        check(ops.get("RegisterCertificateWithoutCA") == 6, f"{ops}")
        # 6 devices x 4-5 calls over at most max_connections (4) connections: reused.
        check(stats["connections"] <= 4, f"{stats['connections']} TLS connections for {stats['requests']} requests")
        print(f"# mar: {stats['requests']} requests over {stats['connections']} connections")
        # An ARN as a path segment: encoded once for the wire, but AWS signs such a path
        # encoded twice and libcurl once, so the client refuses to send it (it would be a
        # 403 InvalidSignatureException, as the fake shows when it is sent).
        arn = out[0]["certificate_arn"]
        before = env.fake.admin("/stats")["requests"]
        lst = flow(env, env.conf_path, "list", arn, expect_rc=3)
        want = "/attached-policies/" + arn.replace(":", "%3A").replace("/", "%2F")
        check(lst == [{"path": want, "send": "Operation not supported"}], f"ListAttachedPolicies: {lst}")
        check(env.fake.admin("/stats")["requests"] == before, "a request with an encoded path was sent")
    finally:
        close(env)


def test_mar_repeated_steps_and_thing_type():
    """Every step of the first job runs twice (resumed from the step persisted before it):
    409 on the certificate goes through DescribeCertificate; CreateThing with the same
    configuration is accepted again; attaches are idempotent. Five attributes need a type."""
    env = setup("aws-mar-repeat", fake_opts={"thing_type": ["board"]}, aws={"thing_type": "board"})
    try:
        certs = device_certs(env, 2)
        out = flow(env, "--repeat-steps", env.conf_path, "mar", *certs)
        check(all(o.get("done") for o in out[:-1]), f"jobs: {out}")
        check(out[0]["repeats"] >= 4, f"first job repeated {out[0]['repeats']} steps")
        st = env.fake.state()
        check_mar_state(env, certs, st, thing_type="board",
                        attrs=("serial", "model", "firmware", "station", "signer"))
        ops = env.fake.admin("/stats")["by_operation"]
        check(ops.get("DescribeCertificate", 0) >= 1, f"no DescribeCertificate after the 409: {ops}")
    finally:
        close(env)


def test_mar_recovers_existing_state():
    """What another tool (or an earlier provd) left: a certificate registered INACTIVE is
    found by its id and activated; a thing with other attributes (new firmware) is
    updated with merge; nothing is duplicated."""
    env = setup("aws-mar-existing")
    try:
        certs = device_certs(env, 2)
        flow(env, env.conf_path, "register-inactive", certs[0])
        st = env.fake.state()
        check([c["status"] for c in st["certificates"].values()] == ["INACTIVE"], f"{st['certificates']}")
        out = flow(env, env.conf_path, "mar", *certs)
        check(all(o.get("done") for o in out[:-1]), f"jobs: {out}")
        check_mar_state(env, certs, env.fake.state())
        ops = env.fake.admin("/stats")["by_operation"]
        check(ops.get("UpdateCertificate") == 1 and ops.get("DescribeCertificate") == 1, f"{ops}")
        # A reissue-like run: same certificates, new firmware attribute.
        out = flow(env, "--firmware", "2.0.0", env.conf_path, "mar", *certs)
        check(all(o.get("done") for o in out[:-1]), f"jobs: {out}")
        st = env.fake.state()
        for t in st["things"].values():
            check(t["attributes"]["firmware"] == "2.0.0" and t["attributes"]["model"] == "board-x1",
                  f"thing {t['thingName']} attributes {t['attributes']}")
        check(len(st["things"]) == 2 and len(st["certificates"]) == 2, f"{st['things']} {st['certificates']}")
        ops = env.fake.admin("/stats")["by_operation"]
        check(ops.get("UpdateThing") == 2, f"{ops}")
    finally:
        close(env)


def test_mar_faults():
    """Throttling, 500s, dropped connections and lost replies (applied, then dropped):
    every job still completes, with retries, and the registry is the same."""
    env = setup("aws-mar-faults", fake_opts={"throttle": 0.15, "error500": 0.1, "drop": 0.05,
                                             "drop_after": 0.1, "seed": 3})
    try:
        certs = device_certs(env, 8)
        out = flow(env, env.conf_path, "mar", *certs)
        check(all(o.get("done") for o in out[:-1]), f"jobs: {out}")
        retries = sum(o["retries"] for o in out[:-1])
        check(retries > 0, "no retries: the faults did not happen")
        env.fake.set_faults(throttle=0, error500=0, drop=0, drop_after=0)
        check_mar_state(env, certs, env.fake.state())
        print(f"# faults: {retries} retries over {len(certs)} jobs")
    finally:
        close(env)


def test_mar_session_token_and_error_shapes():
    """Temporary credentials (x-amz-security-token) from the credentials file; a permanent
    error (the thing type does not exist) ends the job with AWS's code and message, in
    every error shape the fake can answer with."""
    env = setup("aws-mar-token", fake_opts={"session_token": "FQoGZXIvYXdzEXAMPLETOKEN"},
                creds_token="FQoGZXIvYXdzEXAMPLETOKEN", aws={"thing_type": "missing"})
    try:
        certs = device_certs(env, 1)
        for mode in ("json", "notype", "noheader", "html", "empty"):
            env.fake.admin("/faults", {"error_mode": mode})
            out = flow(env, env.conf_path, "mar", *certs, expect_rc=1)
            job = out[0]
            check(not job["done"] and job["step"] == "create-thing", f"{mode}: {job}")
            if mode in ("json", "notype", "noheader"):
                check(job["error"].startswith("ResourceNotFoundException"), f"{mode}: {job['error']}")
            else:
                check(job["error"].startswith(": HTTP 404") or "404" in job["error"], f"{mode}: {job['error']}")
        # The certificate was registered (with the token accepted) before the failure.
        st = env.fake.state()
        check(len(st["certificates"]) == 1, f"{st['certificates']}")
    finally:
        close(env)


def test_mar_with_ca():
    """register_with_ca: RegisterCertificate with the signer CA, which must be registered first (JITR flow)."""
    env = setup("aws-mar-ca", aws={"mode": "jitr", "policy_template": ""})
    try:
        out = flow(env, env.conf_path, "ca")
        check(out[0]["done"], f"{out}")
        env.conf["aws"].update({"mode": "mar", "register_with_ca": "yes",
                                "policy_template": os.path.join(env.dir, "policy.json")})
        env.write_conf()
        certs = device_certs(env, 2)
        out = flow(env, env.conf_path, "mar", *certs)
        check(all(o.get("done") for o in out[:-1]), f"jobs: {out}")
        st = env.fake.state()
        check_mar_state(env, certs, st)
        ops = env.fake.admin("/stats")["by_operation"]
        check(ops.get("RegisterCertificate") == 2 and not ops.get("RegisterCertificateWithoutCA"), f"{ops}")
    finally:
        close(env)


class ConnectProxy:
    """A CONNECT-only HTTP proxy on 127.0.0.1 that counts the tunnels it opened."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.tunnels = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import socket
        import threading
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.tunnel, args=(c,), daemon=True).start()

    def tunnel(self, c):
        import select
        import socket
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                return c.close()
            head += d
        line = head.split(b"\r\n")[0].decode()
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return c.close()
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        u = socket.create_connection((host, int(port)))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        socks = [c, u]
        while True:
            r, _, _ = select.select(socks, [], [], 5)
            if not r:
                continue
            for s in r:
                d = s.recv(65536)
                if not d:
                    c.close()
                    u.close()
                    return
                (u if s is c else c).sendall(d)

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_https_proxy_from_environment():
    """No [aws] proxy: libcurl takes https_proxy (and HTTPS_PROXY) from the environment and
    tunnels TLS with CONNECT; NO_PROXY exempts the host; proxy = (empty) ignores them."""
    env = setup("aws-proxy")
    proxy = ConnectProxy()
    try:
        certs = device_certs(env, 3)
        port = env.fake.info["port"]
        out = flow(env, env.conf_path, "mar", certs[0], extra_env={"https_proxy": f"http://127.0.0.1:{proxy.port}"})
        check(out[0]["done"], f"{out}")
        check(proxy.tunnels and all(t == f"127.0.0.1:{port}" for t in proxy.tunnels), f"tunnels {proxy.tunnels}")
        n = len(proxy.tunnels)
        out = flow(env, env.conf_path, "mar", certs[1], extra_env={"HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}"})
        check(out[0]["done"] and len(proxy.tunnels) > n, f"HTTPS_PROXY not used: {proxy.tunnels}")
        n = len(proxy.tunnels)
        out = flow(env, env.conf_path, "mar", certs[2], extra_env={"https_proxy": f"http://127.0.0.1:{proxy.port}",
                                                                    "NO_PROXY": "127.0.0.1"})
        check(out[0]["done"] and len(proxy.tunnels) == n, f"NO_PROXY ignored: {proxy.tunnels}")
        env.conf["aws"]["proxy"] = ""
        env.write_conf()
        out = flow(env, env.conf_path, "mar", certs[0], extra_env={"https_proxy": f"http://127.0.0.1:{proxy.port}"})
        check(out[0]["done"] and len(proxy.tunnels) == n, f"proxy = (empty) still used the proxy: {proxy.tunnels}")
        check_mar_state(env, certs, env.fake.state())
    finally:
        proxy.close()
        close(env)


def ca_state(env, st):
    with open(os.path.join(env.ca, "signer.pem"), "rb") as f:
        der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
    cid = sha256(der)
    cas = st["caCertificates"]
    ca = cas.get(cid) if isinstance(cas, dict) else next((c for c in cas if c.get("certificateId") == cid), None)
    check(ca is not None, f"CA {cid} not registered: {list(cas)}")
    return cid, ca


def test_jitr():
    env = setup("aws-jitr", aws={"mode": "jitr", "policy_template": ""})
    try:
        out = flow(env, env.conf_path, "ca")
        check(out[0]["done"], f"{out}")
        cid, ca = ca_state(env, env.fake.state())
        check(out[0]["certificate_id"] == cid, f"{out[0]} vs {cid}")
        check(out[0]["certificate_arn"].endswith(f":cacert/{cid}"), f"{out[0]}")
        check(ca["status"] == "ACTIVE" and ca["autoRegistrationStatus"] == "ENABLE", f"{ca}")
        check(ca.get("certificateMode", "DEFAULT") == "DEFAULT", f"{ca}")
        # Again: 409, then DescribeCACertificate gives the same id and ARN.
        again = flow(env, env.conf_path, "ca")
        check(again[0]["done"] and again[0]["certificate_arn"] == out[0]["certificate_arn"], f"{again}")
    finally:
        close(env)


def test_jitp():
    env = setup("aws-jitp", aws={"mode": "jitp", "policy_template": "",
                                 "jitp_template": "", "jitp_role_arn": "arn:aws:iam::123456789012:role/JITP"})
    try:
        env.conf["aws"]["jitp_template"] = os.path.join(env.dir, "jitp.json")
        env.write_conf()
        out = flow(env, env.conf_path, "ca")
        check(out[0]["done"], f"{out}")
        _, ca = ca_state(env, env.fake.state())
        rc = ca.get("registrationConfig") or {}
        check(rc.get("roleArn") == "arn:aws:iam::123456789012:role/JITP", f"{rc}")
        body = json.loads(rc["templateBody"])
        check(body["Resources"]["policy"]["Properties"]["PolicyName"] == "provd-device", f"{body}")
        check(body["Resources"]["thing"]["Properties"]["ThingName"] == {"Ref": "AWS::IoT::Certificate::CommonName"},
              f"{body}")
        check(body["Resources"]["thing"]["Properties"]["AttributePayload"]["station"] == "aws-jitp", f"{body}")
    finally:
        close(env)


def test_sni_only():
    env = setup("aws-sni", aws={"mode": "jitr", "sni_only": "yes", "policy_template": ""})
    try:
        out = flow(env, env.conf_path, "ca")
        check(out[0]["done"], f"{out}")
        _, ca = ca_state(env, env.fake.state())
        check(ca.get("certificateMode") == "SNI_ONLY", f"{ca}")
        ops = env.fake.admin("/stats")["by_operation"]
        check("GetRegistrationCode" not in ops, f"{ops}")
    finally:
        close(env)


if __name__ == "__main__":
    run([test_mar, test_mar_repeated_steps_and_thing_type, test_mar_recovers_existing_state, test_mar_faults, test_mar_session_token_and_error_shapes,
         test_mar_with_ca, test_https_proxy_from_environment, test_jitr, test_jitp, test_sni_only])
