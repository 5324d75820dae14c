#!/usr/bin/env bash
# Soak (issue 15): the release gateway under DURATION seconds of mixed traffic through every
# feature, against a fake FxA (examples/soak.rs), with its RSS, open file descriptors and
# tokio tasks sampled every 10 s.
#
# Traffic (examples/soak.rs MIX): bearer tokens from a pool 8x the introspection cache (churn),
# inactive and narrow-scope tokens, transparent refresh (and refresh tokens the OAuth server
# refuses), a flaky upstream whose 503 + Retry-After opens and closes back-off windows every
# 20 s, per-client quotas (busy clients over it, 10,000 others), AMO signing, AMO
# verification and replays, POST bodies, upstream 500/404/timeouts, and the gateway's own
# errors (no route, wrong method, unknown and sunset versions, body and headers too large, dot
# segments, header timeouts). Every answer is checked against what its kind allows.
#
# Pass: after the warm-up, RSS stays within 10 % of its value at the end of the warm-up; open
# FDs and tasks are flat (the second half of the run averages at most 10 % + 3 above the first
# half); no panic in the gateway's log; no unexpected answer.
#
#   benches/soak.sh                    # 10 minutes
#   DURATION=120 benches/soak.sh       # a shorter run
#
# Knobs: DURATION [600] s, WARMUP [DURATION/5, at most 120] s, RATE [200] requests/s,
#        BASE_PORT [18700], GATEWAY_BIN, DRIVER_BIN (examples/soak), KEEP_TMP=1,
#        OUT_DIR [target/bench-soak]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE="$ROOT/benches/compare"
DURATION=${DURATION:-600}
WARMUP=${WARMUP:-$((DURATION / 5 > 120 ? 120 : DURATION / 5))}
RATE=${RATE:-200}
BASE_PORT=${BASE_PORT:-18700}
OUT_DIR=${OUT_DIR:-$ROOT/target/bench-soak}
KEEP_TMP=${KEEP_TMP:-0}
for v in DURATION WARMUP RATE BASE_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "soak.sh: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
((DURATION >= 30 && WARMUP < DURATION)) || { echo "soak.sh: DURATION >= 30 and WARMUP < DURATION" >&2; exit 2; }

FAKE_PORT=$BASE_PORT
GW_PORT=$((BASE_PORT + 1))
ADMIN_PORT=$((BASE_PORT + 2))

# shellcheck source=compare/common.sh
source "$HERE/common.sh"
command -v curl >/dev/null || die "curl is needed"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d /tmp/fxa-soak.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ports_free "$FAKE_PORT" "$GW_PORT" "$ADMIN_PORT"
mkdir -p "$OUT_DIR"
prepare_gateway
if [[ -z ${DRIVER_BIN:-} ]]; then
    log "building the soak driver (cargo build --release --example soak)"
    (cd "$ROOT" && cargo build --release --quiet --example soak) || die "cargo build failed"
    DRIVER_BIN=$ROOT/target/release/examples/soak
fi
cp "$DRIVER_BIN" "$TMP/soak"

"$TMP/soak" fake "$FAKE_PORT" >"$TMP/fake.log" 2>&1 &
PIDS+=($!)
wait_port "$FAKE_PORT" "${PIDS[-1]}" "the fake FxA"

UP="http://127.0.0.1:$FAKE_PORT"
cat >"$TMP/gateway.toml" <<EOF
[server]
drain_timeout = "5s"
[server.log]
format = "json"
level = "warn"

[[listeners]]
name = "soak"
addr = "127.0.0.1:$GW_PORT"
accept_refresh_token = true

[admin]
addr = "127.0.0.1:$ADMIN_PORT"

[[upstreams]]
name = "oauth"
url = "$UP/oauth"
response_timeout = "2s"

[[upstreams]]
name = "api"
url = "$UP/api"
response_timeout = "1s"

[[upstreams]]
name = "flaky"
url = "$UP/flaky"

[[upstreams]]
name = "amo"
url = "$UP/amo"

[[upstreams]]
name = "verified"
url = "$UP/verified"

# Caches small enough to fill during the warm-up.
[bearer]
oauth_upstream = "oauth"
cache_size = 500
negative_ttl = "2s"

[refresh]
client_id = "5882386c6d801776"
client_secret = { env = "SOAK_CLIENT_SECRET" }
token_path = "/v1/token"
cache_size = 200

[[amo_credentials]]
name = "default"
api_key = "user:1:1"
secret = { env = "SOAK_AMO_SECRET" }

[[amo_issuers]]
api_key = "soak:1"
secret = { env = "SOAK_ISSUER_SECRET" }

[amo_verify]
replay_cache_size = 1000

[backoff]
max_scoped_windows = 100

[limits]
max_body_bytes = "64KiB"
header_read_timeout = "2s"

[[routes]]
name = "profile"
path_prefix = "/profile"
upstream = "api"
strip_prefix = true
versions = ["v1"]
auth = { policy = "bearer", scopes = ["profile"] }
refresh = true

[[routes]]
name = "flaky"
path_prefix = "/flaky"
upstream = "flaky"
strip_prefix = true
versions = ["v1"]

[[routes]]
name = "quota"
path_prefix = "/quota"
upstream = "api"
strip_prefix = true
versions = ["v1"]
quota = { requests = 2, window = "1s", key = "header:X-Client" }

[[routes]]
name = "amo"
path_prefix = "/amo"
upstream = "amo"
strip_prefix = true
versions = ["v5"]
auth = { policy = "amo-jwt", credential = "default" }

[[routes]]
name = "verify"
path_prefix = "/verify"
upstream = "verified"
strip_prefix = true
versions = ["v1"]
auth = { policy = "amo-jwt-verify", issuers = ["soak:1"] }

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "api"
strip_prefix = true
versions = ["v1"]
methods = ["GET", "POST"]
[[routes.deprecated_versions]]
version = "v0"
deprecation = "2020-01-01"
sunset = "2021-01-01"
EOF
export SOAK_CLIENT_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
export SOAK_AMO_SECRET=soak-amo-secret-0123456789abcdef
export SOAK_ISSUER_SECRET=soak-issuer-secret-0123456789abcdef
"$GW" --config "$TMP/gateway.toml" --check >/dev/null || die "the soak config does not check: $("$GW" --config "$TMP/gateway.toml" --check 2>&1)"
"$GW" --config "$TMP/gateway.toml" 2>"$TMP/gateway.log" &
GW_PID=$!
PIDS+=("$GW_PID")
wait_port "$GW_PORT" "$GW_PID" "fxa-gateway"

sample() { # -> "rss_kib fds tasks open_conns"
    local rss fds metrics tasks conns
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status")
    metrics=$(curl -sS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" || true)
    tasks=$(awk '$1 == "fxa_gateway_tasks" {print $2}' <<<"$metrics")
    conns=$(awk '$1 == "fxa_gateway_open_connections" {print $2}' <<<"$metrics")
    fds=$(find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    echo "${rss:-0} $fds ${tasks:-0} ${conns:-0}"
}

SAMPLES="$OUT_DIR/samples.tsv"
printf 't_s\trss_kib\tfds\ttasks\topen_conns\n' >"$SAMPLES"
log "gateway $GW_VERSION; soak for $DURATION s at $RATE req/s (warm-up $WARMUP s), samples every 10 s"
"$TMP/soak" drive "127.0.0.1:$GW_PORT" "$DURATION" "$RATE" >"$TMP/drive.log" 2>&1 &
DRIVER=$!
PIDS+=("$DRIVER")
start=$SECONDS
while kill -0 "$DRIVER" 2>/dev/null; do
    t=$((SECONDS - start))
    read -r rss fds tasks conns < <(sample)
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" "$fds" "$tasks" "$conns" >>"$SAMPLES"
    log "t=${t}s rss=${rss} KiB fds=$fds tasks=$tasks conns=$conns $(grep '^SOAK t=' "$TMP/drive.log" | tail -1 | cut -d' ' -f3-)"
    for _ in $(seq 20); do kill -0 "$DRIVER" 2>/dev/null && sleep 0.5; done
done
drive_rc=0
wait "$DRIVER" || drive_rc=$?
kill -0 "$GW_PID" 2>/dev/null || die "the gateway died: $(tail -5 "$TMP/gateway.log")"
panics=$(grep -c panicked "$TMP/gateway.log" || true)

REPORT="$OUT_DIR/report.txt"
{
    echo "fxa-gateway soak ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $GW_VERSION)"
    echo "duration $DURATION s at $RATE req/s, warm-up $WARMUP s"
    echo
    column -t -s $'\t' "$SAMPLES"
    echo
    grep '^SOAK' "$TMP/drive.log" | grep -v '^SOAK t=' || true
    echo
    awk -F'\t' -v w="$WARMUP" -v panics="$panics" -v drive_rc="$drive_rc" '
        NR == 1 { next }
        { t[NR] = $1; rss[NR] = $2; fds[NR] = $3; tasks[NR] = $4; n = NR }
        END {
            for (i = 2; i <= n; i++) if (t[i] <= w) ref = i
            if (!ref) ref = 2
            maxrss = 0
            for (i = ref; i <= n; i++) if (rss[i] > maxrss) maxrss = rss[i]
            m = 0; for (i = ref + 1; i <= n; i++) after[++m] = i
            half = int(m / 2)
            for (i = 1; i <= m; i++) {
                k = after[i]
                if (i <= half) { f1 += fds[k]; t1 += tasks[k]; c1++ } else { f2 += fds[k]; t2 += tasks[k]; c2++ }
            }
            f1 = c1 ? f1 / c1 : 0; f2 = c2 ? f2 / c2 : 0; t1 = c1 ? t1 / c1 : 0; t2 = c2 ? t2 / c2 : 0
            rss_ok = maxrss <= rss[ref] * 1.10
            fds_ok = f2 <= f1 * 1.10 + 3
            tasks_ok = t2 <= t1 * 1.10 + 3
            printf "memory: %d KiB at the end of the warm-up (t=%ss), at most %d KiB after (%+.1f %%, limit +10 %%): %s\n",
                rss[ref], t[ref], maxrss, 100 * (maxrss / rss[ref] - 1), rss_ok ? "ok" : "FAIL"
            printf "open fds: %.1f average in the first half after the warm-up, %.1f in the second: %s\n", f1, f2, fds_ok ? "ok" : "FAIL"
            printf "tasks: %.1f average in the first half after the warm-up, %.1f in the second: %s\n", t1, t2, tasks_ok ? "ok" : "FAIL"
            printf "panics in the gateway log: %d: %s\n", panics, panics == 0 ? "ok" : "FAIL"
            printf "unexpected answers: %s\n", drive_rc == 0 ? "none: ok" : "some (see SOAK unexpected above): FAIL"
            printf "RESULT: %s\n", (rss_ok && fds_ok && tasks_ok && panics == 0 && drive_rc == 0) ? "PASS" : "FAIL"
        }' "$SAMPLES"
} | tee "$REPORT"
grep -q '^RESULT: PASS' "$REPORT"
