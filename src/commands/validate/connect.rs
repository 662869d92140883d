//! `validate --connect`: what only the databases can tell, changing nothing. Statements are
//! prepared where they run: on M in a read-only transaction, on A after CREATE_TABLE_SQL in
//! a transaction that is rolled back. Every check runs in a savepoint of its own, so a
//! statement one database rejects never makes the next checks fail. Where a cast can fail
//! for some values only, a sample of the source's rows is cast to what A stores.

mod checks;
mod sample;
mod types;

use postgres::types::Type;

use crate::db::{Access, Conn, Tx, quote_ident};
use crate::error::{chain, pg_message};
use crate::jobfile::{Job, Key, Positions, Problem, Severity};
use crate::pipeline::watermark;
use crate::placeholders::translate;
use crate::sqlshape::{self, OutName, agree};
use checks::{Checks, Source, SourceCol, isolated};

/// Checks one job against M and A and returns what they found.
pub fn check(job: &Job, positions: &Positions, m: &mut Conn, a: &mut Conn) -> Vec<Problem> {
    let mut c = Checks::new(job, positions);
    let mut mt = match m.begin(Access::ReadOnly) {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("cannot start a transaction on M: {}", chain(&e));
            c.error(Key::SelectSourceSql, None, msg);
            return c.out;
        }
    };
    let source = master(&mut c, &mut mt);
    keys_query(&mut c, &mut mt);
    match a.begin(Access::ReadWrite) {
        Ok(mut at) => {
            analytics(&mut c, &mut at, source.as_ref(), &mut mt);
            let _ = at.rollback();
        }
        Err(e) => {
            let msg = format!("cannot start a transaction on A: {}", chain(&e));
            c.error(Key::CreateTableSql, None, msg);
        }
    }
    let _ = mt.rollback();
    // in file order, as the offline rules report theirs
    c.out
        .sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column.unwrap_or(0)));
    c.out
}

/// M: the source query (placeholder type, output columns, key uniqueness).
fn master(c: &mut Checks<'_>, m: &mut Tx<'_>) -> Option<Source> {
    let source = translate(&c.job.select_source_sql);
    let placeholder = source.placeholders.first().copied();
    let stmt = match isolated(m, |t| t.prepare(&source.sql))? {
        Ok(stmt) => stmt,
        Err(e) => {
            c.rejected(Key::SelectSourceSql, "M", &e, &source.sql);
            return None;
        }
    };
    let [ty] = stmt.params() else {
        let msg = agree::source_parameters(stmt.params().len());
        c.error(Key::SelectSourceSql, placeholder, msg);
        return None;
    };
    watermark_type(c, ty, placeholder);
    let cols: Vec<SourceCol> = stmt
        .columns()
        .iter()
        .map(|col| SourceCol {
            name: col.name().to_string(),
            ty: col.type_().clone(),
            table_oid: col.table_oid().unwrap_or(0),
            column_id: col.column_id().unwrap_or(0),
        })
        .collect();
    key_columns_in_source(c, m, &cols);
    Some(Source {
        cols,
        placeholder: ty.clone(),
    })
}

/// The placeholder must hold a watermark; one that is not a time reads everything.
fn watermark_type(c: &mut Checks<'_>, ty: &Type, at: Option<usize>) {
    if let Err(e) = watermark::earliest(ty) {
        c.error(Key::SelectSourceSql, at, chain(&e));
    } else if !watermark::is_time(ty) {
        let msg = format!(
            "the placeholder has type {}, not a time, so it always gets the type's smallest \
             value: every run reads all rows (correct, but not incremental)",
            ty.name()
        );
        c.push(Severity::Warning, Key::SelectSourceSql, at, msg);
    }
}

/// KEY_COLUMNS are output columns of the source, unique there if M can tell.
fn key_columns_in_source(c: &mut Checks<'_>, m: &mut Tx<'_>, cols: &[SourceCol]) {
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    let mut key_cols = Vec::new();
    for k in &c.job.key_columns {
        match cols.iter().find(|col| &col.name == k) {
            Some(col) => key_cols.push(col),
            None => c.error(Key::KeyColumns, None, agree::key_not_in_source(k, &names)),
        }
    }
    if key_cols.len() == c.job.key_columns.len() {
        key_uniqueness(c, m, &key_cols);
    }
}

/// SELECT_KEYS_SQL on M: its output columns are KEY_COLUMNS, as `run` checks them too.
fn keys_query(c: &mut Checks<'_>, m: &mut Tx<'_>) {
    let sql = c.job.select_keys_sql.clone();
    let names = match isolated(m, |t| t.prepare(&sql)) {
        Some(Ok(stmt)) => stmt
            .columns()
            .iter()
            .map(|col| OutName::from_server(col.name()))
            .collect::<Vec<_>>(),
        Some(Err(e)) => return c.rejected(Key::SelectKeysSql, "M", &e, &sql),
        None => return,
    };
    // the parser, when it reads the query, tells where each output column is
    let starts: Vec<Option<usize>> = sqlshape::parse_one(&sql)
        .ok()
        .as_ref()
        .and_then(sqlshape::query_of)
        .and_then(sqlshape::output_names)
        .map(|o| o.iter().map(|o| sqlshape::offset_of(&sql, o.at)).collect())
        .unwrap_or_default();
    for mm in agree::keys_query_columns(&names, &c.job.key_columns) {
        let at = starts.get(mm.column).copied().flatten();
        c.error(Key::SelectKeysSql, at, mm.message);
    }
}

/// Warns when M does not guarantee one row per key: duplicate keys in one extraction make
/// the upsert touch a row twice and the state ambiguous.
fn key_uniqueness(c: &mut Checks<'_>, m: &mut Tx<'_>, keys: &[&SourceCol]) {
    let table = keys[0].table_oid;
    let same_table = table != 0 && keys.iter().all(|k| k.table_oid == table && k.column_id > 0);
    if !same_table {
        let msg = "cannot tell whether KEY_COLUMNS are unique in the source: they are computed \
                   or come from several tables";
        c.push(Severity::Note, Key::KeyColumns, None, msg.into());
        return;
    }
    let attnums: Vec<i16> = keys.iter().map(|k| k.column_id).collect();
    let row = isolated(m, |t| {
        t.query_one(
            "SELECT $1::oid::regclass::text, EXISTS (\
               SELECT 1 FROM pg_index i WHERE i.indrelid = $1::oid AND i.indisunique \
                 AND i.indpred IS NULL AND i.indexprs IS NULL \
                 AND (string_to_array(i.indkey::text, ' ')::int2[])[1:i.indnkeyatts] <@ $2::int2[])",
            &[&table, &attnums],
        )
    });
    match row {
        Some(Ok(r)) if !r.get::<_, bool>(1) => {
            let msg = format!(
                "the source key can repeat: no unique index on M's table {} covers ({}); \
                 duplicate keys make the upsert hit one row twice",
                r.get::<_, String>(0),
                c.job.key_columns.join(", ")
            );
            c.push(Severity::Warning, Key::KeyColumns, None, msg);
        }
        Some(Err(e)) => {
            let msg = format!("cannot read M's indexes: {}", pg_message(&e));
            c.push(Severity::Note, Key::KeyColumns, None, msg);
        }
        _ => {}
    }
}

/// A: CREATE_TABLE_SQL, the target, KEY_COLUMNS in it, the upsert (parameters against the
/// source's columns and a sample of its values), conflict columns against unique indexes.
fn analytics(c: &mut Checks<'_>, a: &mut Tx<'_>, source: Option<&Source>, m: &mut Tx<'_>) {
    let create = c.job.create_table_sql.clone();
    // not in a savepoint: every later check needs the table, so a failure ends them
    if let Err(e) = a.batch_execute(&create) {
        return c.rejected(Key::CreateTableSql, "A", &e, &create);
    }
    let Some(table_oid) = target_oid(c, a) else {
        return;
    };
    keys_in_target(c, a);
    let upsert = translate(&c.job.upsert_target_sql);
    let params = match isolated(a, |t| t.prepare(&upsert.sql)) {
        Some(Ok(stmt)) => Some(stmt.params().to_vec()),
        Some(Err(e)) => {
            c.rejected(Key::UpsertTargetSql, "A", &e, &upsert.sql);
            None
        }
        None => None,
    };
    if let (Some(params), Some(src)) = (&params, source) {
        if params.len() != src.cols.len() {
            let msg = agree::placeholder_count(params.len(), src.cols.len());
            c.error(
                Key::UpsertTargetSql,
                upsert.placeholders.first().copied(),
                msg,
            );
        } else {
            let convertible = types::check(c, a, m, src, params);
            let upsert = sample::Upsert {
                params,
                convertible: &convertible,
                table_oid,
            };
            sample::check(c, a, m, src, &upsert);
        }
    }
    conflict_index(c, a, table_oid);
}

/// The target's OID in A, or the problem that it is not a table there.
fn target_oid(c: &mut Checks<'_>, a: &mut Tx<'_>) -> Option<u32> {
    let target = c.job.target_table.clone();
    let oid: Option<u32> = isolated(a, |t| {
        t.query_one("SELECT to_regclass($1)::oid", &[&target])
    })
    .and_then(Result::ok)
    .and_then(|r| r.get(0));
    if oid.is_none() {
        let msg = format!(
            "`{target}` is not a table in A after CREATE_TABLE_SQL ran (check the name and A's \
             search_path)"
        );
        c.error(Key::TargetTable, None, msg);
    }
    oid
}

/// KEY_COLUMNS are columns of the target.
fn keys_in_target(c: &mut Checks<'_>, a: &mut Tx<'_>) {
    let key_list: Vec<String> = c.job.key_columns.iter().map(|k| quote_ident(k)).collect();
    let probe = format!(
        "SELECT {} FROM {} LIMIT 0",
        key_list.join(", "),
        c.job.target_table
    );
    if let Some(Err(e)) = isolated(a, |t| t.prepare(&probe)) {
        let msg = agree::keys_not_in_target(&pg_message(&e));
        c.error(Key::KeyColumns, None, msg);
    }
}

/// ON CONFLICT (…) needs a unique index or constraint on exactly those columns.
fn conflict_index(c: &mut Checks<'_>, a: &mut Tx<'_>, table_oid: u32) {
    let sql = c.job.upsert_target_sql.clone();
    let Some(conflict) = sqlshape::conflict_columns(&sql) else {
        return;
    };
    let row = isolated(a, |t| {
        t.query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1::oid \
               AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
               AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) \
                      FROM unnest((string_to_array(i.indkey::text, ' ')::int2[])[1:i.indnkeyatts]) k \
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k) \
                   = (SELECT array_agg(x ORDER BY x) FROM unnest($2::text[]) x))",
            &[&table_oid, &conflict],
        )
    });
    if let Some(Ok(r)) = row {
        if !r.get::<_, bool>(0) {
            let at = sql
                .to_ascii_uppercase()
                .find("CONFLICT")
                .and_then(|from| ident_offset(&sql, &conflict[0], from));
            let msg = format!(
                "ON CONFLICT ({}) has no unique index or constraint on exactly these columns \
                 in {}: A rejects the upsert",
                conflict.join(", "),
                c.job.target_table
            );
            c.error(Key::UpsertTargetSql, at, msg);
        }
    }
}

/// Byte offset in `sql` of the first code token that is the identifier `name`, at or after
/// byte `from`.
fn ident_offset(sql: &str, name: &str, from: usize) -> Option<usize> {
    let tokens = crate::sqllex::tokenize(sql);
    sqlshape::code(&tokens)
        .iter()
        .find(|t| t.start >= from && crate::sqllex::ident_value(t).as_deref() == Some(name))
        .map(|t| t.start)
}
