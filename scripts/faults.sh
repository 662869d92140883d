#!/usr/bin/env bash
# `make test-faults` / `make test-load`: the fault suite (module `faults` of the test crate,
# tests/faults.rs) and the many-runners load test (module `load`, tests/load.rs), against
# real servers, then the fault table. Both are `#[ignore]`d in a plain `cargo test`.
#
#   scripts/faults.sh [all|faults|load]     (default: all)
#
# Uses ELT_TEST_PG_URL and ELT_TEST_REDIS_URL when both are set; otherwise starts a
# throwaway PostgreSQL + Redis (scripts/services.sh) and stops them at the end. Tests that
# stop or restart a server start private ones of their own. Exits non-zero when a test fails.
set -euo pipefail

cd "$(dirname "$0")/.."
what=${1:-all}
case "$what" in
all | faults | load) ;;
*)
    echo "usage: $0 [all|faults|load]" >&2
    exit 2
    ;;
esac

. scripts/test-env.sh faults

ELT_FAULTS_REPORT=$(mktemp "${TMPDIR:-/tmp}/elt-faults-report.XXXXXX")
export ELT_FAULTS_REPORT
started=$SECONDS
rc=0
if [ "$what" != load ]; then
    echo "==> cargo test --test main -- --ignored --test-threads=2 faults::"
    cargo test --test main -- --ignored --test-threads=2 faults:: || rc=$?
fi
if [ "$what" != faults ]; then
    echo "==> cargo test --test main -- --ignored --nocapture load::"
    cargo test --test main -- --ignored --nocapture load:: || rc=$?
fi

echo
echo "==> fault table ($((SECONDS - started)) s)"
{
    printf 'fault\truns\tsurvived\trows lost\n'
    sort "$ELT_FAULTS_REPORT"
} | awk -F'\t' '
    { rows[NR] = $0; for (i = 1; i <= NF; i++) if (length($i) > w[i]) w[i] = length($i) }
    END {
        for (r = 1; r <= NR; r++) {
            n = split(rows[r], f, "\t"); line = ""
            for (i = 1; i <= n; i++) line = line sprintf(i == 1 ? "%-" w[i] "s" : " | %" w[i] "s", f[i])
            print line
            if (r == 1) { sep = ""; for (i = 1; i <= length(line); i++) sep = sep "-"; print sep }
        }
    }'
lost=$(awk -F'\t' '{ s += $4 } END { print s + 0 }' "$ELT_FAULTS_REPORT")
faults=$(wc -l <"$ELT_FAULTS_REPORT")
rm -f "$ELT_FAULTS_REPORT"
echo "$faults fault scenario(s), rows lost: $lost"
if [ "$lost" != 0 ]; then
    echo "rows were lost" >&2
    rc=1
fi
exit "$rc"
