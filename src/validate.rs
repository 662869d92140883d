//! The job-file rules: every check that needs no database. Each problem names the file, the
//! key, its severity and where it is in the YAML file (the offending token inside a key's SQL
//! when that can be located, else the key's value).
//!
//! Statements are read twice: by our lexer (`sqllex`, exact about literals, comments and
//! `%s`) for positions and statement boundaries, and by a real SQL parser (`sql`, sqlparser
//! with the PostgreSQL dialect, after `%s` → `$n`) for the rules about structure. When the
//! parser cannot read a statement that PostgreSQL may well accept, the rules fall back to
//! token-level checks and a note says so: a job is never rejected because of the parser.

mod sql;
pub mod yaml_pos;

use std::fmt;

use crate::job::{
    CREATE_TABLE_SQL, KEY_COLUMNS, MAX_DELETE_FRACTION, REQUIRED_KEYS, SELECT_KEYS_SQL,
    SELECT_SOURCE_SQL, TARGET_TABLE, UPSERT_TARGET_SQL,
};
use crate::placeholders::translate;
use crate::sqllex::{Kind, Token, ident_value, significant, tokenize};
use sql::{Conflict, CreateInfo, OutName, Trailing, UpsertInfo};
pub use yaml_pos::{LineCol, Positions};

/// How much a problem matters: only errors make `validate` exit 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    /// information about how a file was checked; shown with `--verbose`
    Note,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One thing wrong with (or worth knowing about) a job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub key: String,
    pub message: String,
    /// 1-based line in the file, when known
    pub line: Option<usize>,
    /// 1-based column (in characters), when known
    pub column: Option<usize>,
    pub severity: Severity,
    /// False for errors found by comparing statements with each other (a column the upsert
    /// leaves out, a missing unique constraint, …): `validate` reports them, but `run` goes
    /// ahead, since PostgreSQL itself rejects what truly cannot run, and a table altered
    /// outside the job file (an index added by hand) may make the job correct.
    pub blocks_run: bool,
}

impl Problem {
    pub fn new(file: &str, key: &str, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_string(),
            key: key.to_string(),
            message: message.into(),
            line: None,
            column: None,
            severity: Severity::Error,
            blocks_run: true,
        }
    }

    /// The same problem located at `at` (line, column).
    pub fn at(mut self, at: Option<LineCol>) -> Self {
        if let Some((l, c)) = at {
            self.line = Some(l);
            self.column = Some(c);
        }
        self
    }

    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `FILE: KEY: message` as the spec says, with `line L, column C: ` before the message when
/// the position is known, and `warning: ` / `note: ` in front of what is not an error.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity != Severity::Error {
            write!(f, "{}: ", self.severity.as_str())?;
        }
        write!(f, "{}: {}: ", self.file, self.key)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "line {l}, column {c}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The values of a job file's keys, each present only when it had the right YAML type, and
/// where everything is in the file.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub create_table_sql: Option<String>,
    pub select_source_sql: Option<String>,
    pub upsert_target_sql: Option<String>,
    pub select_keys_sql: Option<String>,
    pub target_table: Option<String>,
    pub key_columns: Option<Vec<String>>,
    pub max_delete_fraction: Option<f64>,
    pub positions: Positions,
}

/// Reads the YAML mapping: missing, unknown and mistyped keys are problems.
pub fn parse_fields(file: &str, text: &str) -> (Fields, Vec<Problem>) {
    let mut fields = Fields {
        positions: Positions::scan(text),
        ..Fields::default()
    };
    let pos = fields.positions.clone();
    let mut problems = Vec::new();
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e.location().map(|l| (l.line(), l.column()));
            problems.push(Problem::new(file, "YAML", format!("not valid YAML: {e}")).at(at));
            return (fields, problems);
        }
    };
    let serde_yaml::Value::Mapping(map) = value else {
        problems.push(
            Problem::new(
                file,
                "YAML",
                "a job file must be a YAML mapping of the keys CREATE_TABLE_SQL, SELECT_SOURCE_SQL, \
                 UPSERT_TARGET_SQL, SELECT_KEYS_SQL, TARGET_TABLE, KEY_COLUMNS",
            )
            .at(Some((1, 1))),
        );
        return (fields, problems);
    };
    for (k, v) in &map {
        let Some(key) = k.as_str() else {
            problems.push(Problem::new(
                file,
                "YAML",
                format!("key {k:?} is not a string"),
            ));
            continue;
        };
        let at = pos.value(key);
        let string = |problems: &mut Vec<Problem>| match v {
            serde_yaml::Value::String(s) => Some(s.clone()),
            _ => {
                problems.push(Problem::new(file, key, "must be a string").at(at));
                None
            }
        };
        match key {
            CREATE_TABLE_SQL => fields.create_table_sql = string(&mut problems),
            SELECT_SOURCE_SQL => fields.select_source_sql = string(&mut problems),
            UPSERT_TARGET_SQL => fields.upsert_target_sql = string(&mut problems),
            SELECT_KEYS_SQL => fields.select_keys_sql = string(&mut problems),
            TARGET_TABLE => fields.target_table = string(&mut problems),
            KEY_COLUMNS => match v {
                serde_yaml::Value::Sequence(items) => {
                    let names: Vec<Option<String>> = items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect();
                    if names.iter().any(Option::is_none) {
                        problems.push(
                            Problem::new(file, key, "must be a list of column names (strings)")
                                .at(at),
                        );
                    } else {
                        fields.key_columns = Some(names.into_iter().flatten().collect());
                    }
                }
                _ => problems.push(
                    Problem::new(file, key, "must be a list of column names, e.g. [\"id\"]").at(at),
                ),
            },
            MAX_DELETE_FRACTION => match v.as_f64() {
                Some(f) if f > 0.0 && f <= 1.0 => fields.max_delete_fraction = Some(f),
                _ => problems.push(
                    Problem::new(
                        file,
                        key,
                        "must be a number greater than 0 and at most 1 (the largest share of the \
                     target one run may delete; 1 turns the limit off)",
                    )
                    .at(at),
                ),
            },
            other => {
                let hint = REQUIRED_KEYS
                    .iter()
                    .find(|r| similar(r, other))
                    .map(|r| format!(" (did you mean {r}?)"))
                    .unwrap_or_default();
                problems.push(
                    Problem::new(file, other, format!("unknown key{hint}")).at(pos.key(other)),
                );
            }
        }
    }
    for key in REQUIRED_KEYS {
        if !map.contains_key(key) {
            problems.push(Problem::new(file, key, "missing required key"));
        }
    }
    (fields, problems)
}

fn similar(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_uppercase(), b.to_ascii_uppercase());
    a == b || a.starts_with(&b) || b.starts_with(&a) || a.replace('_', "") == b.replace('_', "")
}

/// A rule's verdict on one statement: what, how bad, and at which byte of the SQL text.
#[derive(Debug, Clone)]
struct Finding {
    severity: Severity,
    message: String,
    at: Option<usize>,
}

fn err(message: impl Into<String>, at: Option<usize>) -> Finding {
    Finding {
        severity: Severity::Error,
        message: message.into(),
        at,
    }
}

fn warn(message: impl Into<String>, at: Option<usize>) -> Finding {
    Finding {
        severity: Severity::Warning,
        message: message.into(),
        at,
    }
}

fn parser_note(e: &str) -> Finding {
    Finding {
        severity: Severity::Note,
        message: format!(
            "the SQL parser (sqlparser, PostgreSQL dialect) cannot read this statement ({e}); \
             its rules were checked token by token, and `validate --connect` lets PostgreSQL \
             itself check it"
        ),
        at: None,
    }
}

/// Checks every rule of the job-file table on the keys that were readable; problems come
/// back in file order.
pub fn check_rules(file: &str, f: &Fields) -> Vec<Problem> {
    let mut found: Vec<(&str, Finding, bool)> = Vec::new();
    let mut add =
        |key: &'static str, v: Vec<Finding>| found.extend(v.into_iter().map(|x| (key, x, true)));

    let target = f.target_table.as_deref().map(|t| (t, parse_table_name(t)));
    if let Some((raw, parsed)) = &target {
        if parsed.is_none() {
            add(
                TARGET_TABLE,
                vec![err(
                    format!("`{raw}` is not a table name (expected `table` or `schema.table`)"),
                    None,
                )],
            );
        }
    }
    let target = target.and_then(|(_, t)| t);

    if let Some(cols) = &f.key_columns {
        let mut v = Vec::new();
        if cols.is_empty() {
            v.push(err("must name at least one column", None));
        }
        for (i, c) in cols.iter().enumerate() {
            if c.trim().is_empty() {
                v.push(err(format!("item {} is empty", i + 1), None));
            } else if cols[..i].contains(c) {
                v.push(err(format!("column `{c}` is listed twice"), None));
            }
        }
        add(KEY_COLUMNS, v);
    }
    let keys = f
        .key_columns
        .as_deref()
        .filter(|k| !k.is_empty() && k.iter().all(|c| !c.trim().is_empty()));

    let create = f.create_table_sql.as_deref().map(|sql| {
        let (v, info) = check_create(sql, target.as_ref());
        add(CREATE_TABLE_SQL, v);
        info
    });
    let source = f.select_source_sql.as_deref().map(|sql| {
        let (v, names) = check_source(sql);
        add(SELECT_SOURCE_SQL, v);
        names
    });
    let upsert = f.upsert_target_sql.as_deref().map(|sql| {
        let (v, info) = check_upsert(sql, target.as_ref());
        add(UPSERT_TARGET_SQL, v);
        info
    });
    let key_names = f.select_keys_sql.as_deref().map(|sql| {
        let (v, names) = check_keys(sql);
        add(SELECT_KEYS_SQL, v);
        names
    });
    let cross = Cross {
        create: create.flatten(),
        source: source.flatten(),
        upsert: upsert.flatten(),
        key_names: key_names.flatten(),
        keys,
    };
    let cross_found = cross.check(f);
    for (key, v) in cross_found {
        found.extend(v.into_iter().map(|x| (key, x, false)));
    }

    let pos = &f.positions;
    let sql_of = |key: &str| match key {
        CREATE_TABLE_SQL => f.create_table_sql.as_deref(),
        SELECT_SOURCE_SQL => f.select_source_sql.as_deref(),
        UPSERT_TARGET_SQL => f.upsert_target_sql.as_deref(),
        SELECT_KEYS_SQL => f.select_keys_sql.as_deref(),
        _ => None,
    };
    let mut out: Vec<Problem> = found
        .into_iter()
        .map(|(key, x, blocks_run)| {
            let at = match (sql_of(key), x.at) {
                (Some(sql), Some(off)) => pos.in_value(key, sql, off),
                _ => None,
            }
            .or_else(|| pos.value(key));
            let mut p = Problem::new(file, key, x.message)
                .at(at)
                .severity(x.severity);
            p.blocks_run = blocks_run;
            p
        })
        .collect();
    out.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column.unwrap_or(0)));
    out
}

/// A possibly schema-qualified table name, normalised as PostgreSQL would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub table: String,
}

impl TableName {
    /// Two names denote the same table if the table parts agree and the schemas do when
    /// both are given (an unqualified name depends on A's search_path, which `--connect`
    /// checks).
    pub fn same_as(&self, other: &TableName) -> bool {
        self.table == other.table
            && match (&self.schema, &other.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

pub fn parse_table_name(text: &str) -> Option<TableName> {
    let toks = significant(&tokenize(text));
    let (name, used) = table_name_at(&toks, 0)?;
    (used == toks.len()).then_some(name)
}

/// Reads `ident` or `ident.ident` at `toks[i]`; returns the name and the index after it.
fn table_name_at(toks: &[Token<'_>], i: usize) -> Option<(TableName, usize)> {
    let first = ident_value(toks.get(i)?)?;
    if toks.get(i + 1).is_some_and(|t| t.is_punct(".")) {
        let second = ident_value(toks.get(i + 2)?)?;
        if toks.get(i + 3).is_some_and(|t| t.is_punct(".")) {
            // database.schema.table: keep the last two parts
            let third = ident_value(toks.get(i + 4)?)?;
            return Some((
                TableName {
                    schema: Some(second),
                    table: third,
                },
                i + 5,
            ));
        }
        return Some((
            TableName {
                schema: Some(first),
                table: second,
            },
            i + 3,
        ));
    }
    Some((
        TableName {
            schema: None,
            table: first,
        },
        i + 1,
    ))
}

/// Problems common to every statement: empty, unterminated literals, several statements.
/// The second value is true when the statement is fit for the parser.
fn statement_shape(tokens: &[Token<'_>]) -> (Vec<Finding>, bool) {
    let mut out = Vec::new();
    if let Some(t) = tokens.iter().find(|t| t.unterminated) {
        out.push(err(
            format!(
                "unterminated {} starting with `{}`",
                match t.kind {
                    Kind::String | Kind::DollarString => "string literal",
                    Kind::QuotedIdent => "quoted identifier",
                    _ => "comment",
                },
                t.text.chars().take(20).collect::<String>()
            ),
            Some(t.start),
        ));
    }
    let sig = significant(tokens);
    if sig.is_empty() {
        out.push(err("is empty", None));
        return (out, false);
    }
    let last_code = sig
        .iter()
        .rposition(|t| !t.is_punct(";"))
        .map(|i| i + 1)
        .unwrap_or(0);
    if let Some(semi) = sig[..last_code].iter().find(|t| t.is_punct(";")) {
        out.push(err(
            "holds more than one statement; only one is allowed (a trailing `;` is fine)",
            Some(semi.start),
        ));
    }
    let fit = out.is_empty();
    (out, fit)
}

/// Significant tokens without trailing semicolons.
fn code<'a>(tokens: &[Token<'a>]) -> Vec<Token<'a>> {
    let mut sig = significant(tokens);
    while sig.last().is_some_and(|t| t.is_punct(";")) {
        sig.pop();
    }
    sig
}

/// `%s` and `%%` in a statement that is sent as written (no parameters).
fn as_written_rules(sig: &[Token<'_>]) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(t) = sig.iter().find(|t| t.kind == Kind::Placeholder) {
        out.push(err(
            "must not contain a `%s` placeholder: it is sent as written",
            Some(t.start),
        ));
    }
    if let Some(t) = sig.iter().find(|t| t.kind == Kind::PercentPercent) {
        out.push(err(
            "`%%` is only a literal `%` in SELECT_SOURCE_SQL and UPSERT_TARGET_SQL; this \
             statement is sent as written, so write a single `%`",
            Some(t.start),
        ));
    }
    out
}

/// Offset of the first token at or after `from` that is one of `words`.
fn word_at(sig: &[Token<'_>], from: usize, words: &[&str]) -> Option<usize> {
    sig.iter()
        .find(|t| t.start >= from && words.iter().any(|w| t.is_word(w)))
        .map(|t| t.start)
}

/// Offset of the first identifier equal to `name` at or after `from`.
fn ident_at(sig: &[Token<'_>], from: usize, name: &str) -> Option<usize> {
    sig.iter()
        .find(|t| t.start >= from && ident_value(t).as_deref() == Some(name))
        .map(|t| t.start)
}

fn check_create(sql: &str, target: Option<&TableName>) -> (Vec<Finding>, Option<CreateInfo>) {
    let tokens = tokenize(sql);
    let (mut out, fit) = statement_shape(&tokens);
    let sig = code(&tokens);
    if sig.is_empty() {
        return (out, None);
    }
    let head = ["CREATE", "TABLE", "IF", "NOT", "EXISTS"];
    let starts = sig.len() > head.len() && head.iter().zip(&sig).all(|(kw, t)| t.is_word(kw));
    if !starts {
        out.push(err(
            "must begin with `CREATE TABLE IF NOT EXISTS`",
            Some(sig[0].start),
        ));
        return (out, None);
    }
    let written = as_written_rules(&sig);
    let parsable = fit && written.is_empty();
    out.extend(written);
    let info = if parsable {
        match sql::parse_one(sql) {
            Ok(stmt) => sql::create_info(&stmt),
            Err(e) => {
                out.push(parser_note(&e));
                None
            }
        }
    } else {
        None
    };
    let name = match info.as_ref().and_then(|i| i.name.clone()) {
        Some(n) => Some(n),
        None => table_name_at(&sig, head.len()).map(|(n, _)| n),
    };
    match name {
        Some(name) => {
            if let Some(target) = target {
                if !name.same_as(target) {
                    out.push(err(
                        format!("creates table `{name}` but TARGET_TABLE is `{target}`"),
                        Some(sig[head.len()].start),
                    ));
                }
            }
        }
        None => out.push(err(
            "no table name after `CREATE TABLE IF NOT EXISTS`",
            sig.get(head.len()).map(|t| t.start),
        )),
    }
    (out, info)
}

const COMPARISONS: [&str; 7] = [">", ">=", "<", "<=", "=", "<>", "!="];

const TRAILING_RULE: &str = "must end with a condition on the `%s` placeholder, e.g. \
     `WHERE updated_at > %s`; nothing may follow it but a trailing `;`";

fn check_source(sql: &str) -> (Vec<Finding>, Option<Vec<OutName>>) {
    let tokens = tokenize(sql);
    let (mut out, fit) = statement_shape(&tokens);
    let sig = code(&tokens);
    if sig.is_empty() {
        return (out, None);
    }
    let is_query = sig[0].is_word("SELECT") || sig[0].is_word("WITH") || sig[0].is_punct("(");
    if !is_query {
        out.push(err("must be a SELECT query", Some(sig[0].start)));
    }
    let placeholders: Vec<usize> = sig
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind == Kind::Placeholder)
        .map(|(i, _)| i)
        .collect();
    match placeholders.len() {
        0 => {
            out.push(err(
                "must end with a condition on a `%s` placeholder, e.g. `WHERE updated_at > %s` \
                 (a `%s` inside a string literal, quoted identifier or comment does not count)",
                sig.last().map(|t| t.start),
            ));
            return (out, None);
        }
        1 => {}
        n => {
            out.push(err(
                format!(
                    "has {n} `%s` placeholders; exactly one is allowed, in the condition that \
                     ends the query (write `%%` for a literal `%`)"
                ),
                Some(sig[placeholders[1]].start),
            ));
            return (out, None);
        }
    }
    let at = placeholders[0];
    let ph = sig[at].start;
    if !fit || !is_query {
        return (out, None);
    }
    match sql::parse_one(&translate(sql).sql) {
        Ok(stmt) => {
            let Some(q) = sql::query_of(&stmt) else {
                out.push(err("must be a SELECT query", Some(sig[0].start)));
                return (out, None);
            };
            match sql::trailing_condition(q) {
                Trailing::Ok => {}
                Trailing::NotSelect => {
                    out.push(err("must be a SELECT query", Some(sig[0].start)));
                }
                Trailing::ClauseAfter(clause) => {
                    let words = [
                        "ORDER", "LIMIT", "OFFSET", "FETCH", "FOR", "GROUP", "WINDOW", "QUALIFY",
                    ];
                    let place = word_at(&sig, ph, &words).or(Some(ph));
                    out.push(err(
                        format!("{TRAILING_RULE} (here {clause} follows it)"),
                        place,
                    ));
                }
                Trailing::NoCondition | Trailing::NotInLastCondition => {
                    out.push(err(
                        format!(
                            "{TRAILING_RULE}; here the `%s` is not in the last condition of the \
                             query's WHERE (move other conditions before it, joined with AND)"
                        ),
                        Some(ph),
                    ));
                }
                Trailing::NotAComparison => out.push(err(
                    format!(
                        "{TRAILING_RULE}; here the `%s` is not compared with anything \
                         (write e.g. `updated_at > %s`)"
                    ),
                    Some(ph),
                )),
            }
            (out, sql::output_names(q))
        }
        Err(e) => {
            out.push(parser_note(&e));
            if !trailing_by_tokens(&sig, at) {
                out.push(err(TRAILING_RULE, Some(ph)));
            }
            let names = select_items(sql).ok().map(|items| {
                items
                    .into_iter()
                    .map(|(n, _)| n.map(OutName::Named).unwrap_or(OutName::Unknown))
                    .collect()
            });
            (out, names)
        }
    }
}

/// The token-level rule for a statement the parser cannot read: a comparison right before
/// the placeholder, a WHERE/HAVING before it, and nothing after it but a cast.
fn trailing_by_tokens(sig: &[Token<'_>], at: usize) -> bool {
    let rest = &sig[at + 1..];
    let stop_words = [
        "ORDER",
        "LIMIT",
        "OFFSET",
        "GROUP",
        "HAVING",
        "UNION",
        "FOR",
        "AND",
        "OR",
        "FETCH",
        "WINDOW",
        "EXCEPT",
        "INTERSECT",
        "WHERE",
        "FROM",
    ];
    let trailing_ok = rest.is_empty()
        || (rest[0].kind == Kind::Cast
            && rest[1..].iter().all(|t| {
                (matches!(
                    t.kind,
                    Kind::Word | Kind::QuotedIdent | Kind::Number | Kind::Cast
                ) && !stop_words.iter().any(|w| t.is_word(w)))
                    || t.is_punct(".")
                    || t.is_punct("(")
                    || t.is_punct(")")
                    || t.is_punct("[")
                    || t.is_punct("]")
                    || t.is_punct(",")
            }));
    let before = at.checked_sub(1).map(|i| &sig[i]);
    let compares = before.is_some_and(|t| {
        (t.kind == Kind::Operator && COMPARISONS.contains(&t.text))
            || t.is_word("AND")
            || t.is_word("BETWEEN")
    });
    let has_condition = sig[..at]
        .iter()
        .any(|t| t.is_word("WHERE") || t.is_word("HAVING"));
    trailing_ok && compares && has_condition
}

/// What the upsert's parts look like, for the checks here and for deriving set-based SQL.
#[derive(Debug, Clone)]
pub struct UpsertShape {
    pub table: TableName,
    pub columns: Vec<String>,
    /// byte range in the source of the `VALUES (...)` clause, `VALUES` keyword included
    pub values_range: (usize, usize),
    /// the source text of each top-level expression inside `VALUES (...)`
    pub value_exprs: Vec<String>,
}

/// Reads `INSERT INTO name (cols) VALUES (exprs) ...`; the error says what is wrong. The
/// pipeline derives its set-based merge from this, so the validator requires it too.
pub fn upsert_shape(sql: &str) -> Result<UpsertShape, String> {
    upsert_shape_at(sql).map_err(|(m, _)| m)
}

/// `upsert_shape` with the offset of the token where reading stopped.
fn upsert_shape_at(sql: &str) -> Result<UpsertShape, (String, Option<usize>)> {
    let tokens = tokenize(sql);
    let sig = code(&tokens);
    let at = |i: usize| sig.get(i).or(sig.last()).map(|t| t.start);
    if !(sig.first().is_some_and(|t| t.is_word("INSERT"))
        && sig.get(1).is_some_and(|t| t.is_word("INTO")))
    {
        return Err(("must begin with `INSERT INTO`".into(), at(0)));
    }
    let (table, mut i) =
        table_name_at(&sig, 2).ok_or(("no table name after `INSERT INTO`".to_string(), at(2)))?;
    if sig.get(i).is_some_and(|t| t.is_word("AS")) {
        i += 2;
    }
    if !sig.get(i).is_some_and(|t| t.is_punct("(")) {
        return Err((
            "must list the target columns: `INSERT INTO t (c1, c2, …) VALUES (%s, %s, …)`".into(),
            at(i),
        ));
    }
    let close = matching_paren(&sig, i).ok_or((
        "unbalanced parentheses in the column list".to_string(),
        at(i),
    ))?;
    let mut columns = Vec::new();
    for part in split_commas(&sig[i + 1..close]) {
        match part {
            [one] => match ident_value(one) {
                Some(c) => columns.push(c),
                None => {
                    return Err((
                        format!("`{}` is not a column name", one.text),
                        Some(one.start),
                    ));
                }
            },
            _ => {
                return Err((
                    "the column list must hold plain column names".into(),
                    part.first().map(|t| t.start),
                ));
            }
        }
    }
    i = close + 1;
    if !sig.get(i).is_some_and(|t| t.is_word("VALUES")) {
        return Err((
            "must use `VALUES (%s, …)` right after the column list".into(),
            at(i),
        ));
    }
    let values_start = sig[i].start;
    if !sig.get(i + 1).is_some_and(|t| t.is_punct("(")) {
        return Err(("`VALUES` must be followed by `(`".into(), at(i + 1)));
    }
    let vclose = matching_paren(&sig, i + 1)
        .ok_or(("unbalanced parentheses in VALUES".to_string(), at(i + 1)))?;
    let value_exprs: Vec<String> = split_commas(&sig[i + 2..vclose])
        .into_iter()
        .map(|part| match (part.first(), part.last()) {
            (Some(a), Some(b)) => sql[a.start..b.end()].to_string(),
            _ => String::new(),
        })
        .collect();
    if sig.get(vclose + 1).is_some_and(|t| t.is_punct(",")) {
        return Err((
            "must insert a single row: `VALUES (%s, …)` once".into(),
            at(vclose + 1),
        ));
    }
    Ok(UpsertShape {
        table,
        columns,
        values_range: (values_start, sig[vclose].end()),
        value_exprs,
    })
}

/// Offsets of the items of the `VALUES (…)` list that starts at offset `vs`.
fn value_item_offsets(sig: &[Token<'_>], vs: usize) -> Vec<usize> {
    let Some(open) = sig.iter().position(|t| t.start > vs && t.is_punct("(")) else {
        return Vec::new();
    };
    let Some(close) = matching_paren(sig, open) else {
        return Vec::new();
    };
    split_commas(&sig[open + 1..close])
        .into_iter()
        .filter_map(|p| p.first().map(|t| t.start))
        .collect()
}

/// What the cross-key rules need from the upsert.
#[derive(Debug, Clone)]
struct Upsert {
    /// the inserted columns and the offset of each in the SQL text
    columns: Vec<(String, usize)>,
    /// `%s` in VALUES, when that agrees with the column count (else already reported)
    placeholders: Option<usize>,
    values_at: usize,
    conflict: Option<(Vec<String>, usize)>,
    set: Option<(Vec<String>, usize)>,
}

fn check_upsert(sql: &str, target: Option<&TableName>) -> (Vec<Finding>, Option<Upsert>) {
    let tokens = tokenize(sql);
    let (mut out, fit) = statement_shape(&tokens);
    let sig = code(&tokens);
    if sig.is_empty() {
        return (out, None);
    }
    let ast: Option<Result<UpsertInfo, String>> = fit.then(|| {
        sql::parse_one(&translate(sql).sql)
            .and_then(|s| sql::upsert_info(&s).ok_or_else(|| "not an INSERT".to_string()))
    });
    let info = match ast {
        Some(Ok(i)) => Some(i),
        Some(Err(e)) if e == "not an INSERT" => {
            out.push(err(
                "must be `INSERT INTO t (c1, …) VALUES (%s, …) ON CONFLICT (…) DO UPDATE SET …`",
                Some(sig[0].start),
            ));
            return (out, None);
        }
        Some(Err(e)) => {
            out.push(parser_note(&e));
            None
        }
        None => None,
    };
    let shape = match upsert_shape_at(sql) {
        Ok(s) => s,
        Err((m, at)) => {
            out.push(err(m, at));
            return (out, None);
        }
    };
    let paren = sig
        .iter()
        .find(|t| t.is_punct("("))
        .map(|t| t.start)
        .unwrap_or(0);
    if let Some(target) = target {
        let table = info
            .as_ref()
            .and_then(|i| i.table.clone())
            .unwrap_or_else(|| shape.table.clone());
        if !table.same_as(target) {
            out.push(err(
                format!("writes table `{table}` but TARGET_TABLE is `{target}`"),
                sig.get(2).map(|t| t.start),
            ));
        }
    }
    let columns: Vec<(String, usize)> = {
        let mut from = paren;
        shape
            .columns
            .iter()
            .map(|c| {
                let at = ident_at(&sig, from, c).unwrap_or(from);
                from = at + 1;
                // `%%` in a quoted name reaches PostgreSQL as `%` (psycopg rule)
                (c.replace("%%", "%"), at)
            })
            .collect()
    };
    for (i, (c, at)) in columns.iter().enumerate() {
        if columns[..i].iter().any(|(p, _)| p == c) {
            out.push(err(format!("column `{c}` is listed twice"), Some(*at)));
        }
    }
    let (vs, ve) = shape.values_range;
    let inside = sig
        .iter()
        .filter(|t| t.kind == Kind::Placeholder && t.start >= vs && t.start < ve)
        .count();
    let outside = sig
        .iter()
        .find(|t| t.kind == Kind::Placeholder && (t.start < vs || t.start >= ve));
    let n = shape.columns.len();
    let mut counts_agree = true;
    if inside != n {
        counts_agree = false;
        out.push(err(
            format!(
                "VALUES has {inside} `%s` placeholder(s) but the column list names {n} column(s); \
                 they must be equal"
            ),
            Some(vs),
        ));
    }
    if shape.value_exprs.len() != n && shape.value_exprs.len() != inside {
        counts_agree = false;
        out.push(err(
            format!(
                "VALUES has {} value(s) for {n} column(s)",
                shape.value_exprs.len()
            ),
            Some(vs),
        ));
    }
    if let Some(t) = outside {
        out.push(err(
            "`%s` placeholders are only allowed inside VALUES (…)",
            Some(t.start),
        ));
    }
    // Each value takes exactly one column of the source, in order.
    if let Some([row]) = info.as_ref().and_then(|i| i.rows.as_deref()) {
        if counts_agree {
            if let Some(i) = row.iter().position(|e| !sql::has_param(e)) {
                let at = value_item_offsets(&sig, vs).get(i).copied();
                out.push(err(
                    format!(
                        "VALUES item {} has no `%s` while another has several: each column \
                         takes one value of SELECT_SOURCE_SQL, in order",
                        i + 1
                    ),
                    at.or(Some(vs)),
                ));
            }
        }
    }
    // ON CONFLICT: from the parser when it read the statement, else from the words.
    let on = word_at(&sig, ve, &["ON"]);
    let conflict_paren = sig
        .iter()
        .position(|t| Some(t.start) == on)
        .and_then(|i| sig.get(i + 2))
        .filter(|t| t.is_punct("("))
        .map(|t| t.start);
    let do_at = word_at(&sig, ve, &["DO"]);
    let set_at = word_at(&sig, ve, &["SET"]);
    let need = "must have `ON CONFLICT (…) DO UPDATE SET …` so existing rows are updated";
    let mut conflict = None;
    let mut set = None;
    match info.as_ref().map(|i| &i.conflict) {
        Some(Conflict::Missing) => out.push(err(need, sig.last().map(|t| t.start))),
        Some(Conflict::DoNothing) => {
            conflict = info
                .as_ref()
                .and_then(|i| i.conflict_columns.clone())
                .map(|c| (c, conflict_paren.or(on).unwrap_or(ve)));
            out.push(err(
                "`ON CONFLICT … DO NOTHING` never updates a row that changed in M: use \
             `DO UPDATE SET c = EXCLUDED.c, …`",
                do_at,
            ))
        }
        Some(Conflict::NoTarget) => out.push(err(
            "`ON CONFLICT` must name the conflict columns: `ON CONFLICT (id) DO UPDATE SET …`",
            on,
        )),
        Some(Conflict::OnConstraint) => {}
        Some(Conflict::Columns { columns, set: s }) => {
            conflict = Some((columns.clone(), conflict_paren.or(on).unwrap_or(ve)));
            set = Some((s.clone(), set_at.unwrap_or(ve)));
        }
        None => {
            let words: Vec<String> = sig
                .iter()
                .filter(|t| t.start >= ve)
                .map(|t| t.text.to_ascii_uppercase())
                .collect();
            match words
                .windows(2)
                .position(|w| w[0] == "ON" && w[1] == "CONFLICT")
            {
                None => out.push(err(need, sig.last().map(|t| t.start))),
                Some(pos) => {
                    let has_do_update_set = words[pos..]
                        .windows(3)
                        .any(|w| w[0] == "DO" && w[1] == "UPDATE" && w[2] == "SET");
                    if !has_do_update_set {
                        out.push(err(
                            "`ON CONFLICT` must be followed by `DO UPDATE SET …`",
                            do_at.or(on),
                        ));
                    }
                    if conflict_paren.is_none() {
                        out.push(err(
                            "`ON CONFLICT` must name the conflict columns: `ON CONFLICT (id)`",
                            on,
                        ));
                    }
                }
            }
        }
    }
    let upsert = Upsert {
        columns,
        placeholders: counts_agree.then_some(inside),
        values_at: vs,
        conflict,
        set,
    };
    (out, Some(upsert))
}

/// The output columns of a SELECT as our lexer sees them, aliases resolved, each with the
/// offset where it starts; `None` for an expression without a name it can tell.
fn select_items(sql: &str) -> Result<Vec<(Option<String>, usize)>, String> {
    let tokens = tokenize(sql);
    let sig = code(&tokens);
    // Skip a WITH clause: the main SELECT is the first SELECT at depth 0 after it.
    let mut depth = 0i32;
    let mut start = None;
    for (i, t) in sig.iter().enumerate() {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
        } else if depth == 0 && t.is_word("SELECT") {
            start = Some(i + 1);
            break;
        }
    }
    let mut i = start.ok_or("must be a SELECT query")?;
    if sig.get(i).is_some_and(|t| t.is_word("DISTINCT")) {
        i += 1;
        if sig.get(i).is_some_and(|t| t.is_word("ON")) {
            let close = matching_paren(&sig, i + 1).ok_or("unbalanced parentheses")?;
            i = close + 1;
        }
    } else if sig.get(i).is_some_and(|t| t.is_word("ALL")) {
        i += 1;
    }
    let mut end = sig.len();
    let mut depth = 0i32;
    for (j, t) in sig.iter().enumerate().skip(i) {
        if t.is_punct("(") || t.is_punct("[") {
            depth += 1;
        } else if t.is_punct(")") || t.is_punct("]") {
            depth -= 1;
        } else if depth == 0
            && [
                "FROM", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "UNION", "INTO", "WINDOW",
            ]
            .iter()
            .any(|kw| t.is_word(kw))
        {
            end = j;
            break;
        }
    }
    Ok(split_commas(&sig[i..end])
        .into_iter()
        .map(|item| {
            (
                output_name(item),
                item.first().map(|t| t.start).unwrap_or(0),
            )
        })
        .collect())
}

/// The output column names of a SELECT, aliases resolved; `None` for an unnamed expression.
pub fn select_output_names(sql: &str) -> Result<Vec<Option<String>>, String> {
    Ok(select_items(sql)?.into_iter().map(|(n, _)| n).collect())
}

fn output_name(item: &[Token<'_>]) -> Option<String> {
    let n = item.len();
    if n >= 2 && item[n - 2].is_word("AS") {
        return ident_value(&item[n - 1]);
    }
    // a plain or qualified column reference: a, t.a, s.t.a
    let is_ref = item.iter().enumerate().all(|(i, t)| {
        if i % 2 == 0 {
            matches!(t.kind, Kind::Word | Kind::QuotedIdent)
        } else {
            t.is_punct(".")
        }
    }) && n % 2 == 1;
    if is_ref {
        return ident_value(&item[n - 1]);
    }
    // implicit alias: `expr alias` where alias is a bare word after an expression end
    if n >= 2 {
        let prev = &item[n - 2];
        let last = &item[n - 1];
        let prev_ends_expr = prev.is_punct(")")
            || matches!(
                prev.kind,
                Kind::Word | Kind::QuotedIdent | Kind::String | Kind::Number
            );
        if prev_ends_expr && matches!(last.kind, Kind::Word | Kind::QuotedIdent) {
            return ident_value(last);
        }
    }
    // a cast of a column keeps the column's name: a::text
    if let Some(cast) = item.iter().position(|t| t.kind == Kind::Cast) {
        return output_name(&item[..cast]);
    }
    None
}

/// The keys query: names and the offset of each output column, for the cross-key rules.
type KeyNames = Vec<(OutName, usize)>;

fn check_keys(sql: &str) -> (Vec<Finding>, Option<KeyNames>) {
    let tokens = tokenize(sql);
    let (mut out, fit) = statement_shape(&tokens);
    let sig = code(&tokens);
    if sig.is_empty() {
        return (out, None);
    }
    let written = as_written_rules(&sig);
    let parsable = fit && written.is_empty();
    out.extend(written);
    let offsets: Vec<usize> = select_items(sql)
        .map(|v| v.into_iter().map(|(_, at)| at).collect())
        .unwrap_or_default();
    let names: Option<Vec<OutName>> = match parsable.then(|| sql::parse_one(sql)) {
        Some(Ok(stmt)) => match sql::query_of(&stmt) {
            Some(q) => sql::output_names(q),
            None => {
                out.push(err("must be a SELECT query", Some(sig[0].start)));
                return (out, None);
            }
        },
        other => {
            if let Some(Err(e)) = other {
                out.push(parser_note(&e));
            }
            match select_items(sql) {
                Ok(items) => Some(
                    items
                        .into_iter()
                        .map(|(n, _)| n.map(OutName::Named).unwrap_or(OutName::Unnamed))
                        .collect(),
                ),
                Err(e) => {
                    out.push(err(e, Some(sig[0].start)));
                    return (out, None);
                }
            }
        }
    };
    let Some(names) = names else {
        return (out, None);
    };
    let start = sig[0].start;
    let named: KeyNames = names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, offsets.get(i).copied().unwrap_or(start)))
        .collect();
    (out, Some(named))
}

/// Rules that relate two or more keys: they run only on what the parser read for certain.
struct Cross<'a> {
    create: Option<CreateInfo>,
    source: Option<Vec<OutName>>,
    upsert: Option<Upsert>,
    key_names: Option<KeyNames>,
    keys: Option<&'a [String]>,
}

impl Cross<'_> {
    fn check(&self, f: &Fields) -> Vec<(&'static str, Vec<Finding>)> {
        let mut out: Vec<(&'static str, Vec<Finding>)> = Vec::new();
        let table_cols: Option<Vec<&sql::ColumnDef>> = self
            .create
            .as_ref()
            .and_then(|c| c.columns.as_ref())
            .map(|c| c.iter().collect());
        let create_sig = f.create_table_sql.as_deref().map(tokenize);
        let source_names: Option<Vec<&str>> = self
            .source
            .as_ref()
            .and_then(|names| names.iter().map(OutName::name).collect::<Option<Vec<_>>>());

        // KEY_COLUMNS: a name no statement knows is a typo in KEY_COLUMNS itself.
        let mut key_missing_everywhere = Vec::new();
        if let Some(keys) = self.keys {
            for k in keys {
                let in_table = table_cols.as_ref().map(|c| c.iter().any(|c| &c.name == k));
                let in_upsert = self
                    .upsert
                    .as_ref()
                    .map(|u| u.columns.iter().any(|(c, _)| c == k));
                let in_source = source_names.as_ref().map(|n| n.contains(&k.as_str()));
                let in_keys = self
                    .key_names
                    .as_ref()
                    .filter(|n| n.iter().all(|(x, _)| matches!(x, OutName::Named(_))))
                    .map(|n| n.iter().any(|(x, _)| x.name() == Some(k.as_str())));
                let known = [in_table, in_upsert, in_source, in_keys];
                if known.iter().all(|x| *x == Some(false)) {
                    key_missing_everywhere.push(k.clone());
                    continue;
                }
                if in_upsert == Some(false) {
                    let at = self
                        .upsert
                        .as_ref()
                        .and_then(|u| u.columns.first().map(|c| c.1));
                    out.push((
                        UPSERT_TARGET_SQL,
                        vec![err(
                            format!(
                                "KEY_COLUMNS names `{k}`, which is not among the inserted columns"
                            ),
                            at,
                        )],
                    ));
                }
                if in_source == Some(false) {
                    out.push((
                        SELECT_SOURCE_SQL,
                        vec![err(
                            format!(
                                "KEY_COLUMNS names `{k}`, which is not an output column of this \
                                 query: each row's key is read from it"
                            ),
                            None,
                        )],
                    ));
                }
                if in_table == Some(false) && in_upsert != Some(false) {
                    out.push((
                        KEY_COLUMNS,
                        vec![err(
                            format!("`{k}` is not a column of the table CREATE_TABLE_SQL creates"),
                            None,
                        )],
                    ));
                }
            }
        }
        for k in &key_missing_everywhere {
            out.push((
                KEY_COLUMNS,
                vec![err(
                    format!(
                        "`{k}` is not a column in any of the job's statements (check the \
                         spelling; KEY_COLUMNS names output columns of SELECT_SOURCE_SQL and \
                         SELECT_KEYS_SQL and columns of TARGET_TABLE)"
                    ),
                    None,
                )],
            ));
        }

        if let (Some(keys), Some(named)) = (self.keys, &self.key_names) {
            out.push((
                SELECT_KEYS_SQL,
                keys_rules(
                    named,
                    keys,
                    &key_missing_everywhere,
                    f.select_keys_sql.as_deref(),
                ),
            ));
        }

        let Some(u) = &self.upsert else {
            return out;
        };
        let mut ups = Vec::new();
        let mut create = Vec::new();

        // The upsert against the created table.
        if let Some(cols) = &table_cols {
            let missing: Vec<&str> = cols
                .iter()
                .filter(|c| !c.has_default && c.generated_always.is_none())
                .filter(|c| !u.columns.iter().any(|(n, _)| n == &c.name))
                .map(|c| c.name.as_str())
                .collect();
            let mut suggested = Vec::new();
            for (name, at) in &u.columns {
                match cols.iter().find(|c| &c.name == name) {
                    None => {
                        let hint = missing
                            .iter()
                            .find(|m| close_names(m, name))
                            .map(|m| {
                                suggested.push(*m);
                                format!(" (did you mean `{m}`?)")
                            })
                            .unwrap_or_default();
                        ups.push(err(
                            format!(
                                "column `{name}` is not a column of the table CREATE_TABLE_SQL \
                                 creates{hint}"
                            ),
                            Some(*at),
                        ));
                    }
                    Some(c) => {
                        if let Some(kind) = c.generated_always {
                            let at = create_sig
                                .as_ref()
                                .and_then(|t| ident_at(&significant(t), 0, name));
                            create.push(err(
                                format!(
                                    "column `{name}` is {kind}, so A refuses the values the \
                                     upsert writes to it: declare it as a plain column (or \
                                     GENERATED BY DEFAULT AS IDENTITY), A keeps M's values"
                                ),
                                at,
                            ));
                        }
                    }
                }
            }
            let missing: Vec<&str> = missing
                .into_iter()
                .filter(|m| !suggested.contains(m))
                .collect();
            if !missing.is_empty() {
                ups.push(err(
                    format!(
                        "does not write {} of the table ({}): the upsert must list every column \
                         that has no DEFAULT, or A keeps NULL there",
                        if missing.len() == 1 {
                            "a column"
                        } else {
                            "columns"
                        },
                        missing
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    u.columns.first().map(|c| c.1),
                ));
            }
        }

        // ON CONFLICT needs a unique key of the created table on exactly these columns.
        if let (Some((conf, at)), Some(c)) = (&u.conflict, &self.create) {
            if c.columns.is_some() {
                let mut want: Vec<&String> = conf.iter().collect();
                want.sort();
                let matches = c.unique_keys.iter().any(|k| {
                    let mut have: Vec<&String> = k.iter().collect();
                    have.sort();
                    have == want
                });
                if !matches {
                    let declared = if c.unique_keys.is_empty() {
                        "it declares no PRIMARY KEY or UNIQUE constraint".to_string()
                    } else {
                        format!(
                            "it declares {}",
                            c.unique_keys
                                .iter()
                                .map(|k| format!("({})", k.join(", ")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    ups.push(err(
                        format!(
                            "ON CONFLICT ({}) needs a PRIMARY KEY or UNIQUE constraint on exactly \
                             these columns in CREATE_TABLE_SQL, or A rejects the upsert; {declared}",
                            conf.join(", ")
                        ),
                        Some(*at),
                    ));
                }
            }
        }

        // DO UPDATE SET: every inserted column but the conflict columns.
        if let (Some((conf, _)), Some((set, set_at))) = (&u.conflict, &u.set) {
            if let Some(cols) = &table_cols {
                for s in set {
                    // a name already reported in the column list is the same mistake
                    let reported = u.columns.iter().any(|(c, _)| c == s);
                    if !reported && !cols.iter().any(|c| &c.name == s) {
                        ups.push(err(
                            format!(
                                "DO UPDATE SET assigns `{s}`, which is not a column of the table"
                            ),
                            Some(*set_at),
                        ));
                    }
                }
            }
            let stale: Vec<&str> = u
                .columns
                .iter()
                .map(|(c, _)| c.as_str())
                .filter(|c| !conf.iter().any(|k| k == c) && !set.iter().any(|s| s == c))
                .collect();
            if !stale.is_empty() {
                ups.push(warn(
                    format!(
                        "DO UPDATE SET does not update {}: when {} in M, A keeps the old value",
                        stale
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if stale.len() == 1 {
                            "it changes"
                        } else {
                            "they change"
                        }
                    ),
                    Some(*set_at),
                ));
            }
        }

        // Values are bound in the order of the source's columns.
        if let (Some(names), Some(n)) = (&self.source, u.placeholders) {
            if !names.contains(&OutName::Star) && names.len() != n {
                ups.push(err(
                    format!(
                        "VALUES binds {n} value(s), one per output column of SELECT_SOURCE_SQL \
                         in order, but SELECT_SOURCE_SQL returns {} column(s)",
                        names.len()
                    ),
                    Some(u.values_at),
                ));
            } else if let Some(src) = &source_names {
                let upsert_names: Vec<&str> = u.columns.iter().map(|(c, _)| c.as_str()).collect();
                let misplaced = src.iter().enumerate().find(|(i, s)| {
                    upsert_names.get(*i) != Some(*s) && upsert_names.iter().any(|c| c == *s)
                });
                if let Some((i, s)) = misplaced {
                    let j = upsert_names.iter().position(|c| c == s).unwrap_or(0);
                    ups.push(err(
                        format!(
                            "values are bound by position: output column {} of \
                             SELECT_SOURCE_SQL is `{s}`, but column {} here is `{}` (`{s}` is \
                             column {}); list the columns in the same order as the SELECT",
                            i + 1,
                            i + 1,
                            upsert_names.get(i).copied().unwrap_or("?"),
                            j + 1
                        ),
                        u.columns.get(i).map(|c| c.1),
                    ));
                }
            }
        }
        out.push((UPSERT_TARGET_SQL, ups));
        out.push((CREATE_TABLE_SQL, create));
        out
    }
}

/// SELECT_KEYS_SQL's output columns against KEY_COLUMNS: same names, same order.
fn keys_rules(
    named: &KeyNames,
    keys: &[String],
    typos: &[String],
    sql: Option<&str>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if named.iter().any(|(n, _)| *n == OutName::Star) {
        return out;
    }
    let start = sql
        .map(|s| code(&tokenize(s)).first().map(|t| t.start).unwrap_or(0))
        .unwrap_or(0);
    if named.len() != keys.len() {
        out.push(err(
            format!(
                "selects {} column(s) but KEY_COLUMNS names {}: it must select exactly {}, in \
                 that order",
                named.len(),
                keys.len(),
                keys.join(", ")
            ),
            named
                .get(keys.len())
                .or(named.last())
                .map(|(_, at)| *at)
                .or(Some(start)),
        ));
        return out;
    }
    for (i, ((name, at), key)) in named.iter().zip(keys).enumerate() {
        if typos.contains(key) {
            continue;
        }
        match name {
            OutName::Unnamed => out.push(err(
                format!(
                    "output column {} has no name; give it an alias: `AS {key}`",
                    i + 1
                ),
                Some(*at),
            )),
            OutName::Named(n) if n != key => out.push(err(
                format!(
                    "output column {} is `{n}` but KEY_COLUMNS has `{key}` there: same names, \
                     same order",
                    i + 1
                ),
                Some(*at),
            )),
            _ => {}
        }
    }
    out
}

/// The conflict columns of an upsert's `ON CONFLICT (…)`, when the parser can read it.
pub fn conflict_columns(upsert_sql: &str) -> Option<Vec<String>> {
    let stmt = sql::parse_one(&translate(upsert_sql).sql).ok()?;
    match sql::upsert_info(&stmt)?.conflict {
        Conflict::Columns { columns, .. } => Some(columns),
        _ => None,
    }
}

/// The columns `CREATE_TABLE_SQL` declares with their types as written, when the parser
/// reads it.
pub fn created_columns(create_sql: &str) -> Option<Vec<(String, String)>> {
    let info = sql::create_info(&sql::parse_one(create_sql).ok()?)?;
    // the parser prints type names in upper case; PostgreSQL folds unquoted ones anyway
    let fold = |t: String| if t.contains('"') { t } else { t.to_lowercase() };
    Some(
        info.columns?
            .into_iter()
            .map(|c| (c.name, fold(c.data_type)))
            .collect(),
    )
}

/// True when the upsert's `DO UPDATE SET` assigns `c = EXCLUDED.c` only (no `WHERE`): a
/// target row equal to the inserted values is then left exactly as it is.
pub fn plain_update_set(upsert_sql: &str) -> bool {
    sql::parse_one(&translate(upsert_sql).sql)
        .ok()
        .and_then(|s| sql::upsert_info(&s))
        .is_some_and(|u| u.plain_set)
}

/// Byte offset in `sql` of the first code token that is the identifier `name`, at or after
/// byte `from`.
pub fn ident_offset(sql: &str, name: &str, from: usize) -> Option<usize> {
    ident_at(&code(&tokenize(sql)), from, name)
}

/// Names close enough to be a typo of each other (one edit, or the same without `_`).
fn close_names(a: &str, b: &str) -> bool {
    if a.replace('_', "") == b.replace('_', "") {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    // Damerau-style: one substitution, insertion, deletion or adjacent swap
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut prev2 = prev.clone();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()] <= 1
}

/// Index of the `)` matching the `(` at `open`.
fn matching_paren(sig: &[Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in sig.iter().enumerate().skip(open) {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Splits tokens at commas outside parentheses and brackets.
fn split_commas<'a, 'b>(toks: &'b [Token<'a>]) -> Vec<&'b [Token<'a>]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        if t.is_punct("(") || t.is_punct("[") {
            depth += 1;
        } else if t.is_punct(")") || t.is_punct("]") {
            depth -= 1;
        } else if depth == 0 && t.is_punct(",") {
            out.push(&toks[start..i]);
            start = i + 1;
        }
    }
    if start < toks.len() || !out.is_empty() {
        out.push(&toks[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            create_table_sql: Some(
                "create  table\n if not exists products (id int primary key, title text, updated_at timestamptz)".into(),
            ),
            select_source_sql: Some(
                "SELECT id, title, updated_at FROM products WHERE updated_at > %s;".into(),
            ),
            upsert_target_sql: Some(
                "INSERT INTO products (id, title, updated_at) VALUES (%s, %s, %s) \
                 ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, updated_at = EXCLUDED.updated_at;"
                    .into(),
            ),
            select_keys_sql: Some("SELECT id FROM products;".into()),
            target_table: Some("products".into()),
            key_columns: Some(vec!["id".into()]),
            ..Fields::default()
        }
    }

    fn messages(f: &Fields) -> Vec<String> {
        check_rules("j.yaml", f)
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    #[test]
    fn a_correct_job_has_no_problems() {
        assert!(messages(&fields()).is_empty(), "{:?}", messages(&fields()));
    }

    #[test]
    fn create_must_begin_with_if_not_exists() {
        let mut f = fields();
        f.create_table_sql = Some("CREATE TABLE products (id int)".into());
        let m = messages(&f);
        assert!(
            m.iter()
                .any(|m| m.starts_with("CREATE_TABLE_SQL: must begin")),
            "{m:?}"
        );
    }

    #[test]
    fn source_placeholder_must_end_the_query() {
        let mut f = fields();
        f.select_source_sql = Some("SELECT * FROM p WHERE u > %s ORDER BY id".into());
        assert_eq!(messages(&f).len(), 1);
        f.select_source_sql = Some("SELECT * FROM p WHERE u > '%s'".into());
        assert_eq!(messages(&f).len(), 1);
        f.select_source_sql = Some("SELECT * FROM p WHERE u > %s AND v > %s".into());
        assert_eq!(messages(&f).len(), 1);
        f.select_source_sql =
            Some("SELECT * FROM p WHERE x LIKE 'a%' AND u >= %s::timestamptz ;".into());
        assert!(messages(&f).is_empty(), "{:?}", messages(&f));
    }

    #[test]
    fn upsert_counts_and_conflict_clause() {
        let mut f = fields();
        f.upsert_target_sql =
            Some("INSERT INTO products (id, title, updated_at) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title".into());
        assert!(
            messages(&f)
                .iter()
                .any(|m| m.contains("2 `%s` placeholder(s)"))
        );
        f.upsert_target_sql =
            Some("INSERT INTO products (id, title, updated_at) VALUES (%s, %s, %s)".into());
        assert!(messages(&f).iter().any(|m| m.contains("ON CONFLICT")));
    }

    #[test]
    fn keys_must_match_key_columns_with_aliases_resolved() {
        let mut f = fields();
        f.select_keys_sql = Some("SELECT p.product_id AS id FROM products p".into());
        assert!(messages(&f).is_empty());
        f.select_keys_sql = Some("SELECT title, id FROM products".into());
        assert!(!messages(&f).is_empty());
        f.key_columns = Some(vec!["title".into(), "category".into()]);
        f.select_keys_sql = Some("SELECT title, category FROM products;".into());
        f.upsert_target_sql = Some("INSERT INTO products (title, category) VALUES (%s, %s) ON CONFLICT (title, category) DO UPDATE SET title = EXCLUDED.title".into());
        assert!(
            messages(&f)
                .iter()
                .all(|m| !m.starts_with("SELECT_KEYS_SQL")),
            "{:?}",
            messages(&f)
        );
    }

    #[test]
    fn target_table_must_match() {
        let mut f = fields();
        f.target_table = Some("analytics.products".into());
        assert!(messages(&f).is_empty());
        f.target_table = Some("other".into());
        assert_eq!(messages(&f).len(), 2);
    }

    #[test]
    fn multiple_statements_are_rejected() {
        let mut f = fields();
        f.select_keys_sql = Some("SELECT id FROM products; DROP TABLE products;".into());
        assert!(
            messages(&f)
                .iter()
                .any(|m| m.contains("more than one statement"))
        );
    }

    #[test]
    fn unknown_and_missing_keys() {
        let (_, p) = parse_fields("j.yaml", "KEY_COLUMN: [id]\nTARGET_TABLE: t\n");
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"KEY_COLUMN"));
        assert!(keys.contains(&"KEY_COLUMNS"));
        assert!(
            p.iter()
                .any(|p| p.message.contains("did you mean KEY_COLUMNS"))
        );
    }
}
