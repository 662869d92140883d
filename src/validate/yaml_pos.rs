//! Where things are in a job file: the line and column of each top-level key and, for string
//! values, of every character of the decoded value, so a problem inside a key's SQL points
//! at the offending token in the YAML file.
//!
//! serde_yaml reads the values but exposes no positions. Job files are flat mappings of
//! strings, so this scans the top-level block mapping itself and decodes each scalar (plain,
//! quoted, literal `|`, folded `>`) with a source offset per byte. A decoded value is only
//! trusted when it equals serde_yaml's value for the key; otherwise a problem falls back to
//! the key's own line. Nothing here can reject a file: it only locates.

/// A 1-based line and a 1-based column counted in characters.
pub type LineCol = (usize, usize);

#[derive(Debug, Clone, Default)]
pub struct Positions {
    line_starts: Vec<usize>,
    text: String,
    keys: Vec<KeyPos>,
}

#[derive(Debug, Clone)]
struct KeyPos {
    name: String,
    /// byte offset of the key
    key_at: usize,
    /// byte offset where the value starts (after `: `), when there is one
    value_at: Option<usize>,
    /// the decoded string value and, for each of its bytes, the byte offset in the file
    decoded: Option<(String, Vec<usize>)>,
}

impl Positions {
    /// Scans `text`; never fails (unknown constructs just leave no positions).
    pub fn scan(text: &str) -> Positions {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut p = Positions {
            line_starts,
            text: text.to_string(),
            keys: Vec::new(),
        };
        p.keys = scan_keys(text);
        p
    }

    /// Line and column of a byte offset in the file.
    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - start);
        (line.max(1), col + 1)
    }

    fn find(&self, key: &str) -> Option<&KeyPos> {
        self.keys.iter().find(|k| k.name == key)
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

    /// Where byte `offset` of the key's string value `expected` is in the file, if the
    /// scanner decoded exactly that value.
    pub fn in_value(&self, key: &str, expected: &str, offset: usize) -> Option<LineCol> {
        let k = self.find(key)?;
        let (decoded, map) = k.decoded.as_ref()?;
        if decoded != expected {
            return None;
        }
        let at = match map.get(offset) {
            Some(&at) => at,
            // past the end (e.g. "the statement ends here"): the last character
            None => *map.last()?,
        };
        Some(self.line_col(at))
    }
}

/// One line of the file: its byte range without the line break.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
}

fn lines_of(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            let end = if i > start && text.as_bytes()[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            out.push(Line { start, end });
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push(Line {
            start,
            end: text.len(),
        });
    }
    out
}

fn indent_of(text: &str, l: Line) -> usize {
    text[l.start..l.end]
        .bytes()
        .take_while(|&b| b == b' ')
        .count()
}

fn is_blank(text: &str, l: Line) -> bool {
    text[l.start..l.end].trim().is_empty()
}

fn is_comment(text: &str, l: Line) -> bool {
    text[l.start..l.end].trim_start().starts_with('#')
}

fn scan_keys(text: &str) -> Vec<KeyPos> {
    let lines = lines_of(text);
    let mut keys = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let s = &text[l.start..l.end];
        let top = !s.is_empty()
            && !s.starts_with([' ', '\t', '#', '-', '[', '{', '%'])
            && !s.starts_with("...");
        let Some((name, colon)) = top.then(|| key_of(s)).flatten() else {
            i += 1;
            continue;
        };
        let after = l.start + colon + 1;
        let (value_at, decoded, next) = value_of(text, &lines, i, after);
        keys.push(KeyPos {
            name,
            key_at: l.start,
            value_at,
            decoded,
        });
        i = next.max(i + 1);
    }
    keys
}

/// `KEY:` / `"KEY":` / `'KEY':` at the start of a line: the key and the index of its colon.
fn key_of(s: &str) -> Option<(String, usize)> {
    let b = s.as_bytes();
    if b[0] == b'"' || b[0] == b'\'' {
        let q = b[0];
        let close = s[1..].find(q as char)? + 1;
        let rest = &s[close + 1..];
        let colon = close + 1 + rest.find(':')?;
        if !s[close + 1..colon].trim().is_empty() {
            return None;
        }
        return Some((s[1..close].to_string(), colon));
    }
    let mut idx = 0;
    while let Some(off) = s[idx..].find(':') {
        let c = idx + off;
        let next = s[c + 1..].chars().next();
        if next.is_none_or(|n| n == ' ' || n == '\t') {
            let name = s[..c].trim_end();
            if name.is_empty() || name.contains(" #") {
                return None;
            }
            return Some((name.to_string(), c));
        }
        idx = c + 1;
    }
    None
}

type Decoded = Option<(String, Vec<usize>)>;

/// Decodes the value that starts at byte `after` (just past the key's colon) on line `li`.
/// Returns where it starts, the decoded string with its offsets, and the next line to scan.
fn value_of(
    text: &str,
    lines: &[Line],
    li: usize,
    after: usize,
) -> (Option<usize>, Decoded, usize) {
    let l = lines[li];
    let rest = &text[after..l.end];
    let lead = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let at = after + lead;
    let first = text[at..l.end].chars().next();
    match first {
        None | Some('#') => {
            // the value starts on a later, indented line (or is empty)
            let mut j = li + 1;
            while j < lines.len() && (is_blank(text, lines[j]) || is_comment(text, lines[j])) {
                j += 1;
            }
            if j >= lines.len() || indent_of(text, lines[j]) == 0 {
                // empty value, or a block sequence at indent 0 (`- item`)
                let seq_start = (j < lines.len()
                    && text[lines[j].start..lines[j].end].starts_with('-'))
                .then(|| lines[j].start);
                return (seq_start, None, skip_block(text, lines, li + 1));
            }
            let start = lines[j].start + indent_of(text, lines[j]);
            let (decoded, next) = scalar_at(text, lines, j, start);
            (Some(start), decoded, next)
        }
        Some('|') | Some('>') => {
            let (decoded, next) = block_scalar(text, lines, li, at);
            (Some(at), decoded, next)
        }
        Some(_) => {
            let (decoded, next) = scalar_at(text, lines, li, at);
            (Some(at), decoded, next)
        }
    }
}

/// The next line after `from` that starts a new top-level entry.
fn skip_block(text: &str, lines: &[Line], from: usize) -> usize {
    let mut j = from;
    while j < lines.len() {
        let s = &text[lines[j].start..lines[j].end];
        let continues = s.trim().is_empty()
            || s.starts_with([' ', '\t', '#'])
            || s.starts_with("- ")
            || s == "-";
        if !continues {
            break;
        }
        j += 1;
    }
    j
}

/// A flow scalar (quoted or plain) starting at byte `at` on line `li`.
fn scalar_at(text: &str, lines: &[Line], li: usize, at: usize) -> (Decoded, usize) {
    match text.as_bytes()[at] {
        b'"' => quoted(text, lines, li, at, true),
        b'\'' => quoted(text, lines, li, at, false),
        b'[' | b'{' | b'&' | b'*' | b'!' | b'|' | b'>' => (None, skip_block(text, lines, li + 1)),
        _ => plain(text, lines, li, at),
    }
}

/// Appends `s` (starting at file offset `from`) to the output with its offsets.
fn push(out: &mut String, map: &mut Vec<usize>, s: &str, from: usize) {
    for (i, c) in s.char_indices() {
        for k in 0..c.len_utf8() {
            let _ = k;
            map.push(from + i);
        }
        out.push(c);
    }
}

/// Appends a separator produced by folding; it maps to `at` (where the line break was).
fn push_sep(out: &mut String, map: &mut Vec<usize>, s: &str, at: usize) {
    for c in s.chars() {
        for _ in 0..c.len_utf8() {
            map.push(at);
        }
        out.push(c);
    }
}

/// A plain scalar: the rest of the line up to a ` #` comment, then folded continuation
/// lines that are indented.
fn plain(text: &str, lines: &[Line], li: usize, at: usize) -> (Decoded, usize) {
    let mut out = String::new();
    let mut map = Vec::new();
    let content = |start: usize, end: usize| -> (usize, usize) {
        let s = &text[start..end];
        let cut = s.find(" #").or_else(|| s.find("\t#")).unwrap_or(s.len());
        let s2 = s[..cut].trim_end_matches([' ', '\t']);
        (start, start + s2.len())
    };
    let (s, e) = content(at, lines[li].end);
    push(&mut out, &mut map, &text[s..e], s);
    let mut had_comment = text[at..lines[li].end].contains(" #");
    let mut j = li + 1;
    let mut empties = 0;
    let mut last_end = e;
    while j < lines.len() && !had_comment {
        let l = lines[j];
        if is_blank(text, l) {
            empties += 1;
            j += 1;
            continue;
        }
        let ind = indent_of(text, l);
        let body = text[l.start..l.end].trim_start_matches([' ', '\t']);
        if ind == 0 || body.starts_with('#') {
            break;
        }
        let start = l.end - body.len();
        let (s, e) = content(start, l.end);
        let sep = if empties == 0 {
            " ".to_string()
        } else {
            "\n".repeat(empties)
        };
        push_sep(&mut out, &mut map, &sep, last_end);
        push(&mut out, &mut map, &text[s..e], s);
        had_comment = e < l.end && text[e..l.end].trim_start().starts_with('#');
        last_end = e;
        empties = 0;
        j += 1;
    }
    (Some((out, map)), j)
}

/// A single- or double-quoted scalar, possibly over several lines.
fn quoted(text: &str, lines: &[Line], li: usize, at: usize, double: bool) -> (Decoded, usize) {
    let b = text.as_bytes();
    let q = if double { b'"' } else { b'\'' };
    let mut out = String::new();
    let mut map = Vec::new();
    let mut i = at + 1;
    let mut line = li;
    while i < text.len() {
        let c = b[i];
        if c == q {
            if !double && b.get(i + 1) == Some(&b'\'') {
                push(&mut out, &mut map, "'", i);
                i += 2;
                continue;
            }
            return (Some((out, map)), line + 1);
        }
        if c == b'\n' || c == b'\r' {
            // fold: trailing white space before the break is dropped; the break becomes a
            // space, or one `\n` per empty line that follows
            while out.ends_with([' ', '\t']) {
                out.pop();
                map.pop();
            }
            let brk = i;
            let mut empties = 0;
            let mut k = i;
            loop {
                if b.get(k) == Some(&b'\r') {
                    k += 1;
                }
                if b.get(k) != Some(&b'\n') {
                    break;
                }
                k += 1;
                line += 1;
                while matches!(b.get(k), Some(b' ') | Some(b'\t')) {
                    k += 1;
                }
                if matches!(b.get(k), Some(b'\n') | Some(b'\r')) {
                    empties += 1;
                } else {
                    break;
                }
            }
            let sep = if empties == 0 {
                " ".to_string()
            } else {
                "\n".repeat(empties)
            };
            push_sep(&mut out, &mut map, &sep, brk);
            i = k;
            continue;
        }
        if double && c == b'\\' {
            let Some(&e) = b.get(i + 1) else { break };
            let simple = match e {
                b'0' => Some('\0'),
                b'a' => Some('\x07'),
                b'b' => Some('\x08'),
                b't' | b'\t' => Some('\t'),
                b'n' => Some('\n'),
                b'v' => Some('\x0b'),
                b'f' => Some('\x0c'),
                b'r' => Some('\r'),
                b'e' => Some('\x1b'),
                b' ' => Some(' '),
                b'"' => Some('"'),
                b'/' => Some('/'),
                b'\\' => Some('\\'),
                b'N' => Some('\u{85}'),
                b'_' => Some('\u{a0}'),
                b'L' => Some('\u{2028}'),
                b'P' => Some('\u{2029}'),
                _ => None,
            };
            if let Some(ch) = simple {
                push_sep(&mut out, &mut map, &ch.to_string(), i);
                i += 2;
                continue;
            }
            let digits = match e {
                b'x' => 2,
                b'u' => 4,
                b'U' => 8,
                b'\n' | b'\r' => {
                    // escaped line break: joined without a space
                    let mut k = i + 1;
                    if b.get(k) == Some(&b'\r') {
                        k += 1;
                    }
                    if b.get(k) == Some(&b'\n') {
                        k += 1;
                    }
                    line += 1;
                    while matches!(b.get(k), Some(b' ') | Some(b'\t')) {
                        k += 1;
                    }
                    i = k;
                    continue;
                }
                _ => return (None, skip_block(text, lines, line + 1)),
            };
            let hex = text.get(i + 2..i + 2 + digits);
            let ch = hex
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32);
            let Some(ch) = ch else {
                return (None, skip_block(text, lines, line + 1));
            };
            push_sep(&mut out, &mut map, &ch.to_string(), i);
            i += 2 + digits;
            continue;
        }
        let ch_len = text[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        push(&mut out, &mut map, &text[i..i + ch_len], i);
        i += ch_len;
    }
    // unterminated: serde_yaml reports it
    (None, skip_block(text, lines, line + 1))
}

/// A literal (`|`) or folded (`>`) block scalar whose indicator is at byte `at` of line `li`.
fn block_scalar(text: &str, lines: &[Line], li: usize, at: usize) -> (Decoded, usize) {
    let header = text[at..lines[li].end].split(" #").next().unwrap_or("");
    let header = header.trim_end();
    let folded = header.starts_with('>');
    let mut chomp = ' ';
    let mut explicit = None;
    for c in header[1..].chars() {
        match c {
            '+' | '-' if chomp == ' ' => chomp = c,
            '1'..='9' if explicit.is_none() => explicit = c.to_digit(10).map(|d| d as usize),
            _ => return (None, skip_block(text, lines, li + 1)),
        }
    }
    // the content: lines after the header until a non-empty line indented less
    let mut j = li + 1;
    let mut indent = explicit;
    let mut body: Vec<Line> = Vec::new();
    while j < lines.len() {
        let l = lines[j];
        let s = &text[l.start..l.end];
        let ind = indent_of(text, l);
        let blank = s.trim_matches([' ', '\t']).is_empty() && !s.contains('\t');
        if blank || s.trim().is_empty() {
            body.push(l);
            j += 1;
            continue;
        }
        let need = match indent {
            Some(n) => n,
            None => {
                if ind == 0 {
                    break;
                }
                indent = Some(ind);
                ind
            }
        };
        if ind < need || need == 0 {
            break;
        }
        body.push(l);
        j += 1;
    }
    let Some(n) = indent else {
        // only empty lines: the value is empty (or newlines with `+`)
        let s = if chomp == '+' {
            "\n".repeat(body.len())
        } else {
            String::new()
        };
        let map = vec![at; s.len()];
        return (Some((s, map)), j);
    };
    // trailing empty lines belong to chomping, not to the text
    let last_text = body
        .iter()
        .rposition(|l| !text[l.start..l.end].trim().is_empty());
    let Some(last_text) = last_text else {
        return (None, j);
    };
    let mut out = String::new();
    let mut map = Vec::new();
    let mut prev_end: Option<usize> = None;
    let mut prev_more = false;
    let mut empties = 0;
    for (k, l) in body.iter().enumerate().take(last_text + 1) {
        let s = &text[l.start..l.end];
        if s.trim().is_empty() && s.len() <= n {
            empties += 1;
            continue;
        }
        let content_start = (l.start + n).min(l.end);
        let content = &text[content_start..l.end];
        let more = content.starts_with([' ', '\t']);
        if let Some(pe) = prev_end {
            let sep = if folded && !more && !prev_more {
                if empties == 0 {
                    " ".to_string()
                } else {
                    "\n".repeat(empties)
                }
            } else {
                "\n".repeat(empties + 1)
            };
            push_sep(&mut out, &mut map, &sep, pe);
        } else if empties > 0 {
            push_sep(&mut out, &mut map, &"\n".repeat(empties), l.start);
        }
        push(&mut out, &mut map, content, content_start);
        prev_end = Some(l.end);
        prev_more = more;
        empties = 0;
        let _ = k;
    }
    let trailing = body.len() - (last_text + 1);
    let end_at = prev_end.unwrap_or(at);
    match chomp {
        '-' => {}
        '+' => push_sep(&mut out, &mut map, &"\n".repeat(trailing + 1), end_at),
        _ => push_sep(&mut out, &mut map, "\n", end_at),
    }
    (Some((out, map)), j)
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
            let kp = p.find(k).unwrap_or_else(|| panic!("key {k} not found"));
            let (dec, map) = kp
                .decoded
                .as_ref()
                .unwrap_or_else(|| panic!("{k}: not decoded"));
            assert_eq!(dec, val, "{k}");
            assert_eq!(map.len(), dec.len(), "{k}");
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
}
