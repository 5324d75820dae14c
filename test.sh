#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the in-process end-to-end tests (real sockets on
# 127.0.0.1 with the fake FxA), and the --check run over every shipped config.
# Needs only cargo; uses cargo-nextest when present, else cargo test.
set -euo pipefail
cd "$(dirname "$0")"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi
