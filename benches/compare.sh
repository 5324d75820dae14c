#!/usr/bin/env bash
# fxa-gateway vs nginx, side by side, on one machine (see benches/README.md).
#
#   benches/compare.sh                 # full run: 5 rounds x 8 cases x 3 runs of 10 s (~24 min)
#   QUICK=1 benches/compare.sh         # smoke test: 1 round, 1 run of 3 s per case (~1 min)
#
# Prints the report and keeps it, with every run (kept or discarded) as TSV, in OUT_DIR.
#
# Cases (50 keep-alive connections, small JSON GET):
#   (a) straight to the upstream (nginx server block, ~100-byte JSON body)
#   (b) nginx reverse proxy, plain HTTP/1.1        (c) fxa-gateway, plain HTTP/1.1
#   (d) nginx, TLS, HTTP/1.1 (wrk)                 (e) fxa-gateway, TLS, HTTP/1.1 (wrk)
#   (f) nginx, TLS, HTTP/2 (h2load -m 10)          (g) fxa-gateway, TLS, HTTP/2 (h2load -m 10)
#   (h) fxa-gateway, plain HTTP/1.1, access log on (JSON lines to a file)
#
# The proxy under test (nginx: 1 worker; gateway: worker_threads = 1) and the upstream share
# core SERVER_CPU; the single-threaded load generator runs on CLIENT_CPU.
#
# Environment knobs (defaults in brackets):
#   DURATION [10] s per measured run   WARMUP [2] s warm-up per case and round
#   ROUNDS [5]   RUNS [3] per case and round   CONNS [50]   STREAMS [10] (h2load -m)
#   QUICK=1      DURATION=3 ROUNDS=1 RUNS=1 WARMUP=1 unless set explicitly
#   MIN_BUSY [95] % of the server core that a run must keep busy, else it is discarded
#   MAX_FOREIGN [5] % of either core that other processes may take during a run, else discarded
#   QUIET_MAX [10] QUIET_WAIT [120; QUICK: 10] before each case, wait up to QUIET_WAIT s for both
#                 cores to be at most QUIET_MAX % busy (other processes), then go on anyway
#   RETRIES [RUNS] extra attempts per case and round to replace discarded runs
#   SERVER_CPU [0]  CLIENT_CPU [1]   BASE_PORT [18400] (uses BASE_PORT .. BASE_PORT+22)
#   NGINX_HEADERS [1] nginx sets X-Forwarded-For/-Proto/-Host and X-Request-Id like the
#                 gateway does; 0 = bare proxy_pass
#   H2LOAD_TLS13_CIPHERS [TLS_AES_256_GCM_SHA384] the one suite h2load offers (same for both)
#   NICE [-10 as root, else 0] nice level of servers and load generator
#   GATEWAY_BIN   use this binary instead of building (cargo build --release)
#   OUT_DIR [target/bench-compare] where the raw runs (TSV) and the report are kept
#   KEEP_TMP=1    keep the temp dir (configs, logs, raw tool output)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE="$ROOT/benches/compare"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-3}
    ROUNDS=${ROUNDS:-1}
    RUNS=${RUNS:-1}
    WARMUP=${WARMUP:-1}
    QUIET_WAIT=${QUIET_WAIT:-10}
fi
QUIET_WAIT=${QUIET_WAIT:-120}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-3}
CONNS=${CONNS:-50}
STREAMS=${STREAMS:-10}
MIN_BUSY=${MIN_BUSY:-95}
MAX_FOREIGN=${MAX_FOREIGN:-5}
QUIET_MAX=${QUIET_MAX:-10}
RETRIES=${RETRIES:-$RUNS}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-18400}
NGINX_HEADERS=${NGINX_HEADERS:-1}
# Servers and load generator run at a raised priority (root only), so that a compiler or test run
# on the same machine disturbs them less; the same for nginx and the gateway.
if [[ $EUID -eq 0 ]]; then NICE=${NICE:--10}; else NICE=${NICE:-0}; fi
# The TLS 1.3 suite h2load offers. wrk (OpenSSL's default order) gets TLS_AES_256_GCM_SHA384 from
# both servers; h2load prefers AES-128, which nginx honours and the gateway (server order) does
# not. Offering one suite keeps the two servers on the same cipher. Empty = h2load's default.
H2LOAD_TLS13_CIPHERS=${H2LOAD_TLS13_CIPHERS-TLS_AES_256_GCM_SHA384}
OUT_DIR=${OUT_DIR:-$ROOT/target/bench-compare}
KEEP_TMP=${KEEP_TMP:-0}

[[ $NICE =~ ^-?[0-9]+$ ]] || { echo "compare.sh: NICE must be an integer (got '$NICE')" >&2; exit 2; }
for v in DURATION WARMUP ROUNDS RUNS CONNS STREAMS MIN_BUSY MAX_FOREIGN QUIET_MAX QUIET_WAIT RETRIES SERVER_CPU CLIENT_CPU BASE_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "compare.sh: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
((DURATION > 0 && ROUNDS > 0 && RUNS > 0 && CONNS > 0 && STREAMS > 0)) ||
    { echo "compare.sh: DURATION, ROUNDS, RUNS, CONNS and STREAMS must be > 0" >&2; exit 2; }

UPSTREAM_PORT=$BASE_PORT
STATUS_PORT=$((BASE_PORT + 9))
NGINX_PLAIN_PORT=$((BASE_PORT + 1))
NGINX_TLS_PORT=$((BASE_PORT + 2))
GW_PLAIN_PORT=$((BASE_PORT + 11))
GW_TLS_PORT=$((BASE_PORT + 12))
GWLOG_PLAIN_PORT=$((BASE_PORT + 21))
GWLOG_TLS_PORT=$((BASE_PORT + 22))
ALL_PORTS=("$UPSTREAM_PORT" "$STATUS_PORT" "$NGINX_PLAIN_PORT" "$NGINX_TLS_PORT" "$GW_PLAIN_PORT" "$GW_TLS_PORT"
    "$GWLOG_PLAIN_PORT" "$GWLOG_TLS_PORT")
REQ_PATH=/api/v1/item
# ~100 bytes of JSON (no single quotes: it sits in an nginx '...' string).
BODY='{"uid":"4c352927cd4f4a4aa03d7d1893d950b8","email":"bench@example.com","locale":"en-US","verified":true}'
# Upstream pools above the requests in flight: CONNS for HTTP/1.1, CONNS x STREAMS for HTTP/2.
KEEPALIVE=$((CONNS * STREAMS * 2))
((KEEPALIVE >= 256)) || KEEPALIVE=256

# Helpers shared with the other benchmark script (logging, ports, templates, CPU accounting).
# shellcheck source=compare/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/compare/common.sh"

SUDO=
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null && SUDO=sudo
fi

# ---------------------------------------------------------------------------------------------
# Tools (awk below is whatever /usr/bin/awk is: mawk on Debian, so no gawk-only features and
# no %d or bare print for numbers that may pass 2^31)
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    log "installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    # RUNLEVEL=1: do not start the system nginx service; we run our own instances.
    RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found after install"

ncpu=$(nproc --all)
((SERVER_CPU < ncpu && CLIENT_CPU < ncpu && SERVER_CPU != CLIENT_CPU)) ||
    die "need two distinct cores (SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU, $ncpu cores)"

# ---------------------------------------------------------------------------------------------
# Temp dir, processes, cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fxa-gw-compare.XXXXXX")
# h2load's per-request log (for p50/p99) costs the load generator ~7% of its throughput when
# written to disk and nothing measurable on tmpfs: /dev/shm when there is one.
if [[ -d /dev/shm && -w /dev/shm ]]; then
    SHM=$(mktemp -d /dev/shm/fxa-gw-compare.XXXXXX)
else
    SHM=$TMP
fi
PIDS=()
CLIENT_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $CLIENT_PID ]]; then kill "$CLIENT_PID" 2>/dev/null || true; fi
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [[ $KEEP_TMP == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    [[ $SHM == "$TMP" ]] || rm -rf "$SHM"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ports_free "${ALL_PORTS[@]}"



# ---------------------------------------------------------------------------------------------
# Build the gateway; certificates
prepare_gateway

# ---------------------------------------------------------------------------------------------
# Configs
USER_LINE=
[[ $EUID -eq 0 ]] && USER_LINE="user root;"
if [[ $NGINX_HEADERS == 1 ]]; then
    # shellcheck disable=SC2016 # nginx variables, not shell ones
    PROXY_HEADERS='            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-Id $request_id;
            add_header X-Request-Id $request_id always;'
else
    PROXY_HEADERS='            # NGINX_HEADERS=0: bare proxy_pass'
fi
mkdir -p "$TMP/upstream-tmp" "$TMP/proxy-tmp"
# File descriptors: client connections plus upstream connections (h2: CONNS x STREAMS), twice.
WORKER_CONNS=$((CONNS * (STREAMS + 1) * 2))
((WORKER_CONNS >= 4096)) || WORKER_CONNS=4096
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=65536
((NOFILE >= WORKER_CONNS + 100)) || log "WARNING: only $NOFILE file descriptors (ulimit -n) for $WORKER_CONNS connections"
fill "$HERE/upstream.conf.in" "$TMP/upstream.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" \
    "NOFILE=$NOFILE" "WORKER_CONNS=$WORKER_CONNS" "UPSTREAM_PORT=$UPSTREAM_PORT" "STATUS_PORT=$STATUS_PORT" "BODY=$BODY"
fill "$HERE/nginx-proxy.conf.in" "$TMP/nginx-proxy.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" \
    "NOFILE=$NOFILE" "WORKER_CONNS=$WORKER_CONNS" \
    "UPSTREAM_PORT=$UPSTREAM_PORT" "NGINX_PLAIN_PORT=$NGINX_PLAIN_PORT" \
    "NGINX_TLS_PORT=$NGINX_TLS_PORT" "KEEPALIVE=$KEEPALIVE" "PROXY_HEADERS=$PROXY_HEADERS"
fill "$HERE/gateway.toml.in" "$TMP/gateway.toml" "ACCESS_LOG=false" "PLAIN_PORT=$GW_PLAIN_PORT" \
    "TLS_PORT=$GW_TLS_PORT" "UPSTREAM_PORT=$UPSTREAM_PORT" "KEEPALIVE=$KEEPALIVE"
fill "$HERE/gateway.toml.in" "$TMP/gateway-log.toml" "ACCESS_LOG=true" "PLAIN_PORT=$GWLOG_PLAIN_PORT" \
    "TLS_PORT=$GWLOG_TLS_PORT" "UPSTREAM_PORT=$UPSTREAM_PORT" "KEEPALIVE=$KEEPALIVE"

"$NGINX" -t -q -p "$TMP" -e "$TMP/nginx-t.log" -c "$TMP/upstream.conf" 2>"$TMP/nginx-t.err" ||
    die "upstream nginx config: $(cat "$TMP/nginx-t.err")"
"$NGINX" -t -q -p "$TMP" -e "$TMP/nginx-t.log" -c "$TMP/nginx-proxy.conf" 2>"$TMP/nginx-t.err" ||
    die "proxy nginx config: $(cat "$TMP/nginx-t.err")"
"$GW" --check --config "$TMP/gateway.toml" >"$TMP/gw-check.log" 2>&1 ||
    die "gateway config: $(cat "$TMP/gw-check.log")"

# ---------------------------------------------------------------------------------------------
# Servers, all on the server core

nice -n "$NICE" taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP" -e "$TMP/upstream-error.log" -c "$TMP/upstream.conf" \
    >"$TMP/upstream.out" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
nice -n "$NICE" taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP" -e "$TMP/proxy-error.log" -c "$TMP/nginx-proxy.conf" \
    >"$TMP/proxy.out" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
nice -n "$NICE" taskset -c "$SERVER_CPU" "$GW" --config "$TMP/gateway.toml" >"$TMP/gateway.out" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
# Access log: JSON lines on stderr into a file, opened for append so that it can be truncated
# between runs (10 s at ~80k rps is ~250 MB of log).
ACCESS_LOG_FILE=$TMP/gateway-access.log
nice -n "$NICE" taskset -c "$SERVER_CPU" "$GW" --config "$TMP/gateway-log.toml" >>"$ACCESS_LOG_FILE" 2>&1 &
GWLOG_PID=$!
PIDS+=("$GWLOG_PID")

wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" "upstream nginx"
wait_port "$STATUS_PORT" "$UPSTREAM_PID" "upstream nginx"
wait_port "$NGINX_PLAIN_PORT" "$NGINX_PID" "proxy nginx"
wait_port "$NGINX_TLS_PORT" "$NGINX_PID" "proxy nginx"
wait_port "$GW_PLAIN_PORT" "$GW_PID" "fxa-gateway"
wait_port "$GW_TLS_PORT" "$GW_PID" "fxa-gateway"
wait_port "$GWLOG_PLAIN_PORT" "$GWLOG_PID" "fxa-gateway (access log)"

worker_of() { # nginx master pid -> its (single) worker pid
    local w
    for _ in $(seq 50); do
        # The first process whose parent is $1 (nginx process names have no spaces).
        w=$(awk -v p="$1" '$4 == p {print $1; exit}' /proc/[0-9]*/stat 2>/dev/null || true)
        [[ -n $w ]] && { echo "$w"; return 0; }
        sleep 0.1
    done
    die "no worker process under nginx $1"
}
UPSTREAM_WORKER=$(worker_of "$UPSTREAM_PID")
NGINX_WORKER=$(worker_of "$NGINX_PID")

# Sanity: every URL answers 200 with the body; HTTP/2 is negotiated on both TLS listeners.
URL_DIRECT=http://127.0.0.1:$UPSTREAM_PORT$REQ_PATH
URL_NGINX_PLAIN=http://127.0.0.1:$NGINX_PLAIN_PORT$REQ_PATH
# TLS by name, so that the clients send SNI as real ones do (wrk would send "127.0.0.1", which
# is not a valid SNI host name, and rustls warns about it on every handshake).
TLS_HOST=localhost
getent ahosts "$TLS_HOST" 2>/dev/null | grep -q '^127\.0\.0\.1 ' || die "$TLS_HOST does not resolve to 127.0.0.1"
URL_NGINX_TLS=https://$TLS_HOST:$NGINX_TLS_PORT$REQ_PATH
URL_GW_PLAIN=http://127.0.0.1:$GW_PLAIN_PORT$REQ_PATH
URL_GW_TLS=https://$TLS_HOST:$GW_TLS_PORT$REQ_PATH
URL_GWLOG_PLAIN=http://127.0.0.1:$GWLOG_PLAIN_PORT$REQ_PATH
for u in "$URL_DIRECT" "$URL_NGINX_PLAIN" "$URL_NGINX_TLS" "$URL_GW_PLAIN" "$URL_GW_TLS" "$URL_GWLOG_PLAIN"; do
    out=$(curl -sS --max-time 5 --cacert "$TMP/certs/ca.pem" -o "$TMP/sanity.body" -w '%{http_code} %{http_version}' "$u") ||
        die "$u: curl failed"
    [[ ${out%% *} == 200 ]] || die "$u answered ${out%% *}: $(head -c 300 "$TMP/sanity.body")"
    [[ $(<"$TMP/sanity.body") == "$BODY" ]] || die "$u: unexpected body: $(head -c 300 "$TMP/sanity.body")"
    if [[ $u == https://* ]]; then
        out=$(curl -sS --max-time 5 --http2 --cacert "$TMP/certs/ca.pem" -o /dev/null -w '%{http_version}' "$u")
        [[ $out == 2 ]] || die "$u: HTTP/2 not negotiated (got HTTP/$out)"
    fi
done
tls_params() { # port -> "TLSv1.3 TLS_AES_256_GCM_SHA384" as OpenSSL clients (wrk, h2load) get it
    command -v openssl >/dev/null || { echo "?"; return; }
    openssl s_client -connect "127.0.0.1:$1" -servername "$TLS_HOST" -alpn http/1.1 </dev/null 2>/dev/null |
        awk '/^New,/ {v=$2; sub(/,$/, "", v); c=$NF} /Server Temp Key/ {sub(/.*Temp Key: /, ""); k=$0}
             END {print v, c, "(" k ")"}'
}

# ---------------------------------------------------------------------------------------------
# Measurement
cpu_ticks() { # core -> "busy total irq+softirq" jiffies since boot
    # user nice system idle iowait irq softirq steal (guest time is already in user/nice):
    # busy = user + nice + system + irq + softirq; total includes idle, iowait and steal.
    awk -v c="cpu$1" '$1 == c {printf "%.0f %.0f %.0f\n", $2 + $3 + $4 + $7 + $8,
        $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $7 + $8}' /proc/stat
}
HZ=$(getconf CLK_TCK)
children_ticks() { # -> CHILD_TICKS: CPU time of this shell's reaped children (the load generator)
    # Call it directly, not in $(...): a subshell would report its own (empty) children.
    times >"$TMP/times"
    CHILD_TICKS=$(awk -v hz="$HZ" 'NR == 2 {t = 0; for (i = 1; i <= 2; i++) {split($i, a, "m"); t += a[1] * 60 + a[2]}
        printf "%.0f\n", t * hz}' "$TMP/times")
}

# Case table: id|label|tool|url|proxy pid (whose CPU is "proxy µs/req")
declare -A C_LABEL C_TOOL C_URL C_PID
defcase() { C_LABEL[$1]=$2; C_TOOL[$1]=$3; C_URL[$1]=$4; C_PID[$1]=$5; }
defcase a "(a) upstream direct, plain" wrk "$URL_DIRECT" "$UPSTREAM_WORKER"
defcase b "(b) nginx, plain h1" wrk "$URL_NGINX_PLAIN" "$NGINX_WORKER"
defcase c "(c) fxa-gateway, plain h1" wrk "$URL_GW_PLAIN" "$GW_PID"
defcase d "(d) nginx, TLS h1" wrk "$URL_NGINX_TLS" "$NGINX_WORKER"
defcase e "(e) fxa-gateway, TLS h1" wrk "$URL_GW_TLS" "$GW_PID"
defcase f "(f) nginx, TLS h2" h2load "$URL_NGINX_TLS" "$NGINX_WORKER"
defcase g "(g) fxa-gateway, TLS h2" h2load "$URL_GW_TLS" "$GW_PID"
defcase h "(h) fxa-gateway, plain h1, access log on" wrk "$URL_GWLOG_PLAIN" "$GWLOG_PID"
CASES="a b c d e f g h"


load_cmd() { # case seconds logfile -> the command line in LOAD[]
    local url=${C_URL[$1]}
    if [[ ${C_TOOL[$1]} == wrk ]]; then
        LOAD=(wrk -t1 -c"$CONNS" -d"$2"s --timeout 5s --latency -s "$HERE/report.lua" "$url")
    else
        LOAD=(h2load -t1 -c"$CONNS" -m"$STREAMS" -D"$2" ${3:+--log-file="$3"}
            ${H2LOAD_TLS13_CIPHERS:+--tls13-ciphers="$H2LOAD_TLS13_CIPHERS"} "$url")
    fi
}

# wrk's text output as a fallback for the report.lua line: a latency like 812.00us, 1.20ms, 2.00s.
to_us() {
    awk -v x="$1" 'BEGIN {
        n = x + 0; u = x; sub(/^[0-9.]+/, "", u)
        if (u == "us") m = 1; else if (u == "ms") m = 1000; else if (u == "s") m = 1000000;
        else if (u == "m") m = 60000000; else { print "nan"; exit }
        printf "%d\n", n * m }'
}

# Parse one run's output into globals: REQS RPS P50 P99 ERRS NON2XX (latencies in µs).
parse_wrk() {
    local f=$1 line
    line=$(grep '^BENCH ' "$f" || true)
    if [[ -n $line ]]; then
        local kv
        declare -A m=()
        for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
        REQS=${m[requests]}
        RPS=$(awk -v r="$REQS" -v d="${m[duration_us]}" 'BEGIN {printf "%.1f", (d > 0 ? r * 1e6 / d : 0)}')
        P50=${m[p50_us]}
        P99=${m[p99_us]}
        ERRS=$((m[connect] + m[read] + m[write] + m[timeout]))
        NON2XX=${m[status]}
    else
        REQS=$(awk '/requests in/ {print $1; exit}' "$f")
        RPS=$(awk '/^Requests\/sec:/ {print $2}' "$f")
        P50=$(to_us "$(awk '$1 == "50%" {print $2}' "$f")")
        P99=$(to_us "$(awk '$1 == "99%" {print $2}' "$f")")
        ERRS=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$f")
        NON2XX=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
    fi
    REQS=${REQS:-0} RPS=${RPS:-0} ERRS=${ERRS:-0} NON2XX=${NON2XX:-0} P50=${P50:-nan} P99=${P99:-nan}
}
parse_h2load() {
    local f=$1 lf=$2
    grep -q '^Application protocol: h2' "$f" || { REQS=0 RPS=0 ERRS=1 NON2XX=0 P50=nan P99=nan; return; }
    RPS=$(awk '/^finished in/ {print $4}' "$f")
    # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
    REQS=$(awk '/^requests:/ {print $6}' "$f")
    # status codes: N 2xx, N 3xx, N 4xx, N 5xx; anything done that is not 2xx counts.
    NON2XX=$(awk -v done="$REQS" '/^status codes:/ {print done - $3}' "$f")
    # "failed" includes the 4xx/5xx answers; errors are the rest of it, errored and timeouts.
    ERRS=$(awk -v bad="${NON2XX:-0}" '/^requests:/ {f = $10 - bad; print (f > 0 ? f : 0) + $12 + $14}' "$f")
    # h2load prints no percentiles: take them from the per-request log (3rd column: µs).
    read -r P50 P99 < <(cut -f3 "$lf" | sort -n | awk '{v[NR] = $1}
        END {if (NR == 0) {print "nan nan"; exit}
             i = int(NR * 0.50 + 0.999999); j = int(NR * 0.99 + 0.999999); print v[i], v[j]}')
    REQS=${REQS:-0} RPS=${RPS:-0} ERRS=${ERRS:-0} NON2XX=${NON2XX:-0}
}

RESULTS=$TMP/runs.tsv
printf 'round\tcase\tattempt\tkept\treason\trps\tp50_us\tp99_us\trequests\tbusy_pct\tcore_us_req\tproxy_us_req\tupstream_us_req\tclient_busy_pct\tforeign_pct\tclient_foreign_pct\tupstream_new_conns\n' >"$RESULTS"


run_case() { # round case
    local r=$1 k=$2 kept=0 attempt=0 max=$((RUNS + RETRIES)) raw
    raw=$TMP/raw
    mkdir -p "$raw"
    wait_quiet
    # Warm-up: same load, not measured.
    load_cmd "$k" "$WARMUP" ""
    client "$raw/warmup.out" "${LOAD[@]}" || log "warm-up of ${C_LABEL[$k]} exited $?"
    [[ $k != h ]] || : >"$ACCESS_LOG_FILE"
    while ((kept < RUNS && attempt < max)); do
        attempt=$((attempt + 1))
        ((attempt == 1)) || wait_quiet
        local base=$raw/r$r-$k-$attempt h2log=$SHM/r$r-$k-$attempt.h2log
        rm -f "$h2log" # h2load appends
        load_cmd "$k" "$DURATION" "$h2log"
        local s0 c0 p0 u0 g0 s1 c1 p1 u1 g1 rc=0
        local a0 a1 newconns
        a0=$(upstream_accepts)
        s0=$(cpu_ticks "$SERVER_CPU"); c0=$(cpu_ticks "$CLIENT_CPU")
        p0=$(proc_ticks "${C_PID[$k]}"); u0=$(proc_ticks "$UPSTREAM_WORKER"); children_ticks; g0=$CHILD_TICKS
        client "$base.out" "${LOAD[@]}" || rc=$?
        s1=$(cpu_ticks "$SERVER_CPU"); c1=$(cpu_ticks "$CLIENT_CPU")
        p1=$(proc_ticks "${C_PID[$k]}"); u1=$(proc_ticks "$UPSTREAM_WORKER"); children_ticks; g1=$CHILD_TICKS
        a1=$(upstream_accepts)
        # New upstream connections during the run: ~0 when the proxy's keep-alive pool holds
        # (it was filled by the warm-up); about one per request when it does not.
        newconns=-1
        ((a0 < 0 || a1 < 0)) || newconns=$((a1 - a0 - 1))
        if [[ ${C_TOOL[$k]} == wrk ]]; then parse_wrk "$base.out"; else parse_h2load "$base.out" "$h2log"; fi
        rm -f "$h2log"
        if [[ $k == h ]]; then
            # The access log must really have been written: about one line per request.
            local lines
            lines=$(wc -l <"$ACCESS_LOG_FILE")
            if ((REQS > 0 && lines < REQS)); then
                log "  WARNING: access log has $lines lines for $REQS requests"
            fi
            : >"$ACCESS_LOG_FILE"
        fi
        # foreign: server-core busy time that is neither our processes (proxy, upstream) nor
        # interrupt work: someone else's process on the core (e.g. a compiler).
        # The same for the client core, less the load generator's own CPU time.
        local busy cbusy core_us proxy_us up_us foreign cforeign reason='' ours=$(((p1 - p0) + (u1 - u0)))
        [[ ${C_PID[$k]} != "$UPSTREAM_WORKER" ]] || ours=$((u1 - u0))
        read -r busy cbusy core_us proxy_us up_us foreign cforeign < <(awk -v s0="$s0" -v s1="$s1" \
            -v c0="$c0" -v c1="$c1" -v p="$((p1 - p0))" -v u="$((u1 - u0))" -v o="$ours" -v g="$((g1 - g0))" \
            -v n="$REQS" -v hz="$HZ" 'BEGIN {
            split(s0, a, " "); split(s1, b, " "); split(c0, x, " "); split(c1, y, " ")
            bt = b[2] - a[2]; bb = b[1] - a[1]; bi = b[3] - a[3]; ct = y[2] - x[2]; cb = y[1] - x[1]
            us = 1e6 / hz; f = bb - bi - o; if (f < 0) f = 0; cf = cb - (y[3] - x[3]) - g; if (cf < 0) cf = 0
            printf "%.1f %.1f %.2f %.2f %.2f %.1f %.1f\n", (bt > 0 ? 100 * bb / bt : 0), (ct > 0 ? 100 * cb / ct : 0),
                (n > 0 ? bb * us / n : 0), (n > 0 ? p * us / n : 0), (n > 0 ? u * us / n : 0),
                (bt > 0 ? 100 * f / bt : 0), (ct > 0 ? 100 * cf / ct : 0)}')
        if ((rc != 0)); then
            reason="load generator exited $rc"
        elif ((REQS == 0)); then
            reason="no requests"
        elif ((ERRS > 0)); then
            reason="$ERRS socket/request errors"
        elif ((NON2XX > 0)); then
            reason="$NON2XX non-2xx answers"
        elif [[ $k != a ]] && awk -v b="$busy" -v m="$MIN_BUSY" 'BEGIN {exit !(b < m)}'; then
            # (Not for (a): with no proxy in the way the load generator is the bottleneck.)
            reason="server core ${busy}% busy < ${MIN_BUSY}% (client core ${cbusy}%, ${cforeign}% of it others)"
        elif awk -v f="$foreign" -v m="$MAX_FOREIGN" 'BEGIN {exit !(f > m)}'; then
            reason="other processes took ${foreign}% of the server core (> ${MAX_FOREIGN}%)"
        elif awk -v f="$cforeign" -v m="$MAX_FOREIGN" 'BEGIN {exit !(f > m)}'; then
            # Slows the server too: fewer events per wake-up, and a shared cache (or physical core).
            reason="other processes took ${cforeign}% of the client core (> ${MAX_FOREIGN}%)"
        fi
        local keep=1
        if [[ -n $reason ]]; then
            keep=0
        else
            kept=$((kept + 1))
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$k" "$attempt" "$keep" \
            "${reason:--}" "$RPS" "$P50" "$P99" "$REQS" "$busy" "$core_us" "$proxy_us" "$up_us" "$cbusy" \
            "$foreign" "$cforeign" "$newconns" >>"$RESULTS"
        log "  ${C_LABEL[$k]}: $(printf '%.0f' "$RPS") rps, p50 ${P50}us, p99 ${P99}us," \
            "server core ${busy}% (${foreign}% others), client core ${cbusy}% (${cforeign}% others)," \
            "${core_us} us/req, $newconns new upstream conns$([[ $keep == 1 ]] || echo " [DISCARDED: $reason]")"
    done
    ((kept == RUNS)) || log "  ${C_LABEL[$k]} round $r: only $kept of $RUNS runs kept"
}

total=$((ROUNDS * 8 * (WARMUP + RUNS * (DURATION + 1) + 1))) # ~1 s of checks per run and case
log "$ROUNDS round(s) x 8 cases x ($WARMUP s warm-up + $RUNS x $DURATION s):" \
    "about $((total / 60)) min $((total % 60)) s, more if runs are discarded and repeated"
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2 == 1)); then order="a b c d e f g h"; first=nginx; else order="a c b e d g f h"; first=fxa-gateway; fi
    log "round $r/$ROUNDS ($first first)"
    for k in $order; do
        run_case "$r" "$k"
    done
done

# ---------------------------------------------------------------------------------------------
# Report
h2_tls() { # case -> what h2load printed about TLS in its last run of that case
    local f
    f=$(find "$TMP/raw" -name "r*-$1-*.out" 2>/dev/null | sort | tail -1)
    [[ -n $f ]] || { echo "?"; return; }
    awk -F': ' '/^TLS Protocol:/ {v = $2} /^Cipher:/ {c = $2} /^Server Temp Key:/ {k = $2}
        END {print v, c, "(" k ")"}' "$f"
}
kill -0 "$GW_PID" 2>/dev/null || die "fxa-gateway died during the benchmark (log: $TMP/gateway.out)"
kill -0 "$NGINX_PID" 2>/dev/null || die "proxy nginx died during the benchmark (log: $TMP/proxy-error.log)"
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
GW_HWM=$(hwm_kb "$GW_PID")
GWLOG_HWM=$(hwm_kb "$GWLOG_PID")
NGINX_HWM=$(hwm_kb "$NGINX_WORKER")

mkdir -p "$OUT_DIR"
stamp=$(date +%Y%m%d-%H%M%S)
REPORT=$OUT_DIR/report-$stamp.txt
cp "$RESULTS" "$OUT_DIR/runs-$stamp.tsv"

{
    echo "fxa-gateway vs nginx — $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $ncpu cores"
    echo "$GW_VERSION; $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); $(wrk --version 2>&1 | head -1 | awk '{print "wrk " $2}'); $(h2load --version 2>&1 | head -1 | sed 's/^h2load //')"
    echo "$CONNS connections (h2: x $STREAMS streams), ${DURATION} s per run after ${WARMUP} s warm-up, $RUNS run(s) x $ROUNDS round(s);"
    echo "server core $SERVER_CPU (proxy + upstream), load generator on core $CLIENT_CPU; discarded: runs with errors or non-2xx,"
    echo "the server core under ${MIN_BUSY}% busy (not for (a), which is load-generator-bound), or other processes"
    echo "over ${MAX_FOREIGN}% of either core."
    echo "TLS, h1 (openssl s_client, as wrk gets it) — nginx: $(tls_params "$NGINX_TLS_PORT"); fxa-gateway: $(tls_params "$GW_TLS_PORT")"
    echo "TLS, h2 (h2load) — nginx: $(h2_tls f); fxa-gateway: $(h2_tls g)"
    echo
    awk -F'\t' -v labels="$(for k in $CASES; do printf '%s=%s;' "$k" "${C_LABEL[$k]}"; done)" \
        -f "$HERE/report.awk" "$RESULTS"
    echo
    awk -v g="$GW_HWM" -v l="$GWLOG_HWM" -v n="$NGINX_HWM" 'BEGIN {
        printf "peak RSS (VmHWM): fxa-gateway %.1f MB (target < 50 MB: %s), with access log %.1f MB; nginx worker %.1f MB\n",
            g / 1024, (g / 1024 < 50 ? "met" : "MISSED"), l / 1024, n / 1024 }'
    discarded=$(awk -F'\t' 'NR > 1 && $4 != 1' "$RESULTS" | wc -l)
    echo "discarded runs: $discarded (reasons in $OUT_DIR/runs-$stamp.tsv)"
    echo "Changes under ~5% in throughput or ~10% in p99 are noise here; compare ratios within one run only."
} | tee "$REPORT"
log "report: $REPORT"
