//! Casts a sample of real values where a cast exists but can fail for some values (text
//! into integer, a fraction into integer, a long text into `varchar(n)`, a number too big
//! for `numeric(p,s)`): the first rows of the source query, read as the first run would
//! (the placeholder bound to its type's earliest value) under a statement timeout, each
//! column cast on A to what the upsert stores it as.

use std::collections::HashMap;

use postgres::types::Type;

use super::checks::{Checks, Source, isolated};
use crate::db::{TextParam, Tx, quote_ident};
use crate::error::pg_message;
use crate::jobfile::{Key, Severity};
use crate::pipeline::watermark;
use crate::placeholders::{strip_trailing_semicolon, translate};
use crate::sqlshape;

const SAMPLE_ROWS: usize = 1000;
/// Keeps the check cheap on a big or slow source: it is skipped (with a warning) instead.
const SAMPLE_TIMEOUT: &str = "10s";
/// Longer values are cut in messages.
const SHOWN_CHARS: usize = 40;

/// What A said about the upsert: its parameters' types, which of them the source's
/// columns can reach at all (the others are reported already), and the target's OID.
pub struct Upsert<'a> {
    pub params: &'a [Type],
    pub convertible: &'a [bool],
    pub table_oid: u32,
}

/// Casts the sample and reports the first value of each column that A cannot store.
pub fn check(c: &mut Checks<'_>, a: &mut Tx<'_>, m: &mut Tx<'_>, src: &Source, u: &Upsert<'_>) {
    let targets = cast_targets(c, a, u.params, u.table_oid);
    let wanted: Vec<(usize, Target)> = targets
        .into_iter()
        .enumerate()
        .filter(|(i, _)| u.convertible.get(*i) == Some(&true))
        .filter_map(|(i, t)| t.map(|t| (i, t)))
        .filter(|(i, t)| type_name(m, &src.cols[*i].ty).as_deref() != Some(&t.stored))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let columns: Vec<usize> = wanted.iter().map(|(i, _)| *i).collect();
    let Some(values) = read(c, m, src, &columns) else {
        return;
    };
    let placeholders = translate(&c.job.upsert_target_sql).placeholders;
    for ((i, target), column) in wanted.iter().zip(&values) {
        if let Some((row, value, why)) = first_bad(a, column, target) {
            let msg = format!(
                "placeholder {n} takes output column {n} `{}` of SELECT_SOURCE_SQL: its value \
                 '{}' (row {row} of the first {SAMPLE_ROWS} rows) cannot be stored as {}: {why}",
                src.cols[*i].name,
                shown(&value),
                target.stored,
                n = i + 1,
            );
            c.error(Key::UpsertTargetSql, placeholders.get(*i).copied(), msg);
        }
    }
}

/// What a parameter's value goes through in A: parsed as the parameter's type, then
/// stored in its column.
struct Target {
    param: String,
    /// the column's own type with its length or precision (`varchar(10)`, `numeric(5,2)`)
    /// where the placeholder is the whole value, else the parameter's type
    stored: String,
}

/// Per parameter, what its values go through in A.
fn cast_targets(
    c: &Checks<'_>,
    a: &mut Tx<'_>,
    params: &[Type],
    table_oid: u32,
) -> Vec<Option<Target>> {
    let columns: HashMap<String, String> = isolated(a, |t| {
        t.query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped",
            &[&table_oid],
        )
    })
    .and_then(Result::ok)
    .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    .unwrap_or_default();
    let shape = sqlshape::upsert_shape(&translate(&c.job.upsert_target_sql).sql).ok();
    let mut out = Vec::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        let bare = format!("${}", i + 1);
        let column = shape.as_ref().and_then(|s| {
            let k = s.value_exprs.iter().position(|e| *e == bare)?;
            columns.get(&s.columns[k]).cloned()
        });
        out.push(type_name(a, p).map(|param| Target {
            stored: column.unwrap_or_else(|| param.clone()),
            param,
        }));
    }
    out
}

fn type_name(tx: &mut Tx<'_>, t: &Type) -> Option<String> {
    isolated(tx, |tx| {
        tx.query_one("SELECT format_type($1::oid, NULL)", &[&t.oid()])
    })
    .and_then(Result::ok)
    .map(|r| r.get(0))
}

/// The text of each wanted column in the first rows of the source query; `None` (with a
/// warning) when M cannot give them in time.
fn read(
    c: &mut Checks<'_>,
    m: &mut Tx<'_>,
    src: &Source,
    columns: &[usize],
) -> Option<Vec<Vec<Option<String>>>> {
    let names: Vec<&str> = src.cols.iter().map(|c| c.name.as_str()).collect();
    if columns
        .iter()
        .any(|i| names.iter().filter(|n| **n == names[*i]).count() > 1)
    {
        return None; // a repeated output name cannot be selected by name
    }
    let list: Vec<String> = columns
        .iter()
        .map(|i| format!("elt_src.{}::text", quote_ident(names[*i])))
        .collect();
    let sql = format!(
        "SELECT {} FROM ({}\n) AS elt_src LIMIT {SAMPLE_ROWS}",
        list.join(", "),
        strip_trailing_semicolon(&translate(&c.job.select_source_sql).sql)
    );
    let earliest = TextParam(watermark::earliest(&src.placeholder).ok()?);
    let rows = isolated(m, |t| {
        t.batch_execute(&format!("SET LOCAL statement_timeout = '{SAMPLE_TIMEOUT}'"))?;
        // prepared through `Tx`, which notes a type the driver had to look up (pooler safety)
        let stmt = t.prepare(&sql)?;
        t.query(&stmt, &[&earliest])
    })?;
    match rows {
        Ok(rows) => Some(
            (0..columns.len())
                .map(|k| rows.iter().map(|r| r.get::<_, Option<String>>(k)).collect())
                .collect(),
        ),
        Err(e) => {
            let msg = format!(
                "values were not checked against A's types: reading a sample of the source \
                 failed: {}",
                pg_message(&e)
            );
            c.push(Severity::Warning, Key::SelectSourceSql, None, msg);
            None
        }
    }
}

/// The first value that A cannot store as `target`: its row (1-based), the value, and
/// PostgreSQL's reason. Values are parsed as the parameter's type and assigned to a column
/// of the stored type, as the upsert does (an explicit cast to `varchar(10)` would cut a
/// long text instead of refusing it). One statement takes them all; only when it fails is
/// the culprit found by halving, so a clean column costs one round trip.
fn first_bad(
    a: &mut Tx<'_>,
    column: &[Option<String>],
    target: &Target,
) -> Option<(usize, String, String)> {
    let values: Vec<(usize, &str)> = column
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_deref().map(|v| (i + 1, v)))
        .collect();
    let create = format!("CREATE TEMP TABLE elt_sample (v {})", target.stored);
    let insert = format!(
        "INSERT INTO pg_temp.elt_sample SELECT v::{} FROM unnest($1::text[]) AS v",
        target.param
    );
    let stores = |a: &mut Tx<'_>, part: &[(usize, &str)]| -> Option<Result<(), String>> {
        let texts: Vec<&str> = part.iter().map(|(_, v)| *v).collect();
        isolated(a, |t| {
            t.batch_execute(&create)
                .and_then(|_| t.execute(&insert, &[&texts]))
                .map(|_| ())
                .map_err(|e| pg_message(&e))
        })
    };
    stores(a, &values)?.err()?;
    let (mut lo, mut hi) = (0, values.len());
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if stores(a, &values[lo..mid])?.is_err() {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let (row, value) = values[lo];
    let why = stores(a, &values[lo..=lo])?.err()?;
    Some((row, value.to_string(), why))
}

/// A value as shown in a message: at most `SHOWN_CHARS` characters.
fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}
