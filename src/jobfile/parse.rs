//! A job file's YAML: the values of its keys (serde_yaml) and where everything is written
//! (saphyr-parser's event spans), so a problem inside a key's SQL points at the offending
//! token in the file.

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::keys::Key;
use super::problem::{LineCol, Problem};

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

impl Fields {
    /// The SQL text of one of the four statement keys, when it is a string.
    pub fn statement(&self, key: Key) -> Option<&str> {
        match key {
            Key::CreateTableSql => self.create_table_sql.as_deref(),
            Key::SelectSourceSql => self.select_source_sql.as_deref(),
            Key::UpsertTargetSql => self.upsert_target_sql.as_deref(),
            Key::SelectKeysSql => self.select_keys_sql.as_deref(),
            _ => None,
        }
    }
}

const NOT_A_MAPPING: &str = "a job file must be a YAML mapping of the keys CREATE_TABLE_SQL, \
     SELECT_SOURCE_SQL, UPSERT_TARGET_SQL, SELECT_KEYS_SQL, TARGET_TABLE, KEY_COLUMNS";

/// Reads the YAML mapping: missing, unknown and mistyped keys are problems.
pub fn parse_fields(file: &str, text: &str) -> (Fields, Vec<Problem>) {
    let mut fields = Fields {
        positions: Positions::scan(text),
        ..Fields::default()
    };
    let mut problems = Vec::new();
    let map = match serde_yaml::from_str(text) {
        Ok(serde_yaml::Value::Mapping(map)) => map,
        Ok(_) => {
            problems.push(Problem::new(file, "YAML", NOT_A_MAPPING).at(Some((1, 1))));
            return (fields, problems);
        }
        Err(e) => {
            let at = e.location().map(|l| (l.line(), l.column()));
            problems.push(Problem::new(file, "YAML", format!("not valid YAML: {e}")).at(at));
            return (fields, problems);
        }
    };
    for (k, v) in &map {
        match k.as_str() {
            Some(name) => read_entry(file, name, v, &mut fields, &mut problems),
            None => problems.push(Problem::new(
                file,
                "YAML",
                format!("key {k:?} is not a string"),
            )),
        }
    }
    for key in Key::ALL.into_iter().filter(|k| k.is_required()) {
        if !map.contains_key(key.name()) {
            problems.push(Problem::new(file, key.name(), "missing required key"));
        }
    }
    (fields, problems)
}

/// One `name: value` entry of the mapping into `fields`, or a problem.
fn read_entry(
    file: &str,
    name: &str,
    v: &serde_yaml::Value,
    fields: &mut Fields,
    problems: &mut Vec<Problem>,
) {
    let at = fields.positions.value(name);
    let Some(key) = Key::from_name(name) else {
        let hint = Key::similar_to(name)
            .map(|r| format!(" (did you mean {r}?)"))
            .unwrap_or_default();
        let at = fields.positions.key(name);
        problems.push(Problem::new(file, name, format!("unknown key{hint}")).at(at));
        return;
    };
    let result = match key {
        Key::KeyColumns => key_columns(v).map(|c| fields.key_columns = Some(c)),
        Key::MaxDeleteFraction => {
            max_delete_fraction(v).map(|f| fields.max_delete_fraction = Some(f))
        }
        _ => match v {
            serde_yaml::Value::String(s) => {
                let s = Some(s.clone());
                match key {
                    Key::CreateTableSql => fields.create_table_sql = s,
                    Key::SelectSourceSql => fields.select_source_sql = s,
                    Key::UpsertTargetSql => fields.upsert_target_sql = s,
                    Key::SelectKeysSql => fields.select_keys_sql = s,
                    _ => fields.target_table = s,
                }
                Ok(())
            }
            _ => Err("must be a string"),
        },
    };
    if let Err(message) = result {
        problems.push(Problem::new(file, name, message).at(at));
    }
}

fn key_columns(v: &serde_yaml::Value) -> Result<Vec<String>, &'static str> {
    let serde_yaml::Value::Sequence(items) = v else {
        return Err("must be a list of column names, e.g. [\"id\"]");
    };
    items
        .iter()
        .map(|i| i.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or("must be a list of column names (strings)")
}

fn max_delete_fraction(v: &serde_yaml::Value) -> Result<f64, &'static str> {
    match v.as_f64() {
        Some(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(
            "must be a number greater than 0 and at most 1 (the largest share of the \
                  target one run may delete; 1 turns the limit off)",
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Positions

/// Where the top-level keys and their values are in a job file.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    text: String,
    line_starts: Vec<usize>,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    /// byte offset of the key
    key_at: usize,
    /// byte offset where the value starts, when it has one
    value_at: Option<usize>,
    /// a scalar value: its decoded text and its bytes in the file
    scalar: Option<Scalar>,
}

#[derive(Debug, Clone)]
struct Scalar {
    value: String,
    raw: (usize, usize),
    double_quoted: bool,
}

impl Positions {
    /// Locates everything in `text`; never fails (what the YAML parser cannot read just has
    /// no position, and serde_yaml reports the error).
    pub fn scan(text: &str) -> Positions {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Positions {
            text: text.to_string(),
            line_starts,
            entries: scan_entries(text),
        }
    }

    /// Line and column of a byte offset in the file.
    pub fn line_col(&self, offset: usize) -> LineCol {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }

    fn find(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|k| k.name == key)
    }

    /// Where the key itself is written.
    pub fn key(&self, key: &str) -> Option<LineCol> {
        self.find(key).map(|k| self.line_col(k.key_at))
    }

    /// Where the key's value starts (falls back to the key).
    pub fn value(&self, key: &str) -> Option<LineCol> {
        let k = self.find(key)?;
        Some(self.line_col(k.value_at.unwrap_or(k.key_at)))
    }

    /// Where byte `offset` of the key's string value `expected` is in the file, when the
    /// YAML parser decoded exactly that value (as serde_yaml did).
    pub fn in_value(&self, key: &str, expected: &str, offset: usize) -> Option<LineCol> {
        let s = self.find(key)?.scalar.as_ref()?;
        if s.value != expected {
            return None;
        }
        let raw = &self.text[s.raw.0..s.raw.1];
        let map = align(&s.value, raw, s.double_quoted);
        let at = map.get(offset).or(map.last())?;
        Some(self.line_col(s.raw.0 + at))
    }
}

/// The top-level entries of the first document's mapping, from the parser's events: a
/// node at depth 1 is alternately a key and its value.
fn scan_entries(text: &str) -> Vec<Entry> {
    let mut bytes: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    bytes.push(text.len());
    let byte = |char_index: usize| bytes.get(char_index).copied().unwrap_or(text.len());
    let mut entries: Vec<Entry> = Vec::new();
    let (mut depth, mut is_key, mut documents) = (0usize, true, 0);
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let (start, end) = (byte(span.start.index()), byte(span.end.index()));
        let node_at_top = depth == 1
            && matches!(
                event,
                Event::Scalar(..)
                    | Event::Alias(_)
                    | Event::MappingStart(..)
                    | Event::SequenceStart(..)
            );
        if node_at_top {
            if is_key {
                let name = match &event {
                    Event::Scalar(v, ..) => v.to_string(),
                    _ => String::new(),
                };
                entries.push(Entry {
                    name,
                    key_at: start,
                    value_at: None,
                    scalar: None,
                });
            } else if let Some(e) = entries.last_mut() {
                set_value(e, &event, (start, end));
            }
            is_key = !is_key;
        }
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    break;
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    entries
}

/// Records where an entry's value is; an empty plain scalar (`KEY:` alone) has none.
fn set_value(e: &mut Entry, event: &Event<'_>, (start, end): (usize, usize)) {
    if let Event::Scalar(v, style, ..) = event {
        if v.is_empty() && *style == ScalarStyle::Plain {
            return;
        }
        e.scalar = Some(Scalar {
            value: v.to_string(),
            raw: (start, end),
            double_quoted: *style == ScalarStyle::DoubleQuoted,
        });
    }
    e.value_at = Some(start);
}

/// For each byte of `value` (a decoded scalar), the byte of `raw` (its text in the file) it
/// comes from. Decoding only drops indentation, line breaks, quotes and escapes, or turns
/// them into spaces and line breaks, so every other character of the value is the next
/// equal character of the raw text: white space and quotes are skipped to find it, and an
/// escape sequence stands for the one character it decodes to.
fn align(value: &str, raw: &str, double_quoted: bool) -> Vec<usize> {
    let raw: Vec<(usize, char)> = raw.char_indices().collect();
    let last = raw.last().map_or(0, |(i, _)| *i);
    let mut map = Vec::with_capacity(value.len());
    let mut j = 0;
    for c in value.chars() {
        let at = loop {
            let Some(&(i, r)) = raw.get(j) else {
                break last;
            };
            if double_quoted && r == '\\' {
                j += escape_len(&raw[j..]);
                if matches!(raw.get(j - 1), Some((_, '\n'))) {
                    continue; // an escaped line break joins the lines
                }
                break i;
            }
            if r == c {
                j += 1;
                break i;
            }
            if !(r.is_whitespace() || r == '"' || r == '\'') {
                break i; // a character YAML made up (cannot happen with the escapes above)
            }
            j += 1;
        };
        map.extend(std::iter::repeat_n(at, c.len_utf8()));
    }
    map
}

/// Characters of the escape sequence that starts `raw` (`\` included).
fn escape_len(raw: &[(usize, char)]) -> usize {
    match raw.get(1).map(|(_, c)| *c) {
        Some('x') => 4,
        Some('u') => 6,
        Some('U') => 10,
        Some('\r') if matches!(raw.get(2), Some((_, '\n'))) => 3,
        Some(_) => 2,
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(doc: &str) -> Positions {
        let p = Positions::scan(doc);
        let v: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
        for (k, val) in v.as_mapping().unwrap() {
            let (Some(k), Some(val)) = (k.as_str(), val.as_str()) else {
                continue;
            };
            let s = p.find(k).and_then(|e| e.scalar.as_ref());
            assert_eq!(s.map(|s| s.value.as_str()), Some(val), "{k}");
        }
        p
    }

    #[test]
    fn every_style_decodes_to_serde_yaml_value() {
        let doc = "# comment\nA: plain value  # comment\nB: \"dq \\\"x\\\" \\u00e9\n  next\n\n  para\"\nC: 'it''s\n  folded'\nD: |\n  line 1\n    more\n\n  line 3\nE: >-\n  folded\n  text\n\n  para\n    kept\n  end\nF: |+\n  keep\n\nG:\n  plain on\n  two lines\nH: |2\n    two extra\n  base\nI: [a, b]\n";
        let p = check(doc);
        assert_eq!(p.key("D"), Some((9, 1)));
        assert_eq!(p.value("I"), Some((30, 4)));
        // "line 3" of D: the `3` is at line 13, column 8
        let d = "line 1\n  more\n\nline 3\n";
        assert_eq!(p.in_value("D", d, d.find('3').unwrap()), Some((13, 8)));
        // in a double-quoted value, offsets after an escape still line up
        let b = "dq \"x\" é next\npara";
        assert_eq!(p.in_value("B", b, b.find("next").unwrap()), Some((4, 3)));
        assert_eq!(p.in_value("B", b, b.find("para").unwrap()), Some((6, 3)));
        let c = "it's folded";
        assert_eq!(p.in_value("C", c, c.find("folded").unwrap()), Some((8, 3)));
        // a value that does not match gives no position
        assert_eq!(p.in_value("D", "other", 0), None);
    }

    #[test]
    fn crlf_and_unicode_columns() {
        let doc = "K: |\r\n  é = %s\r\nL: x\r\n";
        let p = Positions::scan(doc);
        let v = "é = %s\n";
        assert_eq!(p.in_value("K", v, v.find('%').unwrap()), Some((2, 7)));
        assert_eq!(p.key("L"), Some((3, 1)));
    }

    #[test]
    fn garbage_never_panics() {
        for doc in [
            "",
            ":",
            "\"",
            "K: \"\\",
            "K: |9\n",
            "K: >\n\n\n",
            "K: '\n",
            "\"K\": x",
            "K: |\nX: 1",
            "K: \"\\x4\"",
        ] {
            let p = Positions::scan(doc);
            let _ = p.in_value("K", "x", 3);
            let _ = p.line_col(100);
        }
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
