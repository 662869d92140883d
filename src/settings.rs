//! Flags and environment turned into one typed `Settings` before any command runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Settings {
    master_url: Option<String>,
    analytics_url: Option<String>,
    pub redis_url: String,
    pub jobs_dir: PathBuf,
    pub log_dir: PathBuf,
    pub redis_prefix: String,
    pub overlap: Duration,
    pub lock_ttl: Duration,
}

impl Settings {
    pub fn from_args(a: &GlobalArgs) -> Result<Self> {
        if a.redis_prefix.is_empty() || a.redis_prefix.contains(['*', '?', '[', ']', ' ']) {
            return Err(Error::Config(format!(
                "--redis-prefix `{}` must be non-empty without spaces or glob characters",
                a.redis_prefix
            )));
        }
        Ok(Settings {
            master_url: a.master_url.clone().filter(|s| !s.trim().is_empty()),
            analytics_url: a.analytics_url.clone().filter(|s| !s.trim().is_empty()),
            redis_url: a.redis_url.clone(),
            jobs_dir: a.jobs_dir.clone(),
            log_dir: a.log_dir.clone(),
            redis_prefix: a.redis_prefix.clone(),
            overlap: Duration::from_secs(a.overlap_seconds),
            lock_ttl: Duration::from_secs(a.lock_ttl_seconds),
        })
    }

    pub fn master_url(&self) -> Result<&str> {
        self.master_url.as_deref().ok_or_else(|| {
            Error::Config(
                "the master database is not set: use --master-url or ELT_MASTER_URL".into(),
            )
        })
    }

    pub fn analytics_url(&self) -> Result<&str> {
        self.analytics_url.as_deref().ok_or_else(|| {
            Error::Config(
                "the analytics database is not set: use --analytics-url or ELT_ANALYTICS_URL"
                    .into(),
            )
        })
    }
}
