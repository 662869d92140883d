//! `elt validate`: every rule of every job file, all problems at once, as human lines, one
//! JSON document or GitHub annotations; `--connect` also asks M and A whether the statements
//! fit, changing nothing (everything runs in transactions that are rolled back).

use std::path::PathBuf;

use postgres::Transaction;
use postgres::types::{Kind as PgKind, Type};

use crate::cli::ValidateFormat;
use crate::db::{self, quote_ident};
use crate::error::{Db, Result, chain};
use crate::job::{self, Job};
use crate::pipeline::watermark;
use crate::placeholders::translate;
use crate::settings::Settings;
use crate::sqllex::{Kind, tokenize};
use crate::validate::{LineCol, Positions, Problem, Severity, conflict_columns, ident_offset};

fn collect_files(settings: &Settings, paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Problem>) {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        vec![settings.jobs_dir.clone()]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for root in roots {
        if root.is_dir() {
            match job::discover(&root) {
                Ok(f) => files.extend(f),
                Err(e) => {
                    problems.push(Problem::new(&root.display().to_string(), "FILE", chain(&e)))
                }
            }
        } else if root.is_file() {
            files.push(root);
        } else {
            problems.push(Problem::new(
                &root.display().to_string(),
                "FILE",
                "no such file or folder",
            ));
        }
    }
    (files, problems)
}

pub fn validate(
    settings: &Settings,
    paths: &[PathBuf],
    connect: bool,
    format: ValidateFormat,
    verbose: bool,
) -> Result<i32> {
    let (files, mut problems) = collect_files(settings, paths);
    let mut jobs = Vec::new();
    for f in &files {
        let (job, p) = load(f);
        problems.extend(p);
        jobs.extend(job);
    }
    if connect && !jobs.is_empty() {
        let mut m = db::Conn::connect(settings.master_url()?, Db::Master)?;
        let mut a = db::Conn::connect(settings.analytics_url()?, Db::Analytics)?;
        for j in &jobs {
            problems.extend(check_against_databases(j, &mut m, &mut a));
            // its checks prepare in savepoints and query by text, where the driver's type
            // lookups go unnoticed: the next job's checks start on new sessions
            m.reconnect_next();
            a.reconnect_next();
        }
    }
    if !verbose {
        problems.retain(|p| p.severity != Severity::Note);
    }
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let warnings = problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .count();
    let bad_files = {
        let mut f: Vec<&str> = problems
            .iter()
            .filter(|p| p.is_error())
            .map(|p| p.file.as_str())
            .collect();
        f.sort();
        f.dedup();
        f.len()
    };
    match format {
        ValidateFormat::Human => {
            for p in &problems {
                println!("{p}");
            }
            if errors == 0 {
                println!(
                    "{} job file(s) valid{}{}",
                    files.len(),
                    if connect {
                        " (checked against M and A)"
                    } else {
                        ""
                    },
                    if warnings > 0 {
                        format!(", {warnings} warning(s)")
                    } else {
                        String::new()
                    }
                );
            }
        }
        ValidateFormat::Json => {
            let doc = serde_json::json!({
                "valid": errors == 0,
                "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                "errors": errors,
                "warnings": warnings,
                "problems": problems.iter().map(|p| serde_json::json!({
                    "file": p.file,
                    "key": p.key,
                    "line": p.line,
                    "column": p.column,
                    "severity": p.severity.as_str(),
                    "message": p.message,
                })).collect::<Vec<_>>(),
            });
            println!("{doc}");
        }
        ValidateFormat::Github => {
            for p in &problems {
                println!("{}", github_annotation(p));
            }
            println!(
                "elt validate: {} job file(s), {errors} error(s), {warnings} warning(s)",
                files.len()
            );
        }
    }
    if errors == 0 {
        Ok(0)
    } else {
        eprintln!(
            "elt: {errors} problem(s) in {bad_files} of {} job file(s)",
            files.len()
        );
        Ok(2)
    }
}

/// Reads and checks one job file like `job::load`, but keeps the warnings and notes of a
/// file that is valid, so they can be shown and the file still checked against M and A.
fn load(path: &std::path::Path) -> (Option<Job>, Vec<Problem>) {
    let file = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => {
                return (
                    None,
                    vec![Problem::new(&file, "FILE", "the file is not valid UTF-8")],
                );
            }
        },
        Err(e) => {
            return (
                None,
                vec![Problem::new(
                    &file,
                    "FILE",
                    format!("cannot read the file: {e}"),
                )],
            );
        }
    };
    let (f, mut problems) = crate::validate::parse_fields(&file, &text);
    problems.extend(crate::validate::check_rules(&file, &f));
    if problems.iter().any(Problem::is_error) {
        return (None, problems);
    }
    use sha2::Digest;
    let job = Job {
        name: job::job_name(path),
        path: path.to_path_buf(),
        create_table_sql: f.create_table_sql.unwrap_or_default(),
        select_source_sql: f.select_source_sql.unwrap_or_default(),
        upsert_target_sql: f.upsert_target_sql.unwrap_or_default(),
        select_keys_sql: f.select_keys_sql.unwrap_or_default(),
        target_table: f.target_table.unwrap_or_default(),
        key_columns: f.key_columns.unwrap_or_default(),
        max_delete_fraction: f
            .max_delete_fraction
            .unwrap_or(job::DEFAULT_MAX_DELETE_FRACTION),
        file_digest: job::hex(&sha2::Sha256::digest(text.as_bytes())),
        definition: String::new(),
    };
    (Some(job), problems)
}

/// A GitHub Actions workflow command that puts the problem on the file and line.
pub fn github_annotation(p: &Problem) -> String {
    let level = match p.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "notice",
    };
    let mut props = vec![format!("file={}", escape_property(&p.file))];
    if let Some(l) = p.line {
        props.push(format!("line={l}"));
    }
    if let Some(c) = p.column {
        props.push(format!("col={c}"));
    }
    props.push(format!("title={}", escape_property(&p.key)));
    format!("::{level} {}::{}", props.join(","), escape_data(&p.message))
}

/// Workflow-command data escaping (`%`, CR, LF).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Workflow-command property escaping: data escaping plus `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Where the database checks point: inside a key's SQL when the offset is known.
struct Locator {
    positions: Positions,
}

impl Locator {
    fn new(j: &Job) -> Locator {
        let text = std::fs::read_to_string(&j.path).unwrap_or_default();
        Locator {
            positions: Positions::scan(&text),
        }
    }

    fn at(&self, key: &str, sql: &str, offset: Option<usize>) -> Option<LineCol> {
        offset
            .and_then(|o| self.positions.in_value(key, sql, o))
            .or_else(|| self.positions.value(key))
    }
}

/// The byte offset in the original statement of a byte offset in its `%s` → `$n` translation.
fn original_offset(sql: &str, translated_offset: usize) -> usize {
    let mut t = 0usize;
    let mut n = 0usize;
    let mut prev = String::new();
    for tok in tokenize(sql) {
        let len = match tok.kind {
            Kind::Placeholder => {
                n += 1;
                1 + n.to_string().len() + usize::from(crate::placeholders::glued(&prev))
            }
            Kind::PercentPercent => 1,
            Kind::String | Kind::DollarString | Kind::QuotedIdent => {
                tok.text.replace("%%", "%").len()
            }
            _ => tok.text.len(),
        };
        if translated_offset < t + len {
            let inside = translated_offset - t;
            return tok.start + inside.min(tok.text.len().saturating_sub(1));
        }
        t += len;
        prev = tok.text.to_string();
    }
    sql.len()
}

/// The byte offset PostgreSQL gives for an error in `sent` (1-based characters).
fn error_offset(e: &postgres::Error, sent: &str) -> Option<usize> {
    let db = e.as_db_error()?;
    match db.position()? {
        postgres::error::ErrorPosition::Original(p) => sent
            .char_indices()
            .nth((*p as usize).saturating_sub(1))
            .map(|(i, _)| i),
        _ => None,
    }
}

/// The part of a driver error worth showing: PostgreSQL's message, detail and hint.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_string();
            if let Some(d) = db.detail() {
                s.push_str(&format!(" (detail: {d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!(" (hint: {h})"));
            }
            s
        }
        None => chain(e),
    }
}

struct Checks<'a> {
    job: &'a Job,
    loc: Locator,
    out: Vec<Problem>,
}

impl Checks<'_> {
    fn push(&mut self, sev: Severity, key: &str, offset: Option<usize>, msg: String) {
        let sql = match key {
            job::CREATE_TABLE_SQL => self.job.create_table_sql.as_str(),
            job::SELECT_SOURCE_SQL => self.job.select_source_sql.as_str(),
            job::UPSERT_TARGET_SQL => self.job.upsert_target_sql.as_str(),
            job::SELECT_KEYS_SQL => self.job.select_keys_sql.as_str(),
            _ => "",
        };
        let at = self.loc.at(key, sql, offset);
        self.out.push(
            Problem::new(&self.job.path.display().to_string(), key, msg)
                .at(at)
                .severity(sev),
        );
    }

    fn error(&mut self, key: &str, offset: Option<usize>, msg: String) {
        self.push(Severity::Error, key, offset, msg);
    }

    /// "M rejects it: …" at the position PostgreSQL names, mapped back to the job's text.
    fn rejected(&mut self, key: &str, db: &str, e: &postgres::Error, sent: &str, translated: bool) {
        let original = match key {
            job::SELECT_SOURCE_SQL => self.job.select_source_sql.clone(),
            job::UPSERT_TARGET_SQL => self.job.upsert_target_sql.clone(),
            _ => sent.to_string(),
        };
        let offset = error_offset(e, sent).map(|o| {
            if translated {
                original_offset(&original, o)
            } else {
                o
            }
        });
        self.error(key, offset, format!("{db} rejects it: {}", pg_message(e)));
    }
}

/// One output column of the source query as M describes it.
struct SourceCol {
    name: String,
    ty: Type,
    table_oid: u32,
    column_id: i16,
}

/// Prepares each statement where it runs, inside transactions that are rolled back.
fn check_against_databases(j: &Job, m: &mut db::Conn, a: &mut db::Conn) -> Vec<Problem> {
    let mut c = Checks {
        job: j,
        loc: Locator::new(j),
        out: Vec::new(),
    };
    let mut mt = match m.begin(db::Access::ReadOnly) {
        Ok(t) => t,
        Err(e) => {
            c.error(
                job::SELECT_SOURCE_SQL,
                None,
                format!("cannot start a transaction on M: {}", chain(&e)),
            );
            return c.out;
        }
    };
    let source = check_master(&mut c, &mut mt);
    match a.begin(db::Access::ReadWrite) {
        Ok(mut at) => {
            check_analytics(&mut c, &mut at, source.as_deref(), &mut mt);
            let _ = at.rollback();
        }
        Err(e) => c.error(
            job::CREATE_TABLE_SQL,
            None,
            format!("cannot start a transaction on A: {}", chain(&e)),
        ),
    }
    let _ = mt.rollback();
    c.out
}

/// M: the source query (placeholder type, output columns, key uniqueness) and the keys query.
fn check_master(c: &mut Checks<'_>, m: &mut db::Tx<'_>) -> Option<Vec<SourceCol>> {
    let j = c.job;
    let source = translate(&j.select_source_sql);
    let placeholder = source.placeholders.first().copied();
    let cols = match m.prepare(&source.sql) {
        Ok(stmt) => {
            match stmt.params() {
                [t] => {
                    if let Err(e) = watermark::earliest(t) {
                        c.error(job::SELECT_SOURCE_SQL, placeholder, chain(&e));
                    } else if !watermark::is_time(t) {
                        c.push(
                            Severity::Warning,
                            job::SELECT_SOURCE_SQL,
                            placeholder,
                            format!(
                                "the placeholder has type {}, not a time, so it always gets the \
                                 type's smallest value: every run reads all rows (correct, but \
                                 not incremental)",
                                t.name()
                            ),
                        );
                    }
                }
                p => c.error(
                    job::SELECT_SOURCE_SQL,
                    placeholder,
                    format!("M sees {} parameters, expected 1", p.len()),
                ),
            }
            Some(
                stmt.columns()
                    .iter()
                    .map(|col| SourceCol {
                        name: col.name().to_string(),
                        ty: col.type_().clone(),
                        table_oid: col.table_oid().unwrap_or(0),
                        column_id: col.column_id().unwrap_or(0),
                    })
                    .collect::<Vec<_>>(),
            )
        }
        Err(e) => {
            c.rejected(job::SELECT_SOURCE_SQL, "M", &e, &source.sql, true);
            None
        }
    };
    if let Some(cols) = &cols {
        let mut key_cols = Vec::new();
        for k in &j.key_columns {
            match cols.iter().find(|col| &col.name == k) {
                Some(col) => key_cols.push(col),
                None => c.error(
                    job::KEY_COLUMNS,
                    None,
                    format!(
                        "`{k}` is not an output column of SELECT_SOURCE_SQL (its columns: {})",
                        cols.iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        if key_cols.len() == j.key_columns.len() {
            key_uniqueness(c, m, &key_cols);
        }
    }
    match m.prepare(&j.select_keys_sql) {
        Ok(stmt) => {
            let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
            let keys: Vec<&str> = j.key_columns.iter().map(String::as_str).collect();
            if names != keys {
                c.error(
                    job::SELECT_KEYS_SQL,
                    None,
                    format!(
                        "M returns columns ({}) but KEY_COLUMNS is ({}): same names, same order",
                        names.join(", "),
                        keys.join(", ")
                    ),
                );
            }
        }
        Err(e) => {
            let sql = j.select_keys_sql.clone();
            c.rejected(job::SELECT_KEYS_SQL, "M", &e, &sql, false);
        }
    }
    cols
}

/// Warns when M does not guarantee one row per key: duplicate keys in one extraction make
/// the upsert touch a row twice and the state ambiguous.
fn key_uniqueness(c: &mut Checks<'_>, m: &mut Transaction<'_>, keys: &[&SourceCol]) {
    let table = keys[0].table_oid;
    let same_table = table != 0 && keys.iter().all(|k| k.table_oid == table && k.column_id > 0);
    if !same_table {
        c.push(
            Severity::Note,
            job::KEY_COLUMNS,
            None,
            "cannot tell whether KEY_COLUMNS are unique in the source: they are computed or come \
             from several tables"
                .into(),
        );
        return;
    }
    let attnums: Vec<i16> = keys.iter().map(|k| k.column_id).collect();
    let row = m.query_one(
        "SELECT $1::oid::regclass::text, EXISTS (\
           SELECT 1 FROM pg_index i WHERE i.indrelid = $1::oid AND i.indisunique \
             AND i.indpred IS NULL AND i.indexprs IS NULL \
             AND (string_to_array(i.indkey::text, ' ')::int2[])[1:i.indnkeyatts] <@ $2::int2[])",
        &[&table, &attnums],
    );
    match row {
        Ok(r) => {
            let covered: bool = r.get(1);
            if !covered {
                let name: String = r.get(0);
                c.push(
                    Severity::Warning,
                    job::KEY_COLUMNS,
                    None,
                    format!(
                        "the source key can repeat: no unique index on M's table {name} covers \
                         ({}); duplicate keys make the upsert hit one row twice",
                        c.job.key_columns.join(", ")
                    ),
                );
            }
        }
        Err(e) => c.push(
            Severity::Note,
            job::KEY_COLUMNS,
            None,
            format!("cannot read M's indexes: {}", pg_message(&e)),
        ),
    }
}

/// A: CREATE_TABLE_SQL, the target, the upsert (parameters against the source's columns,
/// conflict columns against unique indexes), KEY_COLUMNS in the target.
fn check_analytics(
    c: &mut Checks<'_>,
    a: &mut db::Tx<'_>,
    source: Option<&[SourceCol]>,
    m: &mut db::Tx<'_>,
) {
    let j = c.job;
    if let Err(e) = a.batch_execute(&j.create_table_sql) {
        let sql = j.create_table_sql.clone();
        c.rejected(job::CREATE_TABLE_SQL, "A", &e, &sql, false);
        return;
    }
    let table_oid: Option<u32> = a
        .query_one("SELECT to_regclass($1)::oid", &[&j.target_table])
        .ok()
        .and_then(|r| r.get(0));
    let Some(table_oid) = table_oid else {
        c.error(
            job::TARGET_TABLE,
            None,
            format!(
                "`{}` is not a table in A after CREATE_TABLE_SQL ran (check the name and A's \
                 search_path)",
                j.target_table
            ),
        );
        return;
    };

    // KEY_COLUMNS are columns of the target.
    let key_list = j
        .key_columns
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let probe = format!("SELECT {key_list} FROM {} LIMIT 0", j.target_table);
    if let Ok(mut sp) = a.savepoint("elt_keys") {
        if let Err(e) = sp.prepare(&probe) {
            c.error(
                job::KEY_COLUMNS,
                None,
                format!("not all are columns of TARGET_TABLE: {}", pg_message(&e)),
            );
        }
        let _ = sp.rollback();
    }

    // The upsert: parameters against the source's columns.
    let upsert = translate(&j.upsert_target_sql);
    let params: Option<Vec<Type>> = match a.savepoint("elt_upsert") {
        Ok(mut sp) => {
            let r = match sp.prepare(&upsert.sql) {
                Ok(stmt) => Some(stmt.params().to_vec()),
                Err(e) => {
                    c.rejected(job::UPSERT_TARGET_SQL, "A", &e, &upsert.sql, true);
                    None
                }
            };
            let _ = sp.rollback();
            r
        }
        Err(_) => None,
    };
    if let (Some(params), Some(cols)) = (&params, source) {
        if params.len() != cols.len() {
            c.error(
                job::UPSERT_TARGET_SQL,
                upsert.placeholders.first().copied(),
                format!(
                    "has {} placeholder(s) but SELECT_SOURCE_SQL returns {} column(s); values \
                     are bound in the order of the source's columns",
                    params.len(),
                    cols.len()
                ),
            );
        } else {
            for (i, (col, p)) in cols.iter().zip(params).enumerate() {
                let at = upsert.placeholders.get(i).copied();
                if let Some(msg) = type_problem(a, m, &col.ty, p) {
                    let (sev, msg) = msg;
                    c.push(
                        sev,
                        job::UPSERT_TARGET_SQL,
                        at,
                        format!(
                            "placeholder {} takes output column {} `{}` of SELECT_SOURCE_SQL: {msg}",
                            i + 1,
                            i + 1,
                            col.name
                        ),
                    );
                }
            }
        }
    }

    // ON CONFLICT (…) needs a unique index or constraint on exactly those columns.
    if let Some(conflict) = conflict_columns(&j.upsert_target_sql) {
        let row = a.query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1::oid \
               AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
               AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) \
                      FROM unnest((string_to_array(i.indkey::text, ' ')::int2[])[1:i.indnkeyatts]) k \
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k) \
                   = (SELECT array_agg(x ORDER BY x) FROM unnest($2::text[]) x))",
            &[&table_oid, &conflict],
        );
        if let Ok(r) = row {
            let ok: bool = r.get(0);
            if !ok {
                let at = j
                    .upsert_target_sql
                    .to_ascii_uppercase()
                    .find("CONFLICT")
                    .and_then(|from| ident_offset(&j.upsert_target_sql, &conflict[0], from));
                c.error(
                    job::UPSERT_TARGET_SQL,
                    at,
                    format!(
                        "ON CONFLICT ({}) has no unique index or constraint on exactly these \
                         columns in {}: A rejects the upsert",
                        conflict.join(", "),
                        j.target_table
                    ),
                );
            }
        }
    }
}

/// Can a value of the source type `src` (a type of M) reach the parameter type `param` (of
/// A)? Values of different types travel as text and A parses them with the parameter type's
/// input function, so this asks A whether a cast exists from the source type as A knows it
/// (enums become text, domains their base type) and adds what a cast does not tell.
fn type_problem(
    a: &mut Transaction<'_>,
    m: &mut Transaction<'_>,
    src: &Type,
    param: &Type,
) -> Option<(Severity, String)> {
    if src.oid() == param.oid() && src.oid() < 16384 {
        return None;
    }
    let src_a = type_on_a(a, m, src)?;
    let param_name = a
        .query_one("SELECT format_type($1::oid, NULL)", &[&param.oid()])
        .ok()?
        .get::<_, String>(0);
    let cast_ok = match a.savepoint("elt_cast") {
        Ok(mut sp) => {
            let r = sp.prepare(&format!("SELECT NULL::{src_a}::{param_name}"));
            let _ = sp.rollback();
            r.is_ok()
        }
        Err(_) => return None,
    };
    let cat = |t: &str, a: &mut Transaction<'_>| -> Option<String> {
        a.query_one(
            "SELECT typcategory::text FROM pg_type WHERE oid = $1::text::regtype",
            &[&t],
        )
        .ok()
        .map(|r| r.get(0))
    };
    let src_cat = cat(&src_a, a).unwrap_or_default();
    let param_cat = cat(&param_name, a).unwrap_or_default();
    if !cast_ok {
        return Some((
            Severity::Error,
            format!("its type {src_a} cannot be converted to the parameter's type {param_name}"),
        ));
    }
    if src_cat == "B" && param_cat != "B" && param_cat != "S" {
        return Some((
            Severity::Error,
            format!(
                "a boolean travels as `t`/`f`, which {param_name} cannot read; cast it in the \
                 SELECT"
            ),
        ));
    }
    let integer = ["smallint", "integer", "bigint"];
    let fractional = ["numeric", "real", "double precision"];
    if integer.contains(&param_name.as_str()) && fractional.iter().any(|f| src_a.starts_with(f)) {
        return Some((
            Severity::Warning,
            format!(
                "{src_a} values with a fraction cannot be read as {param_name}; round or cast \
                 them in the SELECT"
            ),
        ));
    }
    if let PgKind::Enum(labels) = src.kind() {
        if let PgKind::Enum(target) = param.kind() {
            let missing: Vec<&String> = labels.iter().filter(|l| !target.contains(l)).collect();
            if !missing.is_empty() {
                return Some((
                    Severity::Error,
                    format!(
                        "enum labels {:?} of M's {} do not exist in A's {}",
                        missing,
                        src.name(),
                        param.name()
                    ),
                ));
            }
        }
    }
    None
}

/// The name A knows the source type by: the same name when A has it, else what the value's
/// text form fits (an enum → text, a domain → its base type, an array of either → an array).
fn type_on_a(a: &mut Transaction<'_>, m: &mut Transaction<'_>, src: &Type) -> Option<String> {
    let row = m
        .query_one(
            "SELECT format_type(t.oid, NULL), t.typtype::text, \
                    CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, \
                    e.typtype::text, \
                    CASE WHEN e.typtype = 'd' THEN format_type(e.typbasetype, e.typtypmod) END \
             FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' \
             WHERE t.oid = $1::oid",
            &[&src.oid()],
        )
        .ok()?;
    let name: String = row.get(0);
    let exists = a
        .query_one("SELECT to_regtype($1) IS NOT NULL", &[&name])
        .ok()
        .is_some_and(|r| r.get::<_, bool>(0));
    if exists {
        return Some(name);
    }
    let typtype: String = row.get(1);
    let base: Option<String> = row.get(2);
    let elem_type: Option<String> = row.get(3);
    let elem_base: Option<String> = row.get(4);
    Some(match (typtype.as_str(), elem_type.as_deref()) {
        ("d", _) => base.unwrap_or_else(|| "text".into()),
        (_, Some("d")) => format!("{}[]", elem_base.unwrap_or_else(|| "text".into())),
        (_, Some(_)) => "text[]".into(),
        _ => "text".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_annotations_escape_data_and_properties() {
        let p = Problem::new("jobs/a,b.yaml", "KEY_COLUMNS", "100% wrong\nreally")
            .at(Some((3, 5)))
            .severity(Severity::Warning);
        assert_eq!(
            github_annotation(&p),
            "::warning file=jobs/a%2Cb.yaml,line=3,col=5,title=KEY_COLUMNS::100%25 wrong%0Areally"
        );
    }

    #[test]
    fn translated_offsets_map_back() {
        let sql = "SELECT a %% 2, 'x%%' FROM t WHERE u > %s AND v";
        let t = translate(sql).sql;
        let v = t.find("v").unwrap_or(0);
        assert_eq!(&sql[original_offset(sql, v)..], "v");
        let u = t.find("$1").unwrap_or(0);
        assert_eq!(
            &sql[original_offset(sql, u)..original_offset(sql, u) + 2],
            "%s"
        );
    }
}
