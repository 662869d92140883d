#!/usr/bin/env bash
# `make test`: formatting, clippy and every test target, against PostgreSQL + Redis.
#
# Uses ELT_TEST_PG_URL and ELT_TEST_REDIS_URL when both are set; otherwise starts a
# throwaway PostgreSQL + Redis in a fresh temporary directory and always stops them.
# Exits with the status of the first failing step.
set -euo pipefail

cd "$(dirname "$0")/.."

scripts/services.sh ensure-redis

if [ -n "${ELT_TEST_PG_URL:-}" ] && [ -n "${ELT_TEST_REDIS_URL:-}" ]; then
    echo "==> using ELT_TEST_PG_URL / ELT_TEST_REDIS_URL from the environment"
else
    SVC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/elt-test.XXXXXX")
    # shellcheck disable=SC2064
    trap "scripts/services.sh stop '$SVC_DIR' || true" EXIT
    trap 'exit 130' INT TERM
    echo "==> starting throwaway PostgreSQL + Redis in $SVC_DIR"
    eval "$(scripts/services.sh start "$SVC_DIR")"
fi
export ELT_TEST_PG_URL ELT_TEST_REDIS_URL
# the user's own elt settings (ELT_MASTER_URL, ...) must not leak into the tests
for var in $(compgen -e | grep '^ELT_' | grep -v '^ELT_TEST_' || true); do
    unset "$var"
done

echo "==> cargo fmt --all -- --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "==> cargo test --all-targets"
cargo test --all-targets
