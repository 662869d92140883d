//! The command line: every flag, subcommand and environment variable, with `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keeps analytics tables in PostgreSQL (A) in step with a master PostgreSQL database (M).
///
/// Each YAML file in the jobs folder describes one table. A run extracts rows changed since
/// the job's watermark, writes only rows whose hash changed, removes rows deleted in M and
/// records hashes and watermarks in Redis. Exit status: 0 every job succeeded or was skipped,
/// 1 at least one job failed, 2 invalid invocation or configuration (or invalid job files for
/// `validate`).
#[derive(Debug, Parser)]
#[command(name = "elt", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by every subcommand; each may stand before or after the subcommand.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Master database M: a URL (postgres://user:pass@host:5432/db?sslmode=require) or a
    /// libpq key=value string.
    #[arg(long, env = "ELT_MASTER_URL", global = true, hide_env_values = true)]
    pub master_url: Option<String>,

    /// Analytics database A, in the same forms as --master-url.
    #[arg(long, env = "ELT_ANALYTICS_URL", global = true, hide_env_values = true)]
    pub analytics_url: Option<String>,

    /// Redis server that keeps the state.
    #[arg(
        long,
        env = "ELT_REDIS_URL",
        global = true,
        default_value = "redis://127.0.0.1:6379/0",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// Folder of job files (*.yaml, *.yml).
    #[arg(long, env = "ELT_JOBS_DIR", global = true, default_value = "./jobs")]
    pub jobs_dir: PathBuf,

    /// Folder for elt.log and error.log.
    #[arg(long, env = "ELT_LOG_DIR", global = true, default_value = "./logs")]
    pub log_dir: PathBuf,

    /// Prefix of every Redis key elt writes, so several deployments can share one Redis.
    #[arg(long, env = "ELT_REDIS_PREFIX", global = true, default_value = "elt")]
    pub redis_prefix: String,

    /// Seconds by which each extraction window reaches back before the previous watermark,
    /// so rows of transactions that committed late are not missed.
    #[arg(
        long,
        env = "ELT_OVERLAP_SECONDS",
        global = true,
        default_value_t = 300
    )]
    pub overlap_seconds: u64,

    /// Lifetime of a job's lock in Redis; the holder renews it every third of this, so the
    /// lock of a runner that died frees itself within this time.
    #[arg(long, env = "ELT_LOCK_TTL_SECONDS", global = true, default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(3..=60))]
    pub lock_ttl_seconds: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every job in the jobs folder, one after another.
    Run(RunArgs),

    /// Run one job, by name (file name without extension) or by path.
    RunJob {
        /// Job name or path to a job file.
        job: String,
        #[command(flatten)]
        args: RunArgs,
    },

    /// Check job files against the rules without touching any database (exit 2 on problems).
    Validate {
        /// Job files or folders (default: the jobs folder).
        paths: Vec<PathBuf>,

        /// Also prepare every statement on M and A (changing nothing) and check that they fit.
        #[arg(long)]
        connect: bool,
    },

    /// Forget the Redis state of jobs: their next run re-synchronises them in full.
    ResetState {
        /// Job names.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        jobs: Vec<String>,

        /// Every job that has state under the prefix, and every job in the jobs folder.
        #[arg(long)]
        all: bool,
    },

    /// Show per job: last success, watermark, rows tracked, last error.
    Status {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone, Copy)]
pub struct RunArgs {
    /// Compute what would change and report it; write nothing to A or Redis.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document instead of the summary lines.
    #[arg(long)]
    pub json: bool,
}
