#!/usr/bin/env bash
# The cost of sharing state through Redis (issue 17): one bearer route with a per-identity quota
# and an upstream cap (and the back-off checks every request makes), warm introspection cache,
# served by two gateways that differ only in `[redis]`:
#   (l) in-process: quota and cap counted by governor in memory
#   (s) shared:     quota and cap counted in Redis (one GCRA script call each per request)
# Both have the same routes, upstream (nginx, fixed JSON) and fake OAuth server (nginx,
# "active" for any token). wrk drives 50 keep-alive connections with one bearer token.
#
#   benches/redis.sh            # ROUNDS [3] x DURATION [10] s per case, alternating (l)/(s)
#
# Needs the release binary (cargo build --release), nginx, wrk and redis-server. Pins the
# gateway, nginx and redis to core 0 and wrk to core 1 when taskset exists. Figures are only
# comparable within one run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${GATEWAY_BIN:-$ROOT/target/release/fxa-gateway}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
BASE_PORT=${BASE_PORT:-28700}
UP_PORT=$BASE_PORT OAUTH_PORT=$((BASE_PORT + 1)) REDIS_PORT=$((BASE_PORT + 2))
LOCAL_PORT=$((BASE_PORT + 3)) SHARED_PORT=$((BASE_PORT + 4))
TOKEN=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

for tool in nginx wrk redis-server; do
    command -v "$tool" >/dev/null || { echo "redis.sh: $tool is missing" >&2; exit 2; }
done
[[ -x $BIN ]] || { echo "redis.sh: build the release binary first (cargo build --release)" >&2; exit 2; }
SERVER_CPU=() CLIENT_CPU=()
if command -v taskset >/dev/null; then SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1); fi

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        location / { default_type application/json; return 200 '{"uid":"4c352927cd4f4a4aa03d7d1893d950b8","email":"bench@example.com"}'; }
    }
    server {
        listen 127.0.0.1:$OAUTH_PORT backlog=4096;
        location / { default_type application/json; return 200 '{"active":true,"scope":"profile","sub":"0123456789abcdef0123456789abcdef","client_id":"abcdef0123456789","token_type":"access_token","exp":4102444800000,"iat":1700000000000}'; }
    }
}
EOF
"${SERVER_CPU[@]}" nginx -c "$TMP/nginx.conf" -p "$TMP" & PIDS+=($!)
"${SERVER_CPU[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" >/dev/null & PIDS+=($!)

printf '%s' 6f1c2a9e0b7d4c3f8a5e6b1d2c9f0a7e3b4d5c6e7f8091a2b3c4d5e6f708192a >"$TMP/hash.key"
printf '%s' 0d9c8b7a69584736251403f2e1d0c9b8a7968574635241302f1e0d9c8b7a6958 >"$TMP/enc.key"
config() { # <port> <extra>
    cat <<EOF
[server]
worker_threads = 1
drain_timeout = "0s"
[server.log]
level = "warn"
access_log = false
[[listeners]]
name = "plain"
addr = "127.0.0.1:$1"
[[upstreams]]
name = "backend"
url = "http://127.0.0.1:$UP_PORT"
max_connections = 256
pool_idle_timeout = "300s"
rate_limit = { requests = 1000000000, window = "60s" }
[[upstreams]]
name = "oauth"
url = "http://127.0.0.1:$OAUTH_PORT"
[bearer]
oauth_upstream = "oauth"
[[routes]]
name = "authed"
path_prefix = "/authed"
upstream = "backend"
versions = ["v1"]
auth = { policy = "bearer", scopes = ["profile"] }
quota = { requests = 1000000000, window = "60s", key = "identity" }
[limits]
idle_timeout = "300s"
$2
EOF
}
config "$LOCAL_PORT" "" >"$TMP/local.toml"
config "$SHARED_PORT" "[redis]
url = \"redis://127.0.0.1:$REDIS_PORT\"
hashing_key = { file = \"hash.key\" }
encryption_key = { file = \"enc.key\" }" >"$TMP/shared.toml"
for c in local shared; do
    "${SERVER_CPU[@]}" "$BIN" --config "$TMP/$c.toml" 2>"$TMP/$c.log" & PIDS+=($!)
done

wait_ok() { # <url>
    for _ in $(seq 100); do
        curl -fsS -H "Authorization: Bearer $TOKEN" "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis.sh: $1 never answered 200" >&2; cat "$TMP"/*.log >&2; exit 1
}
wait_ok "http://127.0.0.1:$LOCAL_PORT/authed/v1/item"
wait_ok "http://127.0.0.1:$SHARED_PORT/authed/v1/item"
keys=$(redis-cli -p "$REDIS_PORT" dbsize)
((keys >= 2)) || { echo "redis.sh: the shared gateway wrote no quota state to Redis" >&2; exit 1; }

run() { # <case> <port>: prints "case req/s p50 p99"
    "${CLIENT_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
        -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$2/authed/v1/item" >"$TMP/wrk.out"
    awk -v c="$1" '
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
        /Non-2xx/ { bad = $NF }
        END { printf "%-8s %10s req/s  p50 %8s  p99 %8s%s\n", c, rps, p50, p99, (bad ? "  NON-2XX " bad : "") }' "$TMP/wrk.out"
}
echo "fxa-gateway $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $CONNS connections, ${DURATION}s per run, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    run local "$LOCAL_PORT"
    run shared "$SHARED_PORT"
done
echo "redis commands: $(redis-cli -p "$REDIS_PORT" info stats | awk -F: '/total_commands_processed/ { print $2 }' | tr -d '\r')"
