#!/usr/bin/env python3
"""A full trade against a liutong server, as an independent client sees it.

Needs nothing but Python 3, the `cryptography` package and the `age` command-line tool
(`age` and `age-keygen`). It

1. registers a provider and two buyers, publishes a dataset encrypted with `age` to the
   provider's own key, uploads it and deposits the key sealed to the server's escrow recipient;
2. credits the buyer (as the operator), confirms, settles, and verifies every signature
   (payment proof, license, watermark) against GET /v1/keys with its own RFC 8785 code;
3. opens `private_key` with its own age identity, delivers (JSON and streaming), decrypts the
   file to the original bytes and verifies the delivery proof;
4. checks that forged, tampered, foreign, superseded and expired licenses are refused.

Usage:
    LIUTONG_OPERATOR_PASSWORD=... python3 examples/trade.py --base http://127.0.0.1:8080

The expiry check waits for the license to run out; run the server with a short term
(`license_term_secs = 10` in its config file) or pass --skip-expiry.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class CheckFailed(Exception):
    pass


def check(condition, what):
    """Like assert, but not removed by python -O: every check of this client must run."""
    if not condition:
        raise CheckFailed(what)


# --- RFC 8785 (JSON Canonicalization Scheme) for the JSON liutong signs ------------------------
# liutong's signed documents hold strings, integers, booleans, null, arrays and objects only, so
# no ECMAScript number formatting is needed.

def jcs(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError("a float in a signed document: not expected from liutong")
    if isinstance(value, str):
        # ensure_ascii=False gives JSON.stringify's escapes: \" \\ \b \f \n \r \t, other
        # control characters as lower-case \u00xx, everything else literally.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        # Members sorted by their UTF-16 code units.
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(jcs(k) + ":" + jcs(v) for k, v in items) + "}"
    raise TypeError(f"not JSON: {value!r}")


def check_jcs():
    """RFC 8785 §3.2.3: sorting by UTF-16 code units."""
    sample = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    order = [k for k in json.loads(jcs(sample))]
    check(order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"], order)


# --- signatures ---------------------------------------------------------------------------------

class Keys:
    def __init__(self, doc):
        self.keys = {
            k["keyId"]: Ed25519PublicKey.from_public_bytes(base64.b64decode(k["publicKey"]))
            for k in doc["signingKeys"]
        }
        self.escrow = doc["escrowRecipient"]

    def verify_value(self, key_id, value, signature_b64):
        key = self.keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(base64.b64decode(signature_b64), jcs(value).encode("utf-8"))
            return True
        except (InvalidSignature, ValueError):
            return False

    def verify(self, doc, field):
        """A document signed over its canonical JSON without `field`."""
        unsigned = {k: v for k, v in doc.items() if k != field}
        return self.verify_value(doc.get("keyId"), unsigned, doc.get(field, ""))

    def verify_watermark(self, license):
        mark = {
            "purpose": "liutong/license-watermark/v1",
            "licensesID": license["licensesID"],
            "licensee": license["licensee"],
            "registrationID": license["registrationID"],
            "dataID": license["dataID"],
        }
        return self.verify_value(license["keyId"], mark, license["digital_watermarking"])


# --- HTTP ---------------------------------------------------------------------------------------

class Api:
    def __init__(self, base):
        self.base = base.rstrip("/")

    def call(self, method, path, body=None, token=None, query=None, raw=None,
             content_type="application/json", accept=None):
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if token:
            req.add_header("X-Auth-Token", token)
        if accept:
            req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                if accept == "application/octet-stream":
                    return resp.status, resp.headers, resp.read()
                envelope = json.load(resp)
        except urllib.error.HTTPError as e:
            envelope = json.load(e)
        check(envelope["status"] in (200, 400, 401, 402, 403, 404, 409, 413, 415), envelope)
        return envelope

    def ok(self, method, path, **kw):
        envelope = self.call(method, path, **kw)
        if envelope["status"] != 200:
            raise SystemExit(f"{method} {path} failed: {envelope}")
        return envelope["data"]

    def refused(self, what, expected_status, method, path, **kw):
        envelope = self.call(method, path, **kw)
        if envelope["status"] != expected_status:
            raise SystemExit(f"{what}: expected {expected_status}, got {envelope}")
        print(f"  refused ({envelope['status']} {envelope['code']}): {what}")
        return envelope


# --- age ----------------------------------------------------------------------------------------

def age_keygen(path):
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True)
    with open(path) as f:
        for line in f:
            if line.startswith("# public key: "):
                return line.split(": ", 1)[1].strip()
    raise SystemExit("age-keygen wrote no public key")


def age_encrypt(recipient, src, dst):
    subprocess.run(["age", "-r", recipient, "-o", dst, src], check=True)


def age_decrypt(identity_file, src, dst):
    subprocess.run(["age", "-d", "-i", identity_file, "-o", dst, src], check=True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def parse_term(text):
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)


# --- the trade ----------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="http://127.0.0.1:8080")
    parser.add_argument("--operator", default="operator")
    parser.add_argument("--operator-password", default=os.environ.get("LIUTONG_OPERATOR_PASSWORD"))
    parser.add_argument("--skip-expiry", action="store_true",
                        help="do not wait for the license to expire")
    parser.add_argument("--max-expiry-wait", type=float, default=120.0)
    args = parser.parse_args()
    if not args.operator_password:
        raise SystemExit("set LIUTONG_OPERATOR_PASSWORD or pass --operator-password")
    check_jcs()

    api = Api(args.base)
    # Keys and files live in a private temporary directory, removed at the end.
    with tempfile.TemporaryDirectory(prefix="liutong-trade-") as work:
        trade(api, args, lambda name: os.path.join(work, name))


def trade(api, args, p):
    tag = secrets.token_hex(3)
    names = {role: f"{role}-{tag}" for role in ("alice", "carol", "dave")}

    def account(name):
        password = "pass-" + secrets.token_hex(8) + "1a"
        api.ok("POST", "/v1/account/register",
               body={"username": name, "password": password, "phone": "13800138000"})
        return api.ok("POST", "/v1/account/token",
                      body={"username": name, "password": password})["token"]

    print("1. accounts and keys")
    alice, carol, dave = (account(names[r]) for r in ("alice", "carol", "dave"))
    operator = api.ok("POST", "/v1/account/token",
                      body={"username": args.operator, "password": args.operator_password})["token"]
    keys = Keys(api.ok("GET", "/v1/keys"))
    provider_recipient = age_keygen(p("provider.key"))
    carol_recipient = age_keygen(p("carol.key"))
    dave_recipient = age_keygen(p("dave.key"))
    for token, recipient in ((carol, carol_recipient), (dave, dave_recipient)):
        api.ok("PUT", "/v1/account/deliveryKey", token=token, body={"publicKey": recipient})

    print("2. the provider lists an age-encrypted dataset")
    original = os.urandom(300_000)
    write(p("data.bin"), original)
    age_encrypt(provider_recipient, p("data.bin"), p("data.bin.age"))
    reg = api.ok("POST", "/registerData", token=alice, body={
        "owner": names["alice"], "key_words": ["CT", "lung"], "dataID": "ct-" + tag,
        "description": "chest CT", "data_type": "dataset", "data_format": "bin",
        "data_size": len(original) / 1e6, "data_category": ["healthcare"],
        "collection_time": "2024-05-01 08:30:00", "country": "CN",
        "resource_url": "https://provider.invalid/ct.age",
        "ownership_confirm": "https://provider.invalid/ownership",
        "public_key": provider_recipient})["registrationID"]
    api.ok("POST", "/publishData", token=alice,
           body={"owner": names["alice"], "registrationID": reg, "free": False, "price": 19.99})
    up = api.ok("PUT", "/v1/data/file", token=alice, query={"registrationID": reg},
                raw=read(p("data.bin.age")), content_type="application/octet-stream")
    check(up["sha256"] == hashlib.sha256(read(p("data.bin.age"))).hexdigest(), "upload digest")
    age_encrypt(keys.escrow, p("provider.key"), p("provider.key.sealed"))
    api.ok("PUT", "/v1/data/deliveryKey", token=alice, query={"registrationID": reg},
           body={"sealedIdentity": base64.b64encode(read(p("provider.key.sealed"))).decode()})

    print("3. credit, demand, confirm, settle")
    api.ok("POST", "/v1/admin/accounts/credit", token=operator,
           body={"username": names["carol"], "amount": 50, "reference": "trade-" + tag})
    demand = api.ok("POST", "/registerDemand", token=carol, body={
        "demander": names["carol"], "data_category": ["healthcare"], "key_words": ["ct"],
        "data_type": "dataset"})["demandID"]
    api.ok("POST", "/publishDemand", token=carol,
           body={"demander": names["carol"], "demandID": demand})
    confirm = api.ok("POST", "/confirmDemand", token=carol, body={
        "demander": names["carol"], "demandID": demand, "registrationID": reg})
    check(confirm["price"] == 19.99 and confirm["owner"] == names["alice"], confirm)
    cid = confirm["confirmID"]
    settled = api.ok("POST", "/settlement", token=carol, body={"confirmID": cid})
    check(settled["settlement_status"] == "SETTLED", "settled")
    balance = api.ok("GET", "/v1/account/balance", token=carol)["balance"]
    check(balance == 30.01, f"balance after paying 19.99 of 50: {balance}")

    print("4. every signature checks out against GET /v1/keys")
    proof, license = settled["payment_proof"], settled["licenses"]
    check(keys.verify(proof, "signature"), "payment proof signature")
    check(proof["amount"] == "19.99" and proof["payer"] == names["carol"], proof)
    check(keys.verify(license, "digital_signature"), "license signature")
    check(keys.verify_watermark(license), "license watermark")
    for field in ("licensesID", "licensor", "licensee", "registrationID", "dataID",
                  "resource_url", "digital_watermarking", "digital_signature",
                  "usage_restrictions", "license_term"):
        check(field in license, field)
    print("  payment proof, license and watermark verified")

    print("5. open private_key, deliver, decrypt")
    pk = settled["private_key"]
    check(pk["format"] == "age" and pk["recipient"] == carol_recipient, pk)
    write(p("pk.age"), base64.b64decode(pk["ciphertext"]))
    age_decrypt(p("carol.key"), p("pk.age"), p("provider-from-settlement.key"))
    delivered = api.ok("POST", "/deliver", token=carol, body={"licenses": license})
    write(p("delivered.age"), base64.b64decode(delivered["data_file"]))
    age_decrypt(p("provider-from-settlement.key"), p("delivered.age"), p("delivered.bin"))
    check(read(p("delivered.bin")) == original, "JSON delivery decrypts to the original")
    dp = delivered["delivery_proof"]
    check(keys.verify(dp, "signature"), "delivery proof signature")
    check(dp["sha256"] == hashlib.sha256(read(p("delivered.age"))).hexdigest(),
          "delivery proof names the delivered bytes")
    check(dp["digital_watermarking"] == license["digital_watermarking"],
          "delivery proof carries the license's watermark")
    status, headers, body = api.call("POST", "/deliver", token=carol, body={"licenses": license},
                                     accept="application/octet-stream")
    check(status == 200, f"streaming delivery: HTTP {status}")
    stream_proof = json.loads(base64.b64decode(headers["X-Delivery-Proof"]))
    check(keys.verify(stream_proof, "signature"), "streamed delivery proof signature")
    check(stream_proof["sha256"] == hashlib.sha256(body).hexdigest(),
          "streamed delivery proof names the streamed bytes")
    write(p("streamed.age"), body)
    age_decrypt(p("provider-from-settlement.key"), p("streamed.age"), p("streamed.bin"))
    check(read(p("streamed.bin")) == original, "streamed delivery decrypts to the original")
    results = api.ok("GET", "/queryDeliverResult", token=carol, query={"confirmID": cid})
    check(len(results["delivery_proof"]) == 2, "two delivery proofs recorded")
    check(all(keys.verify(d, "signature") for d in results["delivery_proof"]),
          "recorded delivery proofs verify")
    print("  the delivered file decrypts to the original bytes")

    print("6. licenses that are not genuine, not yours, or no longer current are refused")
    forged = dict(license, licensee=names["dave"])
    check(not keys.verify(forged, "digital_signature"), "a forged license fails verification")
    api.refused("forged license (licensee rewritten)", 403, "POST", "/deliver",
                token=dave, body={"licenses": forged})
    tampered = dict(license, license_term={"startData": license["license_term"]["startData"],
                                           "endDate": "2099-12-31 23:59:59"})
    api.refused("tampered license (term extended)", 403, "POST", "/deliver",
                token=carol, body={"licenses": tampered})
    api.refused("foreign license (someone else's)", 403, "POST", "/deliver",
                token=dave, body={"licenses": license})
    updated = api.ok("POST", "/updateLicenses", token=alice,
                     body={"owner": names["alice"], "dataID": "ct-" + tag})["licenses"]
    check(len(updated) == 1, "one license re-issued")
    new_license = updated[0]
    check(keys.verify(new_license, "digital_signature") and keys.verify_watermark(new_license),
          "re-issued license signature and watermark")
    api.refused("superseded license", 403, "POST", "/deliver",
                token=carol, body={"licenses": license})
    api.ok("POST", "/deliver", token=carol, body={"licenses": new_license})
    print("  the re-issued license delivers")

    if args.skip_expiry:
        print("  (expiry check skipped)")
    else:
        end = parse_term(new_license["license_term"]["endDate"])
        wait = (end - datetime.datetime.now(datetime.timezone.utc)).total_seconds() + 1.5
        if wait > args.max_expiry_wait:
            raise SystemExit(f"the license runs {wait:.0f}s more; run the server with a short "
                             "license_term_secs or pass --skip-expiry")
        time.sleep(max(wait, 0))
        envelope = api.refused("expired license", 403, "POST", "/deliver",
                               token=carol, body={"licenses": new_license})
        check("expired" in envelope["errorMsg"], envelope)

    print("trade complete: every check passed")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as failure:
        sys.exit(f"check failed: {failure}")
