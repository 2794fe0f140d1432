# SPDX-License-Identifier: MIT
"""Self-test of aws_iot_fake.py: real awscli and botocore clients drive every operation
and the end state is checked; hand-built requests show each kind of rejection."""

import contextlib
import datetime
import hashlib
import io
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import traceback



def awscli_worker():
    """`test_aws_fake.py --awscli-worker`: runs Debian's awscli driver for each JSON line
    {"argv", "env"} on stdin and answers {"rc", "stdout", "stderr"} on one line. A new
    driver per call, as a new `aws` process would make, without 40 interpreter
    start-ups (minutes on a loaded machine). It must not share a process with
    python3-botocore: awscli v2 brings its own."""
    import awscli.clidriver
    # awscli's import put its data directories in AWS_DATA_PATH: kept for every call.
    data_path = os.environ["AWS_DATA_PATH"]
    proto = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        req = json.loads(line)
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ["AWS_DATA_PATH"] = data_path
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = awscli.clidriver.create_clidriver().main(req["argv"])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 255
        proto.write(json.dumps({"rc": rc, "stdout": out.getvalue(),
                                "stderr": err.getvalue()}) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["--awscli-worker"]:
    sys.exit(awscli_worker())

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aws_iot_fake import FakeProcess  # noqa: E402

import botocore.auth  # noqa: E402
import botocore.awsrequest  # noqa: E402
import botocore.config  # noqa: E402
import botocore.credentials  # noqa: E402
import botocore.exceptions  # noqa: E402
import botocore.session  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

AWS = "/usr/bin/aws"


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


# ------------------------------------------------------------------ certificates


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(cn, key, issuer_cert=None, issuer_key=None, ca=False):
    now = datetime.datetime.utcnow()
    b = (x509.CertificateBuilder().subject_name(name(cn))
         .issuer_name(issuer_cert.subject if issuer_cert else name(cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return b.sign(issuer_key or key, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def der_id(cert):
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def newkey():
    return ec.generate_private_key(ec.SECP256R1())


# ------------------------------------------------------------------ clients


class Cli:
    """Debian's awscli (`aws iot ...`) against the fake; returns (rc, parsed stdout,
    stderr). Calls go to one awscli worker process (see awscli_worker); spawn=True runs
    /usr/bin/aws itself."""

    def __init__(self, fake, workdir):
        self.fake = fake
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(fake.env())
        self.env["AWS_PAGER"] = ""
        self.env["HOME"] = workdir
        self.calls = 0
        self.worker = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                                        "--awscli-worker"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)

    def run(self, *args, ok=True, spawn=False):
        argv = ["iot", *args, "--endpoint-url", self.fake.endpoint, "--ca-bundle",
                self.fake.ca_bundle, "--output", "json", "--no-cli-pager"]
        if spawn:
            p = subprocess.run([AWS, *argv], env=self.env, capture_output=True, text=True,
                               timeout=120)
            rc, stdout, stderr = p.returncode, p.stdout, p.stderr
        else:
            self.worker.stdin.write(json.dumps({"argv": argv, "env": self.env}) + "\n")
            self.worker.stdin.flush()
            line = self.worker.stdout.readline()
            check(line, "the awscli worker died")
            r = json.loads(line)
            rc, stdout, stderr = r["rc"], r["stdout"], r["stderr"]
        self.calls += 1
        if ok and rc != 0:
            raise Failure(f"aws iot {args[0]} failed ({rc}): {stderr.strip()}")
        return rc, (json.loads(stdout) if stdout.strip() else {}), stderr

    def close(self):
        self.worker.stdin.close()
        self.worker.wait(30)


def boto_client(fake, retries=0, service_name=None):
    s = botocore.session.get_session()
    cfg = botocore.config.Config(retries={"max_attempts": retries, "mode": "standard"}
                                 if retries else {"max_attempts": 0})
    return s.create_client("iot", region_name=fake.info["region"], endpoint_url=fake.endpoint,
                           verify=fake.ca_bundle, config=cfg,
                           aws_access_key_id=fake.info["access_key"],
                           aws_secret_access_key=fake.info["secret_key"],
                           aws_session_token=fake.info["session_token"])


class Raw:
    """Hand-built requests on one kept-alive HTTPS connection, signed (or not) with
    botocore's SigV4Auth, so each test controls exactly what goes on the wire."""

    def __init__(self, fake):
        self.fake = fake
        self.ctx = ssl.create_default_context(cafile=fake.ca_bundle)
        self.host = f"{fake.info['bind']}:{fake.info['port']}"
        self.conn = None

    def send(self, method, target, body=b"", headers=None, sign=True, secret=None,
             access_key=None, service="iot", region=None, token="default", date=None,
             signer_cls=botocore.auth.SigV4Auth):
        hdrs = dict(headers or {})
        hdrs["Host"] = self.host
        if sign:
            creds = botocore.credentials.Credentials(
                access_key or self.fake.info["access_key"],
                secret or self.fake.info["secret_key"],
                self.fake.info["session_token"] if token == "default" else token)
            req = botocore.awsrequest.AWSRequest(method=method, url="https://" + self.host +
                                                 target, data=body, headers=hdrs)
            signer = signer_cls(creds, service, region or self.fake.info["region"])
            if date is not None:
                # Sign as of another time: botocore reads utcnow() in add_auth.
                real = botocore.auth.datetime.datetime

                class Fixed(real):
                    @classmethod
                    def utcnow(cls):
                        return date
                botocore.auth.datetime.datetime = Fixed
                try:
                    signer.add_auth(req)
                finally:
                    botocore.auth.datetime.datetime = real
            else:
                signer.add_auth(req)
            hdrs = dict(req.headers.items())
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(self.fake.info["bind"],
                                                    self.fake.info["port"], context=self.ctx,
                                                    timeout=30)
        self.conn.request(method, target, body=body, headers=hdrs)
        r = self.conn.getresponse()
        data = r.read()
        if r.getheader("connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def close(self):
        if self.conn:
            self.conn.close()


class SigV4EncodedOnce(botocore.auth.SigV4Auth):
    """The path put in the canonical request as sent, not encoded again (S3's rule)."""

    def _normalize_url_path(self, path):
        return path


def error_code(headers, data):
    h = headers.get("x-amzn-errortype")
    if h:
        return h.split(":")[0]
    try:
        return json.loads(data).get("__type")
    except ValueError:
        return None


# ------------------------------------------------------------------ the tests


def test_operations_with_awscli(fake, work):
    """Every operation through the real awscli (Debian's, signing as execute-api), then
    the fake's state says exactly what was done, and nothing was rejected."""
    cli = Cli(fake, work)
    ca_key, dev_key, self_key = newkey(), newkey(), newkey()
    ca = make_cert("provd test CA", ca_key, ca=True)

    _, out, _ = cli.run("get-registration-code", spawn=True)
    code = out["registrationCode"]
    check(code == fake.info["registration_code"] and len(code) == 64, f"code {code}")

    # A verification certificate whose CN is not the code is refused, so is one signed
    # by another key.
    files = {}

    def write(nm, text):
        p = os.path.join(work, nm)
        with open(p, "w") as f:
            f.write(text)
        files[nm] = p
        return "file://" + p

    write("ca.pem", pem(ca))
    ver_key = newkey()
    write("ver-bad-cn.pem", pem(make_cert("not-the-code", ver_key, ca, ca_key)))
    rc, _, err = cli.run("register-ca-certificate", "--ca-certificate", "file://" + files["ca.pem"],
                         "--verification-certificate", "file://" + files["ver-bad-cn.pem"],
                         ok=False)
    check(rc != 0 and "CertificateValidationException" in err, f"bad CN accepted: {err}")
    other = newkey()
    write("ver-bad-key.pem", pem(make_cert(code, ver_key, make_cert("provd test CA", other,
                                                                      ca=True), other)))
    rc, _, err = cli.run("register-ca-certificate", "--ca-certificate", "file://" + files["ca.pem"],
                         "--verification-certificate", "file://" + files["ver-bad-key.pem"],
                         ok=False)
    check(rc != 0 and "CertificateValidationException" in err, f"bad signer accepted: {err}")

    write("ver.pem", pem(make_cert(code, ver_key, ca, ca_key)))
    # awscli sends setAsActive and allowAutoRegistration in model order (unsorted), which
    # this strict fake refuses (see test_lenient): one flag here, both in sorted order by
    # hand below.
    rc, _, err = cli.run("register-ca-certificate", "--ca-certificate", "file://" + files["ca.pem"],
                         "--verification-certificate", "file://" + files["ver.pem"],
                         "--set-as-active", "--allow-auto-registration", ok=False)
    check(rc != 0 and "not sorted" in err, f"unsorted query accepted: {err}")
    check(fake.rejections()[-1]["operation"] == "RegisterCACertificate", "rejection recorded")
    fake.clear_rejections()
    _, out, _ = cli.run("register-ca-certificate", "--ca-certificate", "file://" + files["ca.pem"],
                        "--verification-certificate", "file://" + files["ver.pem"],
                        "--set-as-active", "--registration-config",
                        json.dumps({"templateBody": '{"Resources":{}}',
                                    "roleArn": "arn:aws:iam::123456789012:role/jitp"}))
    ca_id = out["certificateId"]
    check(ca_id == der_id(ca), f"CA id {ca_id} is not the SHA-256 of its DER")
    cli.run("update-ca-certificate", "--certificate-id", ca_id,
            "--new-auto-registration-status", "ENABLE")
    rc, _, err = cli.run("register-ca-certificate", "--ca-certificate", "file://" + files["ca.pem"],
                         "--verification-certificate", "file://" + files["ver.pem"], ok=False)
    check(rc != 0 and "ResourceAlreadyExistsException" in err, f"CA registered twice: {err}")
    _, out, _ = cli.run("describe-ca-certificate", "--certificate-id", ca_id)
    d = out["certificateDescription"]
    check(d["status"] == "ACTIVE" and d["autoRegistrationStatus"] == "ENABLE" and
          d["certificateMode"] == "DEFAULT", f"CA description {d}")
    check(out["registrationConfig"]["roleArn"].endswith("role/jitp"), f"{out}")

    sni_key = newkey()
    sni = make_cert("provd SNI CA", sni_key, ca=True)
    write("sni.pem", pem(sni))
    raw = Raw(fake)
    st, h, data = raw.send("POST", "/cacertificate?allowAutoRegistration=true&setAsActive=true",
                           body=json.dumps({"caCertificate": pem(sni),
                                            "certificateMode": "SNI_ONLY"}).encode(),
                           headers={"Content-Type": "application/json"})
    raw.close()
    check(st == 200, f"SNI_ONLY CA: {st} {data!r}")
    sni_id = json.loads(data)["certificateId"]
    _, out, _ = cli.run("describe-ca-certificate", "--certificate-id", sni_id)
    d = out["certificateDescription"]
    check(d["status"] == "ACTIVE" and d["autoRegistrationStatus"] == "ENABLE" and
          d["certificateMode"] == "SNI_ONLY" and "registrationConfig" not in out, f"{out}")
    rc, _, err = cli.run("register-ca-certificate", "--ca-certificate", "file://" + files["sni.pem"],
                         "--certificate-mode", "SNI_ONLY", "--verification-certificate",
                         "file://" + files["ver.pem"], ok=False)
    check(rc != 0 and "InvalidRequestException" in err, f"SNI_ONLY with verification: {err}")
    _, out, _ = cli.run("list-ca-certificates")
    check(sorted(c["certificateId"] for c in out["certificates"]) == sorted([ca_id, sni_id]),
          f"list-ca-certificates {out}")

    dev = make_cert("dev-0001", dev_key, ca, ca_key)
    write("dev.pem", pem(dev))
    _, out, _ = cli.run("register-certificate", "--certificate-pem", "file://" + files["dev.pem"],
                        "--ca-certificate-pem", "file://" + files["ca.pem"], "--status", "ACTIVE")
    dev_id, dev_arn = out["certificateId"], out["certificateArn"]
    check(dev_id == der_id(dev), "device certificate id")
    rc, _, err = cli.run("register-certificate", "--certificate-pem", "file://" + files["dev.pem"],
                         ok=False)
    check(rc != 0 and "ResourceAlreadyExistsException" in err and dev_id in err or
          "ResourceAlreadyExistsException" in err, f"registered twice: {err}")
    stray = make_cert("stray", newkey(), make_cert("unknown CA", other, ca=True), other)
    write("stray.pem", pem(stray))
    rc, _, err = cli.run("register-certificate", "--certificate-pem",
                         "file://" + files["stray.pem"], ok=False)
    check(rc != 0 and "CertificateValidationException" in err, f"unregistered CA: {err}")

    selfc = make_cert("dev-self", self_key)
    write("self.pem", pem(selfc))
    _, out, _ = cli.run("register-certificate-without-ca", "--certificate-pem",
                        "file://" + files["self.pem"], "--status", "INACTIVE")
    self_id, self_arn = out["certificateId"], out["certificateArn"]
    _, out, _ = cli.run("update-certificate", "--certificate-id", self_id,
                        "--new-status", "ACTIVE")
    _, out, _ = cli.run("describe-certificate", "--certificate-id", self_id)
    d = out["certificateDescription"]
    check(d["status"] == "ACTIVE" and d["certificateMode"] == "SNI_ONLY" and
          "caCertificateId" not in d, f"{d}")
    _, out, _ = cli.run("describe-certificate", "--certificate-id", dev_id)
    check(out["certificateDescription"]["caCertificateId"] == ca_id, f"{out}")
    rc, _, err = cli.run("describe-certificate", "--certificate-id", "ab" * 32, ok=False)
    check(rc != 0 and "ResourceNotFoundException" in err, f"missing certificate: {err}")
    _, out, _ = cli.run("list-certificates", "--page-size", "1")
    check(len(out["certificates"]) == 1 and out.get("nextMarker"), f"first page {out}")
    # (--page-size with --marker would go out unsorted: pageSize before marker.)
    _, out2, _ = cli.run("list-certificates", "--marker", out["nextMarker"])
    check(len(out2["certificates"]) == 1 and "nextMarker" not in out2, f"last page {out2}")
    check(sorted(c["certificateId"] for c in out["certificates"] + out2["certificates"]) ==
          sorted([dev_id, self_id]), f"list-certificates pages {out} {out2}")

    # Things: the same configuration twice is fine, different attributes conflict.
    for _ in range(2):
        _, out, _ = cli.run("create-thing", "--thing-name", "dev-0001", "--attribute-payload",
                            '{"attributes":{"serial":"0001","batch":"b7"}}')
    thing_arn = out["thingArn"]
    rc, _, err = cli.run("create-thing", "--thing-name", "dev-0001", "--attribute-payload",
                         '{"attributes":{"serial":"0002"}}', ok=False)
    check(rc != 0 and "ResourceAlreadyExistsException" in err, f"conflict accepted: {err}")
    cli.run("create-thing", "--thing-name", "dev-0002", "--thing-type-name", "provd-board")
    rc, _, err = cli.run("create-thing", "--thing-name", "dev-0003", "--thing-type-name",
                         "no-such-type", ok=False)
    check(rc != 0 and "ResourceNotFoundException" in err, f"unknown thing type: {err}")
    _, out, _ = cli.run("describe-thing", "--thing-name", "dev-0001")
    check(out["attributes"] == {"serial": "0001", "batch": "b7"} and out["thingArn"] == thing_arn,
          f"{out}")
    rc, _, err = cli.run("describe-thing", "--thing-name", "nope", ok=False)
    check(rc != 0 and "ResourceNotFoundException" in err, f"missing thing: {err}")
    _, out, _ = cli.run("list-things")
    check([t["thingName"] for t in out["things"]] == ["dev-0001", "dev-0002"], f"{out}")
    _, out, _ = cli.run("list-things", "--thing-type-name", "provd-board")
    check([t["thingName"] for t in out["things"]] == ["dev-0002"], f"{out}")

    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]})
    _, out, _ = cli.run("create-policy", "--policy-name", "provd-device", "--policy-document", doc)
    check(out["policyVersionId"] == "1", f"{out}")
    rc, _, err = cli.run("create-policy", "--policy-name", "provd-device", "--policy-document",
                         doc, ok=False)
    check(rc != 0 and "ResourceAlreadyExistsException" in err, f"policy twice: {err}")
    rc, _, err = cli.run("create-policy", "--policy-name", "bad", "--policy-document",
                         "{not json", ok=False)
    check(rc != 0 and "MalformedPolicyException" in err, f"bad document: {err}")
    _, out, _ = cli.run("get-policy", "--policy-name", "provd-device")
    check(json.loads(out["policyDocument"]) == json.loads(doc), f"{out}")
    cli.run("attach-policy", "--policy-name", "provd-device", "--target", dev_arn)
    rc, _, err = cli.run("attach-policy", "--policy-name", "provd-device", "--target",
                         dev_arn[:-64] + "cd" * 32, ok=False)
    check(rc != 0 and "ResourceNotFoundException" in err, f"unknown target: {err}")
    _, out, _ = cli.run("list-attached-policies", "--target", dev_arn)
    check([p["policyName"] for p in out["policies"]] == ["provd-device"], f"{out}")

    cli.run("attach-thing-principal", "--thing-name", "dev-0001", "--principal", dev_arn)
    cli.run("attach-thing-principal", "--thing-name", "dev-0001", "--principal", dev_arn)
    cli.run("attach-thing-principal", "--thing-name", "dev-0002", "--principal", self_arn)
    _, out, _ = cli.run("list-thing-principals", "--thing-name", "dev-0001")
    check(out["principals"] == [dev_arn], f"{out}")
    _, out, _ = cli.run("list-principal-things", "--principal", dev_arn)
    check(out["things"] == ["dev-0001"], f"{out}")

    st = fake.state()
    check(set(st["certificates"]) == {dev_id, self_id}, "certificates in state")
    check(st["certificates"][dev_id]["caCertificateId"] == ca_id and
          st["certificates"][dev_id]["status"] == "ACTIVE", "device certificate state")
    check(st["caCertificates"][ca_id]["registrationConfig"]["templateBody"] ==
          '{"Resources":{}}', f"{st['caCertificates'][ca_id]}")
    check(st["things"]["dev-0001"]["attributes"] == {"serial": "0001", "batch": "b7"}, "thing")
    check(st["things"]["dev-0002"]["thingTypeName"] == "provd-board", "thing type")
    check(st["policyAttachments"] == {"provd-device": [dev_arn]}, f"{st['policyAttachments']}")
    check(sorted((t["thingName"], t["principal"]) for t in st["thingPrincipals"]) ==
          [("dev-0001", dev_arn), ("dev-0002", self_arn)], f"{st['thingPrincipals']}")
    check(st["policies"]["provd-device"]["defaultVersionId"] == "1", "policy version")
    fake.assert_no_rejections()
    cli.close()
    print(f"ok awscli: {cli.calls} calls, state as expected, no rejections")
    return {"dev_arn": dev_arn, "self_arn": self_arn, "self_id": self_id, "ca": ca,
            "ca_key": ca_key, "code": code}


def test_botocore_exclusive_and_reuse(fake, ids):
    """botocore with the thingPrincipalType the Debian model lacks (added to the request
    by hand, signed by botocore), and connection reuse over many calls."""
    c = boto_client(fake)

    def add_type(ptype):
        def hook(request, **kw):
            sep = "&" if "?" in request.url else "?"
            request.url += f"{sep}thingPrincipalType={ptype}"
        return hook

    c.create_thing(thingName="dev-x1")
    c.create_thing(thingName="dev-x2")
    extra = add_type("EXCLUSIVE_THING")
    c.meta.events.register("before-sign.iot.AttachThingPrincipal", extra)
    # dev_arn is on dev-0001: exclusive attach to another thing is refused.
    try:
        c.attach_thing_principal(thingName="dev-x1", principal=ids["dev_arn"])
        raise Failure("exclusive attach of a certificate on another thing succeeded")
    except botocore.exceptions.ClientError as e:
        check(e.response["Error"]["Code"] == "InvalidRequestException" and
              e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, f"{e.response}")
    k = newkey()
    excl = make_cert("dev-excl", k)
    out = c.register_certificate_without_ca(certificatePem=pem(excl), status="ACTIVE")
    c.attach_thing_principal(thingName="dev-x1", principal=out["certificateArn"])
    c.attach_thing_principal(thingName="dev-x1", principal=out["certificateArn"])  # again: fine
    c.meta.events.unregister("before-sign.iot.AttachThingPrincipal", extra)
    try:
        c.attach_thing_principal(thingName="dev-x2", principal=out["certificateArn"])
        raise Failure("a second thing got an exclusively attached certificate")
    except botocore.exceptions.ClientError as e:
        check(e.response["Error"]["Code"] == "InvalidRequestException", f"{e.response}")
    st = fake.state()
    check({"thingName": "dev-x1", "principal": out["certificateArn"],
           "thingPrincipalType": "EXCLUSIVE_THING"} in st["thingPrincipals"], "exclusive state")
    check(not any(t["thingName"] == "dev-x2" for t in st["thingPrincipals"]), "dev-x2 has none")

    before = fake.stats()
    for _ in range(10):
        c.describe_thing(thingName="dev-x1")
    after = fake.stats()
    check(after["requests"] - before["requests"] == 10, "ten requests counted")
    check(after["connections"] - before["connections"] <= 1,
          f"ten calls took {after['connections'] - before['connections']} connections")
    fake.assert_no_rejections()
    print("ok botocore: EXCLUSIVE_THING enforced, 10 calls on "
          f"{after['connections'] - before['connections']} new connection(s)")


def test_more_ops(fake, ids):
    """UpdateThing, DescribeEndpoint and the detach/delete operations, with botocore."""
    c = boto_client(fake)

    def code_of(fn, **kw):
        try:
            fn(**kw)
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"]
        return None

    c.update_thing(thingName="dev-0001", attributePayload={
        "attributes": {"batch": "", "line": "L2"}, "merge": True})
    t = c.describe_thing(thingName="dev-0001")
    check(t["attributes"] == {"serial": "0001", "line": "L2"} and t["version"] == 2, f"{t}")
    check(code_of(c.update_thing, thingName="dev-0001", expectedVersion=1,
                  attributePayload={"attributes": {}}) == "VersionConflictException", "version")
    c.update_thing(thingName="dev-0001", thingTypeName="provd-board",
                   attributePayload={"attributes": {"serial": "0001"}})
    t = c.describe_thing(thingName="dev-0001")
    check(t["attributes"] == {"serial": "0001"} and t["thingTypeName"] == "provd-board", f"{t}")
    check(code_of(c.update_thing, thingName="nope") == "ResourceNotFoundException", "404")
    ep = c.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    check(ep.endswith("-ats.iot.eu-west-1.amazonaws.com"), ep)

    # A certificate cannot go while active, attached to a thing, or (without force)
    # to a policy; detaching clears the way.
    arn, cid = ids["self_arn"], ids["self_id"]
    check(code_of(c.delete_certificate, certificateId=cid) == "CertificateStateException", "")
    c.update_certificate(certificateId=cid, newStatus="INACTIVE")
    check(code_of(c.delete_certificate, certificateId=cid) == "DeleteConflictException", "thing")
    check(code_of(c.delete_thing, thingName="dev-0002") == "InvalidRequestException", "")
    c.detach_thing_principal(thingName="dev-0002", principal=arn)
    check(c.list_thing_principals(thingName="dev-0002")["principals"] == [], "detached")
    c.attach_policy(policyName="provd-device", target=arn)
    check(code_of(c.delete_policy, policyName="provd-device") == "DeleteConflictException", "")
    check(code_of(c.delete_certificate, certificateId=cid) == "DeleteConflictException", "pol")
    c.detach_policy(policyName="provd-device", target=arn)
    c.delete_certificate(certificateId=cid)
    check(cid not in fake.state()["certificates"], "certificate deleted")
    c.delete_thing(thingName="dev-0002")
    c.delete_thing(thingName="dev-0002")  # AWS: absent is fine
    check("dev-0002" not in fake.state()["things"], "thing deleted")
    c.create_policy_version(policyName="provd-device", setAsDefault=True, policyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*",
                                                 "Resource": "*"}]}))
    check(c.get_policy(policyName="provd-device")["defaultVersionId"] == "2", "version 2")
    check([v["versionId"] for v in c.list_policy_versions(policyName="provd-device")
           ["policyVersions"]] == ["2", "1"], "versions")
    # A second CA of the same subject (another key): RegisterCertificate must then be
    # told which CA signed.
    k2 = newkey()
    ca2 = make_cert("provd test CA", k2, ca=True)
    c.register_ca_certificate(caCertificate=pem(ca2), setAsActive=True,
                              verificationCertificate=pem(make_cert(ids["code"], newkey(),
                                                                    ca2, k2)))
    dev = make_cert("dev-0009", newkey(), ids["ca"], ids["ca_key"])
    check(code_of(c.register_certificate, certificatePem=pem(dev)) ==
          "CertificateValidationException", "ambiguous CA accepted")
    check(code_of(c.register_certificate, certificatePem=pem(dev), caCertificatePem=pem(ca2))
          == "CertificateValidationException", "signed by the other CA's key?")
    out = c.register_certificate(certificatePem=pem(dev), caCertificatePem=pem(ids["ca"]))
    check(fake.state()["certificates"][out["certificateId"]]["caCertificateId"] ==
          der_id(ids["ca"]), "CA of the registered certificate")
    fake.assert_no_rejections()
    print("ok UpdateThing, DescribeEndpoint, detach and delete, CA disambiguation")


def expect_reject(fake, raw, what, status, code, *args, **kw):
    n = len(fake.rejections())
    st, h, data = raw.send(*args, **kw)
    got = error_code(h, data)
    check(st == status and got == code,
          f"{what}: expected {status} {code}, got {st} {got}: {data[:300]!r}")
    rej = fake.rejections()
    check(len(rej) == n + 1 and rej[-1]["code"] == code,
          f"{what}: not recorded as a rejection ({len(rej) - n} new)")
    print(f"ok rejects {what}: {st} {code}")


def test_rejections(fake):
    raw = Raw(fake)
    fake.clear_rejections()
    # The same machinery, correctly used, is accepted (so the refusals below are about
    # what each changes).
    st, h, data = raw.send("GET", "/things/dev-0001")
    check(st == 200 and json.loads(data)["thingName"] == "dev-0001", f"signed GET {st} {data!r}")
    arn = fake.state()["things"]["dev-0001"]["thingArn"]
    enc = arn.replace(":", "%3A").replace("/", "%2F")
    st, h, data = raw.send("POST", "/attached-policies/" + enc)
    check(st == 200, f"list-attached-policies with a once-encoded target: {st} {data!r}")
    st, h, data = raw.send("GET", "/things?maxResults=1&thingTypeName=provd-board")
    check(st == 200, f"sorted query: {st} {data!r}")
    check(fake.rejections() == [], "a well-formed request was rejected")

    body = json.dumps({"policyDocument": "{}"}).encode()
    expect_reject(fake, raw, "an unsigned request", 403, "MissingAuthenticationTokenException",
                  "GET", "/things/dev-0001", sign=False)
    expect_reject(fake, raw, "a wrongly signed request", 403, "InvalidSignatureException",
                  "GET", "/things/dev-0001", secret="not-the-secret")
    expect_reject(fake, raw, "a path encoded once in the canonical request", 403,
                  "InvalidSignatureException", "POST", "/attached-policies/" + enc,
                  signer_cls=SigV4EncodedOnce)
    check("encoded only once" in fake.rejections()[-1]["message"], "no hint for S3-style path")
    expect_reject(fake, raw, "an unknown access key", 403, "UnrecognizedClientException",
                  "GET", "/things/dev-0001", access_key="AKIDNOTKNOWN")
    expect_reject(fake, raw, "a body changed after signing", 403, "InvalidSignatureException",
                  "POST", "/policies/p1", body=body,
                  headers={"Content-Type": "application/json",
                           "X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()})
    expect_reject(fake, raw, "another region's scope", 403, "InvalidSignatureException",
                  "GET", "/things/dev-0001", region="us-east-1")
    expect_reject(fake, raw, "another service's scope", 403, "InvalidSignatureException",
                  "GET", "/things/dev-0001", service="s3")
    expect_reject(fake, raw, "a date 20 minutes old", 403, "InvalidSignatureException",
                  "GET", "/things/dev-0001",
                  date=datetime.datetime.utcnow() - datetime.timedelta(minutes=20))
    expect_reject(fake, raw, "a missing required member", 400, "InvalidRequestException",
                  "POST", "/policies/p1", body=b"{}", headers={"Content-Type": "application/json"})
    expect_reject(fake, raw, "an unknown body member", 400, "InvalidRequestException",
                  "POST", "/policies/p1", body=json.dumps({"policyDocument": "{}", "x": 1}).encode(),
                  headers={"Content-Type": "application/json"})
    expect_reject(fake, raw, "a wrong member type", 400, "InvalidRequestException",
                  "POST", "/things/t9", body=json.dumps({"attributePayload": {"merge": "yes"}})
                  .encode(), headers={"Content-Type": "application/json"})
    expect_reject(fake, raw, "a name outside its pattern", 400, "InvalidRequestException",
                  "POST", "/things/bad%20name", body=b"{}",
                  headers={"Content-Type": "application/json"})
    expect_reject(fake, raw, "an enum value not in the model", 400, "InvalidRequestException",
                  "PUT", "/certificates/" + "ab" * 32 + "?newStatus=ON")
    expect_reject(fake, raw, "an integer over the model's max", 400, "InvalidRequestException",
                  "GET", "/certificates?pageSize=251")
    expect_reject(fake, raw, "an unknown query parameter", 400, "InvalidRequestException",
                  "GET", "/things?colour=red")
    expect_reject(fake, raw, "libcurl's default form content type", 400, "InvalidRequestException",
                  "POST", "/policies/p1", body=body,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    expect_reject(fake, raw, "a JSON body without a content type", 400, "InvalidRequestException",
                  "POST", "/policies/p1", body=body)
    expect_reject(fake, raw, "an unsorted query", 400, "InvalidRequestException",
                  "GET", "/things?thingTypeName=provd-board&maxResults=1")
    expect_reject(fake, raw, "a double-encoded path", 400, "InvalidRequestException",
                  "POST", "/attached-policies/" + enc.replace("%", "%25"))
    expect_reject(fake, raw, "a double-encoded query", 400, "InvalidRequestException",
                  "GET", "/things?attributeName=a%253Ab")
    expect_reject(fake, raw, "an unencoded ':' in the path", 400, "InvalidRequestException",
                  "POST", "/attached-policies/" + arn.replace("/", "%2F"))
    expect_reject(fake, raw, "a '..' segment in the path", 400, "InvalidRequestException",
                  "GET", "/things/x/../dev-0001")
    expect_reject(fake, raw, "an operation the model does not have", 404,
                  "UnknownOperationException", "GET", "/no-such-thing")
    raw.close()
    check(len(fake.rejections()) == 23, f"{len(fake.rejections())} rejections recorded")
    fake.clear_rejections()


def test_session_token_v6(work):
    """A fake with a session token, on ::1: the token must come in x-amz-security-token.
    (awscli takes no IPv6 literal in --endpoint-url, so hand-built requests here.)"""
    with FakeProcess(os.path.join(work, "tok"), bind="::1", session_token="tok-123",
                     idle_timeout=0.5) as fake:
        raw = Raw(fake)
        raw.host = f"[::1]:{fake.info['port']}"
        st, _, data = raw.send("GET", "/things")
        check(st == 200 and json.loads(data) == {"things": []}, f"with the token: {st} {data!r}")
        expect_reject(fake, raw, "a request without the session token", 403,
                      "UnrecognizedClientException", "GET", "/things", token=None)
        expect_reject(fake, raw, "a wrong session token", 403,
                      "UnrecognizedClientException", "GET", "/things", token="tok-999")
        # Only 'iot' by default: Debian's botocore signing name is refused.
        expect_reject(fake, raw, "the execute-api scope on a default fake", 403,
                      "InvalidSignatureException", "GET", "/things", service="execute-api")
        # The fake closes an idle connection (a client must reconnect): wait for EOF.
        st, _, _ = raw.send("GET", "/things")
        check(st == 200 and raw.conn is not None, "kept-alive connection")
        raw.conn.sock.settimeout(60)
        try:
            eof = raw.conn.sock.recv(1) == b""
        except (ssl.SSLEOFError, ConnectionResetError):
            eof = True
        check(eof, "idle connection not closed by the fake")
        raw.close()
        print("ok session token on ::1, idle connection closed by the fake")


def test_lenient(work):
    """--lenient-query-order: awscli's unsorted query is accepted; session token via env."""
    with FakeProcess(os.path.join(work, "lenient"), session_token="tok-456",
                     service=["iot", "execute-api"], lenient_query_order=True) as fake:
        cli = Cli(fake, work)
        ca = make_cert("lenient CA", newkey(), ca=True)
        with open(os.path.join(work, "lenient-ca.pem"), "w") as f:
            f.write(pem(ca))
        _, out, _ = cli.run("register-ca-certificate", "--ca-certificate",
                            "file://" + os.path.join(work, "lenient-ca.pem"),
                            "--certificate-mode", "SNI_ONLY", "--set-as-active",
                            "--allow-auto-registration")
        d = fake.state()["caCertificates"][out["certificateId"]]
        check(d["status"] == "ACTIVE" and d["autoRegistrationStatus"] == "ENABLE", f"{d}")
        fake.assert_no_rejections()
        cli.close()
        print("ok lenient query order, session token from awscli's environment")


def test_faults(fake):
    raw = Raw(fake)
    # Deterministic one-shot faults.
    fake.set_faults(throttle_next=1)
    st, h, data = raw.send("GET", "/things/dev-0001")
    check(st == 400 and error_code(h, data) == "ThrottlingException", f"throttle {st} {data!r}")
    fake.set_faults(error500_next=1)
    st, h, data = raw.send("GET", "/things/dev-0001")
    check(st == 500 and error_code(h, data) == "InternalFailureException", f"500 {st}")
    fake.set_faults(error503_next=1)
    st, h, data = raw.send("GET", "/things/dev-0001")
    check(st == 503 and error_code(h, data) == "ServiceUnavailableException", f"503 {st}")
    st, h, data = raw.send("GET", "/things/dev-0001")
    check(st == 200, "after the one-shot faults")

    # botocore's standard retries ride over a throttle and a dropped connection.
    c = boto_client(fake, retries=4)
    before = fake.stats()
    fake.set_faults(throttle_next=1, drop_next=1)
    out = c.describe_thing(thingName="dev-0001")
    check(out["thingName"] == "dev-0001", "retried call")
    after = fake.stats()
    check(after["requests"] - before["requests"] == 3, "throttled, dropped, then answered")
    check(after["faults"].get("drop", 0) - before["faults"].get("drop", 0) == 1, "one drop")

    # drop_after: the operation is applied, the answer lost; the retry meets the state.
    fake.set_faults(drop_after_next=1)
    c0 = boto_client(fake)
    try:
        c0.create_thing(thingName="dev-lost")
        raise Failure("drop_after answered")
    except (botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.EndpointConnectionError) as e:
        print(f"ok drop_after: client saw {type(e).__name__}")
    check("dev-lost" in fake.state()["things"], "drop_after did not apply the operation")
    out = c0.create_thing(thingName="dev-lost")  # the same request again: AWS says fine
    check(out["thingName"] == "dev-lost", "idempotent retry")

    # Seeded fractions repeat exactly.
    def sequence():
        fake.set_faults(seed=42, throttle=0.3, error500=0.2)
        got = []
        for _ in range(30):
            st, h, data = raw.send("GET", "/things/dev-0001")
            got.append(st)
        fake.set_faults(throttle=0.0, error500=0.0)
        return got
    a, b = sequence(), sequence()
    check(a == b, f"same seed, different faults: {a} vs {b}")
    check(a.count(200) not in (0, 30) and 400 in a and 500 in a, f"fractions not applied: {a}")
    print(f"ok seeded faults: {a.count(400)} throttled, {a.count(500)} failed of 30, twice")

    # Per-operation rate limit: at 0.01/s the first call passes and the next (well
    # within 100 s) is throttled; other operations are not limited.
    fake.set_faults(rate_limits={"DescribeThing": 0.01})
    st1, _, _ = raw.send("GET", "/things/dev-0001")
    st2, h, data = raw.send("GET", "/things/dev-0001")
    st3, _, _ = raw.send("GET", "/things")
    fake.set_faults(rate_limits={})
    check((st1, st2, st3) == (200, 400, 200) and error_code(h, data) == "ThrottlingException",
          f"rate limit: {st1} {st2} {st3}")

    # Delay (measured, not asserted: only that the answer still comes).
    fake.set_faults(delay_ms=200)
    st, _, _ = raw.send("GET", "/things/dev-0001")
    fake.set_faults(delay_ms=0)
    check(st == 200, "delayed answer")

    # Error shapes a client must tolerate.
    for mode, has_hdr, has_type in (("json", True, True), ("notype", True, False),
                                    ("noheader", False, True), ("html", False, False),
                                    ("empty", False, False)):
        fake.set_faults(error_mode=mode)
        st, h, data = raw.send("GET", "/things/none-such")
        check(st == 404, f"{mode}: status {st}")
        check(("x-amzn-errortype" in h) == has_hdr, f"{mode}: header {h}")
        if mode in ("json", "notype", "noheader"):
            d = json.loads(data)
            check(("__type" in d) == has_type and "message" in d, f"{mode}: body {d}")
        elif mode == "html":
            check(data.startswith(b"<html>") and h["content-type"] == "text/html", f"{data!r}")
        else:
            check(data == b"", f"empty: {data!r}")
    fake.set_faults(error_mode="json")
    # 409 carries the existing resource.
    st, h, data = raw.send("POST", "/things/dev-0001", body=json.dumps(
        {"attributePayload": {"attributes": {"serial": "9"}}}).encode(),
        headers={"Content-Type": "application/json"})
    d = json.loads(data)
    check(st == 409 and error_code(h, data) == "ResourceAlreadyExistsException" and
          d["resourceArn"].endswith(":thing/dev-0001") and d["resourceId"], f"409 {d}")
    raw.close()
    fake.assert_no_rejections()
    print("ok faults and error shapes")


def test_reset(fake):
    """POST /state/reset empties the registry (the thing types given at start and the
    registration code stay)."""
    code = fake.state()["registrationCode"]
    check(fake.state()["things"], "nothing to reset")
    fake.admin("/state/reset", {})
    st = fake.state()
    check(st["things"] == {} and st["certificates"] == {} and st["caCertificates"] == {} and
          st["policies"] == {} and st["thingPrincipals"] == [] and
          st["registrationCode"] == code and list(st["thingTypes"]) == ["provd-board"], f"{st}")
    print("ok state reset")


def main():
    work = tempfile.mkdtemp(prefix="provd-awsfake-")
    ok = False
    try:
        # Debian's botocore and awscli sign IoT as 'execute-api' (their model's
        # signingName); current SDKs sign as 'iot'. This fake takes both.
        with FakeProcess(os.path.join(work, "fake"), service=["iot", "execute-api"],
                         thing_type=["provd-board"], seed=1) as fake:
            ids = test_operations_with_awscli(fake, work)
            test_botocore_exclusive_and_reuse(fake, ids)
            test_more_ops(fake, ids)
            test_rejections(fake)
            test_faults(fake)
            test_reset(fake)
        test_session_token_v6(work)
        test_lenient(work)
        ok = True
    except Exception:
        traceback.print_exc()
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# kept {work}")
    print("# PASS" if ok else "# FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
