#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a figure that other work on
# the machine does not disturb (unlike wall-clock load tests). User space only: kernel time
# (TCP, about two thirds of the gateway's CPU under load) is not counted.
#
#   benches/callgrind.sh                    # builds the release binary, N=20000
#   GATEWAY_BIN=path N=5000 benches/callgrind.sh
#
# The gateway (compare.sh's config: worker_threads = 1, plain and TLS listeners) runs under
# callgrind in front of compare.sh's nginx upstream. For each case h2load sends 500 warm-up
# requests, then the counters are zeroed, N requests sent, and the counters dumped:
#   plain   HTTP/1.1, h2load --h1 -c 10
#   tlsh1   TLS, HTTP/1.1, h2load --h1 -c 10     (10 TLS handshakes included)
#   tlsh2   TLS, HTTP/2, h2load -c 10 -m 10      (10 TLS handshakes included)
# Prints Ir/request per case. KEEP_TMP=1 keeps the callgrind files (callgrind_annotate).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE="$ROOT/benches/compare"
N=${N:-20000}
BASE_PORT=${BASE_PORT:-18700}
KEEP_TMP=${KEEP_TMP:-0}
UPSTREAM_PORT=$BASE_PORT
STATUS_PORT=$((BASE_PORT + 1))
GW_PLAIN_PORT=$((BASE_PORT + 2))
GW_TLS_PORT=$((BASE_PORT + 3))
BODY='{"uid":"4c352927cd4f4a4aa03d7d1893d950b8","email":"bench@example.com","locale":"en-US","verified":true}'

# shellcheck source=compare/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/compare/common.sh"

for tool in valgrind callgrind_control h2load; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install valgrind nghttp2-client)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found (apt-get install nginx)"
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive whole number (got '$N')"

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

for p in "$UPSTREAM_PORT" "$STATUS_PORT" "$GW_PLAIN_PORT" "$GW_TLS_PORT"; do
    ! port_busy "$p" || die "port $p is in use (set BASE_PORT)"
done
prepare_gateway

USER_LINE=
[[ $EUID -eq 0 ]] && USER_LINE="user root;"
mkdir -p "$TMP/upstream-tmp"
fill "$HERE/upstream.conf.in" "$TMP/upstream.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" \
    "NOFILE=4096" "WORKER_CONNS=4096" "UPSTREAM_PORT=$UPSTREAM_PORT" "STATUS_PORT=$STATUS_PORT" "BODY=$BODY" \
    "BULK_FILE=$TMP/bulk.bin" # (the bulk location is not used here)
fill "$HERE/gateway.toml.in" "$TMP/gateway.toml" "ACCESS_LOG=false" "PLAIN_PORT=$GW_PLAIN_PORT" \
    "TLS_PORT=$GW_TLS_PORT" "UPSTREAM_PORT=$UPSTREAM_PORT" "KEEPALIVE=1000"

"$NGINX" -p "$TMP" -e "$TMP/upstream-error.log" -c "$TMP/upstream.conf" >"$TMP/upstream.out" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" "upstream nginx"

valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out.%p" \
    "$GW" --config "$TMP/gateway.toml" >"$TMP/gateway.out" 2>&1 &
VG_PID=$!
PIDS+=("$VG_PID")
for _ in $(seq 300); do
    port_busy "$GW_TLS_PORT" && break
    kill -0 "$VG_PID" 2>/dev/null || die "the gateway exited at start-up (see $TMP/gateway.out; KEEP_TMP=1)"
    sleep 0.2
done

measure() { # case-name h2load-args...
    local name=$1 file ir
    shift
    h2load "$@" -n 500 >/dev/null 2>&1 || die "$name: warm-up failed"
    callgrind_control --zero "$VG_PID" >/dev/null 2>&1
    h2load "$@" -n "$N" >"$TMP/$name.h2load" 2>&1 || die "$name: h2load failed (see $TMP/$name.h2load)"
    grep -q "$N succeeded" "$TMP/$name.h2load" || die "$name: not all $N requests succeeded"
    callgrind_control --dump="$name" "$VG_PID" >/dev/null 2>&1
    for _ in $(seq 50); do
        file=$(grep -l "^desc: Trigger: dump $name\$" "$TMP"/callgrind.out.* 2>/dev/null | head -1) || true
        [[ -n $file ]] && break
        sleep 0.1
    done
    [[ -n $file ]] || die "$name: no callgrind dump"
    ir=$(awk '/^summary:/ {print $2; exit}' "$file")
    printf '%-6s %8.0f Ir/request  (%s requests)\n' "$name" "$(awk -v ir="$ir" -v n="$N" 'BEGIN {print ir / n}')" "$N"
}

echo "$GW_VERSION, $(valgrind --version)"
measure plain --h1 -c 10 "http://127.0.0.1:$GW_PLAIN_PORT/api/v1/item"
measure tlsh1 --h1 -c 10 "https://localhost:$GW_TLS_PORT/api/v1/item"
measure tlsh2 -c 10 -m 10 "https://localhost:$GW_TLS_PORT/api/v1/item"
