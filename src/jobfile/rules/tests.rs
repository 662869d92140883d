//! The rules on small jobs built in code (the corpus in tests/fixtures/validate covers
//! positions and the real binary).

use super::*;
use crate::jobfile::Fields;

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

fn severities(f: &Fields, key: &str) -> Vec<(Severity, String)> {
    check_rules("j.yaml", f)
        .into_iter()
        .filter(|p| p.key == key)
        .map(|p| (p.severity, p.message))
        .collect()
}

#[test]
fn broken_sql_is_an_error_and_unread_postgresql_a_note() {
    let mut f = fields();
    let create = |cols: &str| format!("CREATE TABLE IF NOT EXISTS products ({cols})");
    let cols = "id int primary key, title text, updated_at timestamptz";
    for broken in [
        create(&cols.replace(", title", ",, title")),
        create(&cols.replace(", title", " title")),
        create(cols).replace("(id", "((id"),
    ] {
        f.create_table_sql = Some(broken.clone());
        let found = severities(&f, "CREATE_TABLE_SQL");
        assert!(
            matches!(found.as_slice(), [(Severity::Error, m)] if m.starts_with("syntax error")),
            "{broken}: {found:?}"
        );
    }
    for unread in [
        create("LIKE template INCLUDING ALL"),
        format!(
            "{} WITH (fillfactor = 80) TABLESPACE pg_default",
            create(cols)
        ),
    ] {
        f.create_table_sql = Some(unread.clone());
        let found = severities(&f, "CREATE_TABLE_SQL");
        assert!(
            found.iter().all(|(s, _)| *s == Severity::Note) && !found.is_empty(),
            "{unread}: {found:?}"
        );
    }
    f.create_table_sql = fields().create_table_sql;
    f.select_keys_sql = Some("SELECT xmlelement(name id, 'x') AS id FROM products".into());
    let found = severities(&f, "SELECT_KEYS_SQL");
    assert!(found.iter().all(|(s, _)| *s == Severity::Note), "{found:?}");
}

#[test]
fn a_syntax_error_never_stops_a_run() {
    let mut f = fields();
    f.select_keys_sql = Some("SELECT id FORM products".into());
    let p = check_rules("j.yaml", &f);
    assert!(p.iter().any(|p| p.is_error()), "{p:?}");
    assert!(!p.iter().any(Problem::stops_run), "{p:?}");
}
