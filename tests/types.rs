//! Every value arrives exactly: compared as the text output of each column in M and A.
//! Each test also checks that a second run sees every row as unchanged (stable hashes).
use crate::fixture::*;

/// Creates `typed (id int PRIMARY KEY, <columns>, updated_at)` in M with `columns_ddl`,
/// fills it with `inserts`, copies it into A's `typed` created from `a_columns_ddl`
/// (after `a_setup`), and checks A equals M twice.
fn roundtrip(
    name: &str,
    m_setup: &str,
    columns_ddl: &str,
    a_setup: &str,
    a_columns_ddl: &str,
    cols: &[&str],
    inserts: &str,
) -> TestEnv {
    let env = TestEnv::new(name);
    if !m_setup.is_empty() {
        env.m_exec(m_setup);
    }
    env.m_exec(&format!(
        "CREATE TABLE typed (id integer PRIMARY KEY, {columns_ddl}, updated_at timestamptz NOT NULL DEFAULT now())"
    ));
    env.m_exec(inserts);
    if !a_setup.is_empty() {
        env.a_exec(a_setup);
    }
    let col_list = cols.join(", ");
    let placeholders = vec!["%s"; cols.len() + 1].join(", ");
    let sets: Vec<String> = cols.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    env.write_job(
        "typed",
        &job_yaml(
            &format!("CREATE TABLE IF NOT EXISTS typed (id integer PRIMARY KEY, {a_columns_ddl})"),
            &format!("SELECT id, {col_list} FROM typed WHERE updated_at > %s"),
            &format!(
                "INSERT INTO typed (id, {col_list}) VALUES ({placeholders}) ON CONFLICT (id) DO UPDATE SET {}",
                sets.join(", ")
            ),
            "SELECT id FROM typed",
            "typed",
            &["id"],
        ),
    );
    let q = format!("SELECT id, {col_list} FROM typed");
    let n = env.m_count("typed") as u64;
    let c = env.run_ok("typed");
    assert_eq!(c.upserted, n, "{c:?}");
    env.assert_a_equals_m(&q, &q);
    // Per column too, so that a failure names the column.
    for col in cols {
        let cq = format!("SELECT id, {col} FROM typed");
        env.assert_a_equals_m(&cq, &cq);
    }
    let c = env.run_ok("typed");
    assert_eq!(
        c.upserted, 0,
        "re-reading identical values must not count as a change: {c:?}"
    );
    assert_eq!(c.unchanged, c.read, "{c:?}");
    env
}

fn same(ddl: &str) -> (&str, &str) {
    (ddl, ddl)
}

#[test]
fn numeric_exact() {
    let (m, a) = same("n numeric, n2 numeric(38,18), i8 bigint, i2 smallint, i4 integer");
    roundtrip(
        "numeric_exact",
        "",
        m,
        "",
        a,
        &["n", "n2", "i8", "i2", "i4"],
        "INSERT INTO typed (id, n, n2, i8, i2, i4) VALUES
         (1, 12345678901234567890.123456789012345678901234567890, 12345678901234567890.123456789012345678, 9223372036854775807, 32767, 2147483647),
         (2, -0.000000000000000000000000000001, -0.000000000000000001, -9223372036854775808, -32768, -2147483648),
         (3, 'NaN', 0, 0, 0, 0),
         (4, 1.500, 1.5, 1, 1, 1),
         (5, 'Infinity', NULL, NULL, NULL, NULL),
         (6, '-Infinity', 1e19, NULL, NULL, NULL),
         (7, 100000000000000000000000000000000000000000000000000, NULL, NULL, NULL, NULL),
         (8, NULL, NULL, NULL, NULL, NULL)",
    );
}

#[test]
fn floats_and_booleans_and_money() {
    let (m, a) = same("f8 double precision, f4 real, b boolean, cash money");
    roundtrip(
        "floats_bool",
        "",
        m,
        "",
        a,
        &["f8", "f4", "b", "cash"],
        "INSERT INTO typed (id, f8, f4, b, cash) VALUES
         (1, 0.1, 0.1, true, 12.34),
         (2, 1.7976931348623157e308, 3.4028235e38, false, -0.01),
         (3, 'NaN', 'NaN', NULL, NULL),
         (4, 'Infinity', '-Infinity', true, 0),
         (5, '-0', 1e-45, false, 92233720368547758.07),
         (6, 5e-324, 123.456, NULL, NULL),
         (7, NULL, NULL, NULL, NULL)",
    );
}

#[test]
fn uuid_values() {
    let (m, a) = same("u uuid");
    roundtrip(
        "uuid_values",
        "",
        m,
        "",
        a,
        &["u"],
        "INSERT INTO typed (id, u) VALUES
         (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), (2, '00000000-0000-0000-0000-000000000000'),
         (3, 'ffffffff-ffff-ffff-ffff-ffffffffffff'), (4, NULL)",
    );
}

/// json keeps its text exactly (white space, key order, duplicate keys); jsonb normalises.
#[test]
fn json_and_jsonb() {
    let (m, a) = same("j json, jb jsonb");
    let env = roundtrip(
        "json_jsonb",
        "",
        m,
        "",
        a,
        &["j", "jb"],
        r#"INSERT INTO typed (id, j, jb) VALUES
         (1, '{"b": 1,   "a": [1, 2, {"z": null}]}', '{"b": 1, "a": [1, 2]}'),
         (2, '{"k": 1, "k": 2}', '{"k": 1, "k": 2}'),
         (3, '  [ ]  ', '[]'),
         (4, '"Привет 😀 \u00e9 \\ \" "', '"Привет 😀 \u00e9"'),
         (5, 'null', 'null'),
         (6, '123.4500000000000000000001', '123.4500000000000000000001'),
         (7, NULL, NULL),
         (8, '{"nested": {"deep": [true, false, {"x": "y"}]}}', '{"nested": {"deep": [true, false, {"x": "y"}]}}')"#,
    );
    // Explicit check of the json text: white space and key order survive.
    let a = env.a_texts("SELECT j::text FROM typed WHERE id = 1");
    assert_eq!(
        a,
        vec![r#"{"b": 1,   "a": [1, 2, {"z": null}]}"#.to_string()]
    );
}

#[test]
fn arrays_including_multidimensional_and_null_elements() {
    let env = roundtrip(
        "arrays",
        "",
        "ta text[], ia integer[], ia2 integer[][], na numeric[], ua uuid[], tsa timestamptz[], ja jsonb[]",
        "",
        "ta text[], ia integer[], ia2 integer[][], na numeric[], ua uuid[], tsa timestamptz[], ja jsonb[]",
        &["ta", "ia", "ia2", "na", "ua", "tsa", "ja"],
        r#"INSERT INTO typed (id, ta, ia, ia2, na, ua, tsa, ja) VALUES
         (1, ARRAY['a', NULL, '', 'with "quote"', 'NULL', 'comma,brace}{', 'back\slash', 'Ёж 😀'], ARRAY[1, NULL, 3],
             '{{1,2},{3,NULL}}', '{1.10,NaN,-0.000001}', ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, NULL],
             ARRAY['2024-01-01 12:00:00.123456+00'::timestamptz], ARRAY['{"a": 1}'::jsonb, 'null'::jsonb, NULL]),
         (2, '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
         (4, '{NULL}', '[0:2]={7,8,9}', '{{{1},{2}},{{3},{4}}}', NULL, NULL, NULL, NULL)"#,
    );
    let a = env.a_texts("SELECT ia::text FROM typed WHERE id = 4");
    assert_eq!(
        a,
        vec!["[0:2]={7,8,9}".to_string()],
        "array lower bounds are kept"
    );
}

#[test]
fn bytea_with_zero_bytes() {
    let (m, a) = same("b bytea");
    roundtrip(
        "bytea",
        "",
        m,
        "",
        a,
        &["b"],
        r#"INSERT INTO typed (id, b) VALUES
         (1, '\x00ff00'::bytea), (2, ''::bytea), (3, NULL),
         (4, (SELECT decode(string_agg(lpad(to_hex(g), 2, '0'), '' ORDER BY g), 'hex') FROM generate_series(0, 255) g)),
         (5, convert_to('Привет', 'UTF8')), (6, '\x5c30'::bytea)"#,
    );
}

#[test]
fn date_and_time_types() {
    let ddl = "ts timestamp, tstz timestamptz, d date, t time, ttz timetz, iv interval";
    let env = roundtrip(
        "datetime",
        "",
        ddl,
        "",
        ddl,
        &["ts", "tstz", "d", "t", "ttz", "iv"],
        "INSERT INTO typed (id, ts, tstz, d, t, ttz, iv) VALUES
         (1, '2024-02-29 23:59:59.999999', '2024-02-29 23:59:59.999999+05:30', '2024-02-29', '23:59:59.999999', '12:00:00+03', '1 year 2 mons 3 days 04:05:06.789012'),
         (2, '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '1970-01-01', '00:00:00', '00:00:00-12', '-1 days +02:00:00'),
         (3, '1900-06-30 12:00:00', '1900-06-30 12:00:00+00', '0001-01-01', '24:00:00', '23:59:59+14', '0'),
         (4, '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC', '4713-01-01 BC', '12:34:56', '12:34:56.5+00', '-178000000 years'),
         (5, '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00', '5874897-12-31', NULL, NULL, '178000000 years'),
         (6, NULL, NULL, NULL, NULL, NULL, NULL),
         (7, '2000-01-01 00:00:00.000001', now(), current_date, '00:00:00.000001', '00:00:00.000001+00', '1 mon -1 days 00:00:00.000001')",
    );
    // timestamptz is the same instant, whatever the session time zone.
    let mut a = env.a();
    a.batch_execute("SET TIME ZONE 'America/New_York'").unwrap();
    let mut m = env.m();
    m.batch_execute("SET TIME ZONE 'America/New_York'").unwrap();
    let q = "SELECT id, tstz FROM typed";
    assert_same_rows(
        &TestEnv::rows_text(&mut m, q),
        &TestEnv::rows_text(&mut a, q),
        "M",
        "A",
    );
}

#[test]
fn infinite_timestamps_and_dates() {
    let ddl = "ts timestamp, tstz timestamptz, d date";
    roundtrip(
        "infinity_ts",
        "",
        ddl,
        "",
        ddl,
        &["ts", "tstz", "d"],
        "INSERT INTO typed (id, ts, tstz, d) VALUES
         (1, 'infinity', 'infinity', 'infinity'), (2, '-infinity', '-infinity', '-infinity')",
    );
}

/// Enums and domains: the analytics database has its own (same-named) types with other OIDs.
#[test]
fn enums_and_domains() {
    let types = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀', 'with ''quote''');
                 CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
                 CREATE DOMAIN shorttext AS varchar(10);";
    roundtrip(
        "enums_domains",
        types,
        "m mood, ma mood[], p posint, s shorttext",
        // Spacer types first, so that A's OIDs differ from M's.
        "CREATE TYPE spacer AS ENUM ('x'); CREATE DOMAIN spacer2 AS text;
         CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀', 'with ''quote''');
         CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
         CREATE DOMAIN shorttext AS varchar(10);",
        "m mood, ma mood[], p posint, s shorttext",
        &["m", "ma", "p", "s"],
        "INSERT INTO typed (id, m, ma, p, s) VALUES
         (1, 'sad', '{sad,ok}', 1, 'short'),
         (2, 'happy 😀', ARRAY['happy 😀', NULL]::mood[], 2147483647, ''),
         (3, 'with ''quote''', '{}', NULL, NULL),
         (4, NULL, NULL, 5, 'ten chars!')",
    );
}

/// An enum in M lands in a text column in A (the analytics side has no such type).
#[test]
fn enum_into_text_column() {
    roundtrip(
        "enum_to_text",
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');",
        "m mood",
        "",
        "m text",
        &["m"],
        "INSERT INTO typed (id, m) VALUES (1, 'sad'), (2, 'happy'), (3, NULL)",
    );
}

#[test]
fn text_unicode_and_empty_vs_null() {
    let ddl = "t text, v varchar(50), n name";
    let env = roundtrip(
        "unicode_text",
        "",
        ddl,
        "",
        ddl,
        &["t", "v", "n"],
        "INSERT INTO typed (id, t, v, n) VALUES
         (1, '', '', ''),
         (2, NULL, NULL, NULL),
         (3, 'Привет, мир', 'Ёлка', 'имя'),
         (4, '😀👍🏽👨‍👩‍👧‍👦 emoji', '中文字符', 'ß'),
         (5, E'tab\\there', E'new\\nline', 'x'),
         (6, E'back\\\\slash \\\\N \\\\x00', E'quote '' and \"', 'y'),
         (7, 'NULL', 'null', 'NULL'),
         (8, E'e\\u0301 combining, \\u200b zero width, \\uFEFF bom', E'\\U0001F600', 'n'),
         (9, repeat('long text ', 20000), repeat('x', 50), repeat('n', 63)),
         (10, E'cr\\r\\nlf', ' leading and trailing ', ' ')",
    );
    // '' and NULL stay distinct.
    let a = env.a_rows("SELECT id, t IS NULL, t = '' FROM typed WHERE id IN (1, 2)");
    assert_eq!(a, vec!["(1,f,t)".to_string(), "(2,t,)".to_string()]);
}

/// char(n) keeps its length modifier (blank padding); "char" is the one-byte type.
#[test]
fn fixed_length_char_types() {
    let ddl = "c char(6), c1 char, ci \"char\"";
    roundtrip(
        "char_types",
        "",
        ddl,
        "",
        ddl,
        &["c", "c1", "ci"],
        "INSERT INTO typed (id, c, c1, ci) VALUES
         (1, '', '', 'a'), (2, NULL, NULL, NULL), (3, 'Ж', 'Ж', 'z'), (4, 'abcdef', 'x', ' '), (5, 'ab', ' ', 'b')",
    );
}

#[test]
fn network_geometry_ranges_and_other_types() {
    let ddl = "ip inet, net cidr, mac macaddr, bits bit varying(16), ts tsvector, r int4range, tr tstzrange, \
               pt point, x xml, o oid, hs varchar";
    roundtrip(
        "misc_types",
        "",
        ddl,
        "",
        ddl,
        &["ip", "net", "mac", "bits", "ts", "r", "tr", "pt", "x", "o", "hs"],
        "INSERT INTO typed (id, ip, net, mac, bits, ts, r, tr, pt, x, o, hs) VALUES
         (1, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', to_tsvector('english', 'The quick brown foxes jumped'),
             '[1,10)', '[2024-01-01 00:00+00,2024-02-01 00:00+00)', '(1.5,-2)', '<a x=\"1\">t</a>', 12345, 'plain'),
         (2, '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', B'', ''::tsvector, 'empty', '(,)', '(0,0)', 'text only', 0, NULL),
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
}

/// Many rows of mixed types in one run (exercises batching, if any).
#[test]
fn many_rows() {
    let ddl = "t text, n numeric, j jsonb, b bytea, ts timestamptz";
    roundtrip(
        "many_rows",
        "",
        ddl,
        "",
        ddl,
        &["t", "n", "j", "b", "ts"],
        "INSERT INTO typed (id, t, n, j, b, ts)
         SELECT g, 'row ' || g || CASE WHEN g % 7 = 0 THEN E'\\n' ELSE '' END, g / 7.0,
                jsonb_build_object('g', g, 'odd', g % 2 = 1), decode(lpad(to_hex(g), 8, '0'), 'hex'),
                timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
         FROM generate_series(1, 5000) g",
    );
}
