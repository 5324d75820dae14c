#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the in-process end-to-end tests (real sockets on
# 127.0.0.1 with the fake FxA), and the --check run over every shipped config.
# Needs cargo and redis-server (installed here when missing and possible); uses cargo-nextest
# when present, else cargo test.
set -euo pipefail
cd "$(dirname "$0")"
# The shared-state tests (tests/redis_shared.rs) start Debian's redis-server: install it when it
# is missing and this shell may (root, or passwordless sudo, with apt-get).
if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update && apt-get install -y redis-server
  elif sudo -n true 2>/dev/null; then
    sudo apt-get update && sudo apt-get install -y redis-server
  else
    echo "test.sh: redis-server is missing (apt-get install -y redis-server); tests/redis_shared.rs will fail" >&2
  fi
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi
