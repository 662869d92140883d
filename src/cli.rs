//! The command line: every flag, subcommand and environment variable, with `--help` text.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Keeps analytics tables in PostgreSQL (A) in step with a master PostgreSQL database (M).
///
/// Each YAML file in the jobs folder describes one table. A run extracts rows changed since
/// the job's watermark, writes only rows whose hash changed, removes rows deleted in M and
/// records hashes and watermarks in Redis. Exit status: 0 every job succeeded or was skipped,
/// 1 at least one job failed, 2 invalid invocation or configuration (or invalid job files for
/// `validate`).
// No `Debug` here or on `GlobalArgs`: they hold the URLs as typed, passwords included;
// `Settings` is the printable form.
#[derive(Parser)]
#[command(name = "elt", version = crate::VERSION, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments (exiting with clap's message and status 2 on a bad
    /// one, as `Cli::parse` does); test builds also take the hidden `--fault-point`.
    pub fn parse_args() -> Cli {
        let mut cmd = with_test_hooks(Cli::command());
        let matches = cmd.get_matches_mut();
        #[allow(unused_mut)]
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
        #[cfg(feature = "fault-injection")]
        {
            cli.global.fault_point = matches.get_one::<crate::fault::Fault>(FAULT_POINT).copied();
        }
        cli
    }
}

#[cfg(feature = "fault-injection")]
const FAULT_POINT: &str = "fault_point";

/// `cmd` with the hidden `--fault-point POINT[:ACTION]` of the fault suite: `POINT` or
/// `POINT:kill` kills the process with SIGKILL at that point, `POINT:pause` waits there
/// until the file `<log-dir>/fault-POINT.paused` is removed.
#[cfg(feature = "fault-injection")]
fn with_test_hooks(cmd: clap::Command) -> clap::Command {
    cmd.arg(
        clap::Arg::new(FAULT_POINT)
            .long("fault-point")
            .env("ELT_FAULT_POINT")
            .value_name("FAULT_POINT")
            .value_parser(clap::value_parser!(crate::fault::Fault))
            .global(true)
            .hide(true)
            .hide_env_values(true),
    )
}

#[cfg(not(feature = "fault-injection"))]
fn with_test_hooks(cmd: clap::Command) -> clap::Command {
    cmd
}

/// `--redis-url` when neither it nor `--redis-url-file` is given.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// Settings shared by every subcommand; each may stand before or after the subcommand.
#[derive(Args, Clone)]
#[command(next_help_heading = "Settings (every command; flag or environment variable)")]
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
        default_value = DEFAULT_REDIS_URL,
        hide_env_values = true
    )]
    pub redis_url: String,

    /// File holding the --master-url value, so the password is in neither the process list
    /// nor the environment. Must be readable by its owner only (chmod 600).
    #[arg(
        long,
        hide_env_values = true,
        env = "ELT_MASTER_URL_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub master_url_file: Option<PathBuf>,

    /// File holding the --analytics-url value (readable by its owner only).
    #[arg(
        long,
        hide_env_values = true,
        env = "ELT_ANALYTICS_URL_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub analytics_url_file: Option<PathBuf>,

    /// File holding the --redis-url value (readable by its owner only).
    #[arg(
        long,
        hide_env_values = true,
        env = "ELT_REDIS_URL_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub redis_url_file: Option<PathBuf>,

    /// Folder of job files (*.yaml, *.yml).
    #[arg(
        long,
        hide_env_values = true,
        env = "ELT_JOBS_DIR",
        global = true,
        default_value = "./jobs"
    )]
    pub jobs_dir: PathBuf,

    /// Folder for elt.log and error.log.
    #[arg(
        long,
        hide_env_values = true,
        env = "ELT_LOG_DIR",
        global = true,
        default_value = "./logs"
    )]
    pub log_dir: PathBuf,

    /// Prefix of every Redis key elt writes, so several deployments can share one Redis.
    #[arg(
        long,
        hide_env_values = true,
        env = "ELT_REDIS_PREFIX",
        global = true,
        default_value = "elt"
    )]
    pub redis_prefix: String,

    /// Seconds by which each extraction window reaches back before the previous watermark,
    /// so rows of transactions that committed late are not missed.
    #[arg(
        long,
        hide_env_values = true,
        env = "ELT_OVERLAP_SECONDS",
        global = true,
        default_value_t = 300
    )]
    pub overlap_seconds: u64,

    /// Lifetime of a job's lock in Redis; the holder renews it every third of this, so the
    /// lock of a runner that died frees itself within this time.
    #[arg(long, hide_env_values = true, env = "ELT_LOCK_TTL_SECONDS", global = true, default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(3..=60))]
    pub lock_ttl_seconds: u64,

    /// Fault injection for the fault suite (test builds only): the hidden `--fault-point`
    /// (`ELT_FAULT_POINT`), which [`Cli::parse_args`] adds to the parser only, so that no
    /// completion script or man page (made from `Cli::command()`) shows it.
    #[cfg(feature = "fault-injection")]
    #[arg(skip)]
    pub fault_point: Option<crate::fault::Fault>,

    /// Days to keep rotated log files (elt.log.YYYY-MM-DD, error.log.YYYY-MM-DD); 0 keeps
    /// them all. Files are rotated daily, at the first start of each day.
    #[arg(
        long,
        hide_env_values = true,
        env = "ELT_LOG_RETENTION_DAYS",
        global = true,
        default_value_t = 14
    )]
    pub log_retention_days: u32,

    /// More detail: debug lines in elt.log and info lines on standard error (-vv: more still).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on standard error (no warnings, no progress display).
    #[arg(short, long, global = true)]
    pub quiet: bool,
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

        /// Output: `human` (FILE: KEY: line L, column C: message), `json` (one document) or
        /// `github` (workflow-command annotations for GitHub Actions).
        #[arg(long, value_enum, default_value = "human")]
        format: ValidateFormat,
    },

    /// Compare each job's target in A with what its source gives on M, row by row, by
    /// digests computed in the databases (no watermark limit, Redis not read); changes
    /// nothing. Exit status 0 when every job is equal, 1 when one differs or fails.
    Verify {
        /// Job names or paths (default: every job in the jobs folder).
        #[arg(value_name = "JOB")]
        jobs: Vec<String>,

        /// One JSON document instead of a line per job.
        #[arg(long)]
        json: bool,
    },

    /// Write a job file for a table of M: columns, types, key and watermark column are
    /// read from M (exit 2 if the file exists or no key can be found).
    New {
        /// Job name: the file written is <jobs-dir>/NAME.yaml.
        name: String,

        /// The table on M to copy: `table` or `schema.table`.
        #[arg(long, value_name = "SCHEMA.TABLE")]
        from_table: String,

        /// Table name in A (default: the source table's name, without schema).
        #[arg(long)]
        target_table: Option<String>,

        /// Column whose value tells when a row changed (default: found by name and type:
        /// updated_at, modified_at, last_update, …).
        #[arg(long)]
        watermark_column: Option<String>,
    },

    /// Forget the Redis state of jobs: their next run re-synchronises them in full.
    #[command(
        override_usage = "elt reset-state <JOB>...\n       elt reset-state --all\n       elt reset-state --orphans"
    )]
    ResetState {
        /// Job names.
        #[arg(value_name = "JOB", required_unless_present_any = ["all", "orphans"], conflicts_with_all = ["all", "orphans"])]
        jobs: Vec<String>,

        /// Every job that has state under the prefix, and every job in the jobs folder.
        #[arg(long, conflicts_with = "orphans")]
        all: bool,

        /// Jobs that have state in Redis but no job file any more (see `elt status`).
        #[arg(long)]
        orphans: bool,
    },

    /// Show per job: last success, watermark, rows tracked, last error.
    Status {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// Print a shell completion script on standard output, e.g.
    /// `elt completions bash > /etc/bash_completion.d/elt`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff) on standard output, or write one page per subcommand into
    /// --dir (elt.1, elt-run.1, ...).
    Man {
        /// Folder for the pages (created if missing).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Compute what would change and report it; write nothing to A or Redis.
    #[arg(long)]
    pub dry_run: bool,

    /// Let this run delete what the delete guards would refuse (M returning no keys, or
    /// more than the job's MAX_DELETE_FRACTION of the target's rows).
    #[arg(long)]
    pub force_deletes: bool,

    /// Print one JSON document instead of the summary lines.
    #[arg(long)]
    pub json: bool,

    /// After the run, write Prometheus metrics to this file (atomically), for node_exporter's
    /// textfile collector, e.g. /var/lib/node_exporter/textfile_collector/elt.prom.
    /// Not written by --dry-run.
    #[arg(long, hide_env_values = true, env = "ELT_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// How `validate` prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Human,
    Json,
    Github,
}
