#!/usr/bin/env bash
# `make test`: formatting, clippy and every test target, against PostgreSQL + Redis.
#
# Uses ELT_TEST_PG_URL and ELT_TEST_REDIS_URL when both are set; otherwise starts a
# throwaway PostgreSQL + Redis in a fresh temporary directory and always stops them.
# Exits with the status of the first failing step.
set -euo pipefail

cd "$(dirname "$0")/.."

. scripts/test-env.sh test

echo "==> cargo fmt --all -- --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "==> cargo test --all-targets"
cargo test --all-targets
