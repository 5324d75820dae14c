#!/usr/bin/env bash
# Under attack, normal traffic still flows (issue 15). Normal traffic (wrk, 50 keep-alive
# connections, a small JSON GET through the gateway to an nginx upstream) is measured alone and
# beside a slow-client attack (examples/attack.rs), in alternating runs:
#
#   2,000 idle connections, 200 slowloris connections (100 dripping their first request head,
#   100 dripping a later head after a normal exchange), 50 slow POSTs (a 1 MB body at a byte
#   every 2 s: always progress, never the end) and 50 clients that pipeline requests and never
#   read. Every connection the gateway closes is opened again at once.
#
# Pass mark: with the attack, normal traffic keeps >= 90 % of its throughput and its p99 stays
# within 2x (medians over the rounds).
#
#   benches/attack.sh                 # 3 rounds of (alone, attacked) x 15 s, about 2 min
#   QUICK=1 benches/attack.sh         # 1 round of 5 s
#
# The gateway runs with the default limits (header_read_timeout 10s, body_read_timeout 30s,
# send_timeout 60s, idle_timeout 60s) except max_connections_per_peer, raised to
# max_connections: every connection here comes from 127.0.0.1, and the per-peer cap would
# otherwise refuse most of the attack (this measures the case where the attack comes from many
# addresses). Like compare.sh, the gateway (one worker thread) and the upstream are pinned to
# core 0 (SERVER_CPU), wrk and the attack driver to core 1 (CLIENT_CPU).
#
# Knobs: DURATION [15] ROUNDS [3] CONNS [50] IDLE [2000] LORIS_FIRST [100] LORIS_LATER [100]
#        SLOW_POST [50] NO_READ [50] TARGET_RATIO [0.90] TARGET_P99 [2.0] BASE_PORT [18600]
#        SERVER_CPU [0] CLIENT_CPU [1] GATEWAY_BIN DRIVER_BIN (examples/attack) KEEP_TMP=1
#        OUT_DIR [target/bench-attack]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE="$ROOT/benches/compare"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-5}
    ROUNDS=${ROUNDS:-1}
fi
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
IDLE=${IDLE:-2000}
LORIS_FIRST=${LORIS_FIRST:-100}
LORIS_LATER=${LORIS_LATER:-100}
SLOW_POST=${SLOW_POST:-50}
NO_READ=${NO_READ:-50}
TARGET_RATIO=${TARGET_RATIO:-0.90}
TARGET_P99=${TARGET_P99:-2.0}
BASE_PORT=${BASE_PORT:-18600}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OUT_DIR=${OUT_DIR:-$ROOT/target/bench-attack}
KEEP_TMP=${KEEP_TMP:-0}
NICE=0
QUIET_MAX=100
QUIET_WAIT=0

for v in DURATION ROUNDS CONNS IDLE LORIS_FIRST LORIS_LATER SLOW_POST NO_READ BASE_PORT SERVER_CPU CLIENT_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "attack.sh: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done

UPSTREAM_PORT=$BASE_PORT
STATUS_PORT=$((BASE_PORT + 1))
GW_PORT=$((BASE_PORT + 2))
ADMIN_PORT=$((BASE_PORT + 3))
BODY='{"id":"0123456789abcdef","name":"item","tags":["a","b","c"],"active":true,"count":42,"score":3.5}'

# shellcheck source=compare/common.sh
source "$HERE/common.sh"

for tool in nginx wrk taskset curl; do
    command -v "$tool" >/dev/null && continue
    log "installing wrk and nginx"
    if [[ $EUID -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq wrk nginx util-linux curl >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq wrk nginx util-linux curl >/dev/null
    fi
    break
done

# 2,000 idle + 300 slow connections + the normal ones, on both ends of loopback.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=65536
NEED=$(((IDLE + LORIS_FIRST + LORIS_LATER + SLOW_POST + NO_READ + CONNS) * 2 + 200))
((NOFILE >= NEED)) || die "ulimit -n is $NOFILE; the attack needs $NEED (raise the hard limit)"

TMP=$(mktemp -d /tmp/fxa-attack.XXXXXX)
PIDS=()
CLIENT_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $CLIENT_PID ]]; then kill "$CLIENT_PID" 2>/dev/null || true; fi
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ports_free "$UPSTREAM_PORT" "$STATUS_PORT" "$GW_PORT" "$ADMIN_PORT"
mkdir -p "$OUT_DIR" "$TMP/upstream-tmp"

prepare_gateway
if [[ -z ${DRIVER_BIN:-} ]]; then
    log "building the attack driver (cargo build --release --example attack)"
    (cd "$ROOT" && cargo build --release --quiet --example attack) || die "cargo build failed"
    DRIVER_BIN=$ROOT/target/release/examples/attack
fi
cp "$DRIVER_BIN" "$TMP/attack"

USER_LINE=
[[ $EUID -eq 0 ]] && USER_LINE="user root;"
fill "$HERE/upstream.conf.in" "$TMP/upstream.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" \
    "NOFILE=$NOFILE" "WORKER_CONNS=8192" "UPSTREAM_PORT=$UPSTREAM_PORT" \
    "STATUS_PORT=$STATUS_PORT" "BODY=$BODY" "BULK_FILE=$TMP/bulk.bin"
taskset -c "$SERVER_CPU" nginx -c "$TMP/upstream.conf" -p "$TMP" >"$TMP/upstream.out" 2>&1 &
PIDS+=($!)
wait_port "$UPSTREAM_PORT" "${PIDS[-1]}" "the nginx upstream"

cat >"$TMP/gateway.toml" <<EOF
[server]
worker_threads = 1
drain_timeout = "0s"
[server.log]
format = "json"
level = "warn"

[[listeners]]
name = "plain"
addr = "127.0.0.1:$GW_PORT"

[admin]
addr = "127.0.0.1:$ADMIN_PORT"

[[upstreams]]
name = "backend"
url = "http://127.0.0.1:$UPSTREAM_PORT"
max_connections = 1000
pool_idle_timeout = "300s"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "backend"
strip_prefix = true
versions = ["v1"]

[limits]
# Defaults, except the per-peer cap (see the header of this script).
max_connections = 10000
max_connections_per_peer = 10000
EOF
taskset -c "$SERVER_CPU" "$GW" --config "$TMP/gateway.toml" 2>"$TMP/gateway.log" &
GW_PID=$!
PIDS+=("$GW_PID")
wait_port "$GW_PORT" "$GW_PID" "fxa-gateway"

URL="http://127.0.0.1:$GW_PORT/api/v1/item"
curl -fsS "$URL" >/dev/null || die "the gateway does not serve $URL"

metric() { # name -> value from /metrics
    curl -sS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v n="$1" '$1 == n {print $2; exit}'
}

# One wrk run: prints "requests_per_s p99_ms errors".
normal_traffic() { # label
    local out="$TMP/wrk-$1.txt"
    client "$out" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$HERE/report.lua" "$URL" ||
        die "wrk failed: $(cat "$out")"
    awk '/^BENCH/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%.1f %.2f %d\n", v["requests"] / (v["duration_us"] / 1e6), v["p99_us"] / 1000,
            v["connect"] + v["read"] + v["write"] + v["status"] + v["timeout"]
    }' "$out"
}

REPORT="$OUT_DIR/report.txt"
RUNS_TSV="$OUT_DIR/runs.tsv"
printf 'round\tcase\trps\tp99_ms\terrors\topen_conns\n' >"$RUNS_TSV"
log "gateway $GW_VERSION; $ROUNDS round(s) of $DURATION s alone and $DURATION s under attack"
log "attack: idle=$IDLE loris_first=$LORIS_FIRST loris_later=$LORIS_LATER slow_post=$SLOW_POST no_read=$NO_READ"

ATTACK_LOG="$TMP/attack.txt"
for round in $(seq "$ROUNDS"); do
    read -r rps p99 errs < <(normal_traffic "alone-$round")
    printf '%s\talone\t%s\t%s\t%s\t%s\n' "$round" "$rps" "$p99" "$errs" "$(metric fxa_gateway_open_connections)" >>"$RUNS_TSV"
    log "round $round alone:    $rps req/s, p99 $p99 ms, $errs errors"

    # The attack runs from before the measured run to its end, every connection in place.
    taskset -c "$CLIENT_CPU" "$TMP/attack" "127.0.0.1:$GW_PORT" $((DURATION + 20)) \
        "idle=$IDLE" "loris_first=$LORIS_FIRST" "loris_later=$LORIS_LATER" \
        "slow_post=$SLOW_POST" "no_read=$NO_READ" "path=/api/v1/item" >"$ATTACK_LOG.$round" 2>&1 &
    ATTACK_PID=$!
    PIDS+=("$ATTACK_PID")
    for _ in $(seq 150); do
        grep -q '^ATTACK ready' "$ATTACK_LOG.$round" && break
        sleep 0.1
    done
    grep -q '^ATTACK ready' "$ATTACK_LOG.$round" || die "the attack did not start: $(cat "$ATTACK_LOG.$round")"
    sleep 3 # every slowloris mid-drip
    open=$(metric fxa_gateway_open_connections)
    read -r rps p99 errs < <(normal_traffic "attacked-$round")
    printf '%s\tattacked\t%s\t%s\t%s\t%s\n' "$round" "$rps" "$p99" "$errs" "$open" >>"$RUNS_TSV"
    log "round $round attacked: $rps req/s, p99 $p99 ms, $errs errors ($open client connections open)"
    wait "$ATTACK_PID" || true
    grep '^ATTACK kind' "$ATTACK_LOG.$round" | sed 's/^/    /' >&2 || true
    sleep 2
done

kill -0 "$GW_PID" 2>/dev/null || die "the gateway died: $(tail -5 "$TMP/gateway.log")"
if grep -q panicked "$TMP/gateway.log"; then die "the gateway panicked: $(grep -m1 panicked "$TMP/gateway.log")"; fi

{
    echo "fxa-gateway under a slow-client attack ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $GW_VERSION)"
    echo "normal traffic: wrk -t1 -c$CONNS, ${DURATION} s per run, GET /api/v1/item (nginx upstream)"
    echo "attack: $IDLE idle, $LORIS_FIRST slowloris (first head), $LORIS_LATER slowloris (later head), $SLOW_POST slow POST, $NO_READ never-reading"
    echo
    column -t -s $'\t' "$RUNS_TSV"
    echo
    grep -h '^ATTACK kind' "$ATTACK_LOG".* | awk '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "kind") k = kv[2]; else s[k, kv[1]] += kv[2] }
        kinds[k] = 1 }
        END { for (k in kinds) printf "attack %-10s opened %6d  closed by the gateway %6d  answers %5d  failed connects %d\n",
            k, s[k, "opened"], s[k, "closed_by_gateway"], s[k, "answers"], s[k, "failed_connects"] }' | sort
    echo
    awk -F'\t' -v tr="$TARGET_RATIO" -v tp="$TARGET_P99" '
        NR > 1 { n[$2]++; rps[$2, n[$2]] = $3; p99[$2, n[$2]] = $4; err[$2] += $5 }
        function median(c, a,   m, i, j, t, v) {
            m = n[c]; for (i = 1; i <= m; i++) v[i] = a[c, i]
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
        END {
            ra = median("alone", rps); rb = median("attacked", rps)
            pa = median("alone", p99); pb = median("attacked", p99)
            ratio = rb / ra; pr = pb / pa
            printf "median throughput: alone %.0f req/s, attacked %.0f req/s: %.1f %% (pass mark >= %.0f %%)\n", ra, rb, 100 * ratio, 100 * tr
            printf "median p99: alone %.2f ms, attacked %.2f ms: %.2fx (pass mark <= %.1fx)\n", pa, pb, pr, tp
            printf "normal traffic errors: alone %d, attacked %d\n", err["alone"], err["attacked"]
            ok = ratio >= tr && pr <= tp && err["attacked"] == 0
            printf "RESULT: %s\n", ok ? "PASS" : "FAIL"
        }' "$RUNS_TSV"
} | tee "$REPORT"
grep -q '^RESULT: PASS' "$REPORT"
