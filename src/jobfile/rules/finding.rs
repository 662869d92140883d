//! A rule's verdict before it is located in the file, and the small helpers rules word
//! their messages with.

use crate::jobfile::keys::Key;
use crate::jobfile::problem::Severity;

/// A rule's verdict: for which key, how bad, and at which byte of the key's SQL text.
#[derive(Debug, Clone)]
pub struct Finding {
    pub key: Key,
    pub severity: Severity,
    pub message: String,
    pub at: Option<usize>,
    /// see `Problem::blocks_run`: false for findings that relate statements to each other
    pub blocks_run: bool,
}

impl Finding {
    pub fn new(
        key: Key,
        severity: Severity,
        message: impl Into<String>,
        at: Option<usize>,
    ) -> Self {
        Finding {
            key,
            severity,
            message: message.into(),
            at,
            blocks_run: true,
        }
    }

    pub fn error(key: Key, message: impl Into<String>, at: Option<usize>) -> Self {
        Finding::new(key, Severity::Error, message, at)
    }

    pub fn warning(key: Key, message: impl Into<String>, at: Option<usize>) -> Self {
        Finding::new(key, Severity::Warning, message, at)
    }

    pub fn note(key: Key, message: impl Into<String>, at: Option<usize>) -> Self {
        Finding::new(key, Severity::Note, message, at)
    }
}

/// Names close enough to be a typo of each other (one edit, or the same without `_`).
pub fn close_names(a: &str, b: &str) -> bool {
    if a.replace('_', "") == b.replace('_', "") {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    // Damerau-style: one substitution, insertion, deletion or adjacent swap
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut prev2 = prev.clone();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()] <= 1
}

/// `a`, `b` and `c` with back-quotes, for messages.
pub fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|m| format!("`{m}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
