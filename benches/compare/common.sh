# Shell functions shared by benches/compare.sh and benches/bearer.sh. Sourced, not run:
# they read the calling script's settings (ports, cores, temp dir).

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

die() { log "ERROR: $*"; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port pid name
    for _ in $(seq 100); do
        port_busy "$1" && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited at start-up (see logs in $TMP; KEEP_TMP=1 keeps them)"
        sleep 0.1
    done
    die "$3 did not listen on port $1 within 10 s"
}

fill() { # template output, then NAME=VALUE pairs
    local in=$1 out=$2 kv content
    shift 2
    content=$(<"$in")
    for kv in "$@"; do
        content=${content//"@${kv%%=*}@"/"${kv#*=}"}
    done
    if [[ $content =~ @[A-Z_]+@ ]]; then die "unfilled placeholder ${BASH_REMATCH[0]} in $in"; fi
    printf '%s\n' "$content" >"$out"
}

proc_ticks() { # pid -> utime+stime jiffies (all threads)
    local s
    s=$(<"/proc/$1/stat")
    s=${s##*) }
    awk '{printf "%.0f\n", $12 + $13}' <<<"$s"
}

proc_user_ticks() { # pid -> utime jiffies (all threads): the user-space share of proc_ticks
    local s
    s=$(<"/proc/$1/stat")
    s=${s##*) }
    awk '{printf "%.0f\n", $12}' <<<"$s"
}

upstream_accepts() { # connections the upstream has accepted so far (less this status request)
    curl -sS --max-time 2 "http://127.0.0.1:$STATUS_PORT/status" 2>/dev/null |
        awk 'NR == 3 {printf "%.0f\n", $1 - 1; found = 1} END {if (!found) print -1}'
}

# Run the load generator on the client core in the background (so a signal reaches the trap at
# once) and wait for it.
client() { # out-file, command...
    local out=$1 rc=0
    shift
    nice -n "$NICE" taskset -c "$CLIENT_CPU" "$@" >"$out" 2>&1 &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=
    return "$rc"
}

# Other work on the machine (a compiler, a test run) skews every figure, on either core: before a
# case, wait (up to QUIET_WAIT s) until both cores are idle apart from us (our servers idle
# between runs).
busy_pct_over() { # seconds -> "server% client%" busy over that time
    local a0 b0 a1 b1
    a0=$(cpu_ticks "$SERVER_CPU"); b0=$(cpu_ticks "$CLIENT_CPU")
    sleep "$1"
    a1=$(cpu_ticks "$SERVER_CPU"); b1=$(cpu_ticks "$CLIENT_CPU")
    awk -v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" 'BEGIN {
        split(a0, x, " "); split(a1, y, " "); split(b0, u, " "); split(b1, v, " ")
        t = y[2] - x[2]; w = v[2] - u[2]
        printf "%.0f %.0f\n", (t > 0 ? 100 * (y[1] - x[1]) / t : 0), (w > 0 ? 100 * (v[1] - u[1]) / w : 0)}'
}

wait_quiet() {
    local start=$SECONDS sb cb said=0
    while :; do
        read -r sb cb < <(busy_pct_over 0.5)
        ((sb > QUIET_MAX || cb > QUIET_MAX)) || return 0
        if ((SECONDS - start >= QUIET_WAIT)); then
            log "  the machine is still busy (core $SERVER_CPU ${sb}%, core $CLIENT_CPU ${cb}%) after ${QUIET_WAIT} s: going on"
            return 0
        fi
        ((said)) || log "  waiting for other processes to finish (core $SERVER_CPU ${sb}%, core $CLIENT_CPU ${cb}% busy)..."
        said=1
        sleep 2
    done
}

# Dies if any of the given ports is already taken.
ports_free() {
    local p
    for p in "$@"; do
        port_busy "$p" && die "port $p is in use (set BASE_PORT to move all ports)"
    done
    return 0
}

# Builds the gateway (or takes GATEWAY_BIN), runs a private copy from $TMP (a concurrent cargo
# build may replace target/release/fxa-gateway) and makes certificates in $TMP/certs.
# Sets GW and GW_VERSION.
prepare_gateway() {
    if [[ -n ${GATEWAY_BIN:-} ]]; then
        [[ -x $GATEWAY_BIN ]] || die "GATEWAY_BIN=$GATEWAY_BIN is not executable"
    else
        log "building fxa-gateway (cargo build --release)"
        (cd "$ROOT" && cargo build --release --quiet --bin fxa-gateway) || die "cargo build failed"
        GATEWAY_BIN=$ROOT/target/release/fxa-gateway
    fi
    cp "$GATEWAY_BIN" "$TMP/fxa-gateway"
    GW=$TMP/fxa-gateway
    GW_VERSION=$("$GW" --version 2>/dev/null || echo "fxa-gateway ?")
    "$GW" gen-cert --out "$TMP/certs" --name localhost --name 127.0.0.1 >/dev/null ||
        die "fxa-gateway gen-cert failed"
    [[ -s $TMP/certs/gateway.pem && -s $TMP/certs/gateway-key.pem ]] ||
        die "gen-cert wrote no certificate"
}
