//! A PostgreSQL-aware lexer: enough to tell code from literals, identifiers and comments.
//!
//! Placeholder translation and the job-file rules both need to know whether a `%s` or a `;`
//! is code or sits inside a string, a quoted identifier, a dollar-quoted body or a comment.
//! The lexer never fails: unterminated constructs run to the end of the input, and the
//! validator reports them.

/// What a token is; the text is always `&src[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Space,
    LineComment,
    BlockComment,
    /// `'...'`, `E'...'`, `B'...'`, `X'...'`, `U&'...'`
    String,
    /// `$tag$ ... $tag$`
    DollarString,
    /// `"..."` or `U&"..."`
    QuotedIdent,
    /// keyword or unquoted identifier
    Word,
    Number,
    /// `$1`, `$2`, ...
    Param,
    /// `%s` (psycopg placeholder)
    Placeholder,
    /// `%%` (psycopg literal percent)
    PercentPercent,
    /// `::`
    Cast,
    /// an operator made of `+-*/<>=~!@#%^&|` characters, or a lone `%`
    Operator,
    /// one of `( ) , ; [ ] . :`
    Punct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    /// byte offset in the source
    pub start: usize,
    /// true when a string, quoted identifier, dollar string or block comment is not closed
    pub unterminated: bool,
}

impl Token<'_> {
    /// Whitespace and comments: tokens that carry no meaning.
    pub fn is_trivia(&self) -> bool {
        matches!(
            self.kind,
            Kind::Space | Kind::LineComment | Kind::BlockComment
        )
    }

    /// True for an unquoted word equal to `kw`, ignoring case.
    pub fn is_word(&self, kw: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(kw)
    }

    pub fn is_punct(&self, c: &str) -> bool {
        self.kind == Kind::Punct && self.text == c
    }

    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }
}

/// Splits `src` into tokens, trivia included, so the tokens concatenate back to `src`.
pub fn tokenize(src: &str) -> Vec<Token<'_>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let (kind, end, unterminated) = next_token(b, i);
        let end = end.clamp(i + 1, b.len());
        out.push(Token {
            kind,
            text: &src[i..end],
            start: i,
            unterminated,
        });
        i = end;
    }
    out
}

/// The token starting at byte `i`: its kind, where it ends, whether it is left open.
fn next_token(b: &[u8], i: usize) -> (Kind, usize, bool) {
    let c = b[i];
    let at = |k: usize| b.get(i + k).copied();
    if c.is_ascii_whitespace() {
        return (Kind::Space, skip(b, i, |c| c.is_ascii_whitespace()), false);
    }
    if c == b'-' && at(1) == Some(b'-') {
        return (Kind::LineComment, skip(b, i, |c| c != b'\n'), false);
    }
    if c == b'/' && at(1) == Some(b'*') {
        let (end, open) = block_comment(b, i);
        return (Kind::BlockComment, end, open);
    }
    if let Some(t) = quoted(b, i) {
        return t;
    }
    if c == b'$' {
        return dollar(b, i);
    }
    match (c, at(1)) {
        (b'%', Some(b's')) if !is_ident_byte(b.get(i + 2)) => {
            return (Kind::Placeholder, i + 2, false);
        }
        (b'%', Some(b'%')) => return (Kind::PercentPercent, i + 2, false),
        (b':', Some(b':')) => return (Kind::Cast, i + 2, false),
        _ => {}
    }
    if c.is_ascii_digit() || (c == b'.' && at(1).is_some_and(|d| d.is_ascii_digit())) {
        return (Kind::Number, number_end(b, i), false);
    }
    if is_ident_start(c) {
        return (Kind::Word, skip(b, i, |c| is_ident_byte(Some(&c))), false);
    }
    if b"(),;[].:".contains(&c) {
        return (Kind::Punct, i + 1, false);
    }
    if OPERATOR_CHARS.contains(&c) {
        return (Kind::Operator, operator_end(b, i), false);
    }
    // any other byte, including the start of a multi-byte character outside identifiers
    (Kind::Operator, i + utf8_len(c), false)
}

const OPERATOR_CHARS: &[u8] = b"+-*/<>=~!@#%^&|?";

/// The first byte from `i` on for which `keep` is false.
fn skip(b: &[u8], mut i: usize, keep: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && keep(b[i]) {
        i += 1;
    }
    i
}

/// A block comment from `i` (PostgreSQL's nest): its end and whether it is left open.
fn block_comment(b: &[u8], mut i: usize) -> (usize, bool) {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return (i, false);
            }
        } else {
            i += 1;
        }
    }
    (i, true)
}

/// String literals (`'…'`, `E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`) and quoted identifiers
/// (`"…"`, `U&"…"`) starting at `i`.
fn quoted(b: &[u8], i: usize) -> Option<(Kind, usize, bool)> {
    let c = b[i];
    let next = b.get(i + 1).copied();
    let (open, backslashes, kind) = match (c, next) {
        (b'\'', _) => (i, false, Kind::String),
        (b'"', _) => (i, false, Kind::QuotedIdent),
        (b'e' | b'E', Some(b'\'')) => (i + 1, true, Kind::String),
        (b'b' | b'B' | b'x' | b'X' | b'n' | b'N', Some(b'\'')) => (i + 1, false, Kind::String),
        (b'u' | b'U', Some(b'&')) => match b.get(i + 2) {
            Some(b'\'') => (i + 2, false, Kind::String),
            Some(b'"') => (i + 2, false, Kind::QuotedIdent),
            _ => return None,
        },
        _ => return None,
    };
    let (end, open_left) = scan_quoted(b, open, b[open], backslashes);
    Some((kind, end, open_left))
}

/// A dollar-quoted string, a `$n` parameter or a lone `$` at `i`.
fn dollar(b: &[u8], i: usize) -> (Kind, usize, bool) {
    if let Some(tag_end) = dollar_tag_end(b, i) {
        let tag = &b[i..tag_end];
        return match find(b, tag_end, tag) {
            Some(close) => (Kind::DollarString, close + tag.len(), false),
            None => (Kind::DollarString, b.len(), true),
        };
    }
    if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return (Kind::Param, skip(b, i + 1, |c| c.is_ascii_digit()), false);
    }
    (Kind::Operator, i + 1, false)
}

/// The end of a number at `i`, exponent sign included (`1e-5`).
fn number_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
        if (b[i] == b'e' || b[i] == b'E') && matches!(b.get(i + 1), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        i += 1;
    }
    i
}

/// The end of an operator at `i`: it stops where a comment or a placeholder starts.
fn operator_end(b: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < b.len()
        && OPERATOR_CHARS.contains(&b[i])
        && !(b[i] == b'-' && b.get(i + 1) == Some(&b'-'))
        && !(b[i] == b'/' && b.get(i + 1) == Some(&b'*'))
        && !(b[i] == b'%' && matches!(b.get(i + 1), Some(b's') | Some(b'%')))
    {
        i += 1;
    }
    i.max(start + 1)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_byte(c: Option<&u8>) -> bool {
    c.is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Scans a quoted construct starting at the opening quote `b[open]`. A doubled quote is an
/// escaped quote; with `backslash`, `\x` escapes too (E'' strings).
fn scan_quoted(b: &[u8], open: usize, q: u8, backslash: bool) -> (usize, bool) {
    let mut i = open + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return (i + 1, false);
        }
        i += 1;
    }
    (b.len(), true)
}

/// If `b[i..]` starts a dollar-quote tag (`$$` or `$tag$`), returns the index after it.
fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j) == Some(&b'$') {
        return Some(j + 1);
    }
    let first = *b.get(j)?;
    if !(first.is_ascii_alphabetic() || first == b'_' || first >= 0x80) {
        return None;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Tokens that carry meaning (no whitespace, no comments).
pub fn significant<'a>(tokens: &[Token<'a>]) -> Vec<Token<'a>> {
    tokens.iter().copied().filter(|t| !t.is_trivia()).collect()
}

/// Normalises an identifier as PostgreSQL does: unquoted words fold to lower case, quoted
/// ones keep their case with `""` unescaped.
pub fn ident_value(tok: &Token<'_>) -> Option<String> {
    match tok.kind {
        Kind::Word => Some(tok.text.to_lowercase()),
        Kind::QuotedIdent if tok.text.starts_with('"') && tok.text.len() >= 2 => {
            Some(tok.text[1..tok.text.len() - 1].replace("\"\"", "\""))
        }
        _ => None,
    }
}

/// The statement without what carries no meaning: code tokens joined by one space, unquoted
/// words in lower case (PostgreSQL folds them), trailing `;` dropped. Literals, quoted
/// identifiers and dollar-quoted bodies stay exactly as written.
pub fn canonical(sql: &str) -> String {
    let mut sig = significant(&tokenize(sql));
    while sig.last().is_some_and(|t| t.is_punct(";")) {
        sig.pop();
    }
    let parts: Vec<String> = sig
        .iter()
        .map(|t| match t.kind {
            Kind::Word => t.text.to_lowercase(),
            _ => t.text.to_string(),
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(Kind, &str)> {
        tokenize(s)
            .into_iter()
            .filter(|t| !t.is_trivia())
            .map(|t| (t.kind, t.text))
            .collect()
    }

    #[test]
    fn tokens_concatenate_back_to_source() {
        let src = "SELECT 'a''b', E'x\\'y', $f$ %s $f$, \"Q\"\"x\" /* c /* n */ */ -- %s\n FROM t WHERE a > %s;";
        let joined: String = tokenize(src).iter().map(|t| t.text).collect();
        assert_eq!(joined, src);
    }

    #[test]
    fn literals_hide_placeholders() {
        let src = "SELECT '%s', \"%s\", $$%s$$, $a$ %s $a$ /* %s */ -- %s\n, %s";
        let ph: Vec<_> = tokenize(src)
            .into_iter()
            .filter(|t| t.kind == Kind::Placeholder)
            .collect();
        assert_eq!(ph.len(), 1);
        assert_eq!(ph[0].start, src.rfind("%s").unwrap());
    }

    #[test]
    fn operators_and_casts() {
        assert_eq!(
            kinds("a>=%s::timestamptz"),
            vec![
                (Kind::Word, "a"),
                (Kind::Operator, ">="),
                (Kind::Placeholder, "%s"),
                (Kind::Cast, "::"),
                (Kind::Word, "timestamptz")
            ]
        );
        assert_eq!(
            kinds("x %% 2"),
            vec![
                (Kind::Word, "x"),
                (Kind::PercentPercent, "%%"),
                (Kind::Number, "2")
            ]
        );
    }

    #[test]
    fn unterminated_is_flagged() {
        assert!(tokenize("SELECT 'abc").last().unwrap().unterminated);
        assert!(tokenize("SELECT $q$ abc").last().unwrap().unterminated);
        assert!(tokenize("/* open").last().unwrap().unterminated);
    }

    #[test]
    fn identifiers_fold_case() {
        let t = tokenize("Title \"Title\"");
        assert_eq!(ident_value(&t[0]).unwrap(), "title");
        assert_eq!(ident_value(&t[2]).unwrap(), "Title");
    }
}
