//! `elt new NAME --from-table SCHEMA.TABLE`: reads a table's columns, types, key and change
//! column from M and writes a job file that copies it, explaining what it inferred and what
//! it could not.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use postgres::Transaction;

use crate::db;
use crate::error::{Db, Error, Result, io, pg};
use crate::jobfile;

/// Names of columns that usually record a row's last change, best first.
const CHANGE_COLUMNS: [&str; 16] = [
    "updated_at",
    "modified_at",
    "last_update",
    "last_updated",
    "last_modified",
    "changed_at",
    "updated_on",
    "modified_on",
    "update_time",
    "updated_time",
    "date_updated",
    "date_modified",
    "updated",
    "modified",
    "mtime",
    "last_change",
];

const INTEGERS: [&str; 3] = ["smallint", "integer", "bigint"];

/// One column of the source table and how it travels to A.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    /// the name as SQL needs it (`quote_ident`)
    quoted: String,
    not_null: bool,
    /// M's type as written (`public.mpaa_rating`, `numeric(4,2)`)
    m_type: String,
    /// the type in A: M's built-in type, or the one its values are written as
    a_type: String,
    /// true when the SELECT casts to `a_type` (enums, domains, types A may not have)
    cast: bool,
}

pub fn new_job(
    settings: &crate::settings::Settings,
    name: &str,
    from_table: &str,
    target_table: Option<&str>,
    watermark_column: Option<&str>,
) -> Result<i32> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.trim() != name
    {
        return Err(Error::Config(format!(
            "`{name}` cannot be a job name: it becomes the file name <jobs-dir>/{name}.yaml"
        )));
    }
    let path = settings.jobs_dir.join(format!("{name}.yaml"));
    refuse_existing(&settings.jobs_dir, name, &path)?;
    let mut conn = db::Conn::connect(settings.master_url()?, Db::Master)?;
    let mut m = conn.begin(db::Access::ReadOnly)?;
    let draft = Draft::infer(&mut m, from_table, target_table, watermark_column)?;
    let job = NewJob {
        yaml: draft.yaml(name, from_table),
        notes: draft.notes,
    };
    std::fs::create_dir_all(&settings.jobs_dir).map_err(io(format!(
        "cannot create the jobs folder {}",
        settings.jobs_dir.display()
    )))?;
    // create_new: never overwrite, even if the file appeared since the check above
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Config(format!(
                    "{} already exists; not overwritten",
                    path.display()
                ))
            } else {
                Error::Io {
                    what: format!("cannot write {}", path.display()),
                    source: e,
                }
            }
        })?;
    file.write_all(job.yaml.as_bytes())
        .map_err(io(format!("cannot write {}", path.display())))?;
    println!("wrote {}", path.display());
    for n in &job.notes {
        eprintln!("note: {n}");
    }
    // run-job looks the name up in the jobs folder: name the folder unless it is the default
    let jobs_dir = match settings.jobs_dir.as_path() {
        d if d == std::path::Path::new("./jobs") || d == std::path::Path::new("jobs") => {
            String::new()
        }
        d => format!(" --jobs-dir {}", shell_word(&d.display().to_string())),
    };
    eprintln!(
        "next: elt validate --connect {} && elt{jobs_dir} run-job {} --dry-run",
        shell_word(&path.display().to_string()),
        shell_word(name)
    );
    Ok(0)
}

/// `s` as one word of a POSIX shell command line: as it is when it has no character the
/// shell treats specially, else in single quotes, so the suggested command can be pasted.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./,:=@%+".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn refuse_existing(dir: &std::path::Path, name: &str, path: &std::path::Path) -> Result<()> {
    if path.exists() {
        return Err(Error::Config(format!(
            "{} already exists; not overwritten (choose another name or remove it)",
            path.display()
        )));
    }
    if dir.is_dir() {
        let same: Vec<PathBuf> = jobfile::discover(dir)?
            .into_iter()
            .filter(|p| jobfile::job_name(p) == name)
            .collect();
        if let Some(p) = same.first() {
            return Err(Error::Config(format!(
                "a job named `{name}` already exists: {}",
                p.display()
            )));
        }
    }
    Ok(())
}

/// The job file's text and the notes to print.
struct NewJob {
    yaml: String,
    notes: Vec<String>,
}

/// The table `from_table` names on M: its oid, qualified name and own name.
fn find_table(m: &mut Transaction<'_>, from_table: &str) -> Result<(u32, String, String)> {
    let found = m
        .query_opt(
            "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relname, \
                    c.relkind::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1)",
            &[&from_table],
        )
        .map_err(pg(Db::Master, "reading the table's definition"))?;
    let Some(row) = found else {
        return Err(Error::Config(format!(
            "M has no table `{from_table}` (write `table` or `schema.table`; quote names with \
             capitals: '\"Orders\"')"
        )));
    };
    let relkind: String = row.get(3);
    if !matches!(relkind.as_str(), "r" | "p" | "v" | "m" | "f") {
        return Err(Error::Config(format!(
            "`{from_table}` is not a table or view on M"
        )));
    }
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// What `elt new` inferred from M, before it is written out as statements.
struct Draft {
    /// M's table, qualified and quoted
    source: String,
    target: String,
    columns: Vec<Column>,
    key: Vec<String>,
    quoted_keys: Vec<String>,
    condition: String,
    notes: Vec<String>,
}

/// In SELECT_SOURCE_SQL and UPSERT_TARGET_SQL `%%` is a literal `%` (psycopg rule).
fn pct(s: &str) -> String {
    s.replace('%', "%%")
}

impl Draft {
    fn infer(
        m: &mut Transaction<'_>,
        from_table: &str,
        target_table: Option<&str>,
        watermark_column: Option<&str>,
    ) -> Result<Draft> {
        let (oid, source, relname) = find_table(m, from_table)?;
        let columns = read_columns(m, oid)?;
        if columns.is_empty() {
            return Err(Error::Config(format!("`{from_table}` has no columns")));
        }
        let mut notes: Vec<String> = columns
            .iter()
            .filter(|c| c.cast)
            .map(|c| {
                format!(
                    "column `{}` has type {} on M; A gets {} (the SELECT casts it)",
                    c.name, c.m_type, c.a_type
                )
            })
            .collect();
        // KEY_COLUMNS: the primary key, else the smallest unique index on NOT NULL columns.
        let Some((key, key_source)) = read_key(m, oid)? else {
            return Err(Error::Config(format!(
                "cannot infer KEY_COLUMNS: `{from_table}` has no primary key and no unique index \
                 on NOT NULL columns. A job needs columns that identify each row; add a primary \
                 key on M, or write the job by hand"
            )));
        };
        notes.push(format!(
            "KEY_COLUMNS ({}) from the {key_source}",
            key.join(", ")
        ));
        let (condition, wm_note) = watermark(&columns, &key, watermark_column)?;
        notes.push(wm_note);
        let target = match target_table {
            Some(t) => t.to_string(),
            None => quote(m, &relname)?,
        };
        if crate::sqlshape::parse_table_name(&target).is_none() {
            return Err(Error::Config(format!(
                "--target-table `{target}` is not a table name"
            )));
        }
        let quoted_keys = key.iter().map(|k| quote(m, k)).collect::<Result<_>>()?;
        Ok(Draft {
            source,
            target,
            columns,
            key,
            quoted_keys,
            condition,
            notes,
        })
    }

    fn create_sql(&self) -> String {
        let mut create = format!("CREATE TABLE IF NOT EXISTS {} (\n", self.target);
        for c in &self.columns {
            let not_null = if c.not_null { " NOT NULL" } else { "" };
            create.push_str(&format!("    {} {}{not_null},\n", c.quoted, c.a_type));
        }
        create.push_str(&format!(
            "    PRIMARY KEY ({})\n)",
            self.quoted_keys.join(", ")
        ));
        create
    }

    fn source_sql(&self) -> String {
        let select_list: Vec<String> = self
            .columns
            .iter()
            .map(|c| match c.cast {
                true => format!("{}::{} AS {}", pct(&c.quoted), c.a_type, pct(&c.quoted)),
                false => pct(&c.quoted),
            })
            .collect();
        format!(
            "SELECT {}\nFROM {}\nWHERE {}",
            select_list.join(",\n       "),
            pct(&self.source),
            self.condition
        )
    }

    fn upsert_sql(&self) -> String {
        let col_list: Vec<String> = self.columns.iter().map(|c| pct(&c.quoted)).collect();
        let mut set: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.key.contains(&c.name))
            .map(|c| format!("{} = EXCLUDED.{}", pct(&c.quoted), pct(&c.quoted)))
            .collect();
        if set.is_empty() {
            // every column is a key column: DO UPDATE SET needs one assignment
            let k = pct(&self.quoted_keys[0]);
            set.push(format!("{k} = EXCLUDED.{k}"));
        }
        let keys: Vec<String> = self.quoted_keys.iter().map(|k| pct(k)).collect();
        format!(
            "INSERT INTO {} ({})\nVALUES ({})\nON CONFLICT ({}) DO UPDATE SET\n    {}",
            pct(&self.target),
            wrap(&col_list),
            wrap(&vec!["%s".to_string(); self.columns.len()]),
            keys.join(", "),
            set.join(",\n    ")
        )
    }

    /// The job file: what was inferred as comments, then the six keys.
    fn yaml(&self, name: &str, from_table: &str) -> String {
        let mut yaml = format!(
            "# Written by `elt new {name} --from-table {from_table}` from M's table {}.\n",
            self.source
        );
        for n in &self.notes {
            yaml.push_str(&format!("# {}\n", n.replace('\n', " ")));
        }
        let keys_sql = format!(
            "SELECT {} FROM {}",
            self.quoted_keys.join(", "),
            self.source
        );
        yaml.push_str(&format!(
            "CREATE_TABLE_SQL: |\n{}\nSELECT_SOURCE_SQL: |\n{}\nUPSERT_TARGET_SQL: |\n{}\n\
             SELECT_KEYS_SQL: {}\nTARGET_TABLE: {}\nKEY_COLUMNS: {}\n",
            indent(&self.create_sql()),
            indent(&self.source_sql()),
            indent(&self.upsert_sql()),
            yaml_scalar(&keys_sql),
            yaml_scalar(&self.target),
            serde_json::to_string(&self.key).unwrap_or_else(|_| "[]".into())
        ));
        yaml
    }
}

/// `a, b, c` broken into lines of about 80 characters, continuation lines indented.
fn wrap(items: &[String]) -> String {
    let mut out = String::new();
    let mut line = 0;
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            if line + it.len() > 80 {
                out.push_str(",\n    ");
                line = 4;
            } else {
                out.push_str(", ");
                line += 2;
            }
        }
        out.push_str(it);
        line += it.len();
    }
    out
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A YAML scalar: plain when that is safe, else double-quoted (JSON strings are YAML).
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.,()*".contains(c))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// An identifier quoted the way PostgreSQL itself would (only when needed).
fn quote(m: &mut Transaction<'_>, name: &str) -> Result<String> {
    Ok(m.query_one("SELECT quote_ident($1)", &[&name])
        .map_err(pg(Db::Master, "quoting an identifier"))?
        .get(0))
}

fn read_columns(m: &mut Transaction<'_>, oid: u32) -> Result<Vec<Column>> {
    let rows = m
        .query(
            "SELECT a.attname::text, a.attnotnull, format_type(a.atttypid, a.atttypmod), \
                    a.atttypid, a.atttypmod, quote_ident(a.attname) \
             FROM pg_attribute a \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .map_err(pg(Db::Master, "reading the table's columns"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (a_type, cast) = a_type(m, r.get(3), r.get(4), 0)?;
        out.push(Column {
            name: r.get(0),
            quoted: r.get(5),
            not_null: r.get(1),
            m_type: r.get(2),
            a_type,
            cast,
        });
    }
    Ok(out)
}

/// The type A stores a value of M's type `oid` in, and whether the SELECT must cast to it:
/// built-in types stay; a domain becomes its base type, an enum text, an array of either an
/// array of that; any other type of M's own (composite, extension) travels as text.
fn a_type(m: &mut Transaction<'_>, oid: u32, typmod: i32, depth: u32) -> Result<(String, bool)> {
    let r = m
        .query_one(
            "SELECT t.typtype::text, t.typbasetype, t.typtypmod, t.typelem, t.typcategory::text, \
                    n.nspname::text, format_type(t.oid, $2) \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1",
            &[&oid, &typmod],
        )
        .map_err(pg(Db::Master, "reading a column's type"))?;
    let typtype: String = r.get(0);
    let base: u32 = r.get(1);
    let base_mod: i32 = r.get(2);
    let elem: u32 = r.get(3);
    let category: String = r.get(4);
    let schema: String = r.get(5);
    let formatted: String = r.get(6);
    if depth > 8 {
        return Ok(("text".into(), true));
    }
    Ok(match typtype.as_str() {
        "d" => (a_type(m, base, base_mod, depth + 1)?.0, true),
        "e" => ("text".into(), true),
        "b" if category == "A" && elem != 0 => {
            let (e, cast) = a_type(m, elem, typmod, depth + 1)?;
            if cast {
                // `numeric(5,2)` of an element keeps its modifier before the brackets
                (format!("{e}[]"), true)
            } else {
                (formatted, false)
            }
        }
        _ if schema == "pg_catalog" => (formatted, false),
        _ => ("text".into(), true),
    })
}

/// The primary key, else the unique index with the fewest columns, all NOT NULL, without
/// expressions or a predicate.
fn read_key(m: &mut Transaction<'_>, oid: u32) -> Result<Option<(Vec<String>, String)>> {
    let rows = m
        .query(
            "SELECT i.indisprimary, ic.relname::text, \
                    array_agg(a.attname::text ORDER BY k.n), bool_and(a.attnotnull) \
             FROM pg_index i \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             CROSS JOIN LATERAL unnest((string_to_array(i.indkey::text, ' ')::int2[])[1:i.indnkeyatts]) \
                 WITH ORDINALITY AS k(att, n) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att \
             WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
             GROUP BY i.indexrelid, i.indisprimary, ic.relname \
             ORDER BY i.indisprimary DESC, count(*), ic.relname",
            &[&oid],
        )
        .map_err(pg(Db::Master, "reading the table's keys"))?;
    for r in rows {
        let primary: bool = r.get(0);
        let index: String = r.get(1);
        let cols: Vec<String> = r.get(2);
        let not_null: bool = r.get(3);
        if primary || not_null {
            let what = if primary {
                format!("primary key ({index})")
            } else {
                format!("unique index {index} (its columns are NOT NULL)")
            };
            return Ok(Some((cols, what)));
        }
    }
    Ok(None)
}

fn is_time(t: &str) -> bool {
    t.starts_with("timestamp") || t == "date"
}

/// A watermark condition on a time column: `> %s`, or for a nullable column one that full
/// runs (placeholder `-infinity`) still meet where it is NULL.
fn time_condition(c: &Column) -> String {
    let q = pct(&c.quoted);
    match c.not_null {
        true => format!("{q} > %s"),
        false => format!("COALESCE({q}, '-infinity') >= %s"),
    }
}

/// The condition that ends SELECT_SOURCE_SQL, and a note on how it was chosen.
fn watermark(columns: &[Column], key: &[String], chosen: Option<&str>) -> Result<(String, String)> {
    if let Some(want) = chosen {
        return chosen_watermark(columns, want);
    }
    for name in CHANGE_COLUMNS {
        let found = columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name) && is_time(&c.a_type));
        if let Some(c) = found {
            let nullable = match c.not_null {
                true => String::new(),
                false => format!(
                    "; `{}` can be NULL, so rows where it is NULL are copied by full runs only \
                     (make it NOT NULL with a trigger that sets it)",
                    c.name
                ),
            };
            let note = format!(
                "watermark column `{}` ({}), found by its name{nullable}",
                c.name, c.m_type
            );
            return Ok((time_condition(c), note));
        }
    }
    integer_watermark(columns, key)
}

/// `--watermark-column`: a time column, or an integer (which reads every row each run).
fn chosen_watermark(columns: &[Column], want: &str) -> Result<(String, String)> {
    let Some(c) = columns.iter().find(|c| c.name == want) else {
        return Err(Error::Config(format!(
            "--watermark-column `{want}` is not a column of the table"
        )));
    };
    if is_time(&c.a_type) {
        let note = format!("watermark column `{}` (from --watermark-column)", c.name);
        return Ok((time_condition(c), note));
    }
    if INTEGERS.contains(&c.a_type.as_str()) {
        let note = format!(
            "watermark column `{}` is an integer: every run reads all rows (an integer \
             placeholder always gets its smallest value)",
            c.name
        );
        return Ok((format!("{} >= %s", pct(&c.quoted)), note));
    }
    Err(Error::Config(format!(
        "--watermark-column `{want}` has type {}; a watermark needs timestamptz, timestamp, \
         date or an integer type",
        c.m_type
    )))
}

/// No change column: a condition every row meets, on a NOT NULL integer (the key first).
fn integer_watermark(columns: &[Column], key: &[String]) -> Result<(String, String)> {
    let integer = columns
        .iter()
        .filter(|c| c.not_null && INTEGERS.contains(&c.a_type.as_str()))
        .min_by_key(|c| !key.contains(&c.name));
    let names = CHANGE_COLUMNS[..4].join(", ");
    match integer {
        Some(c) => Ok((
            format!("{} >= %s", pct(&c.quoted)),
            format!(
                "no updated_at-like column (timestamp or date named {names}, …): the condition \
                 is on the integer `{}`, so every run reads the whole table and the row hashes \
                 keep unchanged rows from being rewritten. For incremental runs add an \
                 updated_at column kept by a trigger on M and run `elt new` again (or pass \
                 --watermark-column)",
                c.name
            ),
        )),
        None => Err(Error::Config(format!(
            "cannot write the watermark condition: the table has no updated_at-like column \
             (timestamp or date named {names}, …) and no NOT NULL integer column; pass \
             --watermark-column COLUMN"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_the_shell_would_change_them() {
        assert_eq!(shell_word("./jobs/items.yaml"), "./jobs/items.yaml");
        assert_eq!(shell_word("my jobs"), "'my jobs'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
        assert_eq!(shell_word(""), "''");
    }

    fn col(name: &str, t: &str, not_null: bool) -> Column {
        Column {
            name: name.into(),
            quoted: name.into(),
            not_null,
            m_type: t.into(),
            a_type: t.into(),
            cast: false,
        }
    }

    #[test]
    fn watermark_prefers_change_columns_then_integer_key() {
        let cols = vec![
            col("id", "integer", true),
            col("created_at", "timestamp with time zone", true),
            col("last_update", "timestamp with time zone", false),
        ];
        let (c, _) = watermark(&cols, &["id".into()], None).unwrap();
        assert_eq!(c, "COALESCE(last_update, '-infinity') >= %s");
        let (c, note) = watermark(&cols[..2], &["id".into()], None).unwrap();
        assert_eq!(c, "id >= %s");
        assert!(note.contains("whole table"), "{note}");
        assert!(watermark(&[col("t", "text", true)], &[], None).is_err());
        assert!(watermark(&cols, &[], Some("nope")).is_err());
        let (c, _) = watermark(&cols, &[], Some("created_at")).unwrap();
        assert_eq!(c, "created_at > %s");
    }

    #[test]
    fn yaml_scalars_are_quoted_when_needed() {
        assert_eq!(yaml_scalar("SELECT a, b FROM t"), "SELECT a, b FROM t");
        assert_eq!(yaml_scalar("\"Order\""), "\"\\\"Order\\\"\"");
        assert_eq!(yaml_scalar("SELECT a FROM s.t"), "SELECT a FROM s.t");
    }
}
