//! Can each source column's type reach its upsert parameter's type? Values of different
//! types travel as text and A parses them with the parameter type's input function, so A
//! is asked whether a cast exists from the source type as A knows it (enums become text,
//! domains their base type), plus what a cast does not tell.

use postgres::types::{Kind as PgKind, Type};

use super::checks::{Checks, Source, isolated};
use crate::db::Tx;
use crate::jobfile::{Key, Severity};
use crate::placeholders::translate;

/// Reports each placeholder whose type the source's column cannot reach; returns, per
/// column, whether its values can be converted at all (no error reported).
pub fn check(
    c: &mut Checks<'_>,
    a: &mut Tx<'_>,
    m: &mut Tx<'_>,
    src: &Source,
    params: &[Type],
) -> Vec<bool> {
    let placeholders = translate(&c.job.upsert_target_sql).placeholders;
    let mut convertible = Vec::with_capacity(params.len());
    for (i, (col, p)) in src.cols.iter().zip(params).enumerate() {
        let problem =
            isolated(a, |a| isolated(m, |m| problem(a, m, &col.ty, p)).flatten()).flatten();
        convertible.push(!matches!(problem, Some((Severity::Error, _))));
        if let Some((sev, msg)) = problem {
            let msg = format!(
                "placeholder {} takes output column {} `{}` of SELECT_SOURCE_SQL: {msg}",
                i + 1,
                i + 1,
                col.name
            );
            c.push(sev, Key::UpsertTargetSql, placeholders.get(i).copied(), msg);
        }
    }
    convertible
}

/// What stands between a value of the source type `src` (a type of M) and the parameter
/// type `param` (of A), if anything.
fn problem(a: &mut Tx<'_>, m: &mut Tx<'_>, src: &Type, param: &Type) -> Option<(Severity, String)> {
    if src.oid() == param.oid() && src.oid() < 16384 {
        return None;
    }
    let src_a = type_on_a(a, m, src)?;
    let param_name: String = a
        .query_one("SELECT format_type($1::oid, NULL)", &[&param.oid()])
        .ok()?
        .get(0);
    let cast = format!("SELECT NULL::{src_a}::{param_name}");
    if !isolated(a, |t| t.prepare(&cast).is_ok())? {
        return Some((
            Severity::Error,
            format!("its type {src_a} cannot be converted to the parameter's type {param_name}"),
        ));
    }
    let category = |t: &str, a: &mut Tx<'_>| -> String {
        a.query_one(
            "SELECT typcategory::text FROM pg_type WHERE oid = $1::text::regtype",
            &[&t],
        )
        .map(|r| r.get(0))
        .unwrap_or_default()
    };
    let (src_cat, param_cat) = (category(&src_a, a), category(&param_name, a));
    if src_cat == "B" && param_cat != "B" && param_cat != "S" {
        return Some((
            Severity::Error,
            format!(
                "a boolean travels as `t`/`f`, which {param_name} cannot read; cast it in the SELECT"
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
    enum_labels(src, param)
}

/// Enum labels M has that A's enum lacks.
fn enum_labels(src: &Type, param: &Type) -> Option<(Severity, String)> {
    let (PgKind::Enum(labels), PgKind::Enum(target)) = (src.kind(), param.kind()) else {
        return None;
    };
    let missing: Vec<&String> = labels.iter().filter(|l| !target.contains(l)).collect();
    (!missing.is_empty()).then(|| {
        (
            Severity::Error,
            format!(
                "enum labels {missing:?} of M's {} do not exist in A's {}",
                src.name(),
                param.name()
            ),
        )
    })
}

/// The name A knows the source type by: the same name when A has it, else what the value's
/// text form fits (an enum → text, a domain → its base type, an array of either → an array).
pub fn type_on_a(a: &mut Tx<'_>, m: &mut Tx<'_>, src: &Type) -> Option<String> {
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
        .is_ok_and(|r| r.get::<_, bool>(0));
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
