#!/usr/bin/env python3
"""A registry token server for capsa's tests: Docker's token authentication, as Docker Hub,
GHCR or Harbor speak it, in front of Debian's docker-registry configured with `auth: token`.

  GET  /token?service=S&scope=repository:NAME:ACTIONS[&offline_token=true&client_id=C]
       Basic auth optional (anonymous otherwise). With offline_token=true and a user, the answer
       carries a refresh_token too.
  POST /token  (form) grant_type=refresh_token&refresh_token=T&service=S&scope=A B
                      grant_type=password&username=U&password=P&service=S&scope=A B
  POST /control/expire-next   the next token issued is already expired (the registry refuses it)

Tokens are JWTs signed RS256 with the test's key (openssl dgst), the certificate in their `x5c`
header: the registry checks it against its `rootcertbundle`. Access: repositories named in
--private belong to the users listed for them (every action); any other repository may be pulled
by anyone and pushed by any signed-in user. A wrong password is a 401. Every token request is
logged as one JSON line in --log (method, grant, user, scopes), for the tests to count.

Only the standard library and the openssl CLI: nothing to install.
"""

import argparse
import os
import base64
import json
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Authority:
    def __init__(self, args):
        with open(args.users) as f:
            self.users = json.load(f)
        with open(args.private) as f:
            self.private = json.load(f)
        with open(args.cert) as f:
            pem = f.read()
        body = "".join(l for l in pem.splitlines() if l and not l.startswith("-----"))
        self.cert_der_b64 = base64.b64encode(base64.b64decode(body)).decode()
        self.key = args.key
        self.issuer = args.issuer
        self.service = args.service
        self.lifetime = args.lifetime
        self.log_path = args.log
        self.lock = threading.Lock()
        self.expire_next = 0
        self.refresh_tokens = {}

    def log(self, entry):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def check_password(self, user, password):
        return user in self.users and self.users[user] == password

    def granted(self, user, scope):
        parts = scope.split(":")
        if len(parts) != 3 or parts[0] != "repository":
            return None
        _, name, actions = parts
        if name in self.private:
            allowed = {"pull", "push", "delete"} if user in self.private[name] else set()
        else:
            allowed = {"pull", "push"} if user else {"pull"}
        return {
            "type": "repository",
            "name": name,
            "actions": [a for a in actions.split(",") if a in allowed],
        }

    def token(self, user, scopes):
        now = int(time.time())
        with self.lock:
            expired = self.expire_next > 0
            if expired:
                self.expire_next -= 1
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now - 3600 if expired else now + self.lifetime,
            "nbf": now - 3600 - 10 if expired else now - 10,
            "iat": now - 3600 if expired else now,
            "jti": uuid.uuid4().hex,
            "access": [g for g in (self.granted(user, s) for s in scopes) if g],
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.cert_der_b64]}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return signing_input + "." + b64url(signature)


class Handler(BaseHTTPRequestHandler):
    authority = None

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, message):
        self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": message}]})

    def issue(self, method, grant, user, scopes, refresh):
        a = self.authority
        a.log({"method": method, "grant": grant, "user": user, "scopes": scopes})
        token = a.token(user, scopes)
        body = {
            "token": token,
            "access_token": token,
            "expires_in": a.lifetime,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if refresh and user:
            r = uuid.uuid4().hex
            with a.lock:
                a.refresh_tokens[r] = user
            body["refresh_token"] = r
        self.reply(200, body)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path != "/token":
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
        query = parse_qs(url.query)
        user = None
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return self.refuse("malformed basic auth")
            if not self.authority.check_password(name, password):
                self.authority.log({"method": "GET", "grant": "refused", "user": name, "scopes": []})
                return self.refuse("wrong user name or password")
            user = name
        offline = query.get("offline_token", ["false"])[0] == "true"
        self.issue("GET", "basic" if user else "anonymous", user, query.get("scope", []), offline)

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        if url.path == "/control/expire-next":
            with self.authority.lock:
                self.authority.expire_next += 1
            return self.reply(200, {})
        if url.path != "/token":
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
        form = parse_qs(body)
        grant = form.get("grant_type", [""])[0]
        scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
        if grant == "refresh_token":
            with self.authority.lock:
                user = self.authority.refresh_tokens.get(form.get("refresh_token", [""])[0])
            if user is None:
                self.authority.log({"method": "POST", "grant": "refused", "user": None, "scopes": scopes})
                return self.refuse("unknown refresh token")
            return self.issue("POST", "refresh_token", user, scopes, True)
        if grant == "password":
            user = form.get("username", [""])[0]
            if not self.authority.check_password(user, form.get("password", [""])[0]):
                return self.refuse("wrong user name or password")
            return self.issue("POST", "password", user, scopes, form.get("access_type", [""])[0] == "offline")
        return self.reply(400, {"error": "unsupported_grant_type"})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ["users", "private", "cert", "key", "issuer", "service", "log", "port-file"]:
        p.add_argument("--" + flag, required=True)
    p.add_argument("--lifetime", type=int, default=300)
    args = p.parse_args()
    Handler.authority = Authority(args)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
