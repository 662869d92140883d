//! `elt`: keeps analytics tables in PostgreSQL in step with a master PostgreSQL database,
//! with row hashes and watermarks in Redis.

pub mod cli;
pub mod commands;
pub mod db;
pub mod error;
pub mod job;
pub mod lock;
pub mod logging;
pub mod pipeline;
pub mod placeholders;
pub mod redact;
pub mod report;
pub mod settings;
pub mod sqllex;
pub mod state;
pub mod validate;

use cli::{Cli, Command};
use error::Result;
use settings::Settings;

/// Runs the parsed command line and returns the process exit status.
pub fn execute(cli: Cli) -> Result<i32> {
    let settings = Settings::from_args(&cli.global)?;
    match cli.command {
        Command::Run(args) => {
            logging::init_files(&settings.log_dir)?;
            commands::run::run_all(&settings, args.dry_run, args.json)
        }
        Command::RunJob { job, args } => {
            logging::init_files(&settings.log_dir)?;
            commands::run::run_one(&settings, &job, args.dry_run, args.json)
        }
        Command::Validate { paths, connect } => {
            commands::validate::validate(&settings, &paths, connect)
        }
        Command::ResetState { jobs, all } => {
            logging::init_files(&settings.log_dir)?;
            commands::reset_state::reset(&settings, &jobs, all)
        }
        Command::Status { json } => commands::status::status(&settings, json),
    }
}
