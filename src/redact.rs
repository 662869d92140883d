//! Keeps passwords out of everything we print or log.

/// Masks the password of a connection string, URL (`postgres://u:p@h/db`, `redis://:p@h`) or
/// libpq key=value (`host=h password=p`) form.
pub fn mask(conn: &str) -> String {
    scrub(conn)
}

/// Masks every password-looking part of free text: the `:secret@` of URLs and the value of
/// `password=` pairs (quoted or not).
pub fn scrub(text: &str) -> String {
    let masked = mask_url_passwords(text);
    mask_keyword_passwords(&masked)
}

fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // the authority ends at the first '/', '?', '#' or white space
        let auth_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..auth_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[auth_end..];
    }
    out.push_str(rest);
    // password=... in a URL query string
    out
}

fn mask_keyword_passwords(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password") {
        let key_end = i + found + "password".len();
        // allow spaces around '='
        let after = &text[key_end..];
        let trimmed = after.trim_start();
        if let Some(value) = trimmed.strip_prefix('=') {
            let value = value.trim_start();
            let value_start = text.len() - value.len();
            out.push_str(&text[i..value_start]);
            out.push_str("***");
            let value_len = if let Some(quoted) = value.strip_prefix('\'') {
                // quoted libpq value with \' escapes
                let mut len = 1;
                let mut chars = quoted.char_indices();
                while let Some((_, c)) = chars.next() {
                    len += c.len_utf8();
                    if c == '\\' {
                        if let Some((_, n)) = chars.next() {
                            len += n.len_utf8();
                        }
                    } else if c == '\'' {
                        break;
                    }
                }
                len
            } else {
                let end = value
                    .find(|c: char| c.is_whitespace() || c == '&' || c == ';' || c == '#')
                    .unwrap_or(value.len());
                // `…?password=secret: error connecting`: the `:` is the message's
                end - usize::from(value[..end].ends_with(':'))
            };
            i = value_start + value_len;
        } else {
            out.push_str(&text[i..key_end]);
            i = key_end;
        }
    }
    out.push_str(&text[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_passwords() {
        assert_eq!(
            mask("postgres://alice:s3cr@t@db.example:5432/app?sslmode=require"),
            "postgres://alice:***@db.example:5432/app?sslmode=require"
        );
        assert_eq!(
            mask("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(mask("postgres://bob@h/db"), "postgres://bob@h/db");
    }

    #[test]
    fn masks_keyword_passwords() {
        assert_eq!(
            mask("host=h user=u password=secret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(
            mask("host=h password = 'a b\\' c' dbname=d"),
            "host=h password = *** dbname=d"
        );
        assert_eq!(
            mask("postgres://u@h/db?password=secret&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(
            scrub("at postgres://u@h/db?password=secret: error connecting"),
            "at postgres://u@h/db?password=***: error connecting"
        );
    }

    #[test]
    fn leaves_other_text_alone() {
        assert_eq!(scrub("no secrets here"), "no secrets here");
        assert_eq!(scrub("password policy"), "password policy");
    }
}
