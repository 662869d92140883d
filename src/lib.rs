//! `elt`: keeps analytics tables in PostgreSQL in step with a master PostgreSQL database,
//! with row hashes and watermarks in Redis.

pub mod cli;
pub mod commands;
pub mod db;
pub mod error;
pub mod fault;
pub mod jobfile;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod percent;
pub mod pipeline;
pub mod placeholders;
pub mod progress;
pub mod redact;
pub mod redis_conn;
pub mod report;
pub mod settings;
pub mod sqllex;
pub mod sqlshape;
pub mod state;
pub mod stop;
pub mod verify;

/// `elt --version`: the crate version and the git commit it was built from (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ELT_GIT_COMMIT"),
    ")"
);

use cli::{Cli, Command};
use error::Result;
use settings::Settings;

/// Runs the parsed command line and returns the process exit status.
pub fn execute(cli: Cli) -> Result<i32> {
    let settings = Settings::from_args(&cli.global)?;
    match cli.command {
        Command::Run(args) => {
            logging::init(&settings)?;
            commands::run::run_all(&settings, &args)
        }
        Command::RunJob { job, args } => {
            logging::init(&settings)?;
            commands::run::run_one(&settings, &job, &args)
        }
        Command::Validate {
            paths,
            connect,
            format,
        } => commands::validate::validate(&settings, &paths, connect, format, settings.verbose > 0),
        Command::New {
            name,
            from_table,
            target_table,
            watermark_column,
        } => commands::new::new_job(
            &settings,
            &name,
            &from_table,
            target_table.as_deref(),
            watermark_column.as_deref(),
        ),
        Command::ResetState { jobs, all, orphans } => {
            logging::init(&settings)?;
            let selection = match (all, orphans) {
                (true, _) => commands::reset_state::Selection::All,
                (_, true) => commands::reset_state::Selection::Orphans,
                _ => commands::reset_state::Selection::Named,
            };
            commands::reset_state::reset(&settings, &jobs, selection)
        }
        Command::Status { json } => commands::status::status(&settings, json),
        Command::Verify { jobs, json } => commands::verify::verify(&settings, &jobs, json),
        Command::Completions { shell } => commands::completions::completions(shell),
        Command::Man { dir } => commands::completions::man(dir.as_deref()),
    }
}
