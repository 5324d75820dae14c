#!/usr/bin/env bash
# TLS audit: runs testssl.sh (Debian package `testssl.sh`) against the gateway's TLS listener on
# loopback, once with the ECDSA P-256 certificate `gen-cert` makes and once with an RSA-2048
# one (rustls picks the certificate by SNI, so each run sees the suites of one key type), and
# fails on any weak protocol, cipher, renegotiation, compression or known-vulnerability
# finding. Summary in docs/tls-audit.md.
#
#   scripts/tls-audit.sh                                   # builds the release binary first
#   GATEWAY_BIN=target/debug/fxa-gateway scripts/tls-audit.sh
#
# Everything stays on 127.0.0.1: no DNS lookup (`--nodns none`), no CRL or OCSP fetch (testssl
# only phones out with --phone-out). Reports land in $OUT (default target/tls-audit/).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18443}
ADMIN_PORT=${ADMIN_PORT:-18444}
OUT=${OUT:-target/tls-audit}

if ! command -v testssl >/dev/null 2>&1; then
  apt-get update && apt-get install -y testssl.sh
fi
BIN=${GATEWAY_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --locked
  BIN=target/release/fxa-gateway
fi

rm -rf "$OUT"
mkdir -p "$OUT/certs"
OUT=$(cd "$OUT" && pwd)
"$BIN" gen-cert --out "$OUT/certs" >/dev/null # CA + ECDSA P-256 certificate for localhost
# An RSA-2048 certificate from the same CA, for SNI name rsa.localhost.
openssl req -new -newkey rsa:2048 -nodes -subj /CN=rsa.localhost \
  -keyout "$OUT/certs/rsa-key.pem" -out "$OUT/certs/rsa.csr" 2>/dev/null
printf 'subjectAltName=DNS:rsa.localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
  >"$OUT/certs/rsa.ext"
openssl x509 -req -in "$OUT/certs/rsa.csr" -CA "$OUT/certs/ca.pem" -CAkey "$OUT/certs/ca-key.pem" \
  -CAcreateserial -days 397 -sha256 -extfile "$OUT/certs/rsa.ext" -out "$OUT/certs/rsa.pem" 2>/dev/null

cat >"$OUT/gateway.toml" <<EOF
# The edge listener under audit; its only upstream is the gateway's own admin listener.
[[listeners]]
name = "edge"
addr = "127.0.0.1:$PORT"
[listeners.tls]
[[listeners.tls.certificates]]
cert = "certs/gateway.pem"
key = { file = "certs/gateway-key.pem" }
[[listeners.tls.certificates]]
cert = "certs/rsa.pem"
key = { file = "certs/rsa-key.pem" }
server_names = ["rsa.localhost"]
[admin]
addr = "127.0.0.1:$ADMIN_PORT"
[[upstreams]]
name = "local"
url = "http://127.0.0.1:$ADMIN_PORT"
[[routes]]
name = "local"
path_prefix = "/"
upstream = "local"
EOF

"$BIN" --config "$OUT/gateway.toml" >"$OUT/gateway.log" 2>&1 &
GATEWAY=$!
trap 'kill "$GATEWAY" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.2
done

status=0
for run in ecdsa:localhost rsa:rsa.localhost; do
  name=${run%%:*} host=${run#*:}
  echo "== testssl.sh: $name certificate (SNI $host) on 127.0.0.1:$PORT"
  testssl --quiet --color 0 --warnings off --nodns none --ip 127.0.0.1 \
    --add-ca "$OUT/certs/ca.pem" --jsonfile "$OUT/$name.json" --logfile "$OUT/$name.log" \
    "https://$host:$PORT/" >/dev/null 2>&1 || true
  [ -s "$OUT/$name.json" ] || { echo "testssl.sh wrote no report (see $OUT/$name.log)"; status=1; continue; }
  python3 scripts/tls-audit-summary.py "$OUT/$name.json" || status=1
done
echo "full reports: $OUT/{ecdsa,rsa}.{log,json}"
exit "$status"
