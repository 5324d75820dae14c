#!/usr/bin/env bash
# Runs every fuzz target (or those named) under AFL++ for a bounded time each, then prints
# executions, corpus, edge coverage, crashes and hangs per target. Stable Rust only: cargo-afl
# builds AFL++ from its crate with the system C compiler (gcc is enough) and instruments the
# targets with rustc's own sanitizer-coverage pass.
#
#   fuzz/run.sh                      # every target, 180 s each
#   SECONDS_PER_TARGET=60 fuzz/run.sh scope amo_jwt
#   RESUME=1 fuzz/run.sh config      # continue from the last run's queue instead of the seeds
#
# Outputs under fuzz/out/<target>/default/ (queue, crashes, hangs, fuzzer_stats). Exits 1 when
# any target saved a crash or a hang: replay one with `fuzz/target/release/<target> < FILE`.
# Not run by CI (which only compiles the targets); needs a few minutes per target.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-180}
ALL=(request_head authorization scope retry_after introspect_answer token_answer
  upstream_error amo_jwt refresh_token_header config)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi

if ! cargo afl --version >/dev/null 2>&1; then
  echo "== installing cargo-afl (builds AFL++ with the system C compiler)"
  cargo install --locked cargo-afl
fi
# cargo-afl builds AFL++ on install; an older install may still need this step.
cargo afl config --build >/dev/null 2>&1 || true

echo "== building the targets with AFL++ instrumentation (release, debug assertions on)"
cargo afl build --release

# A shared machine: no CPU binding, no core-pattern or frequency checks, no UI.
export AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_SKIP_CRASHES=1 AFL_QUIET=1

stat() { sed -n "s/^$2 *: *//p" "$1" | head -1; }

status=0
rows=()
for t in "${TARGETS[@]}"; do
  out="out/$t"
  seeds="seeds/$t"
  if [ "${RESUME:-0}" = 1 ] && [ -d "$out/default/queue" ]; then
    seeds=-
  else
    rm -rf "$out"
  fi
  mkdir -p out
  echo "== $t: ${SECONDS_PER_TARGET}s from ${seeds}"
  log="out/$t.log"
  # -V: stop after this many seconds; -t: 1 s per input is far beyond any healthy one.
  cargo afl fuzz -i "$seeds" -o "$out" -V "$SECONDS_PER_TARGET" -t 1000 \
    -- "target/release/$t" >"$log" 2>&1 || { echo "afl-fuzz failed, see fuzz/$log"; tail -20 "$log"; status=1; continue; }
  s="$out/default/fuzzer_stats"
  crashes=$(stat "$s" saved_crashes)
  hangs=$(stat "$s" saved_hangs)
  rows+=("$(printf '%-21s %12s %9s %7s %15s %9s %7s %5s' "$t" "$(stat "$s" execs_done)" \
    "$(stat "$s" execs_per_sec)" "$(stat "$s" corpus_count)" \
    "$(stat "$s" edges_found)/$(stat "$s" total_edges)" "$(stat "$s" bitmap_cvg)" \
    "$crashes" "$hangs")")
  if [ "${crashes:-0}" != 0 ] || [ "${hangs:-0}" != 0 ]; then
    status=1
    echo "   saved: $(ls "$out"/default/crashes/ "$out"/default/hangs/ 2>/dev/null | grep -c id:) file(s) under fuzz/$out/default/{crashes,hangs}"
  fi
done

echo
printf '%-21s %12s %9s %7s %15s %9s %7s %5s\n' target execs execs/s corpus edges bitmap crashes hangs
printf '%s\n' "${rows[@]}"
exit "$status"
