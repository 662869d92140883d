//! The statements one job runs, derived once per run from the job file and what the
//! servers say about its statements' columns and parameters.

use postgres::Transaction;
use postgres::types::Type;

use crate::db::{Tx, quote_ident};
use crate::error::{Db, Error, Result, pg};
use crate::jobfile::Job;
use crate::placeholders::{strip_trailing_semicolon, translate, without_watermark_condition};
use crate::sqllex::{Kind, tokenize};
use crate::sqlshape::{OutName, UpsertShape, agree, upsert_shape};

/// Built-in types have the same OID and binary format in every database; anything above
/// this (enums, domains, composites, extension types) may differ between M and A.
const FIRST_USER_OID: u32 = 16384;
/// The transaction-local setting a full extraction's COPY reads the watermark from.
pub const WATERMARK_SETTING: &str = "elt.watermark";

pub struct Plan {
    /// SELECT_SOURCE_SQL wrapped so key columns also come back as text, for digests (the
    /// key texts first, then the source columns), as a binary `COPY ... TO STDOUT` reading
    /// the watermark from the transaction-local setting `WATERMARK_SETTING` (a COPY cannot
    /// take parameters). The planner folds that stable expression when it estimates, so a recent watermark still
    /// gets the index on the watermark column, and `-infinity` a sequential scan.
    pub copy_out_sql: String,
    /// Number of source columns (the key texts come before them).
    pub columns: usize,
    /// Key text fields before the source columns in each extracted row (0 with `int_key`).
    pub key_count: usize,
    /// The key is the integer source column at this position: its text is formatted by elt.
    pub int_key: Option<usize>,
    /// The placeholder's type: what the watermark is bound as.
    pub watermark_type: Type,
    pub stage_ddl: String,
    pub copy_in_sql: String,
    pub merge_sql: String,
    pub merge_one_sql: String,
    /// Removes staged rows identical to the target's, so a full re-sync over an intact
    /// target (Redis lost its data) rewrites nothing that did not change. `None` when
    /// the upsert transforms values, so staged and stored rows cannot be compared.
    pub prune_unchanged_sql: Option<String>,
    /// `COPY target (cols) FROM STDIN (FORMAT binary)` when the upsert inserts each source
    /// value unchanged into a column of the same type: rows for an empty target then skip
    /// staging and merging.
    pub direct_copy_sql: Option<String>,
    /// The extraction without its watermark condition, limited to the keys in `$1`
    /// (text[]): drift repair fetches rows M has and A lacks with it.
    pub repair_sql: Option<String>,
    pub target: String,
    pub key_columns: Vec<String>,
    /// The job's secret seed for key summaries (from its state, or new).
    pub seed: i64,
    /// Every row the job describes, whatever its watermark column says, in the staging
    /// table's shape (`SELECT <source columns> FROM (...) AS elt_src`, with the watermark
    /// condition made `TRUE`, or bound to `WATERMARK_SETTING` when it cannot be isolated).
    pub all_rows_sql: String,
    /// The source's output column names, in order.
    pub source_names: Vec<String>,
    /// The upsert's inserted columns and each one's value over the staging row `s`.
    pub upsert_columns: Vec<String>,
    pub upsert_exprs: Vec<String>,
    /// Each source value goes unchanged into the upsert column at the same position.
    pub one_to_one: bool,
    /// The key is one integer column on both sides: compared as numbers, not text.
    pub integer_key: bool,
}

/// What the servers say about the job's two parameterised statements.
struct Described {
    /// the source's output columns (name, type) as M describes them
    columns: Vec<(String, Type)>,
    watermark_type: Type,
    /// the upsert's parameter types as A describes them
    params: Vec<Type>,
    /// per source column: the value travels as text (types differ, or one of A's own)
    as_text: Vec<bool>,
    /// the key is one integer column in M's keys query and in the target
    integer_key: bool,
}

impl Described {
    /// Prepares the source on M and the upsert on A and checks that they fit together.
    fn read(job: &Job, m: &mut Tx<'_>, a: &mut Tx<'_>, shape: &UpsertShape) -> Result<Self> {
        let source = translate(&job.select_source_sql);
        let src = m
            .prepare(&source.sql)
            .map_err(pg(Db::Master, "preparing SELECT_SOURCE_SQL"))?;
        let watermark_type = match src.params() {
            [t] => t.clone(),
            p => {
                let why = agree::source_parameters(p.len());
                return Err(Error::Job(format!("SELECT_SOURCE_SQL: {why}")));
            }
        };
        let m_keys = check_keys_query(job, m)?;
        check_target_columns(a, job, &shape.columns)?;
        let upsert = translate(&job.upsert_target_sql);
        if src.columns().len() != upsert.count() {
            let why = agree::placeholder_count(upsert.count(), src.columns().len());
            return Err(Error::Job(format!("UPSERT_TARGET_SQL: {why}")));
        }
        let ups = a
            .prepare_typed(&upsert.sql, &placeholder_types(shape, src.columns()))
            .map_err(pg(Db::Analytics, "preparing UPSERT_TARGET_SQL"))?;
        let columns: Vec<(String, Type)> = src
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.type_().clone()))
            .collect();
        let params = ups.params().to_vec();
        if columns.len() != params.len() {
            let why = agree::placeholder_count(params.len(), columns.len());
            return Err(Error::Job(format!("UPSERT_TARGET_SQL: {why}")));
        }
        let a_keys = check_keys_in_target(job, a)?;
        let int = |t: &[Type]| matches!(t, [Type::INT2 | Type::INT4 | Type::INT8]);
        // Values travel in binary when both sides use the same built-in type, else as text,
        // which the server parses with the target type's input function: exact either way.
        let as_text = columns
            .iter()
            .zip(&params)
            .map(|((_, c), p)| c.oid() != p.oid() || p.oid() >= FIRST_USER_OID || needs_text(p))
            .collect();
        Ok(Described {
            columns,
            watermark_type,
            params,
            as_text,
            integer_key: int(&m_keys) && int(&a_keys),
        })
    }

    fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Where the key is among the source columns when it is one integer column that
    /// travels in binary: its text, for the key digests, is then elt's to write.
    fn int_key(&self, job: &Job) -> Option<usize> {
        let [key] = job.key_columns.as_slice() else {
            return None;
        };
        let i = self.columns.iter().position(|(n, _)| n == key)?;
        let int = matches!(self.columns[i].1, Type::INT2 | Type::INT4 | Type::INT8);
        (int && !self.as_text[i]).then_some(i)
    }

    /// Every key column must be an output column of the source: each row's key is read there.
    fn check_keys(&self, job: &Job) -> Result<()> {
        let names = self.names();
        match job
            .key_columns
            .iter()
            .find(|k| !names.contains(&k.as_str()))
        {
            Some(k) => {
                let why = agree::key_not_in_source(k, &names);
                Err(Error::Job(format!("KEY_COLUMNS: {why}")))
            }
            None => Ok(()),
        }
    }

    /// The source's columns as the staging table takes them (`::text` where they travel so).
    fn select_list(&self) -> Result<String> {
        let names = self.names();
        let unique = names
            .iter()
            .enumerate()
            .all(|(i, n)| !names[..i].contains(n));
        if unique {
            let list: Vec<String> = names
                .iter()
                .zip(&self.as_text)
                .map(|(n, t)| {
                    let c = format!("elt_src.{}", quote_ident(n));
                    if *t { format!("{c}::text") } else { c }
                })
                .collect();
            return Ok(list.join(", "));
        }
        if self.as_text.iter().any(|t| *t) {
            return Err(Error::Job(format!(
                "SELECT_SOURCE_SQL has repeated output column names ({}); give them distinct \
                 aliases",
                names.join(", ")
            )));
        }
        Ok("elt_src.*".to_string())
    }
}

/// The statements that read M: the extraction (as a COPY), every row the job
/// describes, and drift repair.
struct Reads {
    copy_out_sql: String,
    all_rows_sql: String,
    repair_sql: Option<String>,
}

impl Reads {
    /// `key_texts`: the key's text comes with each row (else elt derives it from the
    /// integer key among the source columns).
    fn new(job: &Job, select_list: &str, wm_type: &str, key_texts: bool) -> Reads {
        let source = translate(&job.select_source_sql);
        let key_texts: String = match key_texts {
            true => job
                .key_columns
                .iter()
                .map(|k| format!("elt_src.{}::text, ", quote_ident(k)))
                .collect(),
            false => String::new(),
        };
        let body = strip_trailing_semicolon(&source.sql);
        let extract_sql = format!("SELECT {key_texts}{select_list} FROM ({body}\n) AS elt_src");
        let from_setting =
            format!("(pg_catalog.current_setting('{WATERMARK_SETTING}')::{wm_type})");
        let copy_out_sql = format!(
            "COPY ({}) TO STDOUT (FORMAT binary)",
            replace_params(&extract_sql, &from_setting)
        );
        let unlimited = without_watermark_condition(&job.select_source_sql)
            .map(|sql| strip_trailing_semicolon(&translate(&sql).sql).to_string());
        let all_from = unlimited
            .clone()
            .unwrap_or_else(|| replace_params(body, &from_setting));
        let repair_sql = unlimited.map(|sql| {
            format!(
                "SELECT {key_texts}{select_list} FROM ({sql}\n) AS elt_src WHERE {} = ANY($1::text[])",
                crate::pipeline::reconcile::key_text(&job.key_columns, "elt_src")
            )
        });
        Reads {
            copy_out_sql,
            all_rows_sql: format!("SELECT {select_list} FROM ({all_from}\n) AS elt_src"),
            repair_sql,
        }
    }
}

/// The staging table of changed rows: its DDL and COPY.
fn staging(d: &Described, param_types: &[String]) -> (String, String) {
    let cols: Vec<(String, String)> = d
        .params
        .iter()
        .zip(&d.as_text)
        .zip(param_types)
        .enumerate()
        .map(|(i, ((p, text), name))| (format!("c{}", i + 1), stage_type(p, *text, name)))
        .collect();
    let ddl = format!(
        "CREATE TEMP TABLE elt_stage ({}, elt_ord bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DROP",
        cols.iter()
            .map(|(c, t)| format!("{c} {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let names: Vec<&str> = cols.iter().map(|(c, _)| c.as_str()).collect();
    let copy = format!(
        "COPY pg_temp.elt_stage ({}) FROM STDIN (FORMAT binary)",
        names.join(", ")
    );
    (ddl, copy)
}

impl Plan {
    /// Prepares the source on M and the upsert on A (after CREATE_TABLE_SQL ran in `a`).
    pub fn build(job: &Job, m: &mut Tx<'_>, a: &mut Tx<'_>) -> Result<Plan> {
        let upsert = translate(&job.upsert_target_sql);
        let shape =
            upsert_shape(&upsert.sql).map_err(|e| Error::Job(format!("UPSERT_TARGET_SQL: {e}")))?;
        let d = Described::read(job, m, a, &shape)?;
        d.check_keys(job)?;
        let wm_type = type_names(m, std::slice::from_ref(&d.watermark_type), Db::Master)?
            .pop()
            .unwrap_or_default();
        let int_key = d.int_key(job);
        let reads = Reads::new(job, &d.select_list()?, &wm_type, int_key.is_none());
        let param_types = type_names(a, &d.params, Db::Analytics)?;
        let (stage_ddl, copy_in_sql) = staging(&d, &param_types);
        let merge = merge_statements(&upsert.sql, &shape, &d.as_text, &param_types)?;
        let prune_unchanged_sql = crate::sqlshape::plain_update_set(&job.upsert_target_sql)
            .then(|| {
                prune_statement(
                    &job.target_table,
                    &job.key_columns,
                    &merge.columns,
                    &merge.exprs,
                )
            })
            .flatten();
        let one_to_one = !d.as_text.iter().any(|t| *t)
            && merge
                .exprs
                .iter()
                .enumerate()
                .all(|(i, e)| *e == format!("s.c{}", i + 1));
        let direct_copy_sql = one_to_one.then(|| {
            let cols: Vec<String> = merge.columns.iter().map(|c| quote_ident(c)).collect();
            format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                job.target_table,
                cols.join(", ")
            )
        });
        Ok(Plan {
            copy_out_sql: reads.copy_out_sql,
            columns: d.columns.len(),
            key_count: if int_key.is_some() {
                0
            } else {
                job.key_columns.len()
            },
            int_key,
            source_names: d.names().iter().map(|n| n.to_string()).collect(),
            watermark_type: d.watermark_type,
            stage_ddl,
            copy_in_sql,
            merge_sql: merge.all,
            merge_one_sql: merge.one,
            prune_unchanged_sql,
            direct_copy_sql,
            repair_sql: reads.repair_sql,
            target: job.target_table.clone(),
            key_columns: job.key_columns.clone(),
            seed: 0,
            all_rows_sql: reads.all_rows_sql,
            upsert_columns: merge.columns,
            upsert_exprs: merge.exprs,
            one_to_one,
            integer_key: d.integer_key,
        })
    }
}

/// SELECT_KEYS_SQL returns KEY_COLUMNS, as `validate` words it: otherwise the key
/// comparison would fail later on a column alias the user never wrote.
/// Returns the types of the key columns as M gives them.
fn check_keys_query(job: &Job, m: &mut Tx<'_>) -> Result<Vec<Type>> {
    let stmt = m
        .prepare(&job.select_keys_sql)
        .map_err(pg(Db::Master, "preparing SELECT_KEYS_SQL"))?;
    let names: Vec<OutName> = stmt
        .columns()
        .iter()
        .map(|c| OutName::from_server(c.name()))
        .collect();
    match agree::keys_query_columns(&names, &job.key_columns).first() {
        Some(m) => Err(Error::Job(format!("SELECT_KEYS_SQL: {}", m.message))),
        None => Ok(stmt.columns().iter().map(|c| c.type_().clone()).collect()),
    }
}

/// KEY_COLUMNS are columns of the target (its rows are compared by them); returns their
/// types there.
fn check_keys_in_target(job: &Job, a: &mut Tx<'_>) -> Result<Vec<Type>> {
    let keys: Vec<String> = job.key_columns.iter().map(|k| quote_ident(k)).collect();
    let probe = format!(
        "SELECT {} FROM {} LIMIT 0",
        keys.join(", "),
        job.target_table
    );
    match a.prepare(&probe) {
        Ok(stmt) => Ok(stmt.columns().iter().map(|c| c.type_().clone()).collect()),
        Err(e) => Err(Error::Job(format!(
            "KEY_COLUMNS: {}",
            agree::keys_not_in_target(&crate::error::pg_message(&e))
        ))),
    }
}

/// The types the upsert's placeholders are prepared with: a bare `%s` takes its column's
/// type (PostgreSQL infers it), but one inside an expression (`coalesce(%s, 0)`,
/// `upper(%s)`) takes the type of the source column it is bound to, as a typed parameter of
/// psycopg would, rather than what PostgreSQL would guess from the expression (`integer`
/// for `coalesce(%s, 0)`, whatever the value). M's own types (enums, domains) are left to
/// inference: A may not have them.
fn placeholder_types(shape: &UpsertShape, source: &[postgres::Column]) -> Vec<Type> {
    let mut types = vec![Type::UNKNOWN; source.len()];
    for expr in &shape.value_exprs {
        let toks = tokenize(expr);
        if toks.len() == 1 {
            continue; // a bare placeholder
        }
        for t in toks.iter().filter(|t| t.kind == Kind::Param) {
            let Some(i) = t.text[1..]
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
            else {
                continue;
            };
            if let Some(c) = source.get(i).filter(|c| c.type_().oid() < FIRST_USER_OID) {
                types[i] = c.type_().clone();
            }
        }
    }
    types
}

/// Types whose name without a length means length 1 (`bit`): a staging column of that
/// name would truncate, so their values travel as text.
fn needs_text(t: &Type) -> bool {
    matches!(*t, Type::BIT | Type::BIT_ARRAY)
}

/// A staging column type that holds any value of `t`: `character` without a length is
/// `character(1)`, `bpchar` is unlimited.
fn stage_type(t: &Type, as_text: bool, name: &str) -> String {
    match *t {
        _ if as_text => "text".into(),
        Type::BPCHAR => "pg_catalog.bpchar".into(),
        Type::BPCHAR_ARRAY => "pg_catalog.bpchar[]".into(),
        _ => name.to_string(),
    }
}

/// CREATE TABLE IF NOT EXISTS never changes a table that exists: a column added to the job
/// later is missing in A. Says so, with the `ALTER TABLE` that fixes it, before the upsert
/// meets PostgreSQL's bare "column does not exist".
fn check_target_columns(a: &mut Tx<'_>, job: &Job, written: &[String]) -> Result<()> {
    let rows = a
        .query(
            "SELECT a.attname::text FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&job.target_table],
        )
        .map_err(pg(
            Db::Analytics,
            format!("reading the columns of {}", job.target_table),
        ))?;
    let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if have.is_empty() {
        return Ok(()); // not a table we can see: preparing the upsert says why
    }
    let missing: Vec<&String> = written.iter().filter(|c| !have.contains(c)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let declared = crate::sqlshape::created_columns(&job.create_table_sql).unwrap_or_default();
    let type_of = |c: &str| {
        declared
            .iter()
            .find(|(n, _)| n == c)
            .map(|(_, t)| t.clone())
    };
    let t = &job.target_table;
    let described: Vec<String> = missing
        .iter()
        .map(|c| match type_of(c) {
            Some(ty) => format!("`{c}` ({ty} in CREATE_TABLE_SQL)"),
            None => format!("`{c}`"),
        })
        .collect();
    let adds: Vec<String> = missing
        .iter()
        .map(|c| {
            let ty = type_of(c).unwrap_or_else(|| "TYPE".into());
            format!("ADD COLUMN {} {ty}", quote_ident(c))
        })
        .collect();
    Err(Error::Job(format!(
        "A's table {t} has no column {} that UPSERT_TARGET_SQL writes: CREATE TABLE IF NOT \
         EXISTS never changes a table that exists. Run `ALTER TABLE {t} {};` on A and the next \
         run fills the column in every row, or drop the table (`DROP TABLE {t};`) and the next \
         run rebuilds it",
        described.join(", "),
        adds.join(", ")
    )))
}

/// The SQL names of `types`, in one round trip.
fn type_names(tx: &mut Transaction<'_>, types: &[Type], db: Db) -> Result<Vec<String>> {
    let oids: Vec<u32> = types.iter().map(Type::oid).collect();
    let rows = tx
        .query(
            "SELECT pg_catalog.format_type(t, NULL) FROM unnest($1::oid[]) WITH ORDINALITY AS u(t, n) \
             ORDER BY n",
            &[&oids],
        )
        .map_err(pg(db, "naming the parameter types"))?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(pg(db, "naming the parameter types")))
        .collect()
}

/// `sql` with every `$n` parameter replaced by `with`.
fn replace_params(sql: &str, with: &str) -> String {
    tokenize(sql)
        .iter()
        .map(|t| if t.kind == Kind::Param { with } else { t.text })
        .collect()
}

struct Merge {
    all: String,
    one: String,
    columns: Vec<String>,
    /// per inserted column, its value over the staging row
    exprs: Vec<String>,
}

/// `DELETE` of staged rows whose target row already holds the values the upsert would
/// write (its expressions evaluated over the staged row); compared as text so types
/// without an equality operator (json) compare too, and byte by byte (`COLLATE "C"`) so a
/// case-insensitive column's `Mixed` is not taken for `MIXED`.
fn prune_statement(
    target: &str,
    keys: &[String],
    columns: &[String],
    exprs: &[String],
) -> Option<String> {
    if columns.len() != exprs.len() {
        return None;
    }
    let expr_of = |col: &str| {
        columns
            .iter()
            .position(|c| c == col)
            .map(|i| exprs[i].clone())
    };
    let mut conds = Vec::new();
    for k in keys {
        conds.push(format!("t.{} = {}", quote_ident(k), expr_of(k)?));
    }
    for (c, e) in columns.iter().zip(exprs) {
        conds.push(format!(
            "t.{}::text COLLATE \"C\" IS NOT DISTINCT FROM ({e})::text COLLATE \"C\"",
            quote_ident(c)
        ));
    }
    Some(format!(
        "DELETE FROM pg_temp.elt_stage AS s USING {target} AS t WHERE {}",
        conds.join(" AND ")
    ))
}

/// The upsert with `VALUES ($1, …)` turned into `SELECT s.c1, … FROM pg_temp.elt_stage`,
/// plus a one-row variant used when a batch holds the same conflict key twice.
fn merge_statements(
    upsert_sql: &str,
    shape: &UpsertShape,
    as_text: &[bool],
    param_types: &[String],
) -> Result<Merge> {
    let (vs, ve) = shape.values_range;
    let mut exprs = Vec::with_capacity(shape.value_exprs.len());
    for expr in &shape.value_exprs {
        let mut out = String::new();
        for tok in tokenize(expr) {
            if tok.kind == Kind::Param {
                let n: usize = tok.text[1..]
                    .parse()
                    .map_err(|_| Error::Job(format!("bad parameter {}", tok.text)))?;
                let i = n
                    .checked_sub(1)
                    .filter(|i| *i < as_text.len())
                    .ok_or_else(|| Error::Job(format!("parameter {} out of range", tok.text)))?;
                if as_text[i] {
                    out.push_str(&format!("s.c{n}::{}", param_types[i]));
                } else {
                    out.push_str(&format!("s.c{n}"));
                }
            } else {
                out.push_str(tok.text);
            }
        }
        exprs.push(out);
    }
    let select = format!("SELECT {} FROM pg_temp.elt_stage AS s", exprs.join(", "));
    let head = &upsert_sql[..vs];
    let tail = strip_trailing_semicolon(&upsert_sql[ve..]);
    Ok(Merge {
        all: format!("{head}{select}{tail}"),
        one: format!("{head}{select} WHERE s.elt_ord = $1{tail}"),
        columns: shape.columns.clone(),
        exprs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_replaces_values_with_the_staging_select() {
        let sql = "INSERT INTO t (a, b, c) VALUES ($1, lower($2), $3) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b;";
        let m = merge_statements(
            sql,
            &upsert_shape(sql).unwrap(),
            &[false, true, false],
            &["bigint".into(), "text".into(), "jsonb".into()],
        )
        .unwrap();
        let (all, one) = (m.all, m.one);
        assert_eq!(m.exprs[1], "lower(s.c2::text)");
        assert_eq!(
            all,
            "INSERT INTO t (a, b, c) SELECT s.c1, lower(s.c2::text), s.c3 FROM pg_temp.elt_stage AS s ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b"
        );
        assert!(one.contains("FROM pg_temp.elt_stage AS s WHERE s.elt_ord = $1 ON CONFLICT"));
    }
}
