//! `elt completions SHELL` and `elt man`: shell completion scripts and man pages generated from
//! the clap definitions, so they never drift from the real flags.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use clap_mangen::roff::{Roff, bold, roman};

use crate::error::{Result, io};

/// Writes `bytes` to standard output; a reader that stopped early (`| head`) is not an error.
fn print(bytes: &[u8], what: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(io(what.to_string())(e)),
        _ => Ok(0),
    }
}

/// Prints the completion script for `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "elt", &mut script);
    print(&script, "writing the completion script")
}

/// Prints `elt.1` on standard output, or writes `elt.1` and one page per subcommand
/// (`elt-run.1`, ...) into `dir`.
pub fn man(dir: Option<&Path>) -> Result<i32> {
    let mut page = Vec::new();
    main_page(&mut page).map_err(io("rendering the man page"))?;
    let Some(dir) = dir else {
        return print(&page, "writing the man page");
    };
    std::fs::create_dir_all(dir).map_err(io(format!("creating the folder {}", dir.display())))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(io(format!("writing man pages into {}", dir.display())))?;
    // the generated elt.1 lacks the sections below
    std::fs::write(dir.join("elt.1"), &page)
        .map_err(io(format!("writing {}", dir.join("elt.1").display())))?;
    Ok(0)
}

/// `elt.1`: clap's sections, then ENVIRONMENT (from the same definitions), EXIT STATUS,
/// FILES and an example job file.
fn main_page(w: &mut dyn Write) -> std::io::Result<()> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    let mut roff = Roff::default();
    roff.control("SH", ["ENVIRONMENT"]);
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(env) = arg.get_env() else { continue };
        roff.control("TP", []);
        roff.text([bold(env.to_string_lossy().into_owned())]);
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        roff.text([roman(format!(
            "{help} (as --{})",
            arg.get_long().unwrap_or_default()
        ))]);
    }
    roff.control("TP", []);
    roff.text([bold("ELT_METRICS_FILE")]);
    roff.text([roman("--metrics-file of run and run-job.")]);
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (file, meaning) in FILES {
        roff.control("TP", []);
        roff.text([bold(file)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["EXAMPLE"]);
    roff.text([roman("A job file, jobs/products.yaml:")]);
    roff.control("nf", []);
    for line in EXAMPLE_JOB.lines() {
        roff.text([roman(line)]);
        roff.control("br", []);
    }
    roff.control("fi", []);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

const EXIT_STATUS: [(&str, &str); 5] = [
    (
        "0",
        "Every job succeeded (a job skipped because another runner holds it counts as success); for validate, no error; for verify, every job equal.",
    ),
    (
        "1",
        "At least one job failed (Redis, M or A unreachable fails the jobs that need them); for verify, a job differs or could not be compared.",
    ),
    (
        "2",
        "Invalid invocation or configuration (an unknown job, a missing or unreadable setting), or for validate, at least one invalid job file.",
    ),
    (
        "130",
        "The run was stopped by SIGINT (Ctrl-C): the current job was rolled back.",
    ),
    (
        "143",
        "The run was stopped by SIGTERM (systemctl stop, timeout): the current job was rolled back.",
    ),
];

const FILES: [(&str, &str); 4] = [
    (
        "./jobs/*.yaml",
        "The job files (--jobs-dir, ELT_JOBS_DIR): one table each; *.yaml and *.yml directly in the folder, hidden files ignored.",
    ),
    (
        "./logs/elt.log",
        "Everything from info up, one line per record, with the job's name (--log-dir, ELT_LOG_DIR); rotated daily to elt.log.YYYY-MM-DD.",
    ),
    (
        "./logs/error.log",
        "Errors only; rotated daily like elt.log.",
    ),
    (
        "/etc/elt/elt.env",
        "The environment file of the systemd unit and the crontab example (installed by make install, mode 0600).",
    ),
];

const EXAMPLE_JOB: &str = "CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS products (
    product_id bigint PRIMARY KEY, title text, price numeric(12,2), updated_at timestamptz)
SELECT_SOURCE_SQL: |
  SELECT product_id, title, price, updated_at FROM products WHERE updated_at > %s
UPSERT_TARGET_SQL: |
  INSERT INTO products (product_id, title, price, updated_at) VALUES (%s, %s, %s, %s)
  ON CONFLICT (product_id) DO UPDATE SET title = EXCLUDED.title, price = EXCLUDED.price,
    updated_at = EXCLUDED.updated_at
SELECT_KEYS_SQL: SELECT product_id FROM products
TARGET_TABLE: products
KEY_COLUMNS: [product_id]";
