# SPDX-License-Identifier: MIT
"""A strict fake of the AWS IoT control plane on loopback HTTPS, for provd's tests.

It checks every request against botocore's service model and verifies its SigV4
signature, keeps the registry state a real account would (CA certificates,
certificates, things, policies and their attachments), answers in AWS's shapes, injects
faults on demand, and records everything it rejected so a test can fail on it.
See README.md next to this file.

Run:   /usr/bin/python3 aws_iot_fake.py --dir DIR [options]
Import: from aws_iot_fake import FakeProcess (starts it as a subprocess for a test).
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid

# Imported lazily by the server only, so that a test importing FakeProcess does not need
# botocore/cryptography loaded in its own process.
botocore = None
x509 = None

HERE = os.path.dirname(os.path.abspath(__file__))

DEFAULT_ACCESS_KEY = "AKIDPROVDFAKE0000001"
DEFAULT_SECRET_KEY = "provd-fake-secret/0123456789abcdefghijklmnopq"
DEFAULT_REGION = "eu-west-1"
DEFAULT_ACCOUNT = "123456789012"
MAX_BODY = 1024 * 1024
MAX_SKEW = 15 * 60
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
ERROR_MODES = ("json", "notype", "noheader", "html", "empty")
FAULT_KINDS = ("throttle", "error500", "error503", "drop", "drop_after")

UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
HEX = set("0123456789ABCDEFabcdef")
DOUBLE_ENC = re.compile(r"%[0-9A-Fa-f]{2}")
HOST_RE = re.compile(r"([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


def _load_deps():
    global botocore, x509
    import botocore.auth  # noqa: F401
    import botocore.awsrequest  # noqa: F401
    import botocore.compat  # noqa: F401
    import botocore.credentials  # noqa: F401
    import botocore.loaders  # noqa: F401
    import botocore as _b
    from cryptography import x509 as _x
    botocore = _b
    x509 = _x


class ApiError(Exception):
    """An answer other than 2xx. reject=True marks a request the client should never
    have sent that way (bad signature, model violation, encoding): those are recorded
    as rejections a test asserts are absent."""

    def __init__(self, status, code, message, reject=False, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reject = reject
        self.extra = extra


def validation(msg):
    """A request the model (or SigV4's canonical form) does not allow. AWS IoT answers
    these 400 InvalidRequestException ("1 validation error detected: ..."), which all
    but four parameterless operations of its 2015-05-28 API list."""
    return ApiError(400, "InvalidRequestException", msg, reject=True)


def now_ts():
    return time.time()


# ---------------------------------------------------------------------------------------
# The service model: operations matched by method + requestUri, members validated by type


class Model:
    def __init__(self):
        loader = botocore.loaders.Loader()
        self.model = loader.load_service_model("iot", "service-2")
        self.shapes = self.model["shapes"]
        self.overlay()
        self.routes = []
        for name, op in self.model["operations"].items():
            uri = op["http"]["requestUri"]
            path, _, fixed_q = uri.partition("?")
            labels = []
            rx = "^"
            literal = 0
            for part in re.split(r"(\{[^}]+\})", path):
                if part.startswith("{"):
                    label = part[1:-1]
                    greedy = label.endswith("+")
                    label = label.rstrip("+")
                    labels.append(label)
                    rx += "(.+)" if greedy else "([^/]+)"
                else:
                    rx += re.escape(part)
                    literal += len(part)
            rx += "$"
            self.routes.append((literal, op["http"]["method"], re.compile(rx), labels,
                                fixed_q, name))
        # The most literal pattern first: /things/{a}/principals before /things/{a}.
        self.routes.sort(key=lambda r: -r[0])
        self.patterns = {}

    def overlay(self):
        """Debian 12's botocore (1.29) predates thingPrincipalType (AWS added it in 2024);
        provd uses it, so the fake adds it to AttachThingPrincipal as the current model
        has it. Nothing is added when the loaded model already has it."""
        req = self.shapes["AttachThingPrincipalRequest"]
        if "thingPrincipalType" not in req["members"]:
            self.shapes.setdefault("ThingPrincipalType", {
                "type": "string", "enum": ["EXCLUSIVE_THING", "NON_EXCLUSIVE_THING"]})
            req["members"]["thingPrincipalType"] = {
                "shape": "ThingPrincipalType", "location": "querystring",
                "locationName": "thingPrincipalType"}

    def signing_name(self):
        return self.model["metadata"].get("signingName", "iot")

    def match(self, method, path):
        """(operation name, {label: raw value}) or None. Several operations can share a
        path with different methods: a path that matches under another method is 405."""
        path_matched = False
        for _, m, rx, labels, fixed_q, name in self.routes:
            mo = rx.match(path)
            if not mo:
                continue
            path_matched = True
            if m != method:
                continue
            return name, dict(zip(labels, mo.groups())), fixed_q
        return None, path_matched, None

    def shape(self, ref):
        return self.shapes[ref["shape"]]

    def _pattern(self, p):
        rx = self.patterns.get(p)
        if rx is None:
            try:
                rx = re.compile(p)
            except re.error:
                rx = False  # a Java-only construct: the pattern is not checked
            self.patterns[p] = rx
        return rx

    def check_scalar(self, shape, value, where):
        t = shape["type"]
        if t == "string":
            if not isinstance(value, str):
                raise validation(f"{where}: expected a string")
            if "enum" in shape and value not in shape["enum"]:
                raise validation(f"1 validation error detected: Value '{value}' at '{where}' "
                                 f"failed to satisfy constraint: "
                                 f"Member must satisfy enum value set: {shape['enum']}")
            self._bounds(shape, len(value), where, "length")
            if "pattern" in shape:
                rx = self._pattern(shape["pattern"])
                if rx and not rx.fullmatch(value):
                    raise validation(f"Value '{value[:64]}' at '{where}' failed to satisfy "
                                     f"constraint: Member must satisfy regular expression "
                                     f"pattern: {shape['pattern']}")
        elif t in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise validation(f"{where}: expected an integer")
            self._bounds(shape, value, where, "value")
        elif t in ("double", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise validation(f"{where}: expected a number")
        elif t == "boolean":
            if not isinstance(value, bool):
                raise validation(f"{where}: expected a boolean")
        elif t == "timestamp":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise validation(f"{where}: expected a timestamp")
        elif t == "blob":
            if not isinstance(value, str):
                raise validation(f"{where}: expected base64 text")
            try:
                base64.b64decode(value, validate=True)
            except ValueError:
                raise validation(f"{where}: not base64")
        else:
            raise validation(f"{where}: a {t} cannot be given here")

    def _bounds(self, shape, n, where, what):
        if "min" in shape and n < shape["min"]:
            raise validation(f"Value at '{where}' failed to satisfy constraint: Member must "
                             f"have {what} greater than or equal to {shape['min']}")
        if "max" in shape and n > shape["max"]:
            raise validation(f"Value at '{where}' failed to satisfy constraint: Member must "
                             f"have {what} less than or equal to {shape['max']}")

    def check_json(self, shape, value, where, depth=0):
        if depth > 20:
            raise validation(f"{where}: nested too deep")
        t = shape["type"]
        if t == "structure":
            if not isinstance(value, dict):
                raise validation(f"{where}: expected an object")
            members = shape.get("members", {})
            for k, v in value.items():
                if k not in members:
                    raise validation(f"{where}: unknown member '{k}'")
                if v is None:
                    continue
                self.check_json(self.shape(members[k]), v, f"{where}.{k}", depth + 1)
            for r in shape.get("required", []):
                if value.get(r) is None:
                    raise validation(f"Value null at '{where}.{r}' failed to satisfy "
                                     f"constraint: Member must not be null")
        elif t == "list":
            if not isinstance(value, list):
                raise validation(f"{where}: expected a list")
            self._bounds(shape, len(value), where, "length")
            for i, v in enumerate(value):
                self.check_json(self.shape(shape["member"]), v, f"{where}[{i}]", depth + 1)
        elif t == "map":
            if not isinstance(value, dict):
                raise validation(f"{where}: expected a map")
            self._bounds(shape, len(value), where, "length")
            for k, v in value.items():
                self.check_scalar(self.shape(shape["key"]), k, f"{where} key")
                self.check_json(self.shape(shape["value"]), v, f"{where}.{k}", depth + 1)
        else:
            self.check_scalar(shape, value, where)

    def from_text(self, shape, text, where):
        """A querystring/uri/header value converted to the member's type."""
        t = shape["type"]
        if t in ("integer", "long"):
            if not re.fullmatch(r"-?[0-9]{1,18}", text):
                raise validation(f"{where}: '{text[:32]}' is not an integer")
            return int(text)
        if t == "boolean":
            if text not in ("true", "false"):
                raise validation(f"{where}: '{text[:32]}' is not true or false")
            return text == "true"
        return text


# ---------------------------------------------------------------------------------------
# Registry state


def b64_marker(i):
    return base64.b64encode(str(i).encode()).decode()


def parse_marker(m):
    if m is None:
        return 0
    try:
        return int(base64.b64decode(m, validate=True).decode())
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "InvalidRequestException", "The marker is not valid")


def page(items, start, size):
    """(slice, next marker or None)"""
    chunk = items[start:start + size]
    nxt = b64_marker(start + size) if start + size < len(items) else None
    return chunk, nxt


class Registry:
    def __init__(self, region, account, registration_code):
        self.region = region
        self.account = account
        self.registration_code = registration_code
        self.cas = {}           # id -> dict
        self.certs = {}         # id -> dict
        self.things = {}        # name -> dict
        self.thing_types = {}   # name -> dict
        self.policies = {}      # name -> dict
        self.policy_targets = {}  # policy name -> set of target
        self.thing_principals = {}  # (thing, principal arn) -> type
        self.seq = 0

    def arn(self, kind, rid):
        return f"arn:aws:iot:{self.region}:{self.account}:{kind}/{rid}"

    def dump(self):
        return {
            "registrationCode": self.registration_code,
            "caCertificates": {k: {kk: vv for kk, vv in v.items() if kk != "key"}
                               for k, v in self.cas.items()},
            "certificates": self.certs,
            "things": self.things,
            "thingTypes": self.thing_types,
            "policies": self.policies,
            "policyAttachments": {k: sorted(v) for k, v in self.policy_targets.items()},
            "thingPrincipals": [{"thingName": t, "principal": p, "thingPrincipalType": ty}
                                for (t, p), ty in sorted(self.thing_principals.items())],
        }

    def next_seq(self):
        self.seq += 1
        return self.seq


def load_cert(pem, what):
    if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
        raise ApiError(400, "CertificateValidationException",
                       f"The {what} is not a PEM certificate")
    try:
        certs = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as e:
        raise ApiError(400, "CertificateValidationException",
                       f"The {what} could not be parsed: {e}")
    if pem.count("-----BEGIN CERTIFICATE-----") != 1:
        raise ApiError(400, "CertificateValidationException",
                       f"The {what} must hold exactly one certificate")
    return certs


def signed_by(cert, issuer_cert):
    """True when cert's signature verifies with issuer_cert's public key (cryptography 38
    has no verify_directly_issued_by)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, ed448, padding, rsa
    if cert.issuer != issuer_cert.subject:
        return False
    key = issuer_cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def cert_id(cert):
    from cryptography.hazmat.primitives.serialization import Encoding
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def spki_hash(cert):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return hashlib.sha256(cert.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def validity(cert):
    return {"notBefore": cert.not_valid_before.replace(tzinfo=datetime.timezone.utc).timestamp(),
            "notAfter": cert.not_valid_after.replace(tzinfo=datetime.timezone.utc).timestamp()}


def common_name(cert):
    from cryptography.x509.oid import NameOID
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return cns[0].value if cns else None


# ---------------------------------------------------------------------------------------
# Operations: each gets the validated input (dict) and returns the output dict.


class Operations:
    def __init__(self, reg):
        self.reg = reg

    # -- CA certificates
    def GetRegistrationCode(self, p):
        return {"registrationCode": self.reg.registration_code}

    def RegisterCACertificate(self, p):
        reg = self.reg
        ca = load_cert(p["caCertificate"], "CA certificate")
        try:
            bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = bc.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise ApiError(400, "CertificateValidationException",
                           "The certificate is not a CA certificate (basicConstraints CA:FALSE)")
        mode = p.get("certificateMode", "DEFAULT")
        ver = p.get("verificationCertificate")
        if mode == "SNI_ONLY":
            if ver:
                raise ApiError(400, "InvalidRequestException",
                               "verificationCertificate must be empty in SNI_ONLY mode")
        else:
            if not ver:
                raise ApiError(400, "InvalidRequestException",
                               "verificationCertificate is required in DEFAULT mode")
            vc = load_cert(ver, "verification certificate")
            if common_name(vc) != reg.registration_code:
                raise ApiError(400, "CertificateValidationException",
                               "The verification certificate's CN is not the registration code")
            if not signed_by(vc, ca):
                raise ApiError(400, "CertificateValidationException",
                               "The verification certificate is not signed by the CA's key")
        cid = cert_id(ca)
        arn = reg.arn("cacert", cid)
        if cid in reg.cas:
            raise ApiError(409, "ResourceAlreadyExistsException",
                           "The CA certificate is already registered",
                           resourceId=cid, resourceArn=arn)
        spki = spki_hash(ca)
        if p.get("setAsActive"):
            # AWS keeps one ACTIVE CA certificate per subject and key in an account.
            for other in reg.cas.values():
                if other["status"] == "ACTIVE" and other["spki"] == spki and \
                        other["subject"] == ca.subject.rfc4514_string():
                    raise ApiError(409, "ResourceAlreadyExistsException",
                                   "An active CA certificate with the same subject and key "
                                   "is registered", resourceId=other["certificateId"],
                                   resourceArn=other["certificateArn"])
        t = now_ts()
        reg.cas[cid] = {
            "certificateArn": arn, "certificateId": cid,
            "status": "ACTIVE" if p.get("setAsActive") else "INACTIVE",
            "certificatePem": p["caCertificate"], "ownedBy": reg.account,
            "creationDate": t, "lastModifiedDate": t, "customerVersion": 1,
            "generationId": str(uuid.uuid4()),
            "autoRegistrationStatus": "ENABLE" if p.get("allowAutoRegistration") else "DISABLE",
            "validity": validity(ca), "certificateMode": mode,
            "subject": ca.subject.rfc4514_string(), "spki": spki,
            "registrationConfig": p.get("registrationConfig") or {},
            "seq": reg.next_seq(),
        }
        return {"certificateArn": arn, "certificateId": cid}

    def _ca(self, cid):
        ca = self.reg.cas.get(cid)
        if ca is None:
            raise ApiError(404, "ResourceNotFoundException",
                           f"The CA certificate {cid} does not exist")
        return ca

    def DescribeCACertificate(self, p):
        ca = self._ca(p["certificateId"])
        desc = {k: ca[k] for k in ("certificateArn", "certificateId", "status",
                                   "certificatePem", "ownedBy", "creationDate",
                                   "autoRegistrationStatus", "lastModifiedDate",
                                   "customerVersion", "generationId", "validity",
                                   "certificateMode")}
        out = {"certificateDescription": desc}
        if ca["registrationConfig"]:
            out["registrationConfig"] = ca["registrationConfig"]
        return out

    def UpdateCACertificate(self, p):
        ca = self._ca(p["certificateId"])
        if "newStatus" in p:
            ca["status"] = p["newStatus"]
        if "newAutoRegistrationStatus" in p:
            ca["autoRegistrationStatus"] = p["newAutoRegistrationStatus"]
        if p.get("registrationConfig") is not None:
            ca["registrationConfig"] = p["registrationConfig"]
        ca["lastModifiedDate"] = now_ts()
        ca["customerVersion"] += 1
        return {}

    def ListCACertificates(self, p):
        items = sorted(self.reg.cas.values(), key=lambda c: c["seq"],
                       reverse=not p.get("ascendingOrder", False))
        chunk, nxt = page(items, parse_marker(p.get("marker")), p.get("pageSize", 25))
        out = {"certificates": [{k: c[k] for k in ("certificateArn", "certificateId",
                                                    "status", "creationDate")}
                                for c in chunk]}
        if nxt:
            out["nextMarker"] = nxt
        return out

    # -- device certificates
    def _register(self, pem, ca_id, status, mode):
        reg = self.reg
        cert = load_cert(pem, "certificate")
        cid = cert_id(cert)
        arn = reg.arn("cert", cid)
        if cid in reg.certs:
            raise ApiError(409, "ResourceAlreadyExistsException",
                           "The certificate is already provisioned or registered",
                           resourceId=cid, resourceArn=arn)
        t = now_ts()
        reg.certs[cid] = {
            "certificateArn": arn, "certificateId": cid, "caCertificateId": ca_id,
            "status": status, "certificatePem": pem, "ownedBy": reg.account,
            "creationDate": t, "lastModifiedDate": t, "customerVersion": 1,
            "generationId": str(uuid.uuid4()), "validity": validity(cert),
            "certificateMode": mode, "seq": reg.next_seq(),
        }
        return {"certificateArn": arn, "certificateId": cid}

    def RegisterCertificateWithoutCA(self, p):
        return self._register(p["certificatePem"], None, p.get("status", "INACTIVE"),
                              "SNI_ONLY")

    def RegisterCertificate(self, p):
        cert = load_cert(p["certificatePem"], "certificate")
        cands = list(self.reg.cas.values())
        same = [c for c in cands if c["subject"] == cert.issuer.rfc4514_string()]
        if len(same) > 1 and not p.get("caCertificatePem"):
            # AWS: with several CA certificates of one subject, the request must name it.
            raise ApiError(400, "CertificateValidationException",
                           "More than one registered CA certificate has the issuer's subject; "
                           "caCertificatePem must say which signed this certificate")
        if p.get("caCertificatePem"):
            given = cert_id(load_cert(p["caCertificatePem"], "CA certificate"))
            cands = [c for c in cands if c["certificateId"] == given]
            if not cands:
                raise ApiError(400, "CertificateValidationException",
                               "The CA certificate given is not registered")
        for ca in cands:
            if ca["certificateMode"] == "SNI_ONLY":
                continue
            if signed_by(cert, x509.load_pem_x509_certificate(ca["certificatePem"].encode())):
                break
        else:
            raise ApiError(400, "CertificateValidationException",
                           "The certificate is not signed by a registered CA certificate")
        if "status" in p:
            status = p["status"]
        else:
            status = "ACTIVE" if p.get("setAsActive") else "INACTIVE"
        return self._register(p["certificatePem"], ca["certificateId"], status, "DEFAULT")

    def _cert(self, cid):
        c = self.reg.certs.get(cid)
        if c is None:
            raise ApiError(404, "ResourceNotFoundException",
                           f"The certificate {cid} does not exist")
        return c

    def DescribeCertificate(self, p):
        c = self._cert(p["certificateId"])
        desc = {k: c[k] for k in ("certificateArn", "certificateId", "status",
                                  "certificatePem", "ownedBy", "creationDate",
                                  "lastModifiedDate", "customerVersion", "generationId",
                                  "validity", "certificateMode")}
        if c["caCertificateId"]:
            desc["caCertificateId"] = c["caCertificateId"]
        desc["transferData"] = {}
        return {"certificateDescription": desc}

    def UpdateCertificate(self, p):
        c = self._cert(p["certificateId"])
        new = p["newStatus"]
        if c["status"] == "REVOKED" and new != "REVOKED":
            raise ApiError(406, "CertificateStateException",
                           "A revoked certificate cannot change status")
        if new in ("PENDING_TRANSFER", "PENDING_ACTIVATION", "REGISTER_INACTIVE"):
            raise ApiError(400, "InvalidRequestException",
                           f"The status cannot be set to {new}")
        c["status"] = new
        c["lastModifiedDate"] = now_ts()
        c["customerVersion"] += 1
        return {}

    def DeleteCertificate(self, p):
        reg = self.reg
        c = self._cert(p["certificateId"])
        if c["status"] not in ("INACTIVE", "REVOKED"):
            raise ApiError(406, "CertificateStateException",
                           "The certificate must be deactivated before deletion")
        arn = c["certificateArn"]
        if any(pr == arn for _, pr in reg.thing_principals):
            raise ApiError(409, "DeleteConflictException",
                           "Things must be detached before deletion (arn: " + arn + ")")
        attached = [n for n, ts in reg.policy_targets.items() if arn in ts]
        if attached and not p.get("forceDelete"):
            raise ApiError(409, "DeleteConflictException",
                           "Certificate policies must be detached before deletion (arn: " +
                           arn + ")")
        for n in attached:
            reg.policy_targets[n].discard(arn)
        del reg.certs[c["certificateId"]]
        return {}

    def ListCertificates(self, p):
        items = sorted(self.reg.certs.values(), key=lambda c: c["seq"],
                       reverse=not p.get("ascendingOrder", False))
        chunk, nxt = page(items, parse_marker(p.get("marker")), p.get("pageSize", 25))
        out = {"certificates": [{k: c[k] for k in ("certificateArn", "certificateId",
                                                    "status", "certificateMode",
                                                    "creationDate")} for c in chunk]}
        if nxt:
            out["nextMarker"] = nxt
        return out

    # -- things
    def CreateThingType(self, p):
        reg = self.reg
        name = p["thingTypeName"]
        arn = reg.arn("thingtype", name)
        if name not in reg.thing_types:
            reg.thing_types[name] = {"thingTypeName": name, "thingTypeArn": arn,
                                     "thingTypeId": str(uuid.uuid4()),
                                     "thingTypeProperties": p.get("thingTypeProperties") or {},
                                     "creationDate": now_ts()}
        elif reg.thing_types[name]["thingTypeProperties"] != (p.get("thingTypeProperties") or {}):
            raise ApiError(409, "ResourceAlreadyExistsException",
                           f"Thing type {name} already exists with different properties",
                           resourceId=reg.thing_types[name]["thingTypeId"], resourceArn=arn)
        tt = reg.thing_types[name]
        return {"thingTypeName": name, "thingTypeArn": arn, "thingTypeId": tt["thingTypeId"]}

    def DescribeThingType(self, p):
        tt = self.reg.thing_types.get(p["thingTypeName"])
        if tt is None:
            raise ApiError(404, "ResourceNotFoundException",
                           f"Thing type {p['thingTypeName']} does not exist")
        return {"thingTypeName": tt["thingTypeName"], "thingTypeArn": tt["thingTypeArn"],
                "thingTypeId": tt["thingTypeId"],
                "thingTypeProperties": tt["thingTypeProperties"],
                "thingTypeMetadata": {"deprecated": False,
                                      "creationDate": tt["creationDate"]}}

    def CreateThing(self, p):
        reg = self.reg
        name = p["thingName"]
        ttype = p.get("thingTypeName")
        if ttype is not None and ttype not in reg.thing_types:
            raise ApiError(404, "ResourceNotFoundException",
                           f"Thing type {ttype} does not exist")
        if p.get("billingGroupName") is not None:
            raise ApiError(404, "ResourceNotFoundException",
                           f"Billing group {p['billingGroupName']} does not exist")
        attrs = (p.get("attributePayload") or {}).get("attributes") or {}
        arn = reg.arn("thing", name)
        t = reg.things.get(name)
        if t is not None:
            # AWS answers the same request again with success; anything different is a
            # conflict carrying the existing thing's id and ARN.
            if t["attributes"] != attrs or t.get("thingTypeName") != ttype:
                raise ApiError(409, "ResourceAlreadyExistsException",
                               f"Thing {name} already exists with different tags or "
                               f"attributes", resourceId=t["thingId"], resourceArn=arn)
            return {"thingName": name, "thingArn": arn, "thingId": t["thingId"]}
        t = {"thingName": name, "thingArn": arn, "thingId": str(uuid.uuid4()),
             "attributes": dict(attrs), "version": 1, "seq": reg.next_seq()}
        if ttype is not None:
            t["thingTypeName"] = ttype
        reg.things[name] = t
        return {"thingName": name, "thingArn": arn, "thingId": t["thingId"]}

    def UpdateThing(self, p):
        reg = self.reg
        t = self._thing(p["thingName"])
        if p.get("expectedVersion") is not None and p["expectedVersion"] != t["version"]:
            raise ApiError(409, "VersionConflictException",
                           f"The version of thing {t['thingName']} is {t['version']}, not "
                           f"{p['expectedVersion']}")
        ttype = p.get("thingTypeName")
        if ttype is not None and p.get("removeThingType"):
            raise ApiError(400, "InvalidRequestException",
                           "thingTypeName and removeThingType cannot both be given")
        if ttype is not None and ttype not in reg.thing_types:
            raise ApiError(404, "ResourceNotFoundException", f"Thing type {ttype} does not exist")
        ap = p.get("attributePayload")
        if ap is not None:
            attrs = ap.get("attributes") or {}
            if ap.get("merge"):
                # With merge, an empty value removes that attribute.
                for k, v in attrs.items():
                    if v == "":
                        t["attributes"].pop(k, None)
                    else:
                        t["attributes"][k] = v
            else:
                t["attributes"] = {k: v for k, v in attrs.items() if v != ""}
        if ttype is not None:
            t["thingTypeName"] = ttype
        if p.get("removeThingType"):
            t.pop("thingTypeName", None)
        t["version"] += 1
        return {}

    def DeleteThing(self, p):
        reg = self.reg
        t = reg.things.get(p["thingName"])
        if t is None:
            return {}  # AWS: deleting a thing that does not exist succeeds
        if p.get("expectedVersion") is not None and p["expectedVersion"] != t["version"]:
            raise ApiError(409, "VersionConflictException",
                           f"The version of thing {t['thingName']} is {t['version']}")
        if any(th == t["thingName"] for th, _ in reg.thing_principals):
            raise ApiError(400, "InvalidRequestException",
                           f"Cannot delete thing {t['thingName']}: principals are attached")
        del reg.things[t["thingName"]]
        return {}

    def DescribeEndpoint(self, p):
        et = p.get("endpointType") or "iot:Data"
        sub = {"iot:Data": "", "iot:Data-ATS": "-ats", "iot:CredentialProvider": ".credentials",
               "iot:Jobs": ".jobs"}.get(et)
        if sub is None:
            raise ApiError(400, "InvalidRequestException", f"Unknown endpointType {et}")
        pre = hashlib.sha256(self.reg.account.encode()).hexdigest()[:14]
        host = f"{pre}{sub}.iot.{self.reg.region}.amazonaws.com"
        return {"endpointAddress": host}

    def _thing(self, name):
        t = self.reg.things.get(name)
        if t is None:
            raise ApiError(404, "ResourceNotFoundException", f"Thing {name} cannot be found.")
        return t

    def DescribeThing(self, p):
        t = self._thing(p["thingName"])
        out = {"defaultClientId": t["thingName"], "thingName": t["thingName"],
               "thingId": t["thingId"], "thingArn": t["thingArn"],
               "attributes": t["attributes"], "version": t["version"]}
        if "thingTypeName" in t:
            out["thingTypeName"] = t["thingTypeName"]
        return out

    def ListThings(self, p):
        items = sorted(self.reg.things.values(), key=lambda t: t["thingName"])
        if p.get("thingTypeName") is not None:
            items = [t for t in items if t.get("thingTypeName") == p["thingTypeName"]]
        if p.get("attributeName") is not None:
            an, av = p["attributeName"], p.get("attributeValue")
            pre = p.get("usePrefixAttributeValue", False)
            items = [t for t in items if an in t["attributes"] and
                     (av is None or t["attributes"][an] == av or
                      (pre and t["attributes"][an].startswith(av)))]
        chunk, nxt = page(items, parse_marker(p.get("nextToken")), p.get("maxResults", 50))
        out = {"things": []}
        for t in chunk:
            e = {"thingName": t["thingName"], "thingArn": t["thingArn"],
                 "attributes": t["attributes"], "version": t["version"]}
            if "thingTypeName" in t:
                e["thingTypeName"] = t["thingTypeName"]
            out["things"].append(e)
        if nxt:
            out["nextToken"] = nxt
        return out

    # -- policies
    def _check_doc(self, doc):
        try:
            d = json.loads(doc)
        except ValueError:
            raise ApiError(400, "MalformedPolicyException", "The policy is not valid JSON")
        if not isinstance(d, dict) or "Statement" not in d:
            raise ApiError(400, "MalformedPolicyException", "The policy has no Statement")

    def CreatePolicy(self, p):
        reg = self.reg
        name = p["policyName"]
        arn = reg.arn("policy", name)
        if name in reg.policies:
            raise ApiError(409, "ResourceAlreadyExistsException",
                           f"Policy cannot be created - name already exists (name={name})",
                           resourceId=name, resourceArn=arn)
        self._check_doc(p["policyDocument"])
        t = now_ts()
        reg.policies[name] = {"policyName": name, "policyArn": arn,
                              "defaultVersionId": "1", "creationDate": t,
                              "lastModifiedDate": t, "generationId": str(uuid.uuid4()),
                              "versions": {"1": {"document": p["policyDocument"],
                                                 "createDate": t}},
                              "nextVersion": 2}
        return {"policyName": name, "policyArn": arn, "policyDocument": p["policyDocument"],
                "policyVersionId": "1"}

    def _policy(self, name):
        pol = self.reg.policies.get(name)
        if pol is None:
            raise ApiError(404, "ResourceNotFoundException", f"Policy {name} does not exist")
        return pol

    def GetPolicy(self, p):
        pol = self._policy(p["policyName"])
        return {"policyName": pol["policyName"], "policyArn": pol["policyArn"],
                "policyDocument": pol["versions"][pol["defaultVersionId"]]["document"],
                "defaultVersionId": pol["defaultVersionId"],
                "creationDate": pol["creationDate"],
                "lastModifiedDate": pol["lastModifiedDate"],
                "generationId": pol["generationId"]}

    def CreatePolicyVersion(self, p):
        pol = self._policy(p["policyName"])
        self._check_doc(p["policyDocument"])
        if len(pol["versions"]) >= 5:
            raise ApiError(409, "VersionsLimitExceededException",
                           "The policy already has 5 versions")
        vid = str(pol["nextVersion"])
        pol["nextVersion"] += 1
        t = now_ts()
        pol["versions"][vid] = {"document": p["policyDocument"], "createDate": t}
        if p.get("setAsDefault"):
            pol["defaultVersionId"] = vid
        pol["lastModifiedDate"] = t
        return {"policyArn": pol["policyArn"], "policyDocument": p["policyDocument"],
                "policyVersionId": vid, "isDefaultVersion": pol["defaultVersionId"] == vid}

    def ListPolicyVersions(self, p):
        pol = self._policy(p["policyName"])
        return {"policyVersions": [{"versionId": v, "isDefaultVersion":
                                    v == pol["defaultVersionId"],
                                    "createDate": d["createDate"]}
                                   for v, d in sorted(pol["versions"].items(),
                                                      key=lambda kv: -int(kv[0]))]}

    def _target(self, target):
        """A certificate ARN of this account and region must name a registered
        certificate; other targets (thing groups, Cognito ids) are accepted as given."""
        pre = self.reg.arn("cert", "")
        if target.startswith("arn:aws:iot:") and ":cert/" in target:
            if not target.startswith(pre) or target[len(pre):] not in self.reg.certs:
                raise ApiError(404, "ResourceNotFoundException",
                               f"The certificate given in the target does not exist: {target}")
        return target

    def AttachPolicy(self, p):
        self._policy(p["policyName"])
        target = self._target(p["target"])
        self.reg.policy_targets.setdefault(p["policyName"], set()).add(target)
        return {}

    def DetachPolicy(self, p):
        self._policy(p["policyName"])
        self.reg.policy_targets.get(p["policyName"], set()).discard(p["target"])
        return {}

    def DeletePolicy(self, p):
        pol = self._policy(p["policyName"])
        if self.reg.policy_targets.get(p["policyName"]):
            raise ApiError(409, "DeleteConflictException",
                           f"The policy {p['policyName']} is attached to targets")
        if len(pol["versions"]) > 1:
            raise ApiError(409, "DeleteConflictException",
                           "Cannot delete a policy with non-default versions")
        del self.reg.policies[p["policyName"]]
        self.reg.policy_targets.pop(p["policyName"], None)
        return {}

    def ListAttachedPolicies(self, p):
        target = p["target"]
        names = sorted(n for n, ts in self.reg.policy_targets.items() if target in ts)
        chunk, nxt = page(names, parse_marker(p.get("marker")), p.get("pageSize", 25))
        out = {"policies": [{"policyName": n, "policyArn": self.reg.policies[n]["policyArn"]}
                            for n in chunk]}
        if nxt:
            out["nextMarker"] = nxt
        return out

    # -- thing principals
    def _principal(self, principal):
        pre = self.reg.arn("cert", "")
        if principal.startswith(pre):
            if principal[len(pre):] not in self.reg.certs:
                raise ApiError(404, "ResourceNotFoundException",
                               f"The principal {principal} does not exist")
        elif principal.startswith("arn:aws:iot:"):
            raise ApiError(400, "InvalidRequestException",
                           f"The principal {principal} is not of this account and region")
        return principal

    def AttachThingPrincipal(self, p):
        reg = self.reg
        thing = self._thing(p["thingName"])["thingName"]
        principal = self._principal(p["principal"])
        ptype = p.get("thingPrincipalType", "NON_EXCLUSIVE_THING")
        others = {t: ty for (t, pr), ty in reg.thing_principals.items()
                  if pr == principal and t != thing}
        mine = reg.thing_principals.get((thing, principal))
        if ptype == "EXCLUSIVE_THING" and others:
            raise ApiError(400, "InvalidRequestException",
                           f"Principal {principal} is already attached to another thing "
                           f"({sorted(others)[0]}) and cannot be attached exclusively")
        if "EXCLUSIVE_THING" in others.values():
            raise ApiError(400, "InvalidRequestException",
                           f"Principal {principal} is exclusively attached to thing "
                           f"{sorted(others)[0]}")
        if mine is not None and mine != ptype:
            raise ApiError(400, "InvalidRequestException",
                           f"Principal {principal} is already attached to {thing} as {mine}")
        reg.thing_principals[(thing, principal)] = ptype
        return {}

    def DetachThingPrincipal(self, p):
        thing = self._thing(p["thingName"])["thingName"]
        self.reg.thing_principals.pop((thing, p["principal"]), None)
        return {}

    def ListThingPrincipals(self, p):
        thing = self._thing(p["thingName"])["thingName"]
        items = sorted(pr for (t, pr) in self.reg.thing_principals if t == thing)
        chunk, nxt = page(items, parse_marker(p.get("nextToken")), p.get("maxResults", 50))
        out = {"principals": chunk}
        if nxt:
            out["nextToken"] = nxt
        return out

    def ListPrincipalThings(self, p):
        principal = self._principal(p["principal"])
        items = sorted(t for (t, pr) in self.reg.thing_principals if pr == principal)
        chunk, nxt = page(items, parse_marker(p.get("nextToken")), p.get("maxResults", 50))
        out = {"things": chunk}
        if nxt:
            out["nextToken"] = nxt
        return out


# ---------------------------------------------------------------------------------------
# SigV4 verification with botocore's own canonical-request code


class Verifier:
    def __init__(self, access_key, secret_key, token, region, services):
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token
        self.region = region
        self.services = services

    def verify(self, method, raw_target, headers, body):
        auth = headers.get("authorization")
        if not auth:
            raise ApiError(403, "MissingAuthenticationTokenException",
                           "Missing Authentication Token", reject=True)
        mo = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),"
                          r"\s*Signature=([0-9a-f]{64})", auth.strip())
        if not mo:
            raise ApiError(400, "IncompleteSignatureException",
                           "Authorization header requires 'Credential', 'SignedHeaders' and "
                           "'Signature' parameters (AWS4-HMAC-SHA256)", reject=True)
        cred, signed, sig = mo.groups()
        parts = cred.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise ApiError(400, "IncompleteSignatureException",
                           f"Credential should be AK/date/region/service/aws4_request, "
                           f"not {cred}", reject=True)
        ak, date, region, service, _ = parts
        if ak != self.access_key:
            raise ApiError(403, "UnrecognizedClientException",
                           "The security token included in the request is invalid.",
                           reject=True)
        tok = headers.get("x-amz-security-token")
        if tok != self.token:
            raise ApiError(403, "UnrecognizedClientException",
                           "The security token included in the request is invalid.",
                           reject=True)
        amzdate = headers.get("x-amz-date")
        if amzdate is None:
            raise ApiError(400, "IncompleteSignatureException",
                           "The request has no X-Amz-Date header", reject=True)
        try:
            ts = datetime.datetime.strptime(amzdate, SIGV4_TIMESTAMP).replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            raise ApiError(400, "IncompleteSignatureException",
                           f"X-Amz-Date '{amzdate}' is not YYYYMMDDTHHMMSSZ", reject=True)
        if abs(ts - time.time()) > MAX_SKEW:
            raise ApiError(403, "InvalidSignatureException",
                           f"Signature expired: {amzdate} is now earlier or later than "
                           f"15 minutes from the current time", reject=True)
        if date != amzdate[:8]:
            raise ApiError(403, "InvalidSignatureException",
                           f"Date in Credential scope does not match YYYYMMDD from "
                           f"X-Amz-Date: {date} vs {amzdate[:8]}", reject=True)
        if region != self.region:
            raise ApiError(403, "InvalidSignatureException",
                           f"Credential should be scoped to a valid region, not '{region}'.",
                           reject=True)
        if service not in self.services:
            raise ApiError(403, "InvalidSignatureException",
                           f"Credential should be scoped to correct service: "
                           f"'{self.services[0]}'.", reject=True)
        names = signed.split(";")
        if names != sorted(set(names)) or any(n != n.lower() for n in names):
            raise ApiError(403, "InvalidSignatureException",
                           "SignedHeaders must be lower case, sorted and unique", reject=True)
        for need in ("host", "x-amz-date"):
            if need not in names:
                raise ApiError(403, "InvalidSignatureException",
                               f"'{need}' must be a signed header", reject=True)
        hdrs = botocore.compat.HTTPHeaders()
        for n in names:
            vals = headers.get_all(n)
            if not vals:
                raise ApiError(403, "InvalidSignatureException",
                               f"Signed header '{n}' is not in the request", reject=True)
            for v in vals:
                hdrs[n] = v
        digest = hashlib.sha256(body).hexdigest()
        sent = headers.get("x-amz-content-sha256")
        if sent is not None and sent != digest:
            raise ApiError(403, "InvalidSignatureException",
                           "X-Amz-Content-SHA256 is not the SHA-256 of the body received",
                           reject=True)

        creds = botocore.credentials.Credentials(self.access_key, self.secret_key, self.token)
        signer = _ReceivedSigV4(creds, service, region, hdrs)
        req = botocore.awsrequest.AWSRequest(method=method,
                                             url="https://" + headers.get("host", "")
                                             + raw_target,
                                             headers=dict(hdrs.items()), data=body)
        req.context["timestamp"] = amzdate
        creq = signer.canonical_request(req)
        sts = signer.string_to_sign(req, creq)
        want = signer.signature(sts, req)
        if not hmac.compare_digest(want, sig):
            # Name the one mistake clients commonly make: the path encoded only once in
            # the canonical request, as for S3 (libcurl's CURLOPT_AWS_SIGV4 up to at least
            # 7.88 does this for every service).
            once = _ReceivedSigV4(creds, service, region, hdrs, single_encode=True)
            c1 = once.canonical_request(req)
            hint = ""
            if c1 != creq and hmac.compare_digest(once.signature(
                    once.string_to_sign(req, c1), req), sig):
                hint = (" [aws-iot-fake: the signature matches a canonical URI encoded only "
                        "once, as for S3; for this service SigV4 encodes the already "
                        "percent-encoded path again (%3A -> %253A)]")
            raise ApiError(403, "InvalidSignatureException",
                           "The request signature we calculated does not match the signature "
                           "you provided. Check your AWS Secret Access Key and signing method. "
                           "Consult the service documentation for details.\n\nThe Canonical "
                           "String for this request should have been\n'" + creq +
                           "'\n\nThe String-to-Sign should have been\n'" + sts + "'\n" + hint,
                           reject=True)


def _make_signer_class():
    class ReceivedSigV4(botocore.auth.SigV4Auth):
        """SigV4Auth over a received request: exactly the headers the client listed in
        SignedHeaders, the body as received."""

        def __init__(self, creds, service, region, hdrs, single_encode=False):
            super().__init__(creds, service, region)
            self._hdrs = hdrs
            self._single = single_encode

        def headers_to_sign(self, request):
            return self._hdrs

        def _normalize_url_path(self, path):
            if self._single:
                return path
            return super()._normalize_url_path(path)

    return ReceivedSigV4


_ReceivedSigV4 = None


# ---------------------------------------------------------------------------------------
# HTTP front: parsing the request strictly, faults, answers


def check_encoding(raw, what, allow_slash):
    """Percent-encoding as SigV4 clients produce it: unreserved characters literal,
    everything else %XX (upper-case hex), each byte encoded once."""
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "%":
            h = raw[i + 1:i + 3]
            if len(h) != 2 or not set(h) <= HEX:
                raise validation(f"{what}: bad percent-encoding at '{raw[i:i + 3]}'")
            if h != h.upper():
                raise validation(f"{what}: percent-encoding must use upper-case hex "
                                 f"('{raw[i:i + 3]}')")
            if chr(int(h, 16)) in UNRESERVED:
                raise validation(f"{what}: unreserved character needlessly encoded "
                                 f"('{raw[i:i + 3]}')")
            i += 3
            continue
        if c in UNRESERVED or (allow_slash and c == "/"):
            i += 1
            continue
        raise validation(f"{what}: character {c!r} must be percent-encoded")
    try:
        dec = urllib.parse.unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise validation(f"{what}: percent-encoded bytes are not UTF-8")
    if allow_slash and any(seg in ("", ".", "..") for seg in raw.split("/")[1:]):
        # The canonical request normalises these away; a client should not send them.
        raise validation(f"{what}: empty, '.' or '..' segment in '{raw[:80]}'")
    if DOUBLE_ENC.search(dec):
        raise validation(f"{what}: value is percent-encoded twice ('{raw[:80]}')")
    return dec


class Fake:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.rng = random.Random(args.seed)
        self.model = Model()
        self.reg = Registry(args.region, args.account, "%064x" % self.rng.getrandbits(256))
        self.ops = Operations(self.reg)
        services = args.service or ["iot"]
        self.verifier = Verifier(args.access_key, args.secret_key, args.session_token,
                                 args.region, services)
        self.faults = {"throttle": args.throttle, "error500": args.error500,
                       "error503": args.error503, "error503_next": 0,
                       "drop": args.drop, "drop_after": args.drop_after,
                       "delay_ms": args.delay_ms, "delay_fraction": 1.0,
                       "throttle_next": 0, "error500_next": 0, "drop_next": 0,
                       "drop_after_next": 0, "ops": None, "rate_limits": {},
                       "error_mode": args.error_mode}
        self.stats = {"connections": 0, "requests": 0, "open_connections": 0,
                      "by_operation": {}, "faults": {}}
        self.rejections = []
        self.log = []
        self.buckets = {}
        self.faults["rate_limits"] = dict(args.rate_limit)
        for tt in args.thing_type or []:
            self.ops.CreateThingType({"thingTypeName": tt})

    def record(self, entry, rejected):
        with self.lock:
            self.log.append(entry)
            if len(self.log) > 10000:
                del self.log[:1000]
            if rejected:
                self.rejections.append(entry)

    def over_rate(self, op):
        """AWS's per-API request rate: a token bucket per operation (burst = rate) for
        each operation named in rate_limits ('*': every other operation), burst
        max(1, rate)."""
        limits = self.faults["rate_limits"]
        rate = limits.get(op, limits.get("*"))
        if not rate:
            return False
        now = time.monotonic()
        burst = max(1.0, float(rate))
        tokens, last = self.buckets.get(op, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens < 1.0:
            self.buckets[op] = (tokens, now)
            return True
        self.buckets[op] = (tokens - 1.0, now)
        return False

    def pick_fault(self, op):
        """One fault or None for this call, drawn from the seeded generator."""
        with self.lock:
            f = self.faults
            if self.over_rate(op):
                return "rate_limit", 0.0
            if f["ops"] is not None and op not in f["ops"]:
                return None, 0.0
            delay = 0.0
            if f["delay_ms"] and self.rng.random() < f["delay_fraction"]:
                delay = f["delay_ms"] / 1000.0
            for kind in FAULT_KINDS:
                if f[kind + "_next"] > 0:
                    f[kind + "_next"] -= 1
                    return kind, delay
            r = self.rng.random()
            acc = 0.0
            for kind in FAULT_KINDS:
                acc += f[kind]
                if r < acc:
                    return kind, delay
            return None, delay

    def set_faults(self, upd):
        with self.lock:
            for k, v in upd.items():
                if k == "seed":
                    self.rng.seed(v)
                    continue
                if k not in self.faults:
                    raise ValueError(f"unknown fault setting {k}")
                if k == "error_mode" and v not in ERROR_MODES:
                    raise ValueError(f"error_mode must be one of {ERROR_MODES}")
                if k == "rate_limits":
                    if not isinstance(v, dict) or not all(
                            isinstance(r, (int, float)) and r > 0 for r in v.values()):
                        raise ValueError("rate_limits is {operation or '*': requests/s > 0}")
                    self.buckets.clear()
                self.faults[k] = v
            return dict(self.faults)

    def dump(self):
        with self.lock:
            return json.loads(json.dumps(self.reg.dump(), default=sorted))

    def handle(self, method, target, headers, body, entry):
        """(operation, validated input) or raises ApiError; entry (the request's log
        record) gets the operation as soon as it is known."""
        path, _, query = target.partition("?")
        host = headers.get("host")
        if host is None or not HOST_RE.fullmatch(host):
            raise validation(f"Host header {host!r} is not a host[:port]")
        if not path.startswith("/"):
            raise validation(f"request target {target[:80]!r} is not a path")
        # Signature first: AWS authenticates before it looks at the request.
        self.verifier.verify(method, target, headers, body)
        dpath = check_encoding(path, "path", True)
        name, labels, fixed_q = self.model.match(method, path)
        if name is None:
            if labels:
                raise ApiError(405, "MethodNotAllowedException",
                               f"{method} is not allowed on {dpath}", reject=True)
            raise ApiError(404, "UnknownOperationException",
                           f"No operation matches {method} {dpath}", reject=True)
        entry["operation"] = name
        params = self.parse_input(name, labels, fixed_q, query, headers, body, method)
        return name, params

    def parse_input(self, name, labels, fixed_q, query, headers, body, method):
        op = self.model.model["operations"][name]
        inshape = self.model.shapes[op["input"]["shape"]] if "input" in op else \
            {"type": "structure", "members": {}}
        members = inshape.get("members", {})
        params = {}
        by_loc = {"uri": {}, "querystring": {}, "header": {}}
        body_members = {}
        for mname, ref in members.items():
            loc = ref.get("location")
            if loc in by_loc:
                by_loc[loc][ref.get("locationName", mname)] = (mname, ref)
            else:
                body_members[mname] = ref

        for label, raw in labels.items():
            mname, ref = by_loc["uri"][label]
            val = check_encoding(raw, f"uri label {label}", False)
            shape = self.model.shape(ref)
            v = self.model.from_text(shape, val, mname)
            self.model.check_scalar(shape, v, mname)
            params[mname] = v

        pairs = []
        if query:
            for item in query.split("&"):
                k, eq, v = item.partition("=")
                if not k:
                    raise validation("query string: empty parameter name")
                pairs.append((k, v))
            if pairs != sorted(pairs) and not self.args.lenient_query_order:
                raise validation("query string: parameters are not sorted by name and value "
                                 "(the fake requires the canonical SigV4 order)")
        fixed = dict(kv.partition("=")[::2] for kv in fixed_q.split("&") if kv)
        seen = {}
        for k, v in pairs:
            dk = check_encoding(k, "query name", False)
            dv = check_encoding(v, f"query {dk}", False)
            if dk in fixed:
                if dv != fixed[dk]:
                    raise validation(f"query {dk} must be {fixed[dk]}")
                continue
            if dk not in by_loc["querystring"]:
                raise validation(f"query string: unknown parameter '{dk}' for {name}")
            seen.setdefault(dk, []).append(dv)
        for dk, vals in seen.items():
            mname, ref = by_loc["querystring"][dk]
            shape = self.model.shape(ref)
            if shape["type"] == "list":
                mshape = self.model.shape(shape["member"])
                v = [self.model.from_text(mshape, x, mname) for x in vals]
                self.model.check_json(shape, v, mname)
            else:
                if len(vals) != 1:
                    raise validation(f"query {dk} given {len(vals)} times")
                v = self.model.from_text(shape, vals[0], mname)
                self.model.check_scalar(shape, v, mname)
            params[mname] = v

        for hname, (mname, ref) in by_loc["header"].items():
            hv = headers.get(hname)
            if hv is None:
                continue
            shape = self.model.shape(ref)
            v = self.model.from_text(shape, hv, mname)
            self.model.check_scalar(shape, v, mname)
            params[mname] = v

        ctype = headers.get("content-type")
        if ctype is not None and ctype.split(";")[0].strip().lower() == \
                "application/x-www-form-urlencoded":
            raise validation("Content-Type application/x-www-form-urlencoded is not accepted "
                             "(a JSON body needs Content-Type: application/json)")
        if body:
            if ctype is None or ctype.split(";")[0].strip().lower() != "application/json":
                raise validation(f"a JSON body needs Content-Type: application/json, "
                                 f"not {ctype!r}")
            if method in ("GET", "HEAD"):
                raise validation(f"{method} with a body")
            try:
                doc = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise ApiError(400, "SerializationException", f"The body is not JSON: {e}",
                               reject=True)
            if not isinstance(doc, dict):
                raise ApiError(400, "SerializationException",
                               "The body is not a JSON object", reject=True)
            if not body_members and doc:
                raise validation(f"{name} takes no body members")
        else:
            doc = {}
        body_shape = {"type": "structure", "members": body_members}
        self.model.check_json(body_shape, doc, name)
        for k, v in doc.items():
            if v is not None:
                params[k] = v
        for r in inshape.get("required", []):
            if params.get(r) is None:
                raise validation(f"Value null at '{r}' failed to satisfy constraint: Member "
                                 f"must not be null")
        return params

    def execute(self, name, params):
        fn = getattr(self.ops, name, None)
        if fn is None:
            raise ApiError(501, "NotImplementedException",
                           f"The fake does not implement {name}", reject=True)
        with self.lock:
            return fn(params)


def error_parts(err, mode, reqid):
    headers = {"x-amzn-RequestId": reqid}
    payload = {"message": err.message}
    payload.update(err.extra)
    if mode in ("json", "notype", "noheader"):
        if mode != "noheader":
            # AWS's header carries the code, then the Coral namespace after a colon.
            headers["x-amzn-ErrorType"] = f"{err.code}:http://internal.amazon.com/coral/" \
                                          f"com.amazonaws.iot/"
        if mode != "notype":
            payload = {"__type": err.code, **payload}
        headers["Content-Type"] = "application/json"
        return headers, json.dumps(payload).encode()
    if mode == "html":
        headers["Content-Type"] = "text/html"
        return headers, (f"<html><head><title>{err.status}</title></head><body><h1>"
                         f"{err.status} Error</h1></body></html>").encode()
    return headers, b""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as a real endpoint's front end has: the headers and the body go out as two
    # writes, and with Nagle the second waits for the client's delayed ACK (40 ms a call).
    disable_nagle_algorithm = True

    def version_string(self):
        return "aws-iot-fake"

    def log_message(self, fmt, *a):
        if self.server.fake.args.verbose:
            sys.stderr.write("aws-iot-fake: " + (fmt % a) + "\n")

    def setup(self):
        # Idle keep-alive connections are closed after this long, as AWS's are.
        self.timeout = self.server.fake.args.idle_timeout
        super().setup()
        fake = self.server.fake
        with fake.lock:
            fake.stats["connections"] += 1
            fake.stats["open_connections"] += 1

    def finish(self):
        fake = self.server.fake
        with fake.lock:
            fake.stats["open_connections"] -= 1
        try:
            super().finish()
        except OSError:
            pass

    def read_body(self):
        te = self.headers.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise validation(f"Transfer-Encoding {te} not supported")
            out = b""
            while True:
                line = self.rfile.readline(100)
                size = int(line.split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    self.rfile.readline(100)
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(3)
                if len(out) > MAX_BODY:
                    raise validation("body too large")
        n = self.headers.get("content-length")
        if n is None:
            return b""
        if not n.isdigit() or int(n) > MAX_BODY:
            self.close_connection = True
            raise validation(f"bad Content-Length {n!r}")
        return self.rfile.read(int(n))

    def do_any(self):
        fake = self.server.fake
        reqid = str(uuid.uuid4())
        with fake.lock:
            fake.stats["requests"] += 1
            conn_no = fake.stats["connections"]
        entry = {"time": time.time(), "method": self.command, "target": self.path,
                 "requestId": reqid, "connection": conn_no}
        name = None
        body = None
        try:
            try:
                body = self.read_body()
            except ValueError:
                self.close_connection = True
                raise validation("bad chunked body")
            name, params = fake.handle(self.command, self.path, self.headers, body, entry)
            with fake.lock:
                bo = fake.stats["by_operation"]
                bo[name] = bo.get(name, 0) + 1
            fault, delay = fake.pick_fault(name)
            if delay:
                time.sleep(delay)
            if fault:
                entry["fault"] = fault
                with fake.lock:
                    fake.stats["faults"][fault] = fake.stats["faults"].get(fault, 0) + 1
            if fault == "drop":
                fake.record({**entry, "status": None}, False)
                return self.drop()
            if fault in ("throttle", "rate_limit"):
                raise ApiError(400, "ThrottlingException", "Rate exceeded")
            if fault == "error500":
                raise ApiError(500, "InternalFailureException",
                               "An internal failure occurred (injected)")
            if fault == "error503":
                raise ApiError(503, "ServiceUnavailableException",
                               "The service is temporarily unavailable (injected)")
            out = fake.execute(name, params)
            if fault == "drop_after":
                fake.record({**entry, "status": None}, False)
                return self.drop()
            data = json.dumps(out).encode()
            entry["status"] = 200
            fake.record(entry, False)
            self.answer(200, {"Content-Type": "application/json", "x-amzn-RequestId": reqid},
                        data)
        except OSError:
            # The client went away (or a drop fault): nothing to answer.
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must not pass silently
            if not isinstance(exc, ApiError):
                err = ApiError(500, "InternalFailureException",
                               "aws-iot-fake internal error: " + traceback.format_exc(),
                               reject=True)
                entry["fake_internal_error"] = True
            else:
                err = exc
            entry.update(status=err.status, code=err.code, message=err.message[:2000])
            if err.reject:
                entry["headers"] = {k.lower(): v for k, v in self.headers.items()
                                    if k.lower() != "authorization"}
                entry["body"] = body[:4096].decode("utf-8", "replace") \
                    if isinstance(body, bytes) else None
            fake.record(entry, err.reject)
            with fake.lock:
                mode = fake.faults["error_mode"]
            h, data = error_parts(err, mode, reqid)
            self.answer(err.status, h, data)

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def answer(self, status, headers, data):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_any


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, fake, ctx, family):
        self.address_family = family
        self.fake = fake
        self.ctx = ctx
        super().__init__(addr, Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        # The handshake runs in the connection's thread, at its first read.
        return self.ctx.wrap_socket(sock, server_side=True,
                                    do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        if self.fake.args.verbose:
            super().handle_error(request, client_address)


class AdminHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def reply(self, status, obj):
        data = json.dumps(obj, indent=1, default=sorted).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        fake = self.server.fake
        with fake.lock:
            if self.path == "/state":
                return self.reply(200, fake.dump())
            if self.path == "/rejections":
                return self.reply(200, list(fake.rejections))
            if self.path == "/requests":
                return self.reply(200, list(fake.log))
            if self.path == "/stats":
                return self.reply(200, json.loads(json.dumps(fake.stats)))
            if self.path == "/faults":
                return self.reply(200, fake.faults)
            if self.path == "/info":
                return self.reply(200, fake.info)
        self.reply(404, {"error": f"no {self.path}"})

    def do_POST(self):
        fake = self.server.fake
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(min(n, MAX_BODY))
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            return self.reply(400, {"error": "body is not JSON"})
        try:
            if self.path == "/faults":
                return self.reply(200, fake.set_faults(doc))
            if self.path == "/rejections/clear":
                with fake.lock:
                    fake.rejections.clear()
                return self.reply(200, {})
            if self.path == "/stats/reset":
                with fake.lock:
                    fake.stats.update(connections=0, requests=0, by_operation={}, faults={})
                    fake.log.clear()
                return self.reply(200, {})
            if self.path == "/state/reset":
                with fake.lock:
                    # Empty, as a new account; the registration code stays.
                    fake.reg.__init__(fake.reg.region, fake.reg.account,
                                      fake.reg.registration_code)
                    for tt in fake.args.thing_type or []:
                        fake.ops.CreateThingType({"thingTypeName": tt})
                return self.reply(200, {})
            if self.path == "/thing-types":
                with fake.lock:
                    return self.reply(200, fake.ops.CreateThingType(
                        {"thingTypeName": doc["thingTypeName"]}))
        except (ValueError, KeyError, ApiError) as e:
            return self.reply(400, {"error": str(e)})
        self.reply(404, {"error": f"no {self.path}"})


class AdminServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, fake, family):
        self.address_family = family
        self.fake = fake
        super().__init__(addr, AdminHandler)


def make_certs(d, hosts):
    """A CA and a server certificate for the loopback addresses (and names given)."""
    import ipaddress
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.utcnow()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provd aws-iot-fake CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")), x509.DNSName("localhost")]
    sans += [x509.DNSName(h) for h in hosts]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": os.path.join(d, "fake-ca.pem"), "cert": os.path.join(d, "fake-server.pem"),
             "key": os.path.join(d, "fake-server.key")}
    with open(paths["ca"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["cert"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="where certificates and fake.json go")
    ap.add_argument("--bind", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--admin-port", type=int, default=0)
    ap.add_argument("--host", action="append", default=[],
                    help="extra DNS name in the server certificate")
    ap.add_argument("--region", default=DEFAULT_REGION)
    ap.add_argument("--account", default=DEFAULT_ACCOUNT)
    ap.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    ap.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    ap.add_argument("--session-token", default=None)
    ap.add_argument("--service", action="append",
                    help="signing name accepted in the credential scope (repeatable; "
                         "default iot)")
    ap.add_argument("--lenient-query-order", action="store_true",
                    help="accept query parameters in any order (AWS does; botocore and "
                         "awscli send them in model order)")
    ap.add_argument("--thing-type", action="append", help="a thing type that exists")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--throttle", type=float, default=0.0)
    ap.add_argument("--error500", type=float, default=0.0)
    ap.add_argument("--error503", type=float, default=0.0)
    ap.add_argument("--drop", type=float, default=0.0)
    ap.add_argument("--drop-after", type=float, default=0.0)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--error-mode", default="json", choices=ERROR_MODES)
    ap.add_argument("--rate-limit", action="append", default=[], metavar="OP=N",
                    help="at most N requests/s to OP ('*' for every operation), as AWS's "
                         "per-API limits; more are ThrottlingException")
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="stop when standard input closes (a parent that dies takes the "
                         "fake with it)")
    ap.add_argument("--idle-timeout", type=float, default=30.0,
                    help="seconds before an idle connection is closed by the fake")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    for f in FAULT_KINDS:
        if not 0.0 <= getattr(a, f) <= 1.0:
            ap.error(f"--{f} is a fraction between 0 and 1")
    limits = {}
    for item in a.rate_limit:
        op, _, n = item.partition("=")
        try:
            limits[op] = float(n)
        except ValueError:
            ap.error(f"--rate-limit {item}: not OP=N")
        if not op or limits[op] <= 0:
            ap.error(f"--rate-limit {item}: not OP=N with N > 0")
    a.rate_limit = limits
    return a


def main(argv=None):
    global _ReceivedSigV4
    args = parse_args(argv)
    _load_deps()
    _ReceivedSigV4 = _make_signer_class()
    os.makedirs(args.dir, exist_ok=True)
    paths = make_certs(args.dir, args.host)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # HTTP/1.1 only: a client offering h2 in ALPN falls back to it, as it must.
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(paths["cert"], paths["key"])
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    fake = Fake(args)
    srv = TLSServer((args.bind, args.port), fake, ctx, family)
    adm = AdminServer((args.bind, args.admin_port), fake, family)
    port = srv.server_address[1]
    host = f"[{args.bind}]" if ":" in args.bind else args.bind
    fake.info = {
        "pid": os.getpid(), "bind": args.bind, "port": port,
        "admin_port": adm.server_address[1],
        "endpoint": f"https://{host}:{port}",
        "admin": f"http://{host}:{adm.server_address[1]}",
        "ca_bundle": paths["ca"], "region": args.region, "account": args.account,
        "access_key": args.access_key, "secret_key": args.secret_key,
        "session_token": args.session_token, "services": args.service or ["iot"],
        "registration_code": fake.reg.registration_code,
    }
    info_path = os.path.join(args.dir, "fake.json")
    with open(info_path + ".tmp", "w") as f:
        json.dump(fake.info, f, indent=1)
    os.rename(info_path + ".tmp", info_path)
    print(json.dumps(fake.info), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    for s in (srv, adm):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    if args.exit_on_stdin_eof:
        def watch():
            while os.read(0, 4096):
                pass
            stop.set()
        threading.Thread(target=watch, daemon=True).start()
    stop.wait()
    srv.shutdown()
    adm.shutdown()
    return 0


# ---------------------------------------------------------------------------------------
# For tests: start the fake as a subprocess and talk to its admin endpoint


class FakeProcess:
    """with FakeProcess(dir, throttle=0.1, ...) as fake: ... fake.state() ..."""

    def __init__(self, d, python="/usr/bin/python3", **opts):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        info_path = os.path.join(d, "fake.json")
        if os.path.exists(info_path):
            os.unlink(info_path)
        # The fake's stdin is a pipe from this process: if the test dies, the fake goes.
        cmd = [python, os.path.join(HERE, "aws_iot_fake.py"), "--dir", d, "--exit-on-stdin-eof"]
        for k, v in opts.items():
            flag = "--" + k.replace("_", "-")
            if isinstance(v, bool):
                if v:
                    cmd.append(flag)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    cmd += [flag, str(x)]
            elif v is not None:
                cmd += [flag, str(v)]
        self.log = open(os.path.join(d, "fake.log"), "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=self.log)
        deadline = time.monotonic() + 30
        while not os.path.exists(info_path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"aws_iot_fake exited with {self.proc.returncode}; "
                                   f"see {self.log.name}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("aws_iot_fake did not start within 30 s")
            time.sleep(0.05)
        with open(info_path) as f:
            self.info = json.load(f)
        self.endpoint = self.info["endpoint"]
        self.ca_bundle = self.info["ca_bundle"]

    def env(self):
        """Environment for awscli/botocore pointed at the fake's credentials."""
        e = {"AWS_ACCESS_KEY_ID": self.info["access_key"],
             "AWS_SECRET_ACCESS_KEY": self.info["secret_key"],
             "AWS_DEFAULT_REGION": self.info["region"], "AWS_REGION": self.info["region"],
             "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
             "AWS_EC2_METADATA_DISABLED": "true", "AWS_CA_BUNDLE": self.ca_bundle}
        if self.info["session_token"]:
            e["AWS_SESSION_TOKEN"] = self.info["session_token"]
        return e

    def admin(self, path, body=None):
        url = self.info["admin"] + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def state(self):
        return self.admin("/state")

    def rejections(self):
        return self.admin("/rejections")

    def stats(self):
        return self.admin("/stats")

    def requests(self):
        return self.admin("/requests")

    def set_faults(self, **kw):
        return self.admin("/faults", kw)

    def clear_rejections(self):
        return self.admin("/rejections/clear", {})

    def assert_no_rejections(self):
        r = self.rejections()
        if r:
            raise AssertionError("aws_iot_fake rejected requests:\n" +
                                 json.dumps(r, indent=1)[:8000])

    def stop(self):
        if self.proc.stdin:
            self.proc.stdin.close()
            self.proc.stdin = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
