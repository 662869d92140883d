//! The offline rules on a corpus of job files: each file in `tests/validate/corpus/bad`
//! holds the mistakes an analyst makes, and says in `# expect:` lines exactly which problems
//! `validate` must report and where; the files in `ok` (and the shipped `jobs/`) must give
//! none. Also the three output formats.
//!
//! `# expect: [warning] KEY @ TEXT` — a problem for KEY at the first place TEXT occurs in the
//! file outside comments (`^` inside TEXT marks the exact spot, `\n` is a line break);
//! `# expect: KEY -` — a problem for KEY with no position (a missing key).
use crate::fixture::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

fn fixtures(sub: &str) -> Vec<PathBuf> {
    let dir = repo_root().join("tests/validate/corpus").join(sub);
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixtures in {}", dir.display());
    v
}

fn validate(args: &[&str], files: &[&Path]) -> (i32, String, String) {
    let mut c = elt_alone();
    c.arg("validate").args(args);
    for f in files {
        c.arg(f);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(files: &[&Path]) -> (i32, Value) {
    let (code, stdout, stderr) = validate(&["--format", "json"], files);
    let v = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"));
    (code, v)
}

/// (severity, key, line, column) of every error and warning.
fn actual(v: &Value) -> Vec<(String, String, Option<u64>, Option<u64>)> {
    let mut out: Vec<_> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] != "note")
        .map(|p| {
            (
                p["severity"].as_str().unwrap().to_string(),
                p["key"].as_str().unwrap().to_string(),
                p["line"].as_u64(),
                p["column"].as_u64(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Line and column (1-based, in characters) of byte `at` of `text`.
fn line_col(text: &str, at: usize) -> (u64, u64) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line as u64, col as u64)
}

fn expected(path: &Path) -> Vec<(String, String, Option<u64>, Option<u64>)> {
    let text = fs::read_to_string(path).unwrap();
    // markers are searched outside comment lines
    let code: String = text
        .split_inclusive('\n')
        .map(|l| {
            if l.trim_start().starts_with('#') {
                " ".repeat(l.len() - 1) + "\n"
            } else {
                l.to_string()
            }
        })
        .collect();
    let mut out = Vec::new();
    for l in text.lines() {
        let Some(e) = l.strip_prefix("# expect: ") else {
            continue;
        };
        let (severity, e) = match e.strip_prefix("warning ") {
            Some(rest) => ("warning", rest),
            None => ("error", e),
        };
        if let Some(key) = e.strip_suffix(" -") {
            out.push((severity.into(), key.into(), None, None));
            continue;
        }
        let (key, marker) = e
            .split_once(" @ ")
            .unwrap_or_else(|| panic!("{}: bad expectation `{l}`", path.display()));
        let marker = marker.replace("\\n", "\n");
        let caret = marker.find('^').unwrap_or(0);
        let needle = marker.replace('^', "");
        let at = code
            .find(&needle)
            .unwrap_or_else(|| panic!("{}: marker {needle:?} not found", path.display()));
        let (line, col) = line_col(&code, at + caret);
        out.push((severity.into(), key.into(), Some(line), Some(col)));
    }
    assert!(
        !out.is_empty(),
        "{} has no `# expect:` line",
        path.display()
    );
    out.sort();
    out
}

#[test]
fn each_broken_file_gets_exactly_its_problems_at_the_right_place() {
    let mut failures = Vec::new();
    for f in fixtures("bad") {
        let (code, v) = json(&[&f]);
        let want = expected(&f);
        let got = actual(&v);
        let errors = want.iter().any(|w| w.0 == "error");
        if got != want || code != if errors { 2 } else { 0 } {
            failures.push(format!(
                "{}: exit {code}\n  expected {want:?}\n  got      {got:?}\n  {}",
                f.display(),
                v["problems"]
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn correct_files_have_no_problem_at_all() {
    let mut files = fixtures("ok");
    let jobs = repo_root().join("jobs");
    if let Ok(rd) = fs::read_dir(&jobs) {
        files.extend(rd.flatten().map(|e| e.path()).filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
        }));
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, v) = json(&refs);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(actual(&v), vec![], "{v:#}");
    // human output: nothing but the summary line
    let (code, stdout, stderr) = validate(&[], &refs);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("{} job file(s) valid", files.len()),
        "{stderr}"
    );
}

#[test]
fn all_files_and_all_problems_in_one_run() {
    let files = fixtures("bad");
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, v) = json(&refs);
    assert_eq!(code, 2);
    let total: usize = files.iter().map(|f| expected(f).len()).sum();
    assert_eq!(actual(&v).len(), total, "{v:#}");
}

#[test]
fn human_and_github_formats_name_file_key_line_and_column() {
    let f = repo_root().join("tests/validate/corpus/bad/b02_source_order_by.yaml");
    let (code, stdout, stderr) = validate(&[], &[&f]);
    assert_eq!(code, 2);
    let want = format!("{}: SELECT_SOURCE_SQL: line 13, column 3: ", f.display());
    assert!(
        stdout.lines().any(|l| l.starts_with(&want)),
        "{want}\n{stdout}"
    );
    assert!(
        stderr.contains("1 problem(s) in 1 of 1 job file(s)"),
        "{stderr}"
    );

    let (code, stdout, _) = validate(&["--format", "github"], &[&f]);
    assert_eq!(code, 2);
    let want = format!(
        "::error file={},line=13,col=3,title=SELECT_SOURCE_SQL::must end with a condition on the `%25s` placeholder",
        f.display()
    );
    assert!(
        stdout.lines().any(|l| l.starts_with(&want)),
        "{want}\n{stdout}"
    );

    // A missing key has no line: a file-level annotation, and no position in human form.
    let f = repo_root().join("tests/validate/corpus/bad/b18_key_columns_misspelt_key.yaml");
    let (_, stdout, _) = validate(&["--format", "github"], &[&f]);
    assert!(
        stdout.contains(&format!(
            "::error file={},title=KEY_COLUMNS::missing required key",
            f.display()
        )),
        "{stdout}"
    );
    let (_, stdout, _) = validate(&[], &[&f]);
    assert!(
        stdout.contains(&format!(
            "{}: KEY_COLUMNS: missing required key",
            f.display()
        )),
        "{stdout}"
    );

    // Warnings are marked and do not fail validation.
    let f = repo_root().join("tests/validate/corpus/bad/b23_partial_update_set.yaml");
    let (code, stdout, _) = validate(&[], &[&f]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("warning: ")),
        "{stdout}"
    );
    let (code, stdout, _) = validate(&["--format", "github"], &[&f]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("::warning file="), "{stdout}");
}

#[test]
fn notes_about_the_parser_fallback_only_with_verbose() {
    let f = repo_root().join("tests/validate/corpus/ok/like_and_window.yaml");
    let (code, stdout, _) = validate(&[], &[&f]);
    assert_eq!(code, 0);
    assert!(!stdout.contains("note:"), "{stdout}");
    let (code, stdout, _) = validate(&["-v"], &[&f]);
    assert_eq!(code, 0);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("note: ") && l.contains("CREATE_TABLE_SQL: ")),
        "{stdout}"
    );
}

#[test]
fn ci_examples_are_yaml_that_validate_only_changed_job_files() {
    for f in [
        "ci/github-actions-validate.yml",
        "ci/gitlab-ci-validate.yml",
    ] {
        let text = fs::read_to_string(repo_root().join(f)).unwrap();
        let _: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.contains("elt validate"), "{f}");
        assert!(text.contains("--diff-filter=ACMR"), "{f}");
        assert!(text.contains(r"'^jobs/[^/.][^/]*\.ya?ml$'"), "{f}");
    }
}
