# Sourced by scripts/test.sh and scripts/faults.sh: makes sure Redis is installed, uses
# ELT_TEST_PG_URL / ELT_TEST_REDIS_URL when both are set or else starts throwaway servers
# (stopped on exit), and keeps the user's own ELT_* settings out of the tests.
# Usage: . scripts/test-env.sh NAME   (NAME names the temporary folder)

scripts/services.sh ensure-redis

if [ -n "${ELT_TEST_PG_URL:-}" ] && [ -n "${ELT_TEST_REDIS_URL:-}" ]; then
    echo "==> using ELT_TEST_PG_URL / ELT_TEST_REDIS_URL from the environment"
else
    SVC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/elt-$1.XXXXXX")
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
