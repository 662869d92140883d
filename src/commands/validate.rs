//! `elt validate`: every rule of every job file, all problems at once; `--connect` also asks
//! M and A whether the statements fit, changing nothing.

use std::path::{Path, PathBuf};

use crate::db::{self, quote_ident};
use crate::error::{Db, Result, chain};
use crate::job::{self, Job};
use crate::pipeline::watermark;
use crate::placeholders::translate;
use crate::settings::Settings;
use crate::validate::{Problem, select_output_names};

fn collect_files(settings: &Settings, paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Problem>) {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        vec![settings.jobs_dir.clone()]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for root in roots {
        if root.is_dir() {
            match job::discover(&root) {
                Ok(f) => files.extend(f),
                Err(e) => {
                    problems.push(Problem::new(&root.display().to_string(), "FILE", chain(&e)))
                }
            }
        } else if root.is_file() {
            files.push(root);
        } else {
            problems.push(Problem::new(
                &root.display().to_string(),
                "FILE",
                "no such file or folder",
            ));
        }
    }
    (files, problems)
}

pub fn validate(settings: &Settings, paths: &[PathBuf], connect: bool) -> Result<i32> {
    let (files, mut problems) = collect_files(settings, paths);
    let mut jobs = Vec::new();
    for f in &files {
        match job::load(f) {
            Ok(j) => jobs.push(j),
            Err(p) => problems.extend(p),
        }
    }
    if connect && !jobs.is_empty() {
        let mut m = db::connect(settings.master_url()?, Db::Master)?;
        let mut a = db::connect(settings.analytics_url()?, Db::Analytics)?;
        for j in &jobs {
            problems.extend(check_against_databases(j, &mut m.client, &mut a.client));
        }
    }
    for p in &problems {
        println!("{p}");
    }
    let bad_files = {
        let mut f: Vec<&str> = problems.iter().map(|p| p.file.as_str()).collect();
        f.sort();
        f.dedup();
        f.len()
    };
    if problems.is_empty() {
        println!(
            "{} job file(s) valid{}",
            files.len(),
            if connect {
                " (checked against M and A)"
            } else {
                ""
            }
        );
        Ok(0)
    } else {
        eprintln!(
            "elt: {} problem(s) in {bad_files} of {} job file(s)",
            problems.len(),
            files.len()
        );
        Ok(2)
    }
}

fn file_of(j: &Job) -> String {
    j.path.display().to_string()
}

/// Prepares each statement where it runs, inside transactions that are rolled back.
fn check_against_databases(
    j: &Job,
    m: &mut postgres::Client,
    a: &mut postgres::Client,
) -> Vec<Problem> {
    let file = file_of(j);
    let mut out = Vec::new();
    let mut push = |key: &str, msg: String| out.push(Problem::new(&file, key, msg));

    let source = translate(&j.select_source_sql);
    let source_cols: Option<Vec<(String, postgres::types::Type)>> = match m.prepare(&source.sql) {
        Ok(stmt) => {
            match stmt.params() {
                [t] => {
                    if let Err(e) = watermark::earliest(t) {
                        push(job::SELECT_SOURCE_SQL, chain(&e));
                    } else if !watermark::is_time(t) {
                        push(
                            job::SELECT_SOURCE_SQL,
                            format!(
                                "note: the placeholder has type {}, not a time: every run reads all rows",
                                t.name()
                            ),
                        );
                    }
                }
                p => push(
                    job::SELECT_SOURCE_SQL,
                    format!("the server sees {} parameters, expected 1", p.len()),
                ),
            }
            Some(
                stmt.columns()
                    .iter()
                    .map(|c| (c.name().to_string(), c.type_().clone()))
                    .collect(),
            )
        }
        Err(e) => {
            push(
                job::SELECT_SOURCE_SQL,
                format!("M rejects it: {}", chain(&e)),
            );
            None
        }
    };
    if let Some(cols) = &source_cols {
        for k in &j.key_columns {
            if !cols.iter().any(|(n, _)| n == k) {
                push(
                    job::KEY_COLUMNS,
                    format!("`{k}` is not an output column of SELECT_SOURCE_SQL"),
                );
            }
        }
    }
    match m.prepare(&j.select_keys_sql) {
        Ok(stmt) => {
            let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
            let keys: Vec<&str> = j.key_columns.iter().map(String::as_str).collect();
            if names != keys {
                push(
                    job::SELECT_KEYS_SQL,
                    format!(
                        "returns columns ({}) but KEY_COLUMNS is ({})",
                        names.join(", "),
                        keys.join(", ")
                    ),
                );
            }
        }
        Err(e) => push(job::SELECT_KEYS_SQL, format!("M rejects it: {}", chain(&e))),
    }
    let _ = select_output_names; // offline rules already checked the names

    let mut tx = match a.transaction() {
        Ok(t) => t,
        Err(e) => {
            push(
                job::CREATE_TABLE_SQL,
                format!("cannot start a transaction on A: {}", chain(&e)),
            );
            return out;
        }
    };
    if let Err(e) = tx.batch_execute(&j.create_table_sql) {
        push(
            job::CREATE_TABLE_SQL,
            format!("A rejects it: {}", chain(&e)),
        );
        return out;
    }
    let checks: [(&str, String); 2] = [
        (job::UPSERT_TARGET_SQL, translate(&j.upsert_target_sql).sql),
        (
            job::KEY_COLUMNS,
            format!(
                "SELECT {} FROM {} LIMIT 0",
                j.key_columns
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                j.target_table
            ),
        ),
    ];
    for (key, sql) in checks {
        let Ok(mut sp) = tx.savepoint("elt_check") else {
            break;
        };
        match sp.prepare(&sql) {
            Ok(stmt) => {
                if key == job::UPSERT_TARGET_SQL {
                    if let Some(cols) = &source_cols {
                        if stmt.params().len() != cols.len() {
                            push(
                                key,
                                format!(
                                    "has {} placeholder(s) but SELECT_SOURCE_SQL returns {} column(s)",
                                    stmt.params().len(),
                                    cols.len()
                                ),
                            );
                        }
                    }
                }
            }
            Err(e) => {
                let msg = if key == job::KEY_COLUMNS {
                    format!("not all are columns of TARGET_TABLE: {}", chain(&e))
                } else {
                    format!("A rejects it: {}", chain(&e))
                };
                push(key, msg);
            }
        }
        let _ = sp.rollback();
    }
    let _ = tx.rollback();
    out
}

#[allow(dead_code)]
fn _path(p: &Path) -> String {
    p.display().to_string()
}
