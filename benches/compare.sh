#!/usr/bin/env bash
# fxa-gateway vs nginx, HAProxy and Caddy, side by side, on one machine (see benches/README.md).
#
#   benches/compare.sh                 # full run, all phases (~75 min on a quiet machine)
#   QUICK=1 benches/compare.sh         # smoke test: 1 round, short runs, every phase (~6 min)
#   PHASES=memory benches/compare.sh   # one phase (or several: PHASES="latency handshake")
#
# Prints the report and keeps it, with every run (kept or discarded) as TSV, in OUT_DIR.
#
# Phase "throughput" (50 keep-alive connections, small JSON GET, at saturation):
#   (a) straight to the upstream (nginx server block, ~100-byte JSON body)
#   (b) nginx reverse proxy, plain HTTP/1.1        (c) fxa-gateway, plain HTTP/1.1
#   (d) nginx, TLS, HTTP/1.1 (wrk)                 (e) fxa-gateway, TLS, HTTP/1.1 (wrk)
#   (f) nginx, TLS, HTTP/2 (h2load -m 10)          (g) fxa-gateway, TLS, HTTP/2 (h2load -m 10)
#   (h) fxa-gateway, plain HTTP/1.1, access log on (JSON lines to a file)
#   (i) (j) (k) HAProxy: plain h1, TLS h1, TLS h2  (l) (m) (n) Caddy: plain h1, TLS h1, TLS h2
# Phase "latency": p50/p99/p99.9 at a fixed rate, 50 % and 80 % of nginx's saturation rate in
#   (b) of this run (or LAT_RATE), with oha --latency-correction (corrects coordinated
#   omission): upstream direct, nginx, fxa-gateway, HAProxy, Caddy (plain HTTP/1.1).
# Phase "handshake": new TLS connections per second, full handshakes and resumptions
#   (openssl s_time -new / -reuse, HS_PROCS in parallel, one request per connection).
# Phase "bulk": 1 MiB downloads and uploads (wrk), plain HTTP/1.1, every proxy and direct.
# Phase "memory": RSS of each proxy before and after IDLE_CONNS idle keep-alive connections
#   (each has served one request), plain and TLS.
#
# The proxy under test (nginx: 1 worker; gateway: worker_threads = 1; HAProxy: nbthread 1;
# Caddy: GOMAXPROCS=1) and the upstream share core SERVER_CPU; the load generator runs on
# CLIENT_CPU.
#
# Environment knobs (defaults in brackets):
#   PHASES [throughput latency handshake bulk memory]
#   PEERS [haproxy caddy] peers besides nginx (installed with apt-get if missing, else skipped)
#   DURATION [10] s per measured run   WARMUP [2] s warm-up per case and round
#   ROUNDS [5]   RUNS [3] per case and round   CONNS [50]   STREAMS [10] (h2load -m)
#   QUICK=1      DURATION=3 ROUNDS=1 RUNS=1 WARMUP=1 QUIET_WAIT=10 and the phases' QUICK
#                settings below, unless set explicitly
#   LAT_DURATION [20; QUICK 3] s per fixed-rate run  LAT_ROUNDS [3; QUICK 1]  LAT_LOADS [50 80] %
#   LAT_RATE     saturation rate (req/s) to take instead of (b)'s median (needed when the
#                throughput phase does not run)
#   OHA [oha in PATH or ~/.cargo/bin]  OHA_VERSION [1.16.0] what cargo install gets if missing
#   HS_DURATION [10; QUICK 3] s per handshake run  HS_ROUNDS [3; QUICK 1]  HS_PROCS [16]
#   BULK_RUNS [2; QUICK 1] runs per case and round  BULK_ROUNDS [3; QUICK 1]  BULK_SIZE [1048576]
#   IDLE_CONNS [3000] idle connections per server in the memory phase
#   MIN_BUSY [95] % of the server core that a run must keep busy, else it is discarded
#   MAX_FOREIGN [5] % of either core that other processes may take during a run, else discarded
#   QUIET_MAX [10] QUIET_WAIT [120; QUICK: 10] before each case, wait up to QUIET_WAIT s for both
#                 cores to be at most QUIET_MAX % busy (other processes), then go on anyway
#   RETRIES [RUNS] extra attempts per case and round to replace discarded runs
#   SERVER_CPU [0]  CLIENT_CPU [1]   BASE_PORT [18400] (uses BASE_PORT .. BASE_PORT+42)
#   NGINX_HEADERS [1] nginx sets X-Forwarded-For/-Proto/-Host and X-Request-Id like the
#                 gateway does; 0 = bare proxy_pass
#   H2LOAD_TLS13_CIPHERS [TLS_AES_256_GCM_SHA384] the one suite h2load offers (same for all)
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
    LAT_DURATION=${LAT_DURATION:-3}
    LAT_ROUNDS=${LAT_ROUNDS:-1}
    HS_DURATION=${HS_DURATION:-3}
    HS_ROUNDS=${HS_ROUNDS:-1}
    BULK_RUNS=${BULK_RUNS:-1}
    BULK_ROUNDS=${BULK_ROUNDS:-1}
fi
PHASES=${PHASES:-throughput latency handshake bulk memory}
PEERS=${PEERS-haproxy caddy}
LAT_DURATION=${LAT_DURATION:-20}
LAT_ROUNDS=${LAT_ROUNDS:-3}
LAT_LOADS=${LAT_LOADS:-50 80}
LAT_RATE=${LAT_RATE:-}
OHA_VERSION=${OHA_VERSION:-1.16.0}
HS_DURATION=${HS_DURATION:-10}
HS_ROUNDS=${HS_ROUNDS:-3}
HS_PROCS=${HS_PROCS:-16}
BULK_RUNS=${BULK_RUNS:-2}
BULK_ROUNDS=${BULK_ROUNDS:-3}
BULK_SIZE=${BULK_SIZE:-1048576}
IDLE_CONNS=${IDLE_CONNS:-3000}
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
for v in DURATION WARMUP ROUNDS RUNS CONNS STREAMS MIN_BUSY MAX_FOREIGN QUIET_MAX QUIET_WAIT RETRIES SERVER_CPU CLIENT_CPU BASE_PORT \
    LAT_DURATION LAT_ROUNDS HS_DURATION HS_ROUNDS HS_PROCS BULK_RUNS BULK_ROUNDS BULK_SIZE IDLE_CONNS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "compare.sh: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
((DURATION > 0 && ROUNDS > 0 && RUNS > 0 && CONNS > 0 && STREAMS > 0)) ||
    { echo "compare.sh: DURATION, ROUNDS, RUNS, CONNS and STREAMS must be > 0" >&2; exit 2; }
for v in $LAT_LOADS; do
    [[ $v =~ ^[0-9]+$ ]] && ((v > 0)) || { echo "compare.sh: LAT_LOADS must be whole percentages (got '$LAT_LOADS')" >&2; exit 2; }
done
[[ -z $LAT_RATE || $LAT_RATE =~ ^[0-9]+$ ]] || { echo "compare.sh: LAT_RATE must be a whole number (got '$LAT_RATE')" >&2; exit 2; }
for v in $PHASES; do
    case $v in throughput | latency | handshake | bulk | memory) ;;
    *) echo "compare.sh: unknown phase '$v' in PHASES (throughput latency handshake bulk memory)" >&2; exit 2 ;;
    esac
done
for v in $PEERS; do
    case $v in haproxy | caddy) ;;
    *) echo "compare.sh: unknown peer '$v' in PEERS (haproxy caddy)" >&2; exit 2 ;;
    esac
done
phase() { [[ " $PHASES " == *" $1 "* ]]; }

UPSTREAM_PORT=$BASE_PORT
STATUS_PORT=$((BASE_PORT + 9))
NGINX_PLAIN_PORT=$((BASE_PORT + 1))
NGINX_TLS_PORT=$((BASE_PORT + 2))
GW_PLAIN_PORT=$((BASE_PORT + 11))
GW_TLS_PORT=$((BASE_PORT + 12))
GWLOG_PLAIN_PORT=$((BASE_PORT + 21))
GWLOG_TLS_PORT=$((BASE_PORT + 22))
HAPROXY_PLAIN_PORT=$((BASE_PORT + 31))
HAPROXY_TLS_PORT=$((BASE_PORT + 32))
CADDY_PLAIN_PORT=$((BASE_PORT + 41))
CADDY_TLS_PORT=$((BASE_PORT + 42))
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
if phase handshake || phase throughput; then command -v openssl >/dev/null || need+=(openssl); fi
if phase latency || phase memory; then command -v python3 >/dev/null || need+=(python3); fi
APT_UPDATED=0
apt_install() { # packages...; RUNLEVEL=1: do not start the system services, we run our own instances
    export DEBIAN_FRONTEND=noninteractive
    if ((APT_UPDATED == 0)); then
        $SUDO apt-get update -qq >/dev/null || return 1
        APT_UPDATED=1
    fi
    RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if ((${#need[@]})); then
    log "installing ${need[*]} (apt-get)"
    apt_install "${need[@]}" || die "apt-get install ${need[*]} failed"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found after install"

# Peers (Debian packages haproxy, caddy): installed if missing, else skipped with a message.
bin_of() { command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true; }
HAVE_HAPROXY=0 HAVE_CADDY=0 HAPROXY= CADDY=
for p in $PEERS; do
    b=$(bin_of "$p")
    if [[ -z $b ]]; then
        log "installing $p (apt-get install $p)"
        if apt_install "$p"; then b=$(bin_of "$p"); fi
        if [[ -z $b ]]; then
            log "WARNING: SKIPPING $p: not installed and 'apt-get install $p' failed; its cases are left out"
            continue
        fi
    fi
    case $p in
    haproxy) HAPROXY=$b HAVE_HAPROXY=1 ;;
    caddy) CADDY=$b HAVE_CADDY=1 ;;
    esac
done
((HAVE_HAPROXY == 0)) || ALL_PORTS+=("$HAPROXY_PLAIN_PORT" "$HAPROXY_TLS_PORT")
((HAVE_CADDY == 0)) || ALL_PORTS+=("$CADDY_PLAIN_PORT" "$CADDY_TLS_PORT")

# oha (crates.io) for the fixed-rate latency phase: it corrects for coordinated omission
# (--latency-correction); wrk2 is not packaged in Debian. Installed with cargo if missing.
OHA=${OHA:-}
if phase latency; then
    [[ -n $OHA ]] || OHA=$(command -v oha || true)
    [[ -n $OHA || ! -x $HOME/.cargo/bin/oha ]] || OHA=$HOME/.cargo/bin/oha
    if [[ -z $OHA ]]; then
        command -v cargo >/dev/null || die "the latency phase needs oha: install Rust (cargo) or leave 'latency' out of PHASES"
        log "installing oha $OHA_VERSION (cargo install oha --version $OHA_VERSION --locked: once, 10-20 min of compiling)"
        cargo install oha --version "$OHA_VERSION" --locked --quiet || die "cargo install oha failed"
        OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
    fi
    [[ -x $OHA ]] || die "oha not found (OHA=$OHA)"
    OHA_VERSION_SEEN=$("$OHA" --version 2>/dev/null | awk '{print $NF}')
    [[ $OHA_VERSION_SEEN == "$OHA_VERSION" ]] ||
        log "WARNING: $OHA is oha $OHA_VERSION_SEEN, the script was written for $OHA_VERSION (flags or JSON may differ)"
fi

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
HS_PIDS=()
IDLE_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $CLIENT_PID ]]; then kill "$CLIENT_PID" 2>/dev/null || true; fi
    if [[ -n ${IDLE_PID:-} ]]; then kill "$IDLE_PID" 2>/dev/null || true; fi
    local p
    for p in "${HS_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
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
# The large-body download (on tmpfs when there is one: no disk reads in the way).
BULK_FILE=$SHM/bulk.bin
head -c "$BULK_SIZE" /dev/urandom >"$BULK_FILE"
fill "$HERE/upstream.conf.in" "$TMP/upstream.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" \
    "NOFILE=$NOFILE" "WORKER_CONNS=$WORKER_CONNS" "UPSTREAM_PORT=$UPSTREAM_PORT" "STATUS_PORT=$STATUS_PORT" "BODY=$BODY" \
    "BULK_FILE=$BULK_FILE"
fill "$HERE/nginx-proxy.conf.in" "$TMP/nginx-proxy.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" \
    "NOFILE=$NOFILE" "WORKER_CONNS=$WORKER_CONNS" \
    "UPSTREAM_PORT=$UPSTREAM_PORT" "NGINX_PLAIN_PORT=$NGINX_PLAIN_PORT" \
    "NGINX_TLS_PORT=$NGINX_TLS_PORT" "KEEPALIVE=$KEEPALIVE" "PROXY_HEADERS=$PROXY_HEADERS"
fill "$HERE/gateway.toml.in" "$TMP/gateway.toml" "ACCESS_LOG=false" "PLAIN_PORT=$GW_PLAIN_PORT" \
    "TLS_PORT=$GW_TLS_PORT" "UPSTREAM_PORT=$UPSTREAM_PORT" "KEEPALIVE=$KEEPALIVE"
fill "$HERE/gateway.toml.in" "$TMP/gateway-log.toml" "ACCESS_LOG=true" "PLAIN_PORT=$GWLOG_PLAIN_PORT" \
    "TLS_PORT=$GWLOG_TLS_PORT" "UPSTREAM_PORT=$UPSTREAM_PORT" "KEEPALIVE=$KEEPALIVE"

if ((HAVE_HAPROXY)); then
    # HAProxy takes certificate and key from one file.
    cat "$TMP/certs/gateway.pem" "$TMP/certs/gateway-key.pem" >"$TMP/certs/haproxy.pem"
    fill "$HERE/haproxy.cfg.in" "$TMP/haproxy.cfg" "TMP=$TMP" "WORKER_CONNS=$WORKER_CONNS" \
        "HAPROXY_PLAIN_PORT=$HAPROXY_PLAIN_PORT" "HAPROXY_TLS_PORT=$HAPROXY_TLS_PORT" \
        "UPSTREAM_PORT=$UPSTREAM_PORT" "KEEPALIVE=$KEEPALIVE"
    "$HAPROXY" -c -q -f "$TMP/haproxy.cfg" >"$TMP/haproxy-check.log" 2>&1 ||
        die "HAProxy config: $(cat "$TMP/haproxy-check.log")"
fi
# Caddy keeps its state (certificates it would manage, autosave) under $HOME / XDG dirs: the
# temp dir, not the user's.
CADDY_ENV=(env GOMAXPROCS=1 HOME="$TMP/caddy-home" XDG_DATA_HOME="$TMP/caddy-home/data"
    XDG_CONFIG_HOME="$TMP/caddy-home/config")
if ((HAVE_CADDY)); then
    mkdir -p "$TMP/caddy-home"
    fill "$HERE/Caddyfile.in" "$TMP/Caddyfile" "TMP=$TMP" "CADDY_PLAIN_PORT=$CADDY_PLAIN_PORT" \
        "CADDY_TLS_PORT=$CADDY_TLS_PORT" "UPSTREAM_PORT=$UPSTREAM_PORT" "KEEPALIVE=$KEEPALIVE"
    "${CADDY_ENV[@]}" "$CADDY" validate --config "$TMP/Caddyfile" --adapter caddyfile >"$TMP/caddy-check.log" 2>&1 ||
        die "Caddy config: $(tail -3 "$TMP/caddy-check.log")"
fi

"$NGINX" -t -q -p "$TMP" -e "$TMP/nginx-t.log" -c "$TMP/upstream.conf" 2>"$TMP/nginx-t.err" ||
    die "upstream nginx config: $(cat "$TMP/nginx-t.err")"
"$NGINX" -t -q -p "$TMP" -e "$TMP/nginx-t.log" -c "$TMP/nginx-proxy.conf" 2>"$TMP/nginx-t.err" ||
    die "proxy nginx config: $(cat "$TMP/nginx-t.err")"
"$GW" --check --config "$TMP/gateway.toml" >"$TMP/gw-check.log" 2>&1 ||
    die "gateway config: $(cat "$TMP/gw-check.log")"

# ---------------------------------------------------------------------------------------------
# Servers, all on the server core

start_bg() { # -> LAST_PID: command... on the server core, output to the file in OUT_FILE
    nice -n "$NICE" taskset -c "$SERVER_CPU" "$@" >>"$OUT_FILE" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
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
stop_pid() { # pid: TERM, then KILL after 5 s
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
# (Re)starts one proxy under test and waits for its ports; sets its PID variables (and those of
# the cases that measure it). The memory phase restarts them to measure from a fresh process.
start_proxy() { # nginx | gateway | haproxy | caddy
    local k
    case $1 in
    nginx)
        [[ -z ${NGINX_PID:-} ]] || stop_pid "$NGINX_PID"
        OUT_FILE=$TMP/proxy.out start_bg "$NGINX" -p "$TMP" -e "$TMP/proxy-error.log" -c "$TMP/nginx-proxy.conf"
        NGINX_PID=$LAST_PID
        wait_port "$NGINX_PLAIN_PORT" "$NGINX_PID" "proxy nginx"
        wait_port "$NGINX_TLS_PORT" "$NGINX_PID" "proxy nginx"
        NGINX_WORKER=$(worker_of "$NGINX_PID")
        for k in b d f dl-b ul-b; do C_PID[$k]=$NGINX_WORKER; done
        ;;
    gateway)
        [[ -z ${GW_PID:-} ]] || stop_pid "$GW_PID"
        OUT_FILE=$TMP/gateway.out start_bg "$GW" --config "$TMP/gateway.toml"
        GW_PID=$LAST_PID
        wait_port "$GW_PLAIN_PORT" "$GW_PID" "fxa-gateway"
        wait_port "$GW_TLS_PORT" "$GW_PID" "fxa-gateway"
        for k in c e g dl-c ul-c; do C_PID[$k]=$GW_PID; done
        ;;
    haproxy)
        [[ -z ${HAPROXY_PID:-} ]] || stop_pid "$HAPROXY_PID"
        # -db: foreground, one process (its single thread: nbthread 1).
        OUT_FILE=$TMP/haproxy.out start_bg "$HAPROXY" -db -f "$TMP/haproxy.cfg"
        HAPROXY_PID=$LAST_PID
        wait_port "$HAPROXY_PLAIN_PORT" "$HAPROXY_PID" "HAProxy"
        wait_port "$HAPROXY_TLS_PORT" "$HAPROXY_PID" "HAProxy"
        for k in i j k dl-i ul-i; do C_PID[$k]=$HAPROXY_PID; done
        ;;
    caddy)
        [[ -z ${CADDY_PID:-} ]] || stop_pid "$CADDY_PID"
        OUT_FILE=$TMP/caddy.out start_bg "${CADDY_ENV[@]}" "$CADDY" run --config "$TMP/Caddyfile" --adapter caddyfile
        CADDY_PID=$LAST_PID
        wait_port "$CADDY_PLAIN_PORT" "$CADDY_PID" "Caddy"
        wait_port "$CADDY_TLS_PORT" "$CADDY_PID" "Caddy"
        for k in l m n dl-l ul-l; do C_PID[$k]=$CADDY_PID; done
        ;;
    esac
}
declare -A C_PID
NGINX_PID= GW_PID= HAPROXY_PID= CADDY_PID= NGINX_WORKER= HAPROXY_PID= CADDY_PID=
OUT_FILE=$TMP/upstream.out start_bg "$NGINX" -p "$TMP" -e "$TMP/upstream-error.log" -c "$TMP/upstream.conf"
UPSTREAM_PID=$LAST_PID
# Access log: JSON lines on stderr into a file, opened for append so that it can be truncated
# between runs (10 s at ~80k rps is ~250 MB of log).
ACCESS_LOG_FILE=$TMP/gateway-access.log
OUT_FILE=$ACCESS_LOG_FILE start_bg "$GW" --config "$TMP/gateway-log.toml"
GWLOG_PID=$LAST_PID
wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" "upstream nginx"
wait_port "$STATUS_PORT" "$UPSTREAM_PID" "upstream nginx"
UPSTREAM_WORKER=$(worker_of "$UPSTREAM_PID")
start_proxy nginx
start_proxy gateway
((HAVE_HAPROXY == 0)) || start_proxy haproxy
((HAVE_CADDY == 0)) || start_proxy caddy
wait_port "$GWLOG_PLAIN_PORT" "$GWLOG_PID" "fxa-gateway (access log)"

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
URL_HAPROXY_PLAIN=http://127.0.0.1:$HAPROXY_PLAIN_PORT$REQ_PATH
URL_HAPROXY_TLS=https://$TLS_HOST:$HAPROXY_TLS_PORT$REQ_PATH
URL_CADDY_PLAIN=http://127.0.0.1:$CADDY_PLAIN_PORT$REQ_PATH
URL_CADDY_TLS=https://$TLS_HOST:$CADDY_TLS_PORT$REQ_PATH
SANITY_URLS=("$URL_DIRECT" "$URL_NGINX_PLAIN" "$URL_NGINX_TLS" "$URL_GW_PLAIN" "$URL_GW_TLS" "$URL_GWLOG_PLAIN")
PROXY_URLS=("$URL_NGINX_PLAIN" "$URL_NGINX_TLS" "$URL_GW_PLAIN" "$URL_GW_TLS")
((HAVE_HAPROXY == 0)) || PROXY_URLS+=("$URL_HAPROXY_PLAIN" "$URL_HAPROXY_TLS")
((HAVE_CADDY == 0)) || PROXY_URLS+=("$URL_CADDY_PLAIN" "$URL_CADDY_TLS")
SANITY_URLS+=("${PROXY_URLS[@]:4}")
for u in "${SANITY_URLS[@]}"; do
    out=$(curl -sS --max-time 5 --cacert "$TMP/certs/ca.pem" -o "$TMP/sanity.body" -w '%{http_code} %{http_version}' "$u") ||
        die "$u: curl failed"
    [[ ${out%% *} == 200 ]] || die "$u answered ${out%% *}: $(head -c 300 "$TMP/sanity.body")"
    [[ $(<"$TMP/sanity.body") == "$BODY" ]] || die "$u: unexpected body: $(head -c 300 "$TMP/sanity.body")"
    if [[ $u == https://* ]]; then
        out=$(curl -sS --max-time 5 --http2 --cacert "$TMP/certs/ca.pem" -o /dev/null -w '%{http_version}' "$u")
        [[ $out == 2 ]] || die "$u: HTTP/2 not negotiated (got HTTP/$out)"
    fi
done
# Every proxy forwards the same: X-Forwarded-For/-Proto/-Host and an X-Request-Id upstream (the
# upstream echoes them), an X-Request-Id back, /api stripped; and 1 MiB up and down.
for u in "${PROXY_URLS[@]}"; do
    hu=${u%"$REQ_PATH"}/api/v1/headers
    proto=http
    [[ $u == https://* ]] && proto=https
    out=$(curl -sS --max-time 5 --cacert "$TMP/certs/ca.pem" -D "$TMP/sanity.head" "$hu") || die "$hu: curl failed"
    [[ $NGINX_HEADERS == 0 && $u == *":$NGINX_PLAIN_PORT/"* ]] && continue
    [[ $NGINX_HEADERS == 0 && $u == *":$NGINX_TLS_PORT/"* ]] && continue
    [[ $out =~ ^xff=127\.0\.0\.1\ proto=$proto\ host=[a-z0-9.]+(:[0-9]+)?\ rid=[0-9A-Za-z-]{16,}\ uri=/v1/headers$ ]] ||
        die "$hu: the upstream got '$out' (want xff=127.0.0.1 proto=$proto host=... rid=<id> uri=/v1/headers)"
    grep -qi '^x-request-id: [0-9a-z-]' "$TMP/sanity.head" || die "$hu: no X-Request-Id in the answer"
    if phase bulk; then
        bu=${u%"$REQ_PATH"}/api/v1/bulk/download
        out=$(curl -sS --max-time 10 --cacert "$TMP/certs/ca.pem" -o "$TMP/sanity.bulk" -w '%{http_code} %{size_download}' "$bu") ||
            die "$bu: curl failed"
        [[ $out == "200 $BULK_SIZE" ]] || die "$bu: answered '$out' (status, bytes), want '200 $BULK_SIZE'"
        cmp -s "$TMP/sanity.bulk" "$BULK_FILE" || die "$bu: the body differs from the upstream's file"
        bu=${u%"$REQ_PATH"}/api/v1/bulk/upload
        out=$(curl -sS --http1.1 --max-time 10 --cacert "$TMP/certs/ca.pem" -o /dev/null -w '%{http_code}' \
            -H 'Content-Type: application/octet-stream' --data-binary "@$BULK_FILE" "$bu") || die "$bu: curl failed"
        [[ $out == 200 ]] || die "$bu: a $BULK_SIZE-byte upload answered $out"
    fi
done
rm -f "$TMP/sanity.bulk"
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
declare -A C_LABEL C_TOOL C_URL C_LUA C_NOBUSY
defcase() { C_LABEL[$1]=$2; C_TOOL[$1]=$3; C_URL[$1]=$4; C_PID[$1]=$5; }
defcase a "(a) upstream direct, plain" wrk "$URL_DIRECT" "$UPSTREAM_WORKER"
defcase b "(b) nginx, plain h1" wrk "$URL_NGINX_PLAIN" "$NGINX_WORKER"
defcase c "(c) fxa-gateway, plain h1" wrk "$URL_GW_PLAIN" "$GW_PID"
defcase d "(d) nginx, TLS h1" wrk "$URL_NGINX_TLS" "$NGINX_WORKER"
defcase e "(e) fxa-gateway, TLS h1" wrk "$URL_GW_TLS" "$GW_PID"
defcase f "(f) nginx, TLS h2" h2load "$URL_NGINX_TLS" "$NGINX_WORKER"
defcase g "(g) fxa-gateway, TLS h2" h2load "$URL_GW_TLS" "$GW_PID"
defcase h "(h) fxa-gateway, plain h1, access log on" wrk "$URL_GWLOG_PLAIN" "$GWLOG_PID"
defcase i "(i) HAProxy, plain h1" wrk "$URL_HAPROXY_PLAIN" "$HAPROXY_PID"
defcase j "(j) HAProxy, TLS h1" wrk "$URL_HAPROXY_TLS" "$HAPROXY_PID"
defcase k "(k) HAProxy, TLS h2" h2load "$URL_HAPROXY_TLS" "$HAPROXY_PID"
defcase l "(l) Caddy, plain h1" wrk "$URL_CADDY_PLAIN" "$CADDY_PID"
defcase m "(m) Caddy, TLS h1" wrk "$URL_CADDY_TLS" "$CADDY_PID"
defcase n "(n) Caddy, TLS h2" h2load "$URL_CADDY_TLS" "$CADDY_PID"
# (a) is load-generator-bound: no minimum busy share of the server core.
C_NOBUSY[a]=1
# Large bodies: the same proxies, plain HTTP/1.1, 1 MiB down (report.lua) and up (upload.lua).
bulk_url() { echo "${1%"$REQ_PATH"}/api/v1/bulk/$2"; }
defbulk() { # id-suffix name url pid
    local dir id u
    for dir in download upload; do
        id=dl-$1
        [[ $dir == download ]] || id=ul-$1
        u=$(bulk_url "$3" "$dir")
        [[ $1 == a ]] && u=http://127.0.0.1:$UPSTREAM_PORT/v1/bulk/$dir
        defcase "$id" "($id) $2, 1 MiB $dir" wrk "$u" "$4"
        [[ $dir == download ]] || C_LUA[$id]="$HERE/upload.lua"
        # wrk moving 1 MiB bodies can be the bottleneck rather than the proxy.
        C_NOBUSY[$id]=1
    done
}
defbulk a "upstream direct" "$URL_DIRECT" "$UPSTREAM_WORKER"
defbulk b nginx "$URL_NGINX_PLAIN" "$NGINX_WORKER"
defbulk c fxa-gateway "$URL_GW_PLAIN" "$GW_PID"
defbulk i HAProxy "$URL_HAPROXY_PLAIN" "$HAPROXY_PID"
defbulk l Caddy "$URL_CADDY_PLAIN" "$CADDY_PID"

# The cases of each phase, in the order of odd rounds (nginx first); even rounds take each
# group of like cases in reverse (the gateway before nginx, peers first).
have_case() { # case -> whether its server runs
    case $1 in
    i | j | k | *-i) ((HAVE_HAPROXY)) ;;
    l | m | n | *-l) ((HAVE_CADDY)) ;;
    *) return 0 ;;
    esac
}
order_of() { # round, groups of cases separated by "/" -> the cases in that round's order
    local r=$1 g out=() c
    shift
    local IFS=/
    for g in $*; do
        IFS=' '
        local list=()
        for c in $g; do have_case "$c" && list+=("$c"); done
        if ((r % 2 == 0)); then
            for ((c = ${#list[@]} - 1; c >= 0; c--)); do out+=("${list[c]}"); done
        else
            out+=("${list[@]}")
        fi
        IFS=/
    done
    IFS=' '
    echo "${out[*]}"
}
TPUT_GROUPS="a/b c i l/d e j m/f g k n/h"
BULK_GROUPS="dl-a/dl-b dl-c dl-i dl-l/ul-a/ul-b ul-c ul-i ul-l"
CASES=$(order_of 1 "$TPUT_GROUPS")
BULK_CASES=$(order_of 1 "$BULK_GROUPS")

load_cmd() { # case seconds logfile -> the command line in LOAD[]
    local url=${C_URL[$1]}
    if [[ ${C_TOOL[$1]} == wrk ]]; then
        LOAD=(wrk -t1 -c"$CONNS" -d"$2"s --timeout 5s --latency -s "${C_LUA[$1]:-$HERE/report.lua}" "$url")
        [[ -z ${C_LUA[$1]:-} ]] || LOAD+=(-- "$BULK_SIZE")
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
    # status codes: N 2xx, N 3xx, N 4xx, N 5xx (these can count a few more answers than "done",
    # those that arrive as the run stops): the 3xx, 4xx and 5xx count.
    NON2XX=$(awk '/^status codes:/ {print $5 + $7 + $9}' "$f")
    # "failed" includes the 4xx/5xx answers; errors are the rest of it, errored and timeouts.
    ERRS=$(awk -v bad="${NON2XX:-0}" '/^requests:/ {f = $10 - bad; print (f > 0 ? f : 0) + $12 + $14}' "$f")
    # h2load prints no percentiles: take them from the per-request log (3rd column: µs).
    read -r P50 P99 < <(cut -f3 "$lf" | sort -n | awk '{v[NR] = $1}
        END {if (NR == 0) {print "nan nan"; exit}
             i = int(NR * 0.50 + 0.999999); j = int(NR * 0.99 + 0.999999); print v[i], v[j]}')
    REQS=${REQS:-0} RPS=${RPS:-0} ERRS=${ERRS:-0} NON2XX=${NON2XX:-0}
}

RESULTS=$TMP/runs.tsv
printf 'round\tcase\tattempt\tkept\treason\trps\tp50_us\tp99_us\trequests\tbusy_pct\tcore_us_req\tproxy_us_req\tupstream_us_req\tclient_busy_pct\tforeign_pct\tclient_foreign_pct\tupstream_new_conns\tproxy_user_us_req\n' >"$RESULTS"


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
        local s0 c0 p0 u0 g0 q0 s1 c1 p1 u1 g1 q1 rc=0
        local a0 a1 newconns
        a0=$(upstream_accepts)
        s0=$(cpu_ticks "$SERVER_CPU"); c0=$(cpu_ticks "$CLIENT_CPU")
        p0=$(proc_ticks "${C_PID[$k]}"); u0=$(proc_ticks "$UPSTREAM_WORKER"); children_ticks; g0=$CHILD_TICKS
        q0=$(proc_user_ticks "${C_PID[$k]}")
        client "$base.out" "${LOAD[@]}" || rc=$?
        s1=$(cpu_ticks "$SERVER_CPU"); c1=$(cpu_ticks "$CLIENT_CPU")
        p1=$(proc_ticks "${C_PID[$k]}"); u1=$(proc_ticks "$UPSTREAM_WORKER"); children_ticks; g1=$CHILD_TICKS
        q1=$(proc_user_ticks "${C_PID[$k]}")
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
        local busy cbusy core_us proxy_us up_us foreign cforeign user_us reason='' ours=$(((p1 - p0) + (u1 - u0)))
        user_us=$(awk -v q="$((q1 - q0))" -v n="$REQS" -v hz="$HZ" 'BEGIN {printf "%.2f\n", (n > 0 ? q * 1e6 / hz / n : 0)}')
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
        elif [[ -z ${C_NOBUSY[$k]:-} ]] && awk -v b="$busy" -v m="$MIN_BUSY" 'BEGIN {exit !(b < m)}'; then
            # (Not for (a) and the large bodies: the load generator may be the bottleneck.)
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
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$k" "$attempt" "$keep" \
            "${reason:--}" "$RPS" "$P50" "$P99" "$REQS" "$busy" "$core_us" "$proxy_us" "$up_us" "$cbusy" \
            "$foreign" "$cforeign" "$newconns" "$user_us" >>"$RESULTS"
        log "  ${C_LABEL[$k]}: $(printf '%.0f' "$RPS") rps, p50 ${P50}us, p99 ${P99}us," \
            "server core ${busy}% (${foreign}% others), client core ${cbusy}% (${cforeign}% others)," \
            "${core_us} us/req, $newconns new upstream conns$([[ $keep == 1 ]] || echo " [DISCARDED: $reason]")"
    done
    ((kept == RUNS)) || log "  ${C_LABEL[$k]} round $r: only $kept of $RUNS runs kept"
}

ncases() { echo $#; }
if phase throughput; then
    n=$(ncases $CASES)
    total=$((ROUNDS * n * (WARMUP + RUNS * (DURATION + 1) + 1))) # ~1 s of checks per run and case
    log "throughput: $ROUNDS round(s) x $n cases x ($WARMUP s warm-up + $RUNS x $DURATION s):" \
        "about $((total / 60)) min $((total % 60)) s, more if runs are discarded and repeated"
    for ((r = 1; r <= ROUNDS; r++)); do
        order=$(order_of "$r" "$TPUT_GROUPS")
        log "round $r/$ROUNDS: $order"
        for k in $order; do
            run_case "$r" "$k"
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# Latency at a fixed rate (oha, coordinated omission corrected)
LAT_RESULTS=$TMP/latency.tsv
printf 'round\tcase\tload_pct\ttarget_rps\trps\tp50_us\tp99_us\tp999_us\tok\tnon2xx\terrors\tbusy_pct\tforeign_pct\tkept\treason\n' >"$LAT_RESULTS"
SAT_RPS=
SAT_FROM=
oha_parse() { # oha JSON -> "rps p50_us p99_us p999_us ok non2xx errors" (errors: all but requests cut by -z's end)
    python3 - "$1" <<'PY'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception:
    print("0 nan nan nan 0 0 1")
    sys.exit(0)
p = j.get("latencyPercentiles") or {}
def us(k):
    v = p.get(k)
    return "nan" if v is None else "%.0f" % (v * 1e6)
codes = j.get("statusCodeDistribution") or {}
errs = j.get("errorDistribution") or {}
ok = sum(v for k, v in codes.items() if k.startswith("2"))
bad = sum(v for k, v in codes.items() if not k.startswith("2"))
e = sum(v for k, v in errs.items() if "deadline" not in k)
print("%.1f %s %s %s %d %d %d" % (j["summary"]["requestsPerSec"] or 0, us("p50"), us("p99"), us("p99.9"), ok, bad, e))
PY
}
if phase latency; then
    if [[ -n $LAT_RATE ]]; then
        SAT_RPS=$LAT_RATE SAT_FROM="LAT_RATE"
    else
        # nginx's saturation rate in this run: the median of (b)'s kept runs (all of them if
        # none was kept, with a warning).
        SAT_RPS=$(awk -F'\t' 'NR > 1 && $2 == "b" && $4 == 1 {print $6}' "$RESULTS" | sort -n |
            awk '{v[NR] = $1} END {if (NR) printf "%.0f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}')
        SAT_FROM="median of (b)'s kept runs"
        if [[ -z $SAT_RPS ]]; then
            SAT_RPS=$(awk -F'\t' 'NR > 1 && $2 == "b" && $6 > 0 {print $6}' "$RESULTS" | sort -n |
                awk '{v[NR] = $1} END {if (NR) printf "%.0f\n", v[int((NR + 1) / 2)]}')
            SAT_FROM="median of (b)'s runs, none of them kept: NOT a valid saturation rate"
            log "WARNING: no kept run of (b): the latency phase uses $SAT_FROM"
        fi
    fi
    [[ -n $SAT_RPS && $SAT_RPS -gt 0 ]] || die "latency phase: no saturation rate (run the throughput phase or set LAT_RATE)"
    LAT_GROUPS="a/b c i l"
    n=$(ncases $(order_of 1 "$LAT_GROUPS"))
    total=$((LAT_ROUNDS * $(ncases $LAT_LOADS) * n * (WARMUP + LAT_DURATION + 2)))
    log "latency: nginx saturates at $SAT_RPS req/s ($SAT_FROM); $LAT_ROUNDS round(s) x loads ($LAT_LOADS %) x $n" \
        "servers x ($WARMUP s warm-up + $LAT_DURATION s): about $((total / 60)) min $((total % 60)) s"
    for ((r = 1; r <= LAT_ROUNDS; r++)); do
        order=$(order_of "$r" "$LAT_GROUPS")
        for load in $LAT_LOADS; do
            rate=$((SAT_RPS * load / 100))
            log "latency round $r/$LAT_ROUNDS, $load % = $rate req/s: $order"
            for k in $order; do
                wait_quiet
                base=$TMP/raw/lat-r$r-$load-$k
                mkdir -p "$TMP/raw"
                client "$base.warmup.log" "$OHA" -z "${WARMUP}s" -c "$CONNS" -q "$rate" --latency-correction \
                    --no-tui --output-format json -o "$base.warmup.json" "${C_URL[$k]}" ||
                    log "  warm-up of ${C_LABEL[$k]} exited $?"
                s0=$(cpu_ticks "$SERVER_CPU"); p0=$(proc_ticks "${C_PID[$k]}"); u0=$(proc_ticks "$UPSTREAM_WORKER")
                rc=0
                client "$base.log" "$OHA" -z "${LAT_DURATION}s" -c "$CONNS" -q "$rate" --latency-correction \
                    --no-tui --output-format json -o "$base.json" "${C_URL[$k]}" || rc=$?
                s1=$(cpu_ticks "$SERVER_CPU"); p1=$(proc_ticks "${C_PID[$k]}"); u1=$(proc_ticks "$UPSTREAM_WORKER")
                read -r rps p50 p99 p999 ok bad errs < <(oha_parse "$base.json")
                ours=$(((p1 - p0) + (u1 - u0)))
                [[ ${C_PID[$k]} != "$UPSTREAM_WORKER" ]] || ours=$((u1 - u0))
                read -r busy foreign < <(awk -v s0="$s0" -v s1="$s1" -v o="$ours" 'BEGIN {
                    split(s0, a, " "); split(s1, b, " "); t = b[2] - a[2]; f = b[1] - a[1] - (b[3] - a[3]) - o
                    if (f < 0) f = 0
                    printf "%.1f %.1f\n", (t > 0 ? 100 * (b[1] - a[1]) / t : 0), (t > 0 ? 100 * f / t : 0)}')
                reason=
                if ((rc != 0)); then
                    reason="oha exited $rc"
                elif ((ok == 0)); then
                    reason="no answers"
                elif ((errs > 0)); then
                    reason="$errs errors"
                elif ((bad > 0)); then
                    reason="$bad non-2xx answers"
                elif awk -v a="$rps" -v t="$rate" 'BEGIN {exit !(a < 0.97 * t)}'; then
                    # oha (or the server) fell behind: the corrected latencies then grow with the
                    # run's length and compare nothing.
                    reason="rate not held ($rps of $rate req/s)"
                elif awk -v f="$foreign" -v m="$MAX_FOREIGN" 'BEGIN {exit !(f > m)}'; then
                    reason="other processes took ${foreign}% of the server core (> ${MAX_FOREIGN}%)"
                fi
                kept=1
                [[ -z $reason ]] || kept=0
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$k" "$load" "$rate" "$rps" \
                    "$p50" "$p99" "$p999" "$ok" "$bad" "$errs" "$busy" "$foreign" "$kept" "${reason:--}" >>"$LAT_RESULTS"
                log "  ${C_LABEL[$k]}: $(printf '%.0f' "$rps") of $rate req/s, p50 ${p50}us p99 ${p99}us" \
                    "p99.9 ${p999}us, server core ${busy}% (${foreign}% others)$([[ $kept == 1 ]] || echo " [DISCARDED: $reason]")"
            done
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# New TLS connections per second (openssl s_time: -new = full handshakes, -reuse = resumed)
HS_RESULTS=$TMP/handshake.tsv
printf 'round\tcase\tmode\tconnections\tseconds\tconn_per_s\tresumed_pct\tbusy_pct\tproc_us_conn\tforeign_pct\tkept\treason\n' >"$HS_RESULTS"
HS_PIDS=()
if phase handshake; then
    HS_GROUPS="d e j m"
    n=$(ncases $(order_of 1 "$HS_GROUPS"))
    total=$((HS_ROUNDS * 2 * n * (HS_DURATION + 3)))
    log "handshake: $HS_ROUNDS round(s) x 2 modes x $n servers x $HS_DURATION s, $HS_PROCS openssl s_time" \
        "processes: about $((total / 60)) min $((total % 60)) s"
    # What s_time's -www request gets: an HTTP/1.0 GET without Host; every server must answer it
    # 200, so that each connection is the same work everywhere.
    for k in $(order_of 1 "$HS_GROUPS"); do
        port=${C_URL[$k]#https://"$TLS_HOST":}
        port=${port%%/*}
        out=$(printf 'GET %s HTTP/1.0\r\n\r\n' "$REQ_PATH" |
            timeout 10 openssl s_client -quiet -connect "127.0.0.1:$port" 2>/dev/null | awk 'NR == 1' || true)
        [[ $out == *" 200 "* ]] || die "${C_LABEL[$k]}: an HTTP/1.0 GET without Host (openssl s_time -www) got '$out', not 200"
    done
    for ((r = 1; r <= HS_ROUNDS; r++)); do
        order=$(order_of "$r" "$HS_GROUPS")
        for mode in new reuse; do
            log "handshake round $r/$HS_ROUNDS, -$mode: $order"
            for k in $order; do
                wait_quiet
                port=${C_URL[$k]#https://"$TLS_HOST":}
                port=${port%%/*}
                base=$TMP/raw/hs-r$r-$mode-$k
                mkdir -p "$TMP/raw"
                s0=$(cpu_ticks "$SERVER_CPU"); p0=$(proc_ticks "${C_PID[$k]}"); u0=$(proc_ticks "$UPSTREAM_WORKER")
                t0=$EPOCHREALTIME
                HS_PIDS=()
                for ((q = 1; q <= HS_PROCS; q++)); do
                    # One HTTP/1.0 GET per connection (-www): the answer brings TLS 1.3's session
                    # ticket, which -reuse needs, and it is a whole new connection's work.
                    # (s_time sends no SNI: the servers answer with their one certificate.)
                    nice -n "$NICE" taskset -c "$CLIENT_CPU" openssl s_time -connect "127.0.0.1:$port" \
                        -"$mode" -time "$HS_DURATION" -www "$REQ_PATH" >"$base.$q.out" 2>&1 &
                    HS_PIDS+=($!)
                done
                rc=0
                for q in "${HS_PIDS[@]}"; do wait "$q" || rc=$?; done
                HS_PIDS=()
                t1=$EPOCHREALTIME
                s1=$(cpu_ticks "$SERVER_CPU"); p1=$(proc_ticks "${C_PID[$k]}"); u1=$(proc_ticks "$UPSTREAM_WORKER")
                # "N connections in X.XXs; ..." (the first such line of each process); -reuse prints
                # one "r" per resumed and one "*" per full handshake.
                read -r conns resumed marks < <(cat "$base".*.out | awk '
                    /connections in [0-9.]+s;/ {n += $1}
                    /^[*r]+$/ {m += length($0); x = $0; r += gsub(/r/, "", x)}
                    END {printf "%.0f %.0f %.0f\n", n, r, m}')
                ours=$(((p1 - p0) + (u1 - u0)))
                read -r secs rate_s resumed_pct busy proc_us foreign < <(awk -v t0="$t0" -v t1="$t1" -v n="$conns" \
                    -v rs="$resumed" -v mk="$marks" -v s0="$s0" -v s1="$s1" -v p="$((p1 - p0))" -v o="$ours" -v hz="$HZ" 'BEGIN {
                    d = t1 - t0; split(s0, a, " "); split(s1, b, " "); t = b[2] - a[2]; f = b[1] - a[1] - (b[3] - a[3]) - o
                    if (f < 0) f = 0
                    printf "%.2f %.1f %.1f %.1f %.1f %.1f\n", d, (d > 0 ? n / d : 0), (mk > 0 ? 100 * rs / mk : 0),
                        (t > 0 ? 100 * (b[1] - a[1]) / t : 0), (n > 0 ? p * 1e6 / hz / n : 0), (t > 0 ? 100 * f / t : 0)}')
                reason=
                if ((rc != 0)); then
                    reason="openssl s_time exited $rc ($(grep -h -m1 -i 'error' "$base".*.out | awk 'NR == 1'))"
                elif ((conns == 0)); then
                    reason="no connections"
                elif [[ $mode == reuse ]] && awk -v p="$resumed_pct" 'BEGIN {exit !(p < 90)}'; then
                    reason="only ${resumed_pct}% of the connections resumed a session"
                elif awk -v f="$foreign" -v m="$MAX_FOREIGN" 'BEGIN {exit !(f > m)}'; then
                    reason="other processes took ${foreign}% of the server core (> ${MAX_FOREIGN}%)"
                fi
                kept=1
                [[ -z $reason ]] || kept=0
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$k" "$mode" "$conns" "$secs" "$rate_s" \
                    "$resumed_pct" "$busy" "$proc_us" "$foreign" "$kept" "${reason:--}" >>"$HS_RESULTS"
                log "  ${C_LABEL[$k]} -$mode: $rate_s conn/s ($conns in ${secs} s, ${resumed_pct}% resumed)," \
                    "server core ${busy}% (${foreign}% others), ${proc_us} us proxy CPU per connection$([[ $kept == 1 ]] || echo " [DISCARDED: $reason]")"
            done
        done
    done
fi

# Peak RSS under load (small requests), before the large bodies and before the memory phase
# restarts the proxies.
kill -0 "$GW_PID" 2>/dev/null || die "fxa-gateway died during the benchmark (log: $TMP/gateway.out)"
kill -0 "$NGINX_PID" 2>/dev/null || die "proxy nginx died during the benchmark (log: $TMP/proxy-error.log)"
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
peak_rss() { # -> "gateway gateway-with-access-log nginx haproxy caddy" VmHWM in kB (0: not running)
    local h=0 c=0
    ((HAVE_HAPROXY == 0)) || h=$(hwm_kb "$HAPROXY_PID")
    ((HAVE_CADDY == 0)) || c=$(hwm_kb "$CADDY_PID")
    echo "$(hwm_kb "$GW_PID") $(hwm_kb "$GWLOG_PID") $(hwm_kb "$NGINX_WORKER") $h $c"
}
PEAK_SMALL=$(peak_rss)
PEAK_BULK=

# ---------------------------------------------------------------------------------------------
# Large bodies: the same rounds and rules as the throughput phase, BULK_RUNS runs per case
BULK_RESULTS=$TMP/bulk.tsv
head -1 "$RESULTS" >"$BULK_RESULTS"
if phase bulk; then
    n=$(ncases $BULK_CASES)
    total=$((BULK_ROUNDS * n * (WARMUP + BULK_RUNS * (DURATION + 1) + 1)))
    log "bulk: $BULK_ROUNDS round(s) x $n cases x ($WARMUP s warm-up + $BULK_RUNS x $DURATION s):" \
        "about $((total / 60)) min $((total % 60)) s"
    saved=("$RESULTS" "$RUNS" "$RETRIES")
    RESULTS=$BULK_RESULTS RUNS=$BULK_RUNS RETRIES=$BULK_RUNS
    for ((r = 1; r <= BULK_ROUNDS; r++)); do
        order=$(order_of "$r" "$BULK_GROUPS")
        log "bulk round $r/$BULK_ROUNDS: $order"
        for k in $order; do
            run_case "$r" "$k"
        done
    done
    RESULTS=${saved[0]} RUNS=${saved[1]} RETRIES=${saved[2]}
    PEAK_BULK=$(peak_rss)
fi

# ---------------------------------------------------------------------------------------------
# Memory per idle keep-alive connection: a fresh process, warmed up with CONNS connections for
# WARMUP s (buffers, pools, the allocator's arenas), then IDLE_CONNS connections that have each
# served one request and stay open.
MEM_RESULTS=$TMP/memory.tsv
printf 'server\tproto\tconns\trss_before_kb\trss_idle_kb\trss_after_close_kb\tbytes_per_conn\n' >"$MEM_RESULTS"
IDLE_PID=
if phase memory; then
    ulimit -n 65536 2>/dev/null || true
    ((NOFILE >= IDLE_CONNS + 100)) || log "WARNING: only $NOFILE file descriptors for $IDLE_CONNS connections"
    mem_pid() { # proxy -> the process whose RSS counts
        case $1 in nginx) echo "$NGINX_WORKER" ;; gateway) echo "$GW_PID" ;; haproxy) echo "$HAPROXY_PID" ;; caddy) echo "$CADDY_PID" ;; esac
    }
    mem_port() { # proxy proto -> port
        case $1-$2 in
        nginx-plain) echo "$NGINX_PLAIN_PORT" ;; nginx-tls) echo "$NGINX_TLS_PORT" ;;
        gateway-plain) echo "$GW_PLAIN_PORT" ;; gateway-tls) echo "$GW_TLS_PORT" ;;
        haproxy-plain) echo "$HAPROXY_PLAIN_PORT" ;; haproxy-tls) echo "$HAPROXY_TLS_PORT" ;;
        caddy-plain) echo "$CADDY_PLAIN_PORT" ;; caddy-tls) echo "$CADDY_TLS_PORT" ;;
        esac
    }
    MEM_SERVERS="gateway nginx"
    ((HAVE_HAPROXY == 0)) || MEM_SERVERS+=" haproxy"
    ((HAVE_CADDY == 0)) || MEM_SERVERS+=" caddy"
    log "memory: $IDLE_CONNS idle keep-alive connections, plain and TLS, to a fresh $MEM_SERVERS each"
    for proto in plain tls; do
        for srv in $MEM_SERVERS; do
            start_proxy "$srv"
            pid=$(mem_pid "$srv")
            port=$(mem_port "$srv" "$proto")
            if [[ $proto == tls ]]; then url=https://$TLS_HOST:$port$REQ_PATH; else url=http://127.0.0.1:$port$REQ_PATH; fi
            client "$TMP/mem-warmup.out" wrk -t1 -c"$CONNS" -d"${WARMUP}s" --timeout 5s -s "$HERE/report.lua" "$url" ||
                die "memory warm-up of $srv ($proto): wrk exited $?"
            parse_wrk "$TMP/mem-warmup.out"
            ((ERRS == 0 && NON2XX == 0 && REQS > 0)) || die "memory warm-up of $srv ($proto): $REQS requests, $ERRS errors, $NON2XX non-2xx"
            sleep 1
            rss0=$(rss_kb "$pid")
            ready=$TMP/idle.ready
            rm -f "$ready"
            tlsargs=()
            [[ $proto == plain ]] || tlsargs=(--tls "$TMP/certs/ca.pem" "$TLS_HOST")
            nice -n "$NICE" taskset -c "$CLIENT_CPU" python3 "$HERE/idle_conns.py" 127.0.0.1 "$port" "$IDLE_CONNS" \
                "$REQ_PATH" "$ready" "${tlsargs[@]}" >"$TMP/idle-$srv-$proto.out" 2>&1 &
            IDLE_PID=$!
            for _ in $(seq 1200); do
                [[ -s $ready ]] && break
                kill -0 "$IDLE_PID" 2>/dev/null || break
                sleep 0.1
            done
            [[ -s $ready ]] || die "$srv ($proto): the idle connections were not up within 120 s ($(tail -2 "$TMP/idle-$srv-$proto.out"))"
            ok=$(<"$ready")
            sleep 1
            rss1=$(rss_kb "$pid")
            kill -TERM "$IDLE_PID" 2>/dev/null || true
            wait "$IDLE_PID" 2>/dev/null || true
            IDLE_PID=
            sleep 2
            rss2=$(rss_kb "$pid")
            ((ok == IDLE_CONNS)) || log "  WARNING: $srv ($proto): only $ok of $IDLE_CONNS connections answered 200 ($(tail -1 "$TMP/idle-$srv-$proto.out"))"
            per=$(awk -v a="$rss0" -v b="$rss1" -v n="$ok" 'BEGIN {printf "%.0f", (n > 0 ? (b - a) * 1024 / n : 0)}')
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$srv" "$proto" "$ok" "$rss0" "$rss1" "$rss2" "$per" >>"$MEM_RESULTS"
            log "  $srv, $proto: VmRSS $rss0 kB -> $rss1 kB with $ok idle connections ($per bytes each), $rss2 kB after they closed"
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# Report
h2_tls() { # case -> what h2load printed about TLS in its last run of that case
    local f
    f=$(find "$TMP/raw" -name "r*-$1-*.out" 2>/dev/null | sort | tail -1)
    [[ -n $f ]] || { echo "?"; return; }
    awk -F': ' '/^TLS Protocol:/ {v = $2} /^Cipher:/ {c = $2} /^Server Temp Key:/ {k = $2}
        END {print v, c, "(" k ")"}' "$f"
}
mkdir -p "$OUT_DIR"
stamp=$(date +%Y%m%d-%H%M%S)
REPORT=$OUT_DIR/report-$stamp.txt
cp "$RESULTS" "$OUT_DIR/runs-$stamp.tsv"
for f in latency handshake bulk memory; do
    phase "$f" && cp "$TMP/$f.tsv" "$OUT_DIR/$f-$stamp.tsv"
done

labels_of() {
    local k
    for k in "$@"; do
        if have_case "$k"; then printf '%s=%s;' "$k" "${C_LABEL[$k]}"; fi
    done
}
# The targets of issue 19 (median ratios over rounds, one run): fxa-gateway >= 1.10 x nginx and
# ahead of HAProxy and Caddy on plain and TLS HTTP/1.1, >= 1.25 x nginx on TLS HTTP/2, p99 no
# worse than the best peer's.
peers_of() { # nginx case, haproxy case, caddy case -> the bases that run, comma-separated
    local out=$1
    ((HAVE_HAPROXY == 0)) || out+=",$2"
    ((HAVE_CADDY == 0)) || out+=",$3"
    echo "$out"
}
CMPS="c|b|plain h1: gateway / nginx|tput|ge:1.10;"
((HAVE_HAPROXY == 0)) || CMPS+="c|i|plain h1: gateway / HAProxy|tput|gt:1.00;"
((HAVE_CADDY == 0)) || CMPS+="c|l|plain h1: gateway / Caddy|tput|gt:1.00;"
CMPS+="c|$(peers_of b i l)|plain h1: p99 / best peer's|p99best|le:1.00;"
CMPS+="e|d|TLS h1: gateway / nginx|tput|ge:1.10;"
((HAVE_HAPROXY == 0)) || CMPS+="e|j|TLS h1: gateway / HAProxy|tput|gt:1.00;"
((HAVE_CADDY == 0)) || CMPS+="e|m|TLS h1: gateway / Caddy|tput|gt:1.00;"
CMPS+="e|$(peers_of d j m)|TLS h1: p99 / best peer's|p99best|le:1.00;"
CMPS+="g|f|TLS h2: gateway / nginx|tput|ge:1.25;"
((HAVE_HAPROXY == 0)) || CMPS+="g|k|TLS h2: gateway / HAProxy|tput|-;"
((HAVE_CADDY == 0)) || CMPS+="g|n|TLS h2: gateway / Caddy|tput|-;"
CMPS+="g|$(peers_of f k n)|TLS h2: p99 / best peer's|p99best|le:1.00;"
CMPS+="h|c|access log on / off|tput|-"
BULK_CMPS="dl-c|dl-b|1 MiB down: gateway / nginx|tput|-;"
((HAVE_HAPROXY == 0)) || BULK_CMPS+="dl-c|dl-i|1 MiB down: gateway / HAProxy|tput|-;"
((HAVE_CADDY == 0)) || BULK_CMPS+="dl-c|dl-l|1 MiB down: gateway / Caddy|tput|-;"
BULK_CMPS+="ul-c|ul-b|1 MiB up: gateway / nginx|tput|-;"
((HAVE_HAPROXY == 0)) || BULK_CMPS+="ul-c|ul-i|1 MiB up: gateway / HAProxy|tput|-;"
((HAVE_CADDY == 0)) || BULK_CMPS+="ul-c|ul-l|1 MiB up: gateway / Caddy|tput|-"

versions() {
    local v="$GW_VERSION; $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
    # (awk reads all of it: head would leave the writer a SIGPIPE, fatal under pipefail)
    ((HAVE_HAPROXY == 0)) || v+="; $("$HAPROXY" -v 2>&1 | awk 'NR == 1 {print "HAProxy " $3}')"
    ((HAVE_CADDY == 0)) || v+="; Caddy $("${CADDY_ENV[@]}" "$CADDY" version 2>/dev/null | awk 'NR == 1 {print $1}')"
    echo "$v"
    v="load: $(wrk --version 2>&1 | awk 'NR == 1 {print "wrk " $2}'); $(h2load --version 2>&1 | awk 'NR == 1 {sub(/^h2load /, ""); print}')"
    phase latency && v+="; oha $OHA_VERSION_SEEN"
    command -v openssl >/dev/null && v+="; $(openssl version | awk '{print "OpenSSL " $2}')"
    echo "$v"
}

{
    echo "fxa-gateway vs nginx, HAProxy, Caddy — $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $ncpu cores; phases: $PHASES"
    versions
    for p in $PEERS; do
        if [[ $p == haproxy && $HAVE_HAPROXY == 0 || $p == caddy && $HAVE_CADDY == 0 ]]; then
            echo "$p: SKIPPED (not installed, and apt-get install $p failed): its cases are missing"
        fi
    done
    echo "one server core ($SERVER_CPU: proxy + upstream), load generator on core $CLIENT_CPU; nginx 1 worker, fxa-gateway"
    echo "worker_threads = 1, HAProxy nbthread 1, Caddy GOMAXPROCS=1 (auto_https off); access logs off; same certificate,"
    echo "forwarded headers and /api strip for all."
    if phase throughput; then
        echo
        echo "== throughput at saturation: $CONNS connections (h2: x $STREAMS streams), ${DURATION} s per run after ${WARMUP} s warm-up,"
        echo "$RUNS run(s) x $ROUNDS round(s); discarded: runs with errors or non-2xx, the server core under ${MIN_BUSY}% busy"
        echo "(not for (a), which is load-generator-bound), or other processes over ${MAX_FOREIGN}% of either core."
        echo "TLS, h1 (openssl s_client, as wrk gets it) — nginx: $(tls_params "$NGINX_TLS_PORT"); fxa-gateway: $(tls_params "$GW_TLS_PORT")"
        ((HAVE_HAPROXY == 0)) || echo "    HAProxy: $(tls_params "$HAPROXY_TLS_PORT")"
        ((HAVE_CADDY == 0)) || echo "    Caddy: $(tls_params "$CADDY_TLS_PORT")"
        echo "TLS, h2 (h2load) — nginx: $(h2_tls f); fxa-gateway: $(h2_tls g)"
        ((HAVE_HAPROXY == 0)) || echo "    HAProxy: $(h2_tls k)"
        ((HAVE_CADDY == 0)) || echo "    Caddy: $(h2_tls n)"
        echo
        awk -F'\t' -v labels="$(labels_of $CASES)" -v cmps="$CMPS" -f "$HERE/report.awk" "$RESULTS"
    fi
    echo
    show_peak() { # label "gw gwlog nginx haproxy caddy" (kB)
        awk -v t="$1" -v v="$2" 'BEGIN {
            split(v, x, " "); g = x[1]; l = x[2]; n = x[3]; h = x[4]; c = x[5]
            printf "peak RSS (VmHWM) %s: fxa-gateway %.1f MB (target < 30 MB: %s), with access log %.1f MB; nginx worker %.1f MB",
                t, g / 1024, (g / 1024 < 30 ? "met" : "MISSED"), l / 1024, n / 1024
            if (h > 0) printf "; HAProxy %.1f MB", h / 1024
            if (c > 0) printf "; Caddy %.1f MB", c / 1024
            printf "\n" }'
    }
    peak_phases=$(for p in throughput latency handshake; do if phase $p; then printf '%s ' $p; fi; done)
    [[ -z $peak_phases ]] || show_peak "under load (small requests: ${peak_phases% })" "$PEAK_SMALL"
    if phase latency; then
        echo
        echo "== latency at a fixed rate: oha -c $CONNS -q RATE --latency-correction (coordinated omission corrected),"
        echo "plain HTTP/1.1, ${LAT_DURATION} s per run after ${WARMUP} s warm-up, $LAT_ROUNDS round(s); nginx's saturation rate"
        echo "$SAT_RPS req/s ($SAT_FROM). Discarded: errors, non-2xx, the rate not held (< 97%), others over ${MAX_FOREIGN}% of the server core."
        echo
        awk -F'\t' -v labels="$(labels_of a b c i l)" -f "$HERE/latency.awk" "$LAT_RESULTS"
    fi
    if phase handshake; then
        echo
        echo "== new TLS connections per second: $HS_PROCS x openssl s_time -new (full handshakes) / -reuse (session"
        echo "resumption), one GET per connection (-www), ${HS_DURATION} s per run, $HS_ROUNDS round(s); TLS 1.3 (OpenSSL's default"
        echo "client). Discarded: errors, under 90% resumed in -reuse, others over ${MAX_FOREIGN}% of the server core. The"
        echo "load generator does the client half of every handshake on one core: see srv% for whether the server saturated."
        echo
        awk -F'\t' -v labels="$(labels_of d e j m)" -f "$HERE/handshake.awk" "$HS_RESULTS"
    fi
    if phase bulk; then
        echo
        echo "== large bodies: $(awk -v b="$BULK_SIZE" 'BEGIN {printf "%.0f KiB", b / 1024}') per request (downloads: GET, uploads: POST), plain HTTP/1.1,"
        echo "$CONNS connections, ${DURATION} s per run, $BULK_RUNS run(s) x $BULK_ROUNDS round(s); no minimum server-core busy share."
        echo "MiB/s = req/s x $(awk -v b="$BULK_SIZE" 'BEGIN {printf "%.2f", b / 1048576}') MiB."
        echo
        awk -F'\t' -v labels="$(labels_of $BULK_CASES)" -v cmps="$BULK_CMPS" -f "$HERE/report.awk" "$BULK_RESULTS"
        echo
        show_peak "after the large bodies too" "$PEAK_BULK"
    fi
    if phase memory; then
        echo
        echo "== memory per idle keep-alive connection: a fresh process per server and protocol, warmed up with $CONNS"
        echo "connections for ${WARMUP} s, then $IDLE_CONNS connections that each served one GET and stay open (VmRSS of"
        echo "the gateway process / the nginx worker / HAProxy / Caddy)."
        awk -F'\t' 'NR > 1 {
            printf "  %-8s %-5s %5d conns: VmRSS %7.1f MB -> %7.1f MB  %+7.1f MB, %6.1f KB per connection; %7.1f MB after they closed\n",
                $1, $2, $3, $4 / 1024, $5 / 1024, ($5 - $4) / 1024, $7 / 1024, $6 / 1024
            per[$1 SUBSEP $2] = $7 }
            END {
            split("plain tls", P, " ")
            for (i = 1; i <= 2; i++)
                if (((("gateway") SUBSEP P[i]) in per) && ((("nginx") SUBSEP P[i]) in per))
                    printf "  %s: fxa-gateway %.1f KB vs nginx %.1f KB per idle connection (target: no dearer): %s\n", P[i],
                        per["gateway" SUBSEP P[i]] / 1024, per["nginx" SUBSEP P[i]] / 1024,
                        (per["gateway" SUBSEP P[i]] <= per["nginx" SUBSEP P[i]] ? "met" : "MISSED") }' "$MEM_RESULTS"
    fi
    echo
    discarded=0
    for f in "$RESULTS" "$BULK_RESULTS"; do
        discarded=$((discarded + $(awk -F'\t' 'NR > 1 && $4 != 1' "$f" | wc -l)))
    done
    discarded=$((discarded + $(awk -F'\t' 'NR > 1 && $14 != 1' "$LAT_RESULTS" | wc -l)))
    discarded=$((discarded + $(awk -F'\t' 'NR > 1 && $11 != 1' "$HS_RESULTS" | wc -l)))
    echo "discarded runs: $discarded (reasons in the TSV files beside $REPORT)"
    echo "Changes under ~5% in throughput or ~10% in p99 are noise here; compare ratios within one run only."
} | tee "$REPORT"
log "report: $REPORT"
