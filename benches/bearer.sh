#!/usr/bin/env bash
# Bearer authentication under load (see benches/README.md, "Bearer routes"): throughput of a
# bearer route with a warm introspection cache against the plain route and nginx, and the
# gateway's memory for 100,000 cached tokens. Same setup as benches/compare.sh.
#
#   benches/bearer.sh                  # full run: 3 rounds x 3 cases x 2 runs of 10 s + memory (~4 min)
#   QUICK=1 benches/bearer.sh          # smoke test: 1 round, 1 run of 3 s per case + memory (~40 s)
#
# Part 1, throughput (50 keep-alive connections, small JSON GET, all with the same
# "Authorization: Bearer <64 hex>" header):
#   (n) nginx reverse proxy, plain HTTP/1.1                    /api/v1/item
#   (p) fxa-gateway, plain route (auth "none")                 /api/v1/item
#   (t) fxa-gateway, bearer route (scope "profile"), warm cache /authed/v1/item
#   (j) fxa-gateway, the same bearer route with an FxA JWT access token verified locally
#       (RS256 key made with openssl at start, published by the fake OAuth server's /v1/jwks),
#       warm: the header differs, the route is the same          /authed/v1/item
#   (r) nginx auth_request + proxy_cache on the introspection subrequest, njs checking
#       "active": true and the profile scope (compare/bearer-nginx-auth.conf.in), warm cache
#                                                              /authed/v1/item
# (p), (t) and (j) are the same gateway process. Targets: (t) >= 0.90 x (p), >= 1.0 x (n),
# >= 1.5 x (r). Before measuring, both bearer setups must refuse a request without a token, an
# inactive token (401) and one without the scope (403), accept the good one, and answer its
# second request from their cache.
#
# Part 2, memory: a fresh gateway (same config); warm it up with one token, read VmRSS/VmHWM,
# send TOKENS requests each with a different token (wrk + compare/bearer-tokens.lua), read them
# again. Every token is introspected once at the fake FxA OAuth server (an nginx server block
# with njs, compare/bearer-oauth.js.in: "active" for any token but those that start with "dead"
# (inactive) or "0bad" (no profile scope); its access log counts the calls). Target: < 40 MB extra.
#
# Environment knobs (defaults in brackets), as in compare.sh:
#   DURATION [10] s per measured run   WARMUP [2] s warm-up per case and round
#   ROUNDS [3]   RUNS [2] per case and round   CONNS [50]
#   QUICK=1      DURATION=3 ROUNDS=1 RUNS=1 WARMUP=1 QUIET_WAIT=10 unless set explicitly
#   TOKENS [100000] distinct tokens for the memory part (0: skip it)
#   PARTS ["throughput memory"] the parts to run; PARTS=memory measures only the cached tokens'
#                 memory (valid on a busy machine: it does not depend on CPU load; ~1 min)
#   TARGET_RATIO [0.90]  TARGET_MB [40] (issue 19)   MEM_MAX [300] s at most for loading the tokens
#   MEM_USERS [one]  each: every token of the memory part is of its own user (the fake OAuth
#                 server answers its own `sub`), the worst case for the cache's sharing
#   MEM_PRELOAD   a malloc library (e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2) LD_PRELOADed
#                 into the memory part's gateway: it only replaces C's malloc (aws-lc's), not the
#                 gateway's Rust allocations (mimalloc, its global allocator)
#   NJS_MODULE [/usr/lib/nginx/modules/ngx_http_js_module.so] (Debian: libnginx-mod-http-js,
#                 installed with apt-get if missing)
#   MIN_BUSY [95] MAX_FOREIGN [5] QUIET_MAX [10] QUIET_WAIT [120] RETRIES [RUNS]
#   SERVER_CPU [0]  CLIENT_CPU [1]   BASE_PORT [18500] (uses BASE_PORT .. BASE_PORT+13)
#   NGINX_HEADERS [1]  NICE [-10 as root, else 0]  GATEWAY_BIN  KEEP_TMP=1
#   OUT_DIR [target/bench-bearer] where the raw runs (TSV) and the report are kept
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
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-2}
CONNS=${CONNS:-50}
TOKENS=${TOKENS:-100000}
PARTS=${PARTS:-throughput memory}
TARGET_RATIO=${TARGET_RATIO:-0.90}
TARGET_MB=${TARGET_MB:-40}
MEM_MAX=${MEM_MAX:-300}
MEM_PRELOAD=${MEM_PRELOAD:-}
MEM_USERS=${MEM_USERS:-one}
MIN_BUSY=${MIN_BUSY:-95}
MAX_FOREIGN=${MAX_FOREIGN:-5}
QUIET_MAX=${QUIET_MAX:-10}
RETRIES=${RETRIES:-$RUNS}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-18500}
NGINX_HEADERS=${NGINX_HEADERS:-1}
if [[ $EUID -eq 0 ]]; then NICE=${NICE:--10}; else NICE=${NICE:-0}; fi
OUT_DIR=${OUT_DIR:-$ROOT/target/bench-bearer}
NJS_MODULE=${NJS_MODULE:-/usr/lib/nginx/modules/ngx_http_js_module.so}
KEEP_TMP=${KEEP_TMP:-0}

[[ $NICE =~ ^-?[0-9]+$ ]] || { echo "bearer.sh: NICE must be an integer (got '$NICE')" >&2; exit 2; }
for v in DURATION WARMUP ROUNDS RUNS CONNS TOKENS TARGET_MB MEM_MAX MIN_BUSY MAX_FOREIGN QUIET_MAX QUIET_WAIT RETRIES \
    SERVER_CPU CLIENT_CPU BASE_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bearer.sh: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
[[ $TARGET_RATIO =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "bearer.sh: TARGET_RATIO must be a number" >&2; exit 2; }
((DURATION > 0 && ROUNDS > 0 && RUNS > 0 && CONNS > 0)) ||
    { echo "bearer.sh: DURATION, ROUNDS, RUNS and CONNS must be > 0" >&2; exit 2; }
((TOKENS < 4294967295)) || { echo "bearer.sh: TOKENS must be below 2^32" >&2; exit 2; }
for p in $PARTS; do
    [[ $p == throughput || $p == memory ]] || { echo "bearer.sh: PARTS takes throughput and/or memory (got '$p')" >&2; exit 2; }
done
has_part() { [[ " $PARTS " == *" $1 "* ]]; }
[[ $MEM_USERS == one || $MEM_USERS == each ]] || { echo "bearer.sh: MEM_USERS takes one or each (got '$MEM_USERS')" >&2; exit 2; }

UPSTREAM_PORT=$BASE_PORT
NGINX_PLAIN_PORT=$((BASE_PORT + 1))
NGINX_TLS_PORT=$((BASE_PORT + 2)) # in nginx-proxy.conf.in; not measured here
OAUTH_PORT=$((BASE_PORT + 3))
AUTH_PORT=$((BASE_PORT + 4))
STATUS_PORT=$((BASE_PORT + 9))
GW_PORT=$((BASE_PORT + 11))
GWMEM_PORT=$((BASE_PORT + 13))
ALL_PORTS=("$UPSTREAM_PORT" "$NGINX_PLAIN_PORT" "$NGINX_TLS_PORT" "$OAUTH_PORT" "$AUTH_PORT" "$STATUS_PORT" "$GW_PORT" "$GWMEM_PORT")
PLAIN_PATH=/api/v1/item
AUTHED_PATH=/authed/v1/item
BODY='{"uid":"4c352927cd4f4a4aa03d7d1893d950b8","email":"bench@example.com","locale":"en-US","verified":true}'
# FxA's introspection answer: exp/iat in milliseconds (exp: 2100-01-01).
INTROSPECT='{"active":true,"scope":"profile","sub":"0123456789abcdef0123456789abcdef","client_id":"abcdef0123456789","token_type":"access_token","exp":4102444800000,"iat":1700000000000}'
# What the fake answers for tokens that start with "0bad": active, but without the profile scope.
INTROSPECT_WRONG_SCOPE='{"active":true,"scope":"email","sub":"0123456789abcdef0123456789abcdef","client_id":"abcdef0123456789","token_type":"access_token","exp":4102444800000,"iat":1700000000000}'
KEEPALIVE=$((CONNS * 2))
((KEEPALIVE >= 256)) || KEEPALIVE=256
# Above TOKENS, so that the memory part measures TOKENS entries, not eviction.
CACHE_SIZE=$((TOKENS * 2))
((CACHE_SIZE >= 200000)) || CACHE_SIZE=200000

# Helpers shared with the other benchmark script (logging, ports, templates, CPU accounting).
# shellcheck source=compare/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/compare/common.sh"

SUDO=
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null && SUDO=sudo
fi

# ---------------------------------------------------------------------------------------------
# Tools (mawk-compatible awk only)
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
command -v openssl >/dev/null || need+=(openssl)
# nginx's JavaScript module: the fake OAuth server and the auth_request case (r) run njs.
[[ -e $NJS_MODULE ]] || need+=(libnginx-mod-http-js)
if ((${#need[@]})); then
    log "installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found after install"
[[ -e $NJS_MODULE ]] || die "nginx's JavaScript module not found at $NJS_MODULE (Debian: libnginx-mod-http-js; set NJS_MODULE)"
NJS_VERSION=$(dpkg-query -W -f='${Version}' libnginx-mod-http-js 2>/dev/null || echo "?")

ncpu=$(nproc --all)
((SERVER_CPU < ncpu && CLIENT_CPU < ncpu && SERVER_CPU != CLIENT_CPU)) ||
    die "need two distinct cores (SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU, $ncpu cores)"

# ---------------------------------------------------------------------------------------------
# Temp dir, processes, cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fxa-gw-bearer.XXXXXX")
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
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ports_free "${ALL_PORTS[@]}"



# ---------------------------------------------------------------------------------------------
# Build the gateway; certificates (the nginx proxy config has a TLS listener too)
prepare_gateway

# ---------------------------------------------------------------------------------------------
# An FxA-style JWT access token for case (j): an RSA key made now, its JWK set (served by the
# fake OAuth server at /v1/jwks), and a token signed with it (typ at+JWT, RS256, living 3 h:
# short-lived, so FxA would never introspect it and the gateway never rechecks it).
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
openssl genrsa -out "$TMP/jwt-key.pem" 2048 2>/dev/null || die "openssl genrsa failed"
JWT_N=$(openssl rsa -in "$TMP/jwt-key.pem" -noout -modulus 2>/dev/null | sed 's/^Modulus=//' | xxd -r -p | b64url)
JWKS='{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"bench-key","n":"'$JWT_N'","e":"AQAB"}]}'
JWT_NOW=$(date +%s)
JWT_HEADER=$(printf '%s' '{"alg":"RS256","typ":"at+JWT","kid":"bench-key"}' | b64url)
JWT_CLAIMS=$(printf '{"aud":"abcdef0123456789","client_id":"abcdef0123456789","iss":"https://accounts.firefox.com","iat":%d,"exp":%d,"jti":"%064d","scope":"profile","sub":"0123456789abcdef0123456789abcdef"}' \
    "$JWT_NOW" $((JWT_NOW + 3 * 3600)) 1 | b64url)
JWT_SIG=$(printf '%s.%s' "$JWT_HEADER" "$JWT_CLAIMS" | openssl dgst -sha256 -sign "$TMP/jwt-key.pem" -binary | b64url)
JWT="$JWT_HEADER.$JWT_CLAIMS.$JWT_SIG"
JWT_HEADER_LINE="Authorization: Bearer $JWT"

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
mkdir -p "$TMP/upstream-tmp" "$TMP/proxy-tmp" "$TMP/oauth-tmp" "$TMP/auth-tmp" "$TMP/auth-cache"
WORKER_CONNS=$((CONNS * 4))
((WORKER_CONNS >= 4096)) || WORKER_CONNS=4096
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=65536
fill "$HERE/upstream.conf.in" "$TMP/upstream.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" \
    "NOFILE=$NOFILE" "WORKER_CONNS=$WORKER_CONNS" "UPSTREAM_PORT=$UPSTREAM_PORT" "STATUS_PORT=$STATUS_PORT" "BODY=$BODY" \
    "BULK_FILE=$TMP/bulk.bin"
fill "$HERE/nginx-proxy.conf.in" "$TMP/nginx-proxy.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" \
    "NOFILE=$NOFILE" "WORKER_CONNS=$WORKER_CONNS" \
    "UPSTREAM_PORT=$UPSTREAM_PORT" "NGINX_PLAIN_PORT=$NGINX_PLAIN_PORT" \
    "NGINX_TLS_PORT=$NGINX_TLS_PORT" "KEEPALIVE=$KEEPALIVE" "PROXY_HEADERS=$PROXY_HEADERS"
fill "$HERE/bearer-oauth.conf.in" "$TMP/oauth.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" "NJS_MODULE=$NJS_MODULE" \
    "NOFILE=$NOFILE" "WORKER_CONNS=$WORKER_CONNS" "OAUTH_PORT=$OAUTH_PORT" "JWKS=$JWKS"
fill "$HERE/bearer-oauth.js.in" "$TMP/bearer-oauth.js" "INTROSPECT=$INTROSPECT" \
    "INTROSPECT_WRONG_SCOPE=$INTROSPECT_WRONG_SCOPE"
cp "$HERE/bearer-auth.js" "$TMP/bearer-auth.js"
fill "$HERE/bearer-nginx-auth.conf.in" "$TMP/nginx-auth.conf" "TMP=$TMP" "USER_LINE=$USER_LINE" \
    "NJS_MODULE=$NJS_MODULE" "NOFILE=$NOFILE" "WORKER_CONNS=$WORKER_CONNS" "UPSTREAM_PORT=$UPSTREAM_PORT" \
    "OAUTH_PORT=$OAUTH_PORT" "AUTH_PORT=$AUTH_PORT" "KEEPALIVE=$KEEPALIVE" "PROXY_HEADERS=$PROXY_HEADERS"
fill "$HERE/bearer-gateway.toml.in" "$TMP/gateway.toml" "PLAIN_PORT=$GW_PORT" \
    "UPSTREAM_PORT=$UPSTREAM_PORT" "OAUTH_PORT=$OAUTH_PORT" "KEEPALIVE=$KEEPALIVE" "CACHE_SIZE=$CACHE_SIZE"
fill "$HERE/bearer-gateway.toml.in" "$TMP/gateway-mem.toml" "PLAIN_PORT=$GWMEM_PORT" \
    "UPSTREAM_PORT=$UPSTREAM_PORT" "OAUTH_PORT=$OAUTH_PORT" "KEEPALIVE=$KEEPALIVE" "CACHE_SIZE=$CACHE_SIZE"

for c in upstream nginx-proxy oauth nginx-auth; do
    "$NGINX" -t -q -p "$TMP" -e "$TMP/nginx-t.log" -c "$TMP/$c.conf" 2>"$TMP/nginx-t.err" ||
        die "$c nginx config: $(cat "$TMP/nginx-t.err")"
done
"$GW" --check --config "$TMP/gateway.toml" >"$TMP/gw-check.log" 2>&1 ||
    die "gateway config: $(cat "$TMP/gw-check.log")"

# ---------------------------------------------------------------------------------------------
# Servers, all on the server core

start_server() { # log-file command... -> LAST_PID
    local out=$1
    shift
    nice -n "$NICE" taskset -c "$SERVER_CPU" "$@" >"$out" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
start_server "$TMP/upstream.out" "$NGINX" -p "$TMP" -e "$TMP/upstream-error.log" -c "$TMP/upstream.conf"
UPSTREAM_PID=$LAST_PID
start_server "$TMP/proxy.out" "$NGINX" -p "$TMP" -e "$TMP/proxy-error.log" -c "$TMP/nginx-proxy.conf"
NGINX_PID=$LAST_PID
start_server "$TMP/oauth.out" "$NGINX" -p "$TMP" -e "$TMP/oauth-error.log" -c "$TMP/oauth.conf"
OAUTH_PID=$LAST_PID
start_server "$TMP/gateway.out" "$GW" --config "$TMP/gateway.toml"
GW_PID=$LAST_PID
start_server "$TMP/auth.out" "$NGINX" -p "$TMP" -e "$TMP/auth-error.log" -c "$TMP/nginx-auth.conf"
AUTH_PID=$LAST_PID

wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" "upstream nginx"
wait_port "$STATUS_PORT" "$UPSTREAM_PID" "upstream nginx"
wait_port "$NGINX_PLAIN_PORT" "$NGINX_PID" "proxy nginx"
wait_port "$OAUTH_PORT" "$OAUTH_PID" "oauth nginx"
wait_port "$GW_PORT" "$GW_PID" "fxa-gateway"
wait_port "$AUTH_PORT" "$AUTH_PID" "nginx auth_request"

worker_of() { # nginx master pid -> its (single) worker pid
    local w
    for _ in $(seq 50); do
        w=$(awk -v p="$1" '$4 == p {print $1; exit}' /proc/[0-9]*/stat 2>/dev/null || true)
        [[ -n $w ]] && { echo "$w"; return 0; }
        sleep 0.1
    done
    die "no worker process under nginx $1"
}
UPSTREAM_WORKER=$(worker_of "$UPSTREAM_PID")
NGINX_WORKER=$(worker_of "$NGINX_PID")
OAUTH_WORKER=$(worker_of "$OAUTH_PID")
AUTH_WORKER=$(worker_of "$AUTH_PID")

OAUTH_LOG=$TMP/oauth-access.log
introspections() { # calls the fake OAuth server has answered so far
    if [[ -f $OAUTH_LOG ]]; then wc -l <"$OAUTH_LOG" | tr -d ' '; else echo 0; fi
}
# A fixed token for the throughput part: 64 hex digits, different every run; it starts with
# "a", so never with the fake's "dead" (inactive) or "0bad" (no profile scope).
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
TOKEN=a$(hex 32 | cut -c2-)
AUTH_HEADER="Authorization: Bearer $TOKEN"
INACTIVE_TOKEN=dead$(hex 30)
WRONG_SCOPE_TOKEN=0bad$(hex 30)

URL_NGINX=http://127.0.0.1:$NGINX_PLAIN_PORT$PLAIN_PATH
URL_PLAIN=http://127.0.0.1:$GW_PORT$PLAIN_PATH
URL_AUTHED=http://127.0.0.1:$GW_PORT$AUTHED_PATH
URL_NGINX_AUTH=http://127.0.0.1:$AUTH_PORT$AUTHED_PATH

check_url() { # url expected-status [curl args...]
    local u=$1 want=$2 out
    shift 2
    out=$(curl -sS --max-time 5 -o "$TMP/sanity.body" -w '%{http_code}' "$@" "$u") || die "$u: curl failed"
    [[ $out == "$want" ]] || die "$u answered $out, not $want: $(head -c 300 "$TMP/sanity.body")"
    if [[ $want == 200 && $(<"$TMP/sanity.body") != "$BODY" ]]; then
        die "$u: unexpected body: $(head -c 300 "$TMP/sanity.body")"
    fi
}
# Sanity: the introspection endpoint, every case URL; both bearer setups (the gateway's route and
# nginx's auth_request) refuse no token, an inactive token and one without the scope, let the
# good token through and answer its second request from their cache.
out=$(curl -sS --max-time 5 -d "token=$TOKEN&token_type_hint=access_token" "http://127.0.0.1:$OAUTH_PORT/v1/introspect") ||
    die "fake OAuth server: curl failed"
[[ $out == "$INTROSPECT" ]] || die "fake OAuth server answered: $out"
out=$(curl -sS --max-time 5 -d "token=$INACTIVE_TOKEN" "http://127.0.0.1:$OAUTH_PORT/v1/introspect") || die "fake OAuth server: curl failed"
[[ $out == '{"active":false}' ]] || die "fake OAuth server answered $out for an inactive token"
out=$(curl -sS --max-time 5 -d "token=$WRONG_SCOPE_TOKEN" "http://127.0.0.1:$OAUTH_PORT/v1/introspect") || die "fake OAuth server: curl failed"
[[ $out == "$INTROSPECT_WRONG_SCOPE" ]] || die "fake OAuth server answered $out for a token without the scope"
: >"$OAUTH_LOG"
check_url "$URL_NGINX" 200 -H "$AUTH_HEADER"
check_url "$URL_PLAIN" 200 -H "$AUTH_HEADER"
for u in "$URL_AUTHED" "$URL_NGINX_AUTH"; do
    check_url "$u" 401
    check_url "$u" 401 -H "Authorization: Bearer $INACTIVE_TOKEN"
    check_url "$u" 403 -H "Authorization: Bearer $WRONG_SCOPE_TOKEN"
    n0=$(introspections)
    check_url "$u" 200 -H "$AUTH_HEADER"
    check_url "$u" 200 -H "$AUTH_HEADER"
    sleep 0.2 # (nginx writes its access log line after the answer)
    n=$(introspections)
    [[ $((n - n0)) == 1 ]] || die "$u: expected 1 introspection call for two requests with one token, saw $((n - n0))"
done
REFUSALS="both bearer setups refused no token (401), an inactive token (401) and one without the scope (403)"
log "sanity: $REFUSALS; the good token passed, its second request came from the cache"
n=$(introspections)
# The JWT: verified locally once the gateway holds the JWK set (fetched at start).
for _ in $(seq 50); do
    code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H "$JWT_HEADER_LINE" "$URL_AUTHED" || true)
    [[ $code == 200 ]] && break
    sleep 0.1
done
check_url "$URL_AUTHED" 200 -H "$JWT_HEADER_LINE"
sleep 0.2 # (nginx writes its access log line after the answer)
[[ $(introspections) == "$n" ]] || die "the JWT was introspected: not verified locally"
INTROSPECT_START=$n

# ---------------------------------------------------------------------------------------------
# Measurement (as in compare.sh)
cpu_ticks() { # core -> "busy total irq+softirq" jiffies since boot
    awk -v c="cpu$1" '$1 == c {printf "%.0f %.0f %.0f\n", $2 + $3 + $4 + $7 + $8,
        $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $7 + $8}' /proc/stat
}
HZ=$(getconf CLK_TCK)
children_ticks() { # -> CHILD_TICKS: CPU time of this shell's reaped children (the load generator)
    times >"$TMP/times"
    CHILD_TICKS=$(awk -v hz="$HZ" 'NR == 2 {t = 0; for (i = 1; i <= 2; i++) {split($i, a, "m"); t += a[1] * 60 + a[2]}
        printf "%.0f\n", t * hz}' "$TMP/times")
}

declare -A C_LABEL C_URL C_PID C_AUTH
defcase() { C_LABEL[$1]=$2; C_URL[$1]=$3; C_PID[$1]=$4; C_AUTH[$1]=$5; }
defcase n "(n) nginx, plain proxy" "$URL_NGINX" "$NGINX_WORKER" "$AUTH_HEADER"
defcase p "(p) fxa-gateway, plain route" "$URL_PLAIN" "$GW_PID" "$AUTH_HEADER"
defcase t "(t) fxa-gateway, bearer route (warm)" "$URL_AUTHED" "$GW_PID" "$AUTH_HEADER"
defcase j "(j) fxa-gateway, bearer, local JWT" "$URL_AUTHED" "$GW_PID" "$JWT_HEADER_LINE"
defcase r "(r) nginx auth_request + cache (warm)" "$URL_NGINX_AUTH" "$AUTH_WORKER" "$AUTH_HEADER"
CASES="n p t j r"


load_cmd() { # case seconds -> LOAD[]; (n), (p), (t) send the same opaque token, (j) the JWT
    LOAD=(wrk -t1 -c"$CONNS" -d"$2"s --timeout 5s --latency -H "${C_AUTH[$1]}" -s "$HERE/report.lua" "${C_URL[$1]}")
}

parse_wrk() { # -> REQS RPS P50 P99 ERRS NON2XX (latencies in µs), from the BENCH line
    local line kv
    line=$(grep '^BENCH ' "$1" || true)
    REQS=0 RPS=0 ERRS=1 NON2XX=0 P50=nan P99=nan
    [[ -n $line ]] || return 0
    declare -A m=()
    for kv in ${line#BENCH }; do m[${kv%%=*}]=${kv#*=}; done
    REQS=${m[requests]}
    RPS=$(awk -v r="$REQS" -v d="${m[duration_us]}" 'BEGIN {printf "%.1f", (d > 0 ? r * 1e6 / d : 0)}')
    P50=${m[p50_us]}
    P99=${m[p99_us]}
    ERRS=$((m[connect] + m[read] + m[write] + m[timeout]))
    NON2XX=${m[status]}
    TOKENS_SENT=${m[tokens]:-0}
}

RESULTS=$TMP/runs.tsv
printf 'round\tcase\tattempt\tkept\treason\trps\tp50_us\tp99_us\trequests\tbusy_pct\tcore_us_req\tproxy_us_req\tupstream_us_req\tclient_busy_pct\tforeign_pct\tclient_foreign_pct\tupstream_new_conns\n' >"$RESULTS"


run_case() { # round case
    local r=$1 k=$2 kept=0 attempt=0 max=$((RUNS + RETRIES)) raw
    raw=$TMP/raw
    mkdir -p "$raw"
    wait_quiet
    load_cmd "$k" "$WARMUP"
    client "$raw/warmup.out" "${LOAD[@]}" || log "warm-up of ${C_LABEL[$k]} exited $?"
    while ((kept < RUNS && attempt < max)); do
        attempt=$((attempt + 1))
        ((attempt == 1)) || wait_quiet
        local base=$raw/r$r-$k-$attempt
        load_cmd "$k" "$DURATION"
        local s0 c0 p0 u0 o0 g0 s1 c1 p1 u1 o1 g1 rc=0 a0 a1 newconns
        a0=$(upstream_accepts)
        s0=$(cpu_ticks "$SERVER_CPU"); c0=$(cpu_ticks "$CLIENT_CPU")
        p0=$(proc_ticks "${C_PID[$k]}"); u0=$(proc_ticks "$UPSTREAM_WORKER"); o0=$(proc_ticks "$OAUTH_WORKER")
        children_ticks; g0=$CHILD_TICKS
        client "$base.out" "${LOAD[@]}" || rc=$?
        s1=$(cpu_ticks "$SERVER_CPU"); c1=$(cpu_ticks "$CLIENT_CPU")
        p1=$(proc_ticks "${C_PID[$k]}"); u1=$(proc_ticks "$UPSTREAM_WORKER"); o1=$(proc_ticks "$OAUTH_WORKER")
        children_ticks; g1=$CHILD_TICKS
        a1=$(upstream_accepts)
        newconns=-1
        ((a0 < 0 || a1 < 0)) || newconns=$((a1 - a0 - 1))
        parse_wrk "$base.out"
        # foreign: busy time on the server core that is none of our processes (proxy, upstream,
        # fake OAuth server) nor interrupt work; on the client core, less the load generator.
        local busy cbusy core_us proxy_us up_us foreign cforeign reason='' ours=$(((p1 - p0) + (u1 - u0) + (o1 - o0)))
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
        elif awk -v b="$busy" -v m="$MIN_BUSY" 'BEGIN {exit !(b < m)}'; then
            reason="server core ${busy}% busy < ${MIN_BUSY}% (client core ${cbusy}%, ${cforeign}% of it others)"
        elif awk -v f="$foreign" -v m="$MAX_FOREIGN" 'BEGIN {exit !(f > m)}'; then
            reason="other processes took ${foreign}% of the server core (> ${MAX_FOREIGN}%)"
        elif awk -v f="$cforeign" -v m="$MAX_FOREIGN" 'BEGIN {exit !(f > m)}'; then
            reason="other processes took ${cforeign}% of the client core (> ${MAX_FOREIGN}%)"
        fi
        local keep=1
        if [[ -n $reason ]]; then keep=0; else kept=$((kept + 1)); fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$k" "$attempt" "$keep" \
            "${reason:--}" "$RPS" "$P50" "$P99" "$REQS" "$busy" "$core_us" "$proxy_us" "$up_us" "$cbusy" \
            "$foreign" "$cforeign" "$newconns" >>"$RESULTS"
        log "  ${C_LABEL[$k]}: $(printf '%.0f' "$RPS") rps, p50 ${P50}us, p99 ${P99}us," \
            "server core ${busy}% (${foreign}% others), client core ${cbusy}% (${cforeign}% others)," \
            "${core_us} us/req, $newconns new upstream conns$([[ $keep == 1 ]] || echo " [DISCARDED: $reason]")"
    done
    ((kept == RUNS)) || log "  ${C_LABEL[$k]} round $r: only $kept of $RUNS runs kept"
}

# ---------------------------------------------------------------------------------------------
# Part 1: throughput
has_part throughput || ROUNDS=0
total=$((ROUNDS * 5 * (WARMUP + RUNS * (DURATION + 1) + 1)))
has_part throughput || log "part 1: skipped (PARTS=$PARTS)"
((ROUNDS == 0)) || log "part 1: $ROUNDS round(s) x 5 cases x ($WARMUP s warm-up + $RUNS x $DURATION s):" \
    "about $((total / 60)) min $((total % 60)) s, more if runs are discarded and repeated"
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2 == 1)); then order="n p t j r"; else order="r j t p n"; fi
    log "round $r/$ROUNDS ($order)"
    for k in $order; do
        run_case "$r" "$k"
    done
done
kill -0 "$GW_PID" 2>/dev/null || die "fxa-gateway died during the benchmark (log: $TMP/gateway.out)"
kill -0 "$NGINX_PID" 2>/dev/null || die "proxy nginx died during the benchmark (log: $TMP/proxy-error.log)"
kill -0 "$AUTH_PID" 2>/dev/null || die "nginx auth_request died during the benchmark (log: $TMP/auth-error.log)"
INTROSPECT_PART1=$(($(introspections) - INTROSPECT_START))
status_kb() { # pid field -> kB (VmRSS, VmHWM)
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}
GW_HWM=$(status_kb "$GW_PID" VmHWM)
NGINX_HWM=$(status_kb "$NGINX_WORKER" VmHWM)
AUTH_HWM=$(status_kb "$AUTH_WORKER" VmHWM)
# The throughput gateway is done: stop it so that it takes no memory or CPU in part 2.
kill -TERM "$GW_PID" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
# Part 2: memory for TOKENS distinct tokens
MEM_LINE="memory: skipped (TOKENS=0)"
if ! has_part memory; then
    MEM_LINE="memory: skipped (PARTS=$PARTS)"
elif ((TOKENS > 0)); then
    log "part 2: memory, $TOKENS distinct tokens through the fake OAuth server"
    wait_quiet
    if [[ -n $MEM_PRELOAD ]]; then
        [[ -r $MEM_PRELOAD ]] || die "MEM_PRELOAD=$MEM_PRELOAD is not readable"
        start_server "$TMP/gateway-mem.out" env LD_PRELOAD="$MEM_PRELOAD" "$GW" --config "$TMP/gateway-mem.toml"
        ALLOCATOR="LD_PRELOAD=$MEM_PRELOAD"
    else
        start_server "$TMP/gateway-mem.out" "$GW" --config "$TMP/gateway-mem.toml"
        ALLOCATOR="the binary's own (mimalloc, the gateway's global allocator)"
    fi
    GWM_PID=$LAST_PID
    wait_port "$GWMEM_PORT" "$GWM_PID" "fxa-gateway (memory)"
    URL_MEM=http://127.0.0.1:$GWMEM_PORT$AUTHED_PATH
    # Warm-up with one token and the same connections: buffers, pools, the runtime's arenas.
    client "$TMP/mem-warmup.out" wrk -t1 -c"$CONNS" -d"${WARMUP}s" --timeout 5s -H "$AUTH_HEADER" \
        -s "$HERE/report.lua" "$URL_MEM" || die "memory warm-up: wrk exited $? ($(tail -3 "$TMP/mem-warmup.out"))"
    parse_wrk "$TMP/mem-warmup.out"
    ((ERRS == 0 && NON2XX == 0 && REQS > 0)) || die "memory warm-up: $REQS requests, $ERRS errors, $NON2XX non-2xx"
    sleep 1
    RSS0=$(status_kb "$GWM_PID" VmRSS); HWM0=$(status_kb "$GWM_PID" VmHWM); I0=$(introspections)
    log "  before: VmRSS $RSS0 kB, VmHWM $HWM0 kB"
    PREFIX=a$(hex 28 | cut -c2-)
    # compare/bearer-oauth.js.in: tokens that start with "eac4" are each of their own user.
    [[ $MEM_USERS == each ]] && PREFIX=eac4$(hex 26)
    T0=$SECONDS
    TOKENS_SENT=0
    # The script stops sending after TOKENS answers and creates DONE; then SIGINT makes wrk
    # print its summary (it would otherwise sleep out its duration, here only a time cap).
    DONE=$TMP/mem-load.done
    rm -f "$DONE"
    nice -n "$NICE" taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${MEM_MAX}s" --timeout 5s \
        -s "$HERE/bearer-tokens.lua" "$URL_MEM" -- "$PREFIX" "$TOKENS" "$DONE" >"$TMP/mem-load.out" 2>&1 &
    CLIENT_PID=$!
    while kill -0 "$CLIENT_PID" 2>/dev/null && [[ ! -e $DONE ]]; do sleep 0.05; done
    kill -INT "$CLIENT_PID" 2>/dev/null || true
    rc=0
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=
    ((rc == 0)) || die "memory load: wrk exited $rc ($(tail -3 "$TMP/mem-load.out"))"
    [[ -e $DONE ]] || log "  WARNING: $TOKENS answers not reached within MEM_MAX=${MEM_MAX} s"
    ELAPSED=$((SECONDS - T0))
    parse_wrk "$TMP/mem-load.out"
    MEM_REQS=$REQS MEM_ERRS=$ERRS MEM_NON2XX=$NON2XX MEM_RPS=$RPS MEM_SENT=$TOKENS_SENT
    sleep 1
    RSS1=$(status_kb "$GWM_PID" VmRSS); HWM1=$(status_kb "$GWM_PID" VmHWM); I1=$(introspections)
    MEM_CALLS=$((I1 - I0))
    log "  after: VmRSS $RSS1 kB, VmHWM $HWM1 kB; $MEM_REQS answers, $MEM_CALLS introspection calls in ${ELAPSED} s"
    # The cache kept them: the first token again is a hit (no new introspection call).
    check_url "$URL_MEM" 200 -H "Authorization: Bearer ${PREFIX}00000001"
    sleep 0.2
    HIT_CALLS=$(($(introspections) - I1))
    kill -0 "$GWM_PID" 2>/dev/null || die "fxa-gateway (memory) died (log: $TMP/gateway-mem.out)"
    MEM_LINE=$(awk -v r0="$RSS0" -v r1="$RSS1" -v h0="$HWM0" -v h1="$HWM1" -v n="$MEM_REQS" -v t="$TARGET_MB" \
        -v calls="$MEM_CALLS" -v sent="$MEM_SENT" -v errs="$MEM_ERRS" -v bad="$MEM_NON2XX" -v rps="$MEM_RPS" \
        -v hit="$HIT_CALLS" -v alloc="$ALLOCATOR" \
        -v users="$([[ $MEM_USERS == each ]] && echo "as many users" || echo "one user")" 'BEGIN {
        d = (r1 - r0) / 1024
        printf "memory, %d distinct tokens of %s (%d sent, %d answered, %d errors, %d non-2xx; %.0f req/s):\n", \
            calls, users, sent, n, errs, bad, rps
        printf "  VmRSS %.1f MB -> %.1f MB: %+.1f MB (%.0f bytes per token)  target < %d MB extra: %s\n", \
            r0 / 1024, r1 / 1024, d, (calls > 0 ? (r1 - r0) * 1024 / calls : 0), t, \
            (d < t && calls > 0 && errs == 0 && bad == 0 ? "met" : "MISSED")
        printf "  VmHWM %.1f MB -> %.1f MB: %+.1f MB\n", h0 / 1024, h1 / 1024, (h1 - h0) / 1024
        printf "  introspection calls: %d for %d answers; first token again afterwards: %s\n", calls, n, \
            (hit == 0 ? "cache hit (no call)" : hit " call(s): NOT cached")
        printf "  allocator: %s", alloc }')
fi

# ---------------------------------------------------------------------------------------------
# Report
mkdir -p "$OUT_DIR"
stamp=$(date +%Y%m%d-%H%M%S)
REPORT=$OUT_DIR/report-$stamp.txt
cp "$RESULTS" "$OUT_DIR/runs-$stamp.tsv"
{
    echo "fxa-gateway bearer route — $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $ncpu cores"
    echo "$GW_VERSION; $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') with njs $NJS_VERSION; $(wrk --version 2>&1 | awk 'NR == 1 {print "wrk " $2}')"
    echo "plain HTTP/1.1, $CONNS connections, one fixed Bearer token in every request, ${DURATION} s per run after"
    echo "${WARMUP} s warm-up, $RUNS run(s) x $ROUNDS round(s); server core $SERVER_CPU (proxy, upstream, fake OAuth server),"
    echo "load generator on core $CLIENT_CPU; discarded: runs with errors or non-2xx, the server core under ${MIN_BUSY}% busy,"
    echo "or other processes over ${MAX_FOREIGN}% of either core."
    echo
    if has_part throughput; then
        awk -F'\t' -v target="$TARGET_RATIO" \
            -v labels="$(for k in $CASES; do printf '%s=%s;' "$k" "${C_LABEL[$k]}"; done)" \
            -f "$HERE/bearer-report.awk" "$RESULTS"
        echo "checked before part 1: $REFUSALS, and let the good token through."
        echo "introspection calls during part 1: $INTROSPECT_PART1 (0 = both caches stayed warm; the JWT is never introspected)"
        awk -v g="$GW_HWM" -v n="$NGINX_HWM" -v a="$AUTH_HWM" 'BEGIN {
            printf "peak RSS (VmHWM) after part 1: fxa-gateway %.1f MB, nginx worker %.1f MB, nginx auth_request worker %.1f MB\n",
                g / 1024, n / 1024, a / 1024 }'
    else
        echo "part 1 (throughput): skipped (PARTS=$PARTS); checked: $REFUSALS"
    fi
    echo
    echo "$MEM_LINE"
    echo
    discarded=$(awk -F'\t' 'NR > 1 && $4 != 1' "$RESULTS" | wc -l)
    echo "discarded runs: $discarded (reasons in $OUT_DIR/runs-$stamp.tsv)"
    echo "Changes under ~5% in throughput or ~10% in p99 are noise here; compare ratios within one run only."
} | tee "$REPORT"
log "report: $REPORT"
