#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/*: the starting corpus of each fuzz target, built from inputs the
unit and end-to-end tests use (src/**/tests*.rs, tests/*.rs), in each target's input format
(see the module doc of fuzz/src/<target>.rs). Rerun after changing a target's format:
    python3 fuzz/seeds.py
"""
import base64, gzip, hashlib, hmac, json, os, shutil, zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
NOW = 1_700_000_000
seeds = {}


def add(target, data):
    seeds.setdefault(target, []).append(data if isinstance(data, bytes) else data.encode())


# request_head: flags byte (1 = HTTP/2, 2 = underscores allowed, 4 = trusted peer, 8 = TLS,
# 16 = listener takes refresh tokens), then an HTTP/1.1 head.
heads = [
    b"GET /profile/v1/profile HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer abc.def-ghi\r\n\r\n",
    b"GET /profile/v1/email HTTP/1.1\r\nHost: gw.example:8443\r\nauthorization: bearer tok\r\nX-FxA-Refresh-Token: " + b"ab" * 32 + b"\r\n\r\n",
    b"POST /oauth/v1/token HTTP/1.1\r\nHost: oauth.example\r\nContent-Length: 12\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\r\n",
    b"GET /amo/api/v3/addons/ HTTP/1.1\r\nHost: a\r\nX_FxA_Uid: spoof\r\nX-FxA-Uid: spoof\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
    b"GET /amo/api/v4/accounts/profile/ HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.1 lb\r\nX-Request-Id: abc-123\r\n\r\n",
    b"DELETE /amo/api/v5/x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /profile/v1/../../admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /profile/v1/%2e%2E/x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /profile/v1/a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /api/v1/public?x=1 HTTP/1.1\r\nHost: user@a\r\n\r\n",
    b"GET http://oauth.example/v1/jwks HTTP/1.1\r\nHost: other.example\r\n\r\n",
    b"OPTIONS /api/v1/email HTTP/1.1\r\nHost: a\r\nAccess-Control-Request-Method: GET\r\n\r\n",
    b"GET /token/1.0/sync/1.5 HTTP/1.1\r\nHost: [::1]:8080\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\nUpgrade: h2c\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
]
for i, head in enumerate(heads):
    add("request_head", bytes([[0, 1, 2, 4, 8, 16, 31][i % 7]]) + head)
add("request_head", bytes([1]) + b"GET https://gw.example/profile/v1/profile HTTP/1.1\r\nhost: GW.example\r\n\r\n")

# authorization: one Authorization field per line.
for v in [b"Bearer abc", b"bearer abc.def_ghi-~+/=", b"Bearer", b"Bearer  two spaces", b"Basic dXNlcjpwYXNz",
          b"Bearer a\nBearer b", b"JWT eyJhbGciOiJIUzI1NiJ9.e30.x", b"BEARER " + b"a" * 4097]:
    add("authorization", v)

# scope: granted scope string, NUL, required value (src/auth/scope/tests.rs).
OLDSYNC = "https://identity.mozilla.com/apps/oldsync"
for held, req in [("profile:write", "profile"), ("profile", "profile:email"),
                  ("profile:write", "profile:email:write"), ("profile profile:email:write", "profile:display_name"),
                  (OLDSYNC, OLDSYNC + "#read"), (OLDSYNC, OLDSYNC + "/bookmarks"),
                  (OLDSYNC + "#read", OLDSYNC + "#write"), ("profilebogey", "profile"),
                  ("https://identity.mozilla.com/apps/oldsyncer", OLDSYNC), ("foo bar:baz", "foo:dee"),
                  ("profile  openid  https://x.example:8443/a/b#c", "openid"), ("profile:email:write", "profile:write")]:
    add("scope", held + "\0" + req)

# retry_after: flags byte (status, policy, caller), Retry-After/Backoff value, NUL, error body.
for flags, header, body in [(0, "30", '{"code":429,"errno":114,"retryAfter":30}'),
                            (1, " \t30 ", '{"errno":201,"retryAfter":5.5}'),
                            (1 | 16, "Fri, 31 Dec 9999 23:59:59 GMT", '{"errno":202}'),
                            (2, "Tue, 14 Nov 2023 22:13:50 GMT", '{"retryAfter":1e300}'),
                            (3 | 4, "600", "{}"), (0 | 32, "99999999999999999999999", '{"retryAfter":-1}'),
                            (1 | 8, "soon", "not json"), (0, "0", '{"retryAfter":0.5}')]:
    add("retry_after", bytes([flags]) + header.encode() + b"\0" + body.encode())

# introspect_answer: flags byte (required scope), then the answer (src/auth/introspect/tests.rs).
ms = NOW * 1000
for flags, answer in [(0, {"active": True, "scope": "profile", "client_id": "5882386c6d801776", "sub": "a" * 32,
                           "exp": ms + 3_600_000, "iat": ms, "token_type": "access_token"}),
                      (1, {"active": True, "scope": "profile:email openid", "exp": NOW + 60}),
                      (2, {"active": True, "scope": [OLDSYNC, "profile"], "token_type": "bearer"}),
                      (3, {"active": True, "scope": "profile:write", "token_type": "refresh_token"}),
                      (0, {"active": False, "sub": "x"}), (0, {"active": "true"}),
                      (1, {"active": True, "exp": -1, "iat": 1e300, "sub": "line\nbreak"})]:
    add("introspect_answer", bytes([flags]) + json.dumps(answer).encode())

# token_answer: two status bytes ((n % 500) + 100; top bit set and nothing after = no body), body.
def status(code):
    return (code - 100).to_bytes(2, "big")
for code, body in [(200, {"access_token": "a" * 64, "expires_in": 3600, "scope": "profile", "token_type": "bearer"}),
                   (200, {"access_token": "x y", "expires_in": 1}), (200, {"access_token": "t", "expires_in": 1e300}),
                   (400, {"code": 400, "errno": 108}), (401, {"code": 401, "errno": 110}),
                   (400, {"code": 400, "errno": 101}), (503, {"code": 503, "errno": 202}), (429, {})]:
    add("token_answer", status(code) + json.dumps(body).encode())
add("token_answer", status(200) + b"<html>")

# upstream_error: byte a (status index 0-7, type index << 3, 0x20 bearer route), byte b
# (0x80 | seconds of Retry-After, encoding index << 4, 0x0f = over the cap), body
# (src/rewrite.rs tests).
bodies = [
    b'{"status": "invalid-credentials", "errors": [{"location": "body", "name": "", "description": "Unauthorized"}]}',
    b'{"status": "error", "errors": [{"location": "header", "name": "X-Conditions-Accepted", "description": "Need to accept conditions", "condition_urls": {"tos": "https://example.com/tos"}}]}',
    b'{"detail": "Signature has expired.", "code": "ERROR_SIGNATURE_EXPIRED"}',
    b'{"detail": "Request was throttled. Expected available in 30 seconds."}',
    b'{"slug": ["This field must be unique."], "non_field_errors": ["Version already exists."]}',
    b'{"error": "Some features are temporarily disabled while we perform website maintenance."}',
    b'"bad thing happened"',
    b'{"message": "slow down", "retryAfter": 45, "retryAfterLocalized": "in a bit"}',
    b'{"code": 429, "errno": 114, "error": "Too Many Requests", "message": "Client has sent too many requests", "retryAfter": 30}',
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
    b"upstream connect error or disconnect/reset before headers",
    b"\xef\xbb\xbf{\"code\": 404, \"errno\": 999}",
    b"",
]
for i, body in enumerate(bodies):
    a = (i % 8) | ((i % 4) << 3) | (0x20 if i % 3 == 0 else 0)
    b = (0x80 | 30 if i % 2 else 0) | ((i % 7) << 4)
    add("upstream_error", bytes([a, b]) + body)
add("upstream_error", bytes([4, 0x80 | 0x40]) + gzip.compress(bodies[0]))
add("upstream_error", bytes([6, 0x40]) + zlib.compress(bodies[3]))

# amo_jwt: mode byte; odd = header JSON, NUL, claims JSON (the target signs), even = raw value.
def jwt(header, claims, secret=b"fuzz-secret-0123456789abcdef"):
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    signing = enc(json.dumps(header).encode()) + b"." + enc(json.dumps(claims).encode())
    return b"JWT " + signing + b"." + enc(hmac.new(secret, signing, hashlib.sha256).digest())
good = {"iss": "user:12345:67", "jti": "0123456789abcdef", "iat": NOW, "exp": NOW + 60}
for header, claims in [({"alg": "HS256", "typ": "JWT"}, good), ({"alg": "HS256"}, {**good, "iss": "user:999:1", "jti": None}),
                       ({"alg": "none"}, good), ({"alg": "HS256", "crit": ["exp"]}, good),
                       ({"alg": "HS256"}, {**good, "exp": NOW + 301}), ({"alg": "HS256"}, {**good, "orig_iat": NOW}),
                       ({"alg": "HS256"}, {**good, "iat": NOW + 10}), ({"alg": "HS256"}, {**good, "iat": "1700000000"})]:
    claims = {k: v for k, v in claims.items() if v is not None}
    add("amo_jwt", b"\x01" + json.dumps(header).encode() + b"\0" + json.dumps(claims).encode())
add("amo_jwt", b"\x00" + jwt({"alg": "HS256", "typ": "JWT"}, good))
add("amo_jwt", b"\x00" + jwt({"alg": "HS256"}, good, b"wrong"))
add("amo_jwt", b"\x00JWT a.b.c.d")

# refresh_token_header: flags byte (1 = accepted on this listener, 2 = route refreshes), fields.
for flags, value in [(3, b"ab" * 32), (3, b"AB" * 32), (1, b"ab" * 32), (2, b"ab" * 32), (3, b"ab" * 31),
                     (3, b"ab" * 32 + b"\n" + b"cd" * 32), (3, b"g" * 64)]:
    add("refresh_token_header", bytes([flags]) + value)

# config: the shipped configs and a few broken ones (tests/config_examples.rs, src/config/tests*.rs).
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for name in ["gateway.toml", "examples/edge.toml", "examples/edge-local.toml", "examples/amo.toml",
             "examples/sidecar-refresh.toml"]:
    with open(os.path.join(repo, name), "rb") as f:
        add("config", f.read())
add("config", '[[listeners]]\naddr = "127.0.0.1:8080"\n[[routes]]\nname = "r"\npath_prefix = "/x"\nupstream = "profle"\n')
add("config", '[limits]\nmax_body_bytes = "1 MiB"\nheader_read_timeout = "1m30s"\n[[upstreams]]\nname = "u"\nurl = "ftp://x"\n')

if os.path.isdir(ROOT):
    shutil.rmtree(ROOT)
for target, items in seeds.items():
    os.makedirs(os.path.join(ROOT, target))
    for i, data in enumerate(items):
        with open(os.path.join(ROOT, target, f"seed-{i:02}"), "wb") as f:
            f.write(data)
print(" ".join(f"{t}:{len(v)}" for t, v in sorted(seeds.items())))
