#!/usr/bin/env python3
"""A Docker registry token server for the tests (the "token" auth of
Distribution, https://distribution.github.io/distribution/spec/auth/token/).

GET /token?service=S&scope=repository:NAME:ACTIONS with Basic credentials, or
POST /token with an OAuth2 password grant, answers an RS256 JWT whose header
carries the signing certificate in `x5c` (the registry checks it against its
`rootcertbundle`). Each user is granted at most the actions listed for it;
anonymous callers get a token with no access, as Docker Hub gives for a
private repository; wrong credentials get 401.

Usage: token_server.py PORT KEY.pem CERT.pem ISSUER SERVICE USER:PASSWORD:ACTIONS...
(ACTIONS comma-separated, e.g. pull,push,delete)
"""
import base64
import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

PORT, KEY, CERT, ISSUER, SERVICE = sys.argv[1:6]
USERS = {}
for spec in sys.argv[6:]:
    user, password, actions = spec.split(":", 2)
    USERS[user] = (password, set(actions.split(",")))
with open(KEY, "rb") as f:
    PRIVATE = serialization.load_pem_private_key(f.read(), password=None)
with open(CERT, "rb") as f:
    DER = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_for(user, scopes):
    granted = USERS[user][1] if user else set()
    access = []
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) < 3:
            continue
        kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
        allowed = [a for a in actions.split(",") if a in granted]
        access.append({"type": kind, "name": name, "actions": allowed})
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(DER).decode()]}
    claims = {
        "iss": ISSUER,
        "sub": user or "",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "access": access,
    }
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    signature = PRIVATE.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def check(self, user, password, service):
        """The user (None: anonymous), or an error already answered."""
        if service != SERVICE:
            self.answer(400, {"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]})
            return False, None
        if user is None:
            return True, None
        if user not in USERS or USERS[user][0] != password:
            self.answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]})
            return False, None
        return True, user

    def do_GET(self):
        url = urlparse(self.path)
        if url.path != "/token":
            return self.answer(404, {})
        query = parse_qs(url.query)
        user = password = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, password = base64.b64decode(auth[6:]).decode().split(":", 1)
            except Exception:
                return self.answer(400, {"errors": [{"code": "DENIED", "message": "bad Basic header"}]})
        ok, user = self.check(user, password, query.get("service", [""])[0])
        if ok:
            token = token_for(user, query.get("scope", []))
            self.answer(200, {"token": token, "access_token": token, "expires_in": 300})

    def do_POST(self):
        if urlparse(self.path).path != "/token":
            return self.answer(404, {})
        length = min(int(self.headers.get("Content-Length", "0")), 65536)
        form = parse_qs(self.rfile.read(length).decode())
        if form.get("grant_type", [""])[0] != "password":
            return self.answer(400, {"error": "unsupported_grant_type"})
        ok, user = self.check(form.get("username", [""])[0], form.get("password", [""])[0], form.get("service", [""])[0])
        if ok:
            scopes = " ".join(form.get("scope", [])).split()
            self.answer(200, {"access_token": token_for(user, scopes), "expires_in": 300})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler).serve_forever()
