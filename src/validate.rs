//! The job-file rules: every check that needs no database, each problem as `FILE: KEY: message`.

use std::fmt;

use crate::job::{
    CREATE_TABLE_SQL, KEY_COLUMNS, REQUIRED_KEYS, SELECT_KEYS_SQL, SELECT_SOURCE_SQL, TARGET_TABLE,
    UPSERT_TARGET_SQL,
};
use crate::sqllex::{Kind, Token, ident_value, significant, tokenize};

/// One thing wrong with a job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(file: &str, key: &str, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.message)
    }
}

/// The values of a job file's keys, each present only when it had the right YAML type.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub create_table_sql: Option<String>,
    pub select_source_sql: Option<String>,
    pub upsert_target_sql: Option<String>,
    pub select_keys_sql: Option<String>,
    pub target_table: Option<String>,
    pub key_columns: Option<Vec<String>>,
}

/// Reads the YAML mapping: missing, unknown and mistyped keys are problems.
pub fn parse_fields(file: &str, text: &str) -> (Fields, Vec<Problem>) {
    let mut fields = Fields::default();
    let mut problems = Vec::new();
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(Problem::new(file, "YAML", format!("not valid YAML: {e}")));
            return (fields, problems);
        }
    };
    let serde_yaml::Value::Mapping(map) = value else {
        problems.push(Problem::new(
            file,
            "YAML",
            "a job file must be a YAML mapping of the keys CREATE_TABLE_SQL, SELECT_SOURCE_SQL, \
             UPSERT_TARGET_SQL, SELECT_KEYS_SQL, TARGET_TABLE, KEY_COLUMNS",
        ));
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
        let string = |problems: &mut Vec<Problem>| match v {
            serde_yaml::Value::String(s) => Some(s.clone()),
            _ => {
                problems.push(Problem::new(file, key, "must be a string"));
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
                        problems.push(Problem::new(
                            file,
                            key,
                            "must be a list of column names (strings)",
                        ));
                    } else {
                        fields.key_columns = Some(names.into_iter().flatten().collect());
                    }
                }
                _ => problems.push(Problem::new(
                    file,
                    key,
                    "must be a list of column names, e.g. [\"id\"]",
                )),
            },
            other => {
                let hint = REQUIRED_KEYS
                    .iter()
                    .find(|r| similar(r, other))
                    .map(|r| format!(" (did you mean {r}?)"))
                    .unwrap_or_default();
                problems.push(Problem::new(file, other, format!("unknown key{hint}")));
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

/// Checks every rule of the job-file table on the keys that were readable.
pub fn check_rules(file: &str, f: &Fields) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut push = |key: &str, msg: String| p.push(Problem::new(file, key, msg));

    let target = f.target_table.as_deref().map(|t| (t, parse_table_name(t)));
    if let Some((raw, parsed)) = &target {
        if parsed.is_none() {
            push(
                TARGET_TABLE,
                format!("`{raw}` is not a table name (expected `table` or `schema.table`)"),
            );
        }
    }
    let target = target.and_then(|(_, t)| t);

    if let Some(cols) = &f.key_columns {
        if cols.is_empty() {
            push(KEY_COLUMNS, "must name at least one column".into());
        }
        for (i, c) in cols.iter().enumerate() {
            if c.trim().is_empty() {
                push(KEY_COLUMNS, format!("item {} is empty", i + 1));
            } else if cols[..i].contains(c) {
                push(KEY_COLUMNS, format!("column `{c}` is listed twice"));
            }
        }
    }

    if let Some(sql) = &f.create_table_sql {
        for m in check_create(sql, target.as_ref()) {
            push(CREATE_TABLE_SQL, m);
        }
    }
    if let Some(sql) = &f.select_source_sql {
        for m in check_source(sql) {
            push(SELECT_SOURCE_SQL, m);
        }
    }
    if let Some(sql) = &f.upsert_target_sql {
        for m in check_upsert(sql, target.as_ref(), f.key_columns.as_deref()) {
            push(UPSERT_TARGET_SQL, m);
        }
    }
    if let Some(sql) = &f.select_keys_sql {
        for m in check_keys(sql, f.key_columns.as_deref()) {
            push(SELECT_KEYS_SQL, m);
        }
    }
    p
}

/// A possibly schema-qualified table name, normalised as PostgreSQL would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub table: String,
}

impl TableName {
    /// Two names denote the same table if the table parts agree and the schemas do when
    /// both are given.
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
fn statement_shape(tokens: &[Token<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = tokens.iter().find(|t| t.unterminated) {
        out.push(format!(
            "unterminated {} starting with `{}`",
            match t.kind {
                Kind::String | Kind::DollarString => "string literal",
                Kind::QuotedIdent => "quoted identifier",
                _ => "comment",
            },
            t.text.chars().take(20).collect::<String>()
        ));
    }
    let sig = significant(tokens);
    if sig.is_empty() {
        out.push("is empty".into());
        return out;
    }
    let last_code = sig
        .iter()
        .rposition(|t| !t.is_punct(";"))
        .map(|i| i + 1)
        .unwrap_or(0);
    if sig[..last_code].iter().any(|t| t.is_punct(";")) {
        out.push(
            "holds more than one statement; only one is allowed (a trailing `;` is fine)".into(),
        );
    }
    out
}

/// Significant tokens without trailing semicolons.
fn code<'a>(tokens: &[Token<'a>]) -> Vec<Token<'a>> {
    let mut sig = significant(tokens);
    while sig.last().is_some_and(|t| t.is_punct(";")) {
        sig.pop();
    }
    sig
}

fn check_create(sql: &str, target: Option<&TableName>) -> Vec<String> {
    let tokens = tokenize(sql);
    let mut out = statement_shape(&tokens);
    let sig = code(&tokens);
    let head = ["CREATE", "TABLE", "IF", "NOT", "EXISTS"];
    let starts = sig.len() > head.len() && head.iter().zip(&sig).all(|(kw, t)| t.is_word(kw));
    if !starts {
        out.push("must begin with `CREATE TABLE IF NOT EXISTS`".into());
        return out;
    }
    match table_name_at(&sig, head.len()) {
        Some((name, _)) => {
            if let Some(target) = target {
                if !name.same_as(target) {
                    out.push(format!(
                        "creates table `{name}` but TARGET_TABLE is `{target}`"
                    ));
                }
            }
        }
        None => out.push("no table name after `CREATE TABLE IF NOT EXISTS`".into()),
    }
    if sig.iter().any(|t| t.kind == Kind::Placeholder) {
        out.push("must not contain a `%s` placeholder: it is sent as written".into());
    }
    out
}

const COMPARISONS: [&str; 7] = [">", ">=", "<", "<=", "=", "<>", "!="];

fn check_source(sql: &str) -> Vec<String> {
    let tokens = tokenize(sql);
    let mut out = statement_shape(&tokens);
    let sig = code(&tokens);
    if sig.is_empty() {
        return out;
    }
    if !(sig[0].is_word("SELECT") || sig[0].is_word("WITH")) {
        out.push("must be a SELECT query".into());
    }
    let placeholders: Vec<usize> = sig
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind == Kind::Placeholder)
        .map(|(i, _)| i)
        .collect();
    match placeholders.len() {
        0 => {
            out.push(
                "must end with a condition on a `%s` placeholder, e.g. `WHERE updated_at > %s` \
                 (a `%s` inside a string literal, quoted identifier or comment does not count)"
                    .into(),
            );
            return out;
        }
        1 => {}
        n => {
            out.push(format!(
                "has {n} `%s` placeholders; exactly one is allowed, in the condition that ends \
                 the query (write `%%` for a literal `%`)"
            ));
            return out;
        }
    }
    let at = placeholders[0];
    // After the placeholder only a cast to a type name may follow: `%s::timestamptz`.
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
    if !trailing_ok || !compares || !has_condition {
        out.push(
            "must end with a condition on the `%s` placeholder, e.g. `WHERE updated_at > %s`; \
             nothing may follow it but a trailing `;`"
                .into(),
        );
    }
    out
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

/// Reads `INSERT INTO name (cols) VALUES (exprs) ...`; the error says what is wrong.
pub fn upsert_shape(sql: &str) -> Result<UpsertShape, String> {
    let tokens = tokenize(sql);
    let sig = code(&tokens);
    if !(sig.first().is_some_and(|t| t.is_word("INSERT"))
        && sig.get(1).is_some_and(|t| t.is_word("INTO")))
    {
        return Err("must begin with `INSERT INTO`".into());
    }
    let (table, mut i) =
        table_name_at(&sig, 2).ok_or("no table name after `INSERT INTO`".to_string())?;
    if sig.get(i).is_some_and(|t| t.is_word("AS")) {
        i += 2;
    }
    if !sig.get(i).is_some_and(|t| t.is_punct("(")) {
        return Err(
            "must list the target columns: `INSERT INTO t (c1, c2, …) VALUES (%s, %s, …)`".into(),
        );
    }
    let close = matching_paren(&sig, i).ok_or("unbalanced parentheses in the column list")?;
    let mut columns = Vec::new();
    for part in split_commas(&sig[i + 1..close]) {
        match part {
            [one] => match ident_value(one) {
                Some(c) => columns.push(c),
                None => return Err(format!("`{}` is not a column name", one.text)),
            },
            _ => return Err("the column list must hold plain column names".into()),
        }
    }
    i = close + 1;
    if !sig.get(i).is_some_and(|t| t.is_word("VALUES")) {
        return Err("must use `VALUES (%s, …)` after the column list".into());
    }
    let values_start = sig[i].start;
    if !sig.get(i + 1).is_some_and(|t| t.is_punct("(")) {
        return Err("`VALUES` must be followed by `(`".into());
    }
    let vclose = matching_paren(&sig, i + 1).ok_or("unbalanced parentheses in VALUES")?;
    let value_exprs: Vec<String> = split_commas(&sig[i + 2..vclose])
        .into_iter()
        .map(|part| match (part.first(), part.last()) {
            (Some(a), Some(b)) => sql[a.start..b.end()].to_string(),
            _ => String::new(),
        })
        .collect();
    if sig.get(vclose + 1).is_some_and(|t| t.is_punct(",")) {
        return Err("must insert a single row: `VALUES (%s, …)` once".into());
    }
    Ok(UpsertShape {
        table,
        columns,
        values_range: (values_start, sig[vclose].end()),
        value_exprs,
    })
}

fn check_upsert(sql: &str, target: Option<&TableName>, keys: Option<&[String]>) -> Vec<String> {
    let tokens = tokenize(sql);
    let mut out = statement_shape(&tokens);
    if !out.is_empty() && significant(&tokens).is_empty() {
        return out;
    }
    let shape = match upsert_shape(sql) {
        Ok(s) => s,
        Err(e) => {
            out.push(e);
            return out;
        }
    };
    if let Some(target) = target {
        if !shape.table.same_as(target) {
            out.push(format!(
                "writes table `{}` but TARGET_TABLE is `{target}`",
                shape.table
            ));
        }
    }
    for (i, c) in shape.columns.iter().enumerate() {
        if shape.columns[..i].contains(c) {
            out.push(format!("column `{c}` is listed twice"));
        }
    }
    let sig = code(&tokens);
    let (vs, ve) = shape.values_range;
    let inside = sig
        .iter()
        .filter(|t| t.kind == Kind::Placeholder && t.start >= vs && t.start < ve)
        .count();
    let outside = sig
        .iter()
        .filter(|t| t.kind == Kind::Placeholder && (t.start < vs || t.start >= ve))
        .count();
    if inside != shape.columns.len() {
        out.push(format!(
            "VALUES has {inside} `%s` placeholder(s) but the column list names {} column(s); \
             they must be equal",
            shape.columns.len()
        ));
    }
    if shape.value_exprs.len() != shape.columns.len() {
        out.push(format!(
            "VALUES has {} value(s) for {} column(s)",
            shape.value_exprs.len(),
            shape.columns.len()
        ));
    }
    if outside > 0 {
        out.push("`%s` placeholders are only allowed inside VALUES (…)".into());
    }
    let after: Vec<&Token<'_>> = sig.iter().filter(|t| t.start >= ve).collect();
    let words: Vec<String> = after.iter().map(|t| t.text.to_ascii_uppercase()).collect();
    let on_conflict = words
        .windows(2)
        .position(|w| w[0] == "ON" && w[1] == "CONFLICT");
    match on_conflict {
        None => out.push(
            "must have `ON CONFLICT (…) DO UPDATE SET …` so existing rows are updated".into(),
        ),
        Some(pos) => {
            let has_do_update_set = words[pos..]
                .windows(3)
                .any(|w| w[0] == "DO" && w[1] == "UPDATE" && w[2] == "SET");
            if !has_do_update_set {
                out.push("`ON CONFLICT` must be followed by `DO UPDATE SET …`".into());
            }
            if !after.get(pos + 2).is_some_and(|t| t.is_punct("(")) {
                out.push("`ON CONFLICT` must name the conflict columns: `ON CONFLICT (id)`".into());
            }
        }
    }
    if let Some(keys) = keys {
        for k in keys {
            if !shape.columns.iter().any(|c| c == k) {
                out.push(format!(
                    "KEY_COLUMNS names `{k}`, which is not among the inserted columns"
                ));
            }
        }
    }
    out
}

/// The output column names of a SELECT, aliases resolved; `None` for an unnamed expression.
pub fn select_output_names(sql: &str) -> Result<Vec<Option<String>>, String> {
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
    let mut names = Vec::new();
    for item in split_commas(&sig[i..end]) {
        names.push(output_name(item));
    }
    Ok(names)
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

fn check_keys(sql: &str, keys: Option<&[String]>) -> Vec<String> {
    let tokens = tokenize(sql);
    let mut out = statement_shape(&tokens);
    if significant(&tokens).is_empty() {
        return out;
    }
    if code(&tokens).iter().any(|t| t.kind == Kind::Placeholder) {
        out.push("must not contain a `%s` placeholder: it is sent as written".into());
    }
    let names = match select_output_names(sql) {
        Ok(n) => n,
        Err(e) => {
            out.push(e);
            return out;
        }
    };
    let Some(keys) = keys else { return out };
    if names.len() != keys.len() {
        out.push(format!(
            "selects {} column(s) but KEY_COLUMNS names {}: it must select exactly {}",
            names.len(),
            keys.len(),
            keys.join(", ")
        ));
        return out;
    }
    for (i, (name, key)) in names.iter().zip(keys).enumerate() {
        match name {
            None => out.push(format!(
                "output column {} has no name; give it an alias: `AS {key}`",
                i + 1
            )),
            Some(n) if n == key => {}
            Some(n) => out.push(format!(
                "output column {} is `{n}` but KEY_COLUMNS has `{key}` there: same names, same order",
                i + 1
            )),
        }
    }
    out
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
