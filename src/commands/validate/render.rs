//! How `validate` shows its findings, kept apart from finding them: the spec's human lines,
//! one JSON document, or GitHub Actions workflow commands.

use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::cli::ValidateFormat;
use crate::jobfile::{Problem, Severity};

/// Everything one `validate` run found.
pub struct Report<'a> {
    pub files: &'a [PathBuf],
    pub problems: &'a [Problem],
    /// the statements were also checked against M and A
    pub connected: bool,
}

impl Report<'_> {
    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
            .count()
    }

    /// Files with at least one error.
    pub fn bad_files(&self) -> usize {
        let mut f: Vec<&str> = self
            .problems
            .iter()
            .filter(|p| p.is_error())
            .map(|p| p.file.as_str())
            .collect();
        f.sort();
        f.dedup();
        f.len()
    }
}

pub fn render(format: ValidateFormat, r: &Report<'_>, out: &mut impl Write) -> io::Result<()> {
    match format {
        ValidateFormat::Human => human(r, out),
        ValidateFormat::Json => json(r, out),
        ValidateFormat::Github => github(r, out),
    }
}

/// `FILE: KEY: line L, column C: message` per problem, then a summary line when valid.
fn human(r: &Report<'_>, out: &mut impl Write) -> io::Result<()> {
    for p in r.problems {
        writeln!(out, "{p}")?;
    }
    if r.errors() > 0 {
        return Ok(());
    }
    let against = if r.connected {
        " (checked against M and A)"
    } else {
        ""
    };
    let warnings = match r.warnings() {
        0 => String::new(),
        n => format!(", {n} warning(s)"),
    };
    writeln!(
        out,
        "{} job file(s) valid{against}{warnings}",
        r.files.len()
    )
}

#[derive(Serialize)]
struct Document<'a> {
    valid: bool,
    files: Vec<String>,
    errors: usize,
    warnings: usize,
    problems: Vec<JsonProblem<'a>>,
}

#[derive(Serialize)]
struct JsonProblem<'a> {
    file: &'a str,
    key: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    severity: &'static str,
    message: &'a str,
}

fn json(r: &Report<'_>, out: &mut impl Write) -> io::Result<()> {
    let doc = Document {
        valid: r.errors() == 0,
        files: r.files.iter().map(|f| f.display().to_string()).collect(),
        errors: r.errors(),
        warnings: r.warnings(),
        problems: r
            .problems
            .iter()
            .map(|p| JsonProblem {
                file: &p.file,
                key: &p.key,
                line: p.line,
                column: p.column,
                severity: p.severity.as_str(),
                message: &p.message,
            })
            .collect(),
    };
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)
}

fn github(r: &Report<'_>, out: &mut impl Write) -> io::Result<()> {
    for p in r.problems {
        writeln!(out, "{}", github_annotation(p))?;
    }
    writeln!(
        out,
        "elt validate: {} job file(s), {} error(s), {} warning(s)",
        r.files.len(),
        r.errors(),
        r.warnings()
    )
}

/// A GitHub Actions workflow command that puts the problem on the file and line.
pub fn github_annotation(p: &Problem) -> String {
    let level = match p.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "notice",
    };
    let mut props = vec![format!("file={}", escape_property(&p.file))];
    if let Some(l) = p.line {
        props.push(format!("line={l}"));
    }
    if let Some(c) = p.column {
        props.push(format!("col={c}"));
    }
    props.push(format!("title={}", escape_property(&p.key)));
    format!("::{level} {}::{}", props.join(","), escape_data(&p.message))
}

/// Workflow-command data escaping (`%`, CR, LF).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Workflow-command property escaping: data escaping plus `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_annotations_escape_data_and_properties() {
        let p = Problem::new("jobs/a,b.yaml", "KEY_COLUMNS", "100% wrong\nreally")
            .at(Some((3, 5)))
            .severity(Severity::Warning);
        assert_eq!(
            github_annotation(&p),
            "::warning file=jobs/a%2Cb.yaml,line=3,col=5,title=KEY_COLUMNS::100%25 wrong%0Areally"
        );
    }

    #[test]
    fn json_has_the_documented_fields_in_order() {
        let p = Problem::new("f.yaml", "TARGET_TABLE", "bad").at(Some((1, 2)));
        let files = vec![PathBuf::from("f.yaml")];
        let problems = vec![p];
        let r = Report {
            files: &files,
            problems: &problems,
            connected: false,
        };
        let mut out = Vec::new();
        json(&r, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"valid\":false,\"files\":[\"f.yaml\"],\"errors\":1,\"warnings\":0,\"problems\":[{\"file\":\"f.yaml\",\"key\":\"TARGET_TABLE\",\"line\":1,\"column\":2,\"severity\":\"error\",\"message\":\"bad\"}]}\n"
        );
    }
}
