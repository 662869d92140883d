#!/usr/bin/env bash
# make bench: elt against PostgreSQL's own paths, measured in the same sitting.
#
# Scenarios (each REPS times, medians reported):
#   full         first run into an empty A        vs  psql binary COPY pipe M -> A (into the
#                                                     table with its primary key)
#   incremental  1% updated, 0.5% inserted,       vs  hand-written SQL: changed rows through
#                0.5% deleted in M                    a staging table + ON CONFLICT, then all
#                                                     ids into a temp table + anti-join DELETE
#   incr-nodel   1% updated, 0.5% inserted        vs  the same hand-written SQL
#   no-op        nothing changed                  vs  the same hand-written SQL
#   keys         the key comparison stage of incr-nodel and no-op (`timings_ms.delete`)
#                vs the slower of `SELECT count(*), sum(hashint8(id)) FROM items` on M, on A
#   verify       `elt verify items`               vs  the raw COPY pipe
#   many jobs    K=100 jobs x 100 rows: first run and no-op run, ms per job
# After every elt run, A is compared with M (row count and an order-independent digest).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
REPS=${REPS:-3}
OUT=${BENCH_OUT:-bench/last-run.md}
ELT=${ELT:-./target/release/elt}

log() { echo "bench: $*" >&2; }

if [ -z "${ELT_TEST_PG_URL:-}" ] || [ -z "${ELT_TEST_REDIS_URL:-}" ]; then
    SVC=$(mktemp -d /tmp/elt-bench-XXXXXX)
    trap 'scripts/services.sh stop "$SVC" >/dev/null 2>&1 || true' EXIT
    scripts/services.sh start "$SVC" >/dev/null
    # shellcheck disable=SC1091
    . "$SVC/env"
fi
for tool in time bc; do
    command -v "$tool" >/dev/null || [ -x /usr/bin/$tool ] || { [ "$(id -u)" = 0 ] && apt-get install -y -qq "$tool" >/dev/null; }
done

BASE=${ELT_TEST_PG_URL%/*}
M="$BASE/elt_bench_m"; A="$BASE/elt_bench_a"; R="$BASE/elt_bench_ref"
REDIS=$ELT_TEST_REDIS_URL
PREFIX=eltbench
WORK=$(mktemp -d /tmp/elt-bench-work-XXXXXX)
mkdir -p "$WORK/jobs" "$WORK/logs"

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
now_s() { date +%s.%N; }

TABLE_DDL="CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, sku text, title text, category text,
  price numeric(12,2), qty int, attrs jsonb, tags text[], created_at timestamptz, updated_at timestamptz)"
COLS="id, sku, title, category, price, qty, attrs, tags, created_at, updated_at"
SET_LIST="sku = EXCLUDED.sku, title = EXCLUDED.title, category = EXCLUDED.category, price = EXCLUDED.price,
  qty = EXCLUDED.qty, attrs = EXCLUDED.attrs, tags = EXCLUDED.tags, created_at = EXCLUDED.created_at,
  updated_at = EXCLUDED.updated_at"

cat > "$WORK/jobs/items.yaml" <<YAML
CREATE_TABLE_SQL: |
  $TABLE_DDL
SELECT_SOURCE_SQL: |
  SELECT $COLS FROM items WHERE updated_at > %s
UPSERT_TARGET_SQL: |
  INSERT INTO items ($COLS) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
  ON CONFLICT (id) DO UPDATE SET $SET_LIST
SELECT_KEYS_SQL: SELECT id FROM items
TARGET_TABLE: items
KEY_COLUMNS: [id]
YAML

log "creating the workload: $N rows in M"
for db in elt_bench_m elt_bench_a elt_bench_ref; do
    psql_q "$ELT_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done
psql_q "$M" <<SQL
$TABLE_DDL;
INSERT INTO items
SELECT g, 'SKU-' || lpad(g::text, 10, '0'),
       'Item ' || g || ' ' || substr(md5(g::text), 1, 20),
       (ARRAY['books','games','garden','tools','toys','food'])[1 + g % 6],
       (g % 100000) / 100.0, g % 1000,
       jsonb_build_object('color', (ARRAY['red','green','blue'])[1 + g % 3], 'size', g % 50),
       ARRAY['t' || (g % 10), 't' || (g % 7)],
       now() - (g % 100000) * interval '1 minute', now() - interval '1 day'
FROM generate_series(1, $N) g;
CREATE INDEX items_updated_at ON items (updated_at);
VACUUM ANALYZE items;
SQL
SEQ=$N
psql_q "$R" -c "$TABLE_DDL"
log "row size: $(psql -XAtq "$M" -c "SELECT round(avg(pg_column_size(i.*))) FROM items i") bytes"

export ELT_MASTER_URL=$M ELT_ANALYTICS_URL=$A ELT_REDIS_URL=$REDIS ELT_REDIS_PREFIX=$PREFIX
export ELT_JOBS_DIR=$WORK/jobs ELT_LOG_DIR=$WORK/logs

digest() { # db -> "count sum"
    psql -XAtq "$1" -c "SELECT count(*) || ' ' || coalesce(sum(('x' || substr(md5(i::text), 1, 15))::bit(60)::bigint::numeric), 0) FROM items i"
}
check_equal() {
    local m a
    m=$(digest "$M"); a=$(digest "$A")
    if [ "$m" != "$a" ]; then
        echo "bench: FAILED: A differs from M after $1 (M: $m, A: $a)" >&2
        exit 1
    fi
}
redis_used() { redis-cli -u "$REDIS" INFO memory | awk -F: '/^used_memory:/ {print $2+0}'; }

ELT_SECS=0; ELT_RSS=0; ELT_JSON=
run_elt() { # -> sets ELT_SECS, ELT_RSS (KiB)
    local t="$WORK/time"
    /usr/bin/time -f "%e %M" -o "$t" "$ELT" run-job items --json > "$WORK/out.json" || {
        cat "$WORK/out.json" >&2; exit 1; }
    read -r ELT_SECS ELT_RSS < "$t"
    ELT_JSON=$(cat "$WORK/out.json")
}
ref_full() {
    psql_q "$R" -c "TRUNCATE items"
    local s; s=$(now_s)
    psql -X -q "$M" -c "COPY items TO STDOUT (FORMAT binary)" | psql -X -q "$R" -c "COPY items FROM STDIN (FORMAT binary)"
    echo "$(now_s) - $s" | bc
    # untimed: a table in use has statistics (autovacuum's); without them the planner may
    # pick a nested-loop anti-join for the reference's DELETE and run for minutes
    psql_q "$R" -c "ANALYZE items" >/dev/null
}
ref_incremental() { # $1: watermark
    local s; s=$(now_s)
    psql -X -q "$M" -c "COPY (SELECT $COLS FROM items WHERE updated_at > '$1') TO STDOUT (FORMAT binary)" |
        psql -X -q -1 "$R" -c "CREATE TEMP TABLE s (LIKE items)" -c "COPY s FROM STDIN (FORMAT binary)" \
            -c "INSERT INTO items SELECT * FROM s ON CONFLICT (id) DO UPDATE SET $SET_LIST"
    psql -X -q "$M" -c "COPY (SELECT id FROM items) TO STDOUT (FORMAT binary)" |
        psql -X -q -1 "$R" -c "CREATE TEMP TABLE k (id bigint)" -c "COPY k FROM STDIN (FORMAT binary)" \
            -c "ANALYZE k" -c "DELETE FROM items t WHERE NOT EXISTS (SELECT 1 FROM k WHERE k.id = t.id)"
    echo "$(now_s) - $s" | bc
}
mutate() { # 1% updated, 0.5% inserted, 0.5% deleted ($1 = nodel: none deleted)
    local upd=$((N / 100)) ins=$((N / 200)) del=$((N / 200))
    [ "${1:-}" = nodel ] && del=0
    psql_q "$M" <<SQL
UPDATE items SET price = price + 1, qty = qty + 1, updated_at = now()
 WHERE id IN (SELECT id FROM items TABLESAMPLE BERNOULLI (2) LIMIT $upd);
DELETE FROM items WHERE id IN (SELECT id FROM items TABLESAMPLE BERNOULLI (2) LIMIT $del);
INSERT INTO items SELECT g, 'SKU-' || g, 'New item ' || g, 'new', 1.5, 1, '{"new": true}', ARRAY['n'],
       now(), now() FROM generate_series($SEQ + 1, $SEQ + $ins) g;
SQL
    SEQ=$((SEQ + ins))
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
timed() { # seconds a command takes
    local s; s=$(now_s)
    "$@" >/dev/null
    echo "$(now_s) - $s" | bc
}
summary_ref() { # the slower of the in-database key summaries of M and of A
    local m a
    m=$(timed psql -XAtq "$M" -c "SELECT count(*), sum(hashint8(id)) FROM items")
    a=$(timed psql -XAtq "$A" -c "SELECT count(*), sum(hashint8(id)) FROM items")
    echo "if ($m > $a) $m else $a" | bc
}
key_stage() { echo "$ELT_JSON" | grep -o '"delete":[0-9]*' | cut -d: -f2 | awk '{print $1 / 1000}'; }

declare -A E R_ RSS
for sc in full incremental incr-nodel noop keys-nodel keys-noop verify; do E[$sc]=""; R_[$sc]=""; RSS[$sc]=0; done
REDIS_PER_ROW=0

log "full: $REPS x elt into an empty A, and the raw COPY pipe"
for i in $(seq "$REPS"); do
    psql_q "$A" -c "DROP TABLE IF EXISTS items"
    "$ELT" reset-state items >/dev/null
    before=$(redis_used)
    run_elt
    check_equal "full run $i"
    after=$(redis_used)
    REDIS_PER_ROW=$(echo "($after - $before) / $N" | bc -l)
    E[full]+="$ELT_SECS "; RSS[full]=$(( ELT_RSS > RSS[full] ? ELT_RSS : RSS[full] ))
    R_[full]+="$(ref_full) "
    log "  run $i: elt ${ELT_SECS}s, rss ${ELT_RSS} KiB"
done

log "incremental: $REPS x (1% updated, 0.5% inserted, 0.5% deleted in M)"
for i in $(seq "$REPS"); do
    wm=$(psql -XAtq "$M" -c "SELECT now()")
    mutate
    run_elt
    check_equal "incremental run $i"
    E[incremental]+="$ELT_SECS "; RSS[incremental]=$(( ELT_RSS > RSS[incremental] ? ELT_RSS : RSS[incremental] ))
    R_[incremental]+="$(ref_incremental "$wm") "
    log "  run $i: elt ${ELT_SECS}s $(echo "$ELT_JSON" | grep -o '"rows_upserted":[0-9]*,"rows_unchanged":[0-9]*,"rows_deleted":[0-9]*')"
done

log "incremental without deletions: $REPS x (1% updated, 0.5% inserted in M)"
for i in $(seq "$REPS"); do
    wm=$(psql -XAtq "$M" -c "SELECT now()")
    mutate nodel
    run_elt
    check_equal "incremental run without deletions $i"
    E[incr-nodel]+="$ELT_SECS "; RSS[incr-nodel]=$(( ELT_RSS > RSS[incr-nodel] ? ELT_RSS : RSS[incr-nodel] ))
    E[keys-nodel]+="$(key_stage) "; R_[keys-nodel]+="$(summary_ref) "
    R_[incr-nodel]+="$(ref_incremental "$wm") "
    log "  run $i: elt ${ELT_SECS}s, key stage $(key_stage)s"
done

log "no-op: $REPS x with nothing changed"
for i in $(seq "$REPS"); do
    wm=$(psql -XAtq "$M" -c "SELECT now()")
    run_elt
    check_equal "no-op run $i"
    E[noop]+="$ELT_SECS "; RSS[noop]=$(( ELT_RSS > RSS[noop] ? ELT_RSS : RSS[noop] ))
    E[keys-noop]+="$(key_stage) "; R_[keys-noop]+="$(summary_ref) "
    R_[noop]+="$(ref_incremental "$wm") "
    log "  run $i: elt ${ELT_SECS}s, key stage $(key_stage)s"
done

log "verify: $REPS x elt verify, and the raw COPY pipe"
for i in $(seq "$REPS"); do
    t="$WORK/time"
    /usr/bin/time -f "%e %M" -o "$t" "$ELT" verify items --json > "$WORK/verify.json" || {
        cat "$WORK/verify.json" >&2; echo "bench: FAILED: verify found a difference" >&2; exit 1; }
    read -r secs rss < "$t"
    E[verify]+="$secs "; RSS[verify]=$(( rss > RSS[verify] ? rss : RSS[verify] ))
    R_[verify]+="$(ref_full) "
    log "  run $i: verify ${secs}s"
done

K=${K:-100}
log "many jobs: $REPS x $K jobs of 100 rows (first run, then a no-op run)"
MJ=$WORK/many; mkdir -p "$MJ/jobs"
for db in elt_bench_km elt_bench_ka; do
    psql_q "$ELT_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done
for i in $(seq -w 1 "$K"); do
    echo "CREATE TABLE t$i (id bigint PRIMARY KEY, name text, amount numeric(12,2),
            updated_at timestamptz NOT NULL);
          INSERT INTO t$i SELECT g, 'n' || g, g * 1.5, now() - interval '1 day' FROM generate_series(1, 100) g;
          CREATE INDEX ON t$i (updated_at);"
    cat > "$MJ/jobs/t$i.yaml" <<YAML
CREATE_TABLE_SQL: CREATE TABLE IF NOT EXISTS t$i (id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamptz NOT NULL)
SELECT_SOURCE_SQL: SELECT id, name, amount, updated_at FROM t$i WHERE updated_at > %s
UPSERT_TARGET_SQL: INSERT INTO t$i (id, name, amount, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, amount = EXCLUDED.amount, updated_at = EXCLUDED.updated_at
SELECT_KEYS_SQL: SELECT id FROM t$i
TARGET_TABLE: t$i
KEY_COLUMNS: [id]
YAML
done | psql_q "$BASE/elt_bench_km"
MANY_FIRST=""; MANY_NOOP=""
for i in $(seq "$REPS"); do
    for j in $(seq -w 1 "$K"); do echo "DROP TABLE IF EXISTS t$j;"; done | psql_q "$BASE/elt_bench_ka"
    ELT_MASTER_URL=$BASE/elt_bench_km ELT_ANALYTICS_URL=$BASE/elt_bench_ka ELT_JOBS_DIR=$MJ/jobs \
        ELT_REDIS_PREFIX=eltbenchmany "$ELT" reset-state --all >/dev/null
    for what in first noop; do
        secs=$(timed env ELT_MASTER_URL="$BASE/elt_bench_km" ELT_ANALYTICS_URL="$BASE/elt_bench_ka" \
            ELT_JOBS_DIR="$MJ/jobs" ELT_REDIS_PREFIX=eltbenchmany "$ELT" run)
        per_job=$(echo "$secs * 1000 / $K" | bc -l)
        if [ "$what" = first ]; then MANY_FIRST+="$per_job "; else MANY_NOOP+="$per_job "; fi
        log "  run $i ($what): ${secs}s, $(printf '%.1f' "$per_job") ms a job"
    done
done
ELT_MASTER_URL=$BASE/elt_bench_km ELT_ANALYTICS_URL=$BASE/elt_bench_ka ELT_JOBS_DIR=$MJ/jobs \
    ELT_REDIS_PREFIX=eltbenchmany "$ELT" reset-state --all >/dev/null || true

{
    echo "N = $N rows, $REPS runs each, medians; $(nproc) cores; $(date -u +%Y-%m-%d)"
    echo
    echo "| scenario | elt s | reference s | ratio | rows/s (elt) | peak RSS elt | Redis bytes/row |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for sc in full incremental incr-nodel noop keys-nodel keys-noop verify; do
        e=$(printf '%s\n' ${E[$sc]} | median)
        r=$(printf '%s\n' ${R_[$sc]} | median)
        ratio=$(printf '%.2f' "$(echo "if ($r > 0) $e / $r else 0" | bc -l)")
        rate=$(echo "if ($e > 0) $N / $e else 0" | bc)
        printf '| %s | %.2f | %.2f | %sx | %s | %s MiB | %.1f |\n' "$sc" "$e" "$r" "$ratio" "$rate" \
            "$((RSS[$sc] / 1024))" "$REDIS_PER_ROW"
    done
    echo
    echo "many jobs: K = $K jobs of 100 rows, median ms per job: first run $(printf '%.1f' "$(printf '%s\n' $MANY_FIRST | median)"), no-op run $(printf '%.1f' "$(printf '%s\n' $MANY_NOOP | median)")"
} | tee "$OUT"
"$ELT" reset-state items >/dev/null || true
rm -rf "$WORK"
for db in elt_bench_m elt_bench_a elt_bench_ref elt_bench_km elt_bench_ka; do
    psql_q "$ELT_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
done
