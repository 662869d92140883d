//! Property tests (bounded, so `make test` stays fast): no input makes the lexer, the `%s`
//! translator, the YAML position scanner, the job loader or the validator panic, and the
//! lexer and translator keep their invariants.
use elt::jobfile::{Positions, check_rules, parse_fields};
use elt::placeholders::translate;
use elt::sqllex::{Kind, tokenize};
use proptest::prelude::*;

/// Pieces of SQL that exercise the lexer's states: quotes, comments, dollar quotes, `%`.
const FRAGMENTS: &[&str] = &[
    "SELECT",
    " ",
    "\n",
    "a",
    "\"Q\"",
    "'it''s'",
    "E'\\''",
    "$$",
    "$t$",
    "%s",
    "%%",
    "%",
    "--",
    "/*",
    "*/",
    "(",
    ")",
    ",",
    ";",
    "::",
    ">",
    "=",
    "WHERE",
    "updated_at",
    "1.5e-3",
    "U&\"x\"",
    "ü",
    "😀",
    "\\",
    "$1",
    "INSERT INTO t (a) VALUES (%s)",
    "ON CONFLICT (a)",
    "DO UPDATE SET a = EXCLUDED.a",
    "CREATE TABLE IF NOT EXISTS t (a int)",
    "FROM t",
];

fn sqlish() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24).prop_map(|v| v.concat()),
        ".{0,80}",
    ]
}

const KEYS: &[&str] = &[
    "CREATE_TABLE_SQL",
    "SELECT_SOURCE_SQL",
    "UPSERT_TARGET_SQL",
    "SELECT_KEYS_SQL",
    "TARGET_TABLE",
    "KEY_COLUMNS",
    "MAX_DELETE_FRACTION",
    "\"KEY_COLUMNS\"",
    "other",
];

/// A YAML-ish document: keys with values in every scalar style, sometimes broken.
fn yamlish() -> impl Strategy<Value = String> {
    let value = (sqlish(), 0..7usize).prop_map(|(s, style)| match style {
        0 => format!(" {}", s.replace('\n', " ")),
        1 => format!(" {}", serde_json::to_string(&s).unwrap_or_default()),
        2 => format!(" '{}'", s.replace('\'', "''")),
        3 => format!(" |\n  {}", s.replace('\n', "\n  ")),
        4 => format!(" >-\n  {}", s.replace('\n', "\n\n  ")),
        5 => format!("\n  - {}\n  - x", s.replace('\n', " ")),
        _ => format!(" [{}]", s),
    });
    prop::collection::vec((prop::sample::select(KEYS), value), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}:{v}\n"))
            .collect::<String>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tokens_concatenate_back_to_the_source(s in sqlish()) {
        let joined: String = tokenize(&s).iter().map(|t| t.text).collect();
        prop_assert_eq!(joined, s);
    }

    #[test]
    fn translation_numbers_exactly_the_lexers_placeholders(s in sqlish()) {
        let lexed = tokenize(&s).iter().filter(|t| t.kind == Kind::Placeholder).count();
        let t = translate(&s);
        prop_assert_eq!(t.count(), lexed);
        for (i, at) in t.placeholders.iter().enumerate() {
            prop_assert_eq!(&s[*at..*at + 2], "%s", "placeholder {} offset", i);
        }
        // every `$n` the translation wrote is one of 1..=count
        let written: Vec<usize> = tokenize(&t.sql)
            .iter()
            .filter(|k| k.kind == Kind::Param)
            .filter_map(|k| k.text[1..].parse().ok())
            .collect();
        for n in 1..=t.count() {
            prop_assert!(written.contains(&n), "${} missing in {:?}", n, t.sql);
        }
    }

    #[test]
    fn validator_never_panics_on_yamlish_documents(doc in yamlish()) {
        let (fields, _) = parse_fields("f.yaml", &doc);
        let problems = check_rules("f.yaml", &fields);
        let lines = doc.lines().count().max(1);
        for p in problems {
            if let Some(l) = p.line {
                prop_assert!(l >= 1 && l <= lines + 1, "line {} of {}: {:?}", l, lines, p);
            }
        }
    }

    #[test]
    fn validator_never_panics_on_arbitrary_text(doc in ".{0,200}") {
        let (fields, _) = parse_fields("f.yaml", &doc);
        let _ = check_rules("f.yaml", &fields);
        let p = Positions::scan(&doc);
        let _ = p.line_col(doc.len() + 5);
    }

    #[test]
    fn positions_of_decoded_values_stay_inside_the_file(doc in yamlish(), off in 0usize..200) {
        let p = Positions::scan(&doc);
        if let Ok(serde_yaml::Value::Mapping(m)) = serde_yaml::from_str::<serde_yaml::Value>(&doc) {
            for (k, v) in &m {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                    if let Some((l, c)) = p.in_value(k, v, off) {
                        prop_assert!(l >= 1 && l <= doc.lines().count().max(1) && c >= 1);
                    }
                }
            }
        }
    }

    #[test]
    fn job_loader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), doc in yamlish()) {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in [("a.yaml", bytes.clone()), ("b.yaml", doc.into_bytes())] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let _ = elt::jobfile::load(&path);
        }
    }
}
