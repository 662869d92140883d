//! UPSERT_TARGET_SQL: `INSERT INTO TARGET_TABLE (c1, …) VALUES (%s, …) ON CONFLICT (…) DO
//! UPDATE SET …`, one `%s` per column, and, against the other statements: every column of
//! the created table, the source's columns in order, a unique key for `ON CONFLICT`.

use super::facts::{Facts, Upsert};
use super::finding::{Finding, close_names, quoted_list};
use super::stmt::Stmt;
use crate::jobfile::keys::Key;
use crate::sqllex::Kind;
use crate::sqlshape::{self, Conflict, OutName, TableName, UpsertInfo, UpsertShape, agree};

const NEED_CONFLICT: &str =
    "must have `ON CONFLICT (…) DO UPDATE SET …` so existing rows are updated";

pub fn check(s: &Stmt<'_>, target: Option<&TableName>, out: &mut Vec<Finding>) -> Option<Upsert> {
    let info = s.tree().map(sqlshape::upsert_info);
    if let Some(None) = info {
        out.push(Finding::error(
            s.key,
            "must be `INSERT INTO t (c1, …) VALUES (%s, …) ON CONFLICT (…) DO UPDATE SET …`",
            s.start(),
        ));
        return None;
    }
    let info = info.flatten();
    let shape = match sqlshape::upsert_shape(s.text) {
        Ok(shape) => shape,
        Err(e) => {
            out.push(Finding::error(s.key, e.message, e.at));
            return None;
        }
    };
    if let Some(target) = target.filter(|t| !shape.table.same_as(t)) {
        out.push(Finding::error(
            s.key,
            format!(
                "writes table `{}` but TARGET_TABLE is `{target}`",
                shape.table
            ),
            Some(shape.table_at),
        ));
    }
    // `%%` in a quoted name reaches PostgreSQL as `%` (psycopg rule)
    let columns: Vec<(String, usize)> = shape
        .columns
        .iter()
        .zip(&shape.column_at)
        .map(|(c, at)| (c.replace("%%", "%"), *at))
        .collect();
    for (i, (c, at)) in columns.iter().enumerate() {
        if columns[..i].iter().any(|(p, _)| p == c) {
            out.push(Finding::error(
                s.key,
                format!("column `{c}` is listed twice"),
                Some(*at),
            ));
        }
    }
    let counts_agree = values_rules(s, &shape, info.as_ref(), out);
    let (conflict, set) = conflict_rules(s, &shape, info.as_ref(), out);
    Some(Upsert {
        columns,
        placeholders: counts_agree.then_some(shape.columns.len()),
        values_at: shape.values_range.0,
        conflict,
        set,
    })
}

/// One `%s` per column, all inside VALUES, each item taking one; true when the counts agree.
fn values_rules(
    s: &Stmt<'_>,
    shape: &UpsertShape,
    info: Option<&UpsertInfo>,
    out: &mut Vec<Finding>,
) -> bool {
    let (vs, ve) = shape.values_range;
    let placeholders = s.placeholders();
    let inside = placeholders.iter().filter(|&&p| p >= vs && p < ve).count();
    let n = shape.columns.len();
    let mut agree = true;
    if inside != n {
        agree = false;
        out.push(Finding::error(
            s.key,
            format!(
                "VALUES has {inside} `%s` placeholder(s) but the column list names {n} column(s); \
                 they must be equal"
            ),
            Some(vs),
        ));
    }
    let items = shape.value_exprs.len();
    if items != n && items != inside {
        agree = false;
        out.push(Finding::error(
            s.key,
            format!("VALUES has {items} value(s) for {n} column(s)"),
            Some(vs),
        ));
    }
    if let Some(t) = placeholders.iter().find(|&&p| p < vs || p >= ve) {
        out.push(Finding::error(
            s.key,
            "`%s` placeholders are only allowed inside VALUES (…)",
            Some(*t),
        ));
    }
    if let (true, Some([row])) = (agree, info.and_then(|i| i.rows.as_deref())) {
        if let Some(i) = row.iter().position(|e| !sqlshape::has_param(e)) {
            out.push(Finding::error(
                s.key,
                format!(
                    "VALUES item {} has no `%s` while another has several: each column takes \
                     one value of SELECT_SOURCE_SQL, in order",
                    i + 1
                ),
                shape.value_at.get(i).copied().or(Some(vs)),
            ));
        }
    }
    agree
}

type ConflictParts = (Option<(Vec<String>, usize)>, Option<(Vec<String>, usize)>);

/// `ON CONFLICT (…) DO UPDATE SET …`: from the parser's tree, or from the words when it
/// could not read the statement. Returns the conflict columns and the assigned ones.
fn conflict_rules(
    s: &Stmt<'_>,
    shape: &UpsertShape,
    info: Option<&UpsertInfo>,
    out: &mut Vec<Finding>,
) -> ConflictParts {
    let ve = shape.values_range.1;
    let on = s.word_at(ve, &["ON"]);
    let paren = s
        .code
        .iter()
        .position(|t| Some(t.start) == on)
        .and_then(|i| s.code.get(i + 2))
        .filter(|t| t.is_punct("("))
        .map(|t| t.start);
    let conflict_at = paren.or(on).unwrap_or(ve);
    let end = s.code.last().map(|t| t.start);
    let Some(info) = info else {
        if s.unreadable() {
            conflict_by_words(s, ve, on, paren, out);
        }
        return (None, None);
    };
    let mut parts = (None, None);
    match &info.conflict {
        Conflict::Missing => out.push(Finding::error(s.key, NEED_CONFLICT, end)),
        Conflict::DoNothing => {
            parts.0 = info.conflict_columns.clone().map(|c| (c, conflict_at));
            out.push(Finding::error(
                s.key,
                "`ON CONFLICT … DO NOTHING` never updates a row that changed in M: use \
                 `DO UPDATE SET c = EXCLUDED.c, …`",
                s.word_at(ve, &["DO"]),
            ));
        }
        Conflict::NoTarget => out.push(Finding::error(
            s.key,
            "`ON CONFLICT` must name the conflict columns: `ON CONFLICT (id) DO UPDATE SET …`",
            on,
        )),
        Conflict::OnConstraint => {}
        Conflict::Columns { columns, set } => {
            parts.0 = Some((columns.clone(), conflict_at));
            parts.1 = Some((set.clone(), s.word_at(ve, &["SET"]).unwrap_or(ve)));
        }
    }
    parts
}

/// The conflict clause of an upsert the parser cannot read: the words must be there.
fn conflict_by_words(
    s: &Stmt<'_>,
    ve: usize,
    on: Option<usize>,
    paren: Option<usize>,
    out: &mut Vec<Finding>,
) {
    let words: Vec<String> = s
        .code
        .iter()
        .filter(|t| t.start >= ve && t.kind == Kind::Word)
        .map(|t| t.text.to_ascii_uppercase())
        .collect();
    let Some(pos) = words
        .windows(2)
        .position(|w| w[0] == "ON" && w[1] == "CONFLICT")
    else {
        out.push(Finding::error(
            s.key,
            NEED_CONFLICT,
            s.code.last().map(|t| t.start),
        ));
        return;
    };
    if !words[pos..]
        .windows(3)
        .any(|w| w[0] == "DO" && w[1] == "UPDATE" && w[2] == "SET")
    {
        out.push(Finding::error(
            s.key,
            "`ON CONFLICT` must be followed by `DO UPDATE SET …`",
            s.word_at(ve, &["DO"]).or(on),
        ));
    }
    if paren.is_none() {
        out.push(Finding::error(
            s.key,
            "`ON CONFLICT` must name the conflict columns: `ON CONFLICT (id)`",
            on,
        ));
    }
}

/// The upsert against the created table and the source's columns.
pub fn against(facts: &Facts<'_>, out: &mut Vec<Finding>) {
    let Some(u) = &facts.upsert else { return };
    if let Some(cols) = facts.create.as_ref().and_then(|c| c.columns()) {
        against_table(u, cols, out);
    }
    if let Some(c) = &facts.create {
        conflict_key(u, &c.info, out);
    }
    update_set(u, facts, out);
    if let Some(names) = &facts.source {
        source_order(u, names, out);
    }
}

/// Every inserted column exists; every column without a default is inserted.
fn against_table(u: &Upsert, cols: &[sqlshape::ColumnDef], out: &mut Vec<Finding>) {
    let missing: Vec<&str> = cols
        .iter()
        .filter(|c| !c.has_default && c.generated_always.is_none())
        .filter(|c| !u.columns.iter().any(|(n, _)| n == &c.name))
        .map(|c| c.name.as_str())
        .collect();
    let mut suggested = Vec::new();
    for (name, at) in &u.columns {
        if cols.iter().any(|c| &c.name == name) {
            continue;
        }
        let hint = missing
            .iter()
            .find(|m| close_names(m, name))
            .map(|m| {
                suggested.push(*m);
                format!(" (did you mean `{m}`?)")
            })
            .unwrap_or_default();
        out.push(Finding::error(
            Key::UpsertTargetSql,
            format!("column `{name}` is not a column of the table CREATE_TABLE_SQL creates{hint}"),
            Some(*at),
        ));
    }
    let missing: Vec<&str> = missing
        .into_iter()
        .filter(|m| !suggested.contains(m))
        .collect();
    if !missing.is_empty() {
        out.push(Finding::error(
            Key::UpsertTargetSql,
            format!(
                "does not write {} of the table ({}): the upsert must list every column that \
                 has no DEFAULT, or A keeps NULL there",
                if missing.len() == 1 {
                    "a column"
                } else {
                    "columns"
                },
                quoted_list(&missing)
            ),
            u.columns.first().map(|c| c.1),
        ));
    }
}

/// ON CONFLICT needs a unique key of the created table on exactly these columns.
fn conflict_key(u: &Upsert, created: &sqlshape::CreateInfo, out: &mut Vec<Finding>) {
    let Some((conf, at)) = &u.conflict else {
        return;
    };
    if created.columns.is_none() {
        return;
    }
    let mut want: Vec<&String> = conf.iter().collect();
    want.sort();
    let matches = created.unique_keys.iter().any(|k| {
        let mut have: Vec<&String> = k.iter().collect();
        have.sort();
        have == want
    });
    if matches {
        return;
    }
    let declared = if created.unique_keys.is_empty() {
        "it declares no PRIMARY KEY or UNIQUE constraint".to_string()
    } else {
        let keys: Vec<String> = created
            .unique_keys
            .iter()
            .map(|k| format!("({})", k.join(", ")))
            .collect();
        format!("it declares {}", keys.join(", "))
    };
    out.push(Finding::error(
        Key::UpsertTargetSql,
        format!(
            "ON CONFLICT ({}) needs a PRIMARY KEY or UNIQUE constraint on exactly these columns \
             in CREATE_TABLE_SQL, or A rejects the upsert; {declared}",
            conf.join(", ")
        ),
        Some(*at),
    ));
}

/// DO UPDATE SET assigns columns of the table, and every inserted one but the key.
fn update_set(u: &Upsert, facts: &Facts<'_>, out: &mut Vec<Finding>) {
    let (Some((conf, _)), Some((set, set_at))) = (&u.conflict, &u.set) else {
        return;
    };
    if let Some(cols) = facts.create.as_ref().and_then(|c| c.columns()) {
        for s in set {
            // a name already reported in the column list is the same mistake
            let reported = u.columns.iter().any(|(c, _)| c == s);
            if !reported && !cols.iter().any(|c| &c.name == s) {
                out.push(Finding::error(
                    Key::UpsertTargetSql,
                    format!("DO UPDATE SET assigns `{s}`, which is not a column of the table"),
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
        let verb = if stale.len() == 1 {
            "it changes"
        } else {
            "they change"
        };
        out.push(Finding::warning(
            Key::UpsertTargetSql,
            format!(
                "DO UPDATE SET does not update {}: when {verb} in M, A keeps the old value",
                quoted_list(&stale)
            ),
            Some(*set_at),
        ));
    }
}

/// Values are bound in the order of the source's columns.
fn source_order(u: &Upsert, names: &[OutName], out: &mut Vec<Finding>) {
    let Some(n) = u.placeholders else { return };
    if !names.contains(&OutName::Star) && names.len() != n {
        out.push(Finding::error(
            Key::UpsertTargetSql,
            agree::placeholder_count(n, names.len()),
            Some(u.values_at),
        ));
        return;
    }
    let Some(src) = names.iter().map(OutName::name).collect::<Option<Vec<_>>>() else {
        return;
    };
    let upsert_names: Vec<&str> = u.columns.iter().map(|(c, _)| c.as_str()).collect();
    let misplaced = src
        .iter()
        .enumerate()
        .find(|(i, s)| upsert_names.get(*i) != Some(*s) && upsert_names.contains(s));
    if let Some((i, s)) = misplaced {
        let j = upsert_names.iter().position(|c| c == s).unwrap_or(0);
        out.push(Finding::error(
            Key::UpsertTargetSql,
            format!(
                "values are bound by position: output column {} of SELECT_SOURCE_SQL is `{s}`, \
                 but column {} here is `{}` (`{s}` is column {}); list the columns in the same \
                 order as the SELECT",
                i + 1,
                i + 1,
                upsert_names.get(i).copied().unwrap_or("?"),
                j + 1
            ),
            u.columns.get(i).map(|c| c.1),
        ));
    }
}
