#!/usr/bin/env bash
# `make demo`: load the demo shop into M, run every job in jobs/, change M, run again.
#
# With ELT_MASTER_URL and ELT_ANALYTICS_URL both set, uses those databases (and ELT_REDIS_URL
# when set): the demo tables categories, products, customers, orders are (re)created in M and
# the demo targets analytics_products, analytics_product_titles, order_facts dropped in A.
# Otherwise it starts throwaway PostgreSQL + Redis in .elt-services/ and uses the databases
# elt_demo_m and elt_demo_a there (dropped and recreated on every run).
set -euo pipefail

cd "$(dirname "$0")/.."
ELT=${ELT_BIN:-./target/release/elt}
SVC_DIR=.elt-services
LOG_DIR=$SVC_DIR/logs

if [ -t 1 ]; then B=$'\033[1m' R=$'\033[0m'; else B='' R=''; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$R"; }

[ -x "$ELT" ] || {
    echo "demo: $ELT not found; run 'make build' first" >&2
    exit 1
}
command -v psql >/dev/null || {
    echo "demo: psql is needed (apt-get install postgresql-client)" >&2
    exit 1
}

if [ -n "${ELT_MASTER_URL:-}" ] && [ -n "${ELT_ANALYTICS_URL:-}" ]; then
    step "using ELT_MASTER_URL / ELT_ANALYTICS_URL from the environment (demo tables are recreated there)"
    psql -X -q -v ON_ERROR_STOP=1 "$ELT_ANALYTICS_URL" \
        -c 'SET client_min_messages = warning' \
        -c 'DROP TABLE IF EXISTS analytics_products, analytics_product_titles, order_facts'
    STARTED=0
else
    step "starting throwaway PostgreSQL + Redis in $SVC_DIR/"
    eval "$(scripts/services.sh start "$SVC_DIR")"
    base=${ELT_TEST_PG_URL%/*}
    step "creating databases elt_demo_m (M) and elt_demo_a (A)"
    for db in elt_demo_m elt_demo_a; do
        psql -X -q -v ON_ERROR_STOP=1 "$ELT_TEST_PG_URL" \
            -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    done
    export ELT_MASTER_URL=$base/elt_demo_m
    export ELT_ANALYTICS_URL=$base/elt_demo_a
    export ELT_REDIS_URL=$ELT_TEST_REDIS_URL
    STARTED=1
fi
export ELT_JOBS_DIR=jobs
export ELT_LOG_DIR=$LOG_DIR
mkdir -p "$LOG_DIR"

step "loading demo/schema.sql and demo/data.sql into M"
psql -X -q -v ON_ERROR_STOP=1 "$ELT_MASTER_URL" -f demo/schema.sql -f demo/data.sql
psql -X -At "$ELT_MASTER_URL" -c "SELECT format('   M: %s products, %s customers, %s orders',
    (SELECT count(*) FROM products), (SELECT count(*) FROM customers), (SELECT count(*) FROM orders))"

step "elt reset-state --all (so the demo starts from empty state)"
"$ELT" --jobs-dir jobs --log-dir "$LOG_DIR" reset-state --all

step "elt run: first run copies everything"
"$ELT" --jobs-dir jobs --log-dir "$LOG_DIR" run

step "a few rows of each target table in A"
psql -X -v ON_ERROR_STOP=1 "$ELT_ANALYTICS_URL" \
    -c "SELECT product_id, sku, title, category, status, price, tags, warranty
        FROM analytics_products ORDER BY product_id LIMIT 5" \
    -c "SELECT title, category, sku, status, price
        FROM analytics_product_titles ORDER BY title, category LIMIT 5" \
    -c "SELECT order_id, order_date, customer_email, product_title, qty, unit_price, discount, total
        FROM order_facts ORDER BY order_id LIMIT 5"

step "applying demo/changes.sql to M (updates, inserts, deletes)"
psql -X -q -v ON_ERROR_STOP=1 "$ELT_MASTER_URL" -f demo/changes.sql

step "elt run: incremental run picks up only the changes"
"$ELT" --jobs-dir jobs --log-dir "$LOG_DIR" run

step "elt status"
"$ELT" --jobs-dir jobs --log-dir "$LOG_DIR" status

step "done; logs are in $LOG_DIR/"
if [ "$STARTED" = 1 ]; then
    echo "   Services keep running for you to explore:"
    echo "     psql '$ELT_ANALYTICS_URL'    # A"
    echo "     psql '$ELT_MASTER_URL'    # M"
    echo "   Stop them with: make services-stop"
fi
