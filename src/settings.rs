//! Flags and environment turned into one typed `Settings` before any command runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};

/// A connection URL that may hold a password: `Debug` shows it masked, and there is no
/// `Display`, so a settings dump or a log line cannot carry the secret.
#[derive(Clone)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL itself, for the driver that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::redact::mask(&self.0))
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    master_url: Option<SecretUrl>,
    analytics_url: Option<SecretUrl>,
    redis_url: SecretUrl,
    pub jobs_dir: PathBuf,
    pub log_dir: PathBuf,
    pub redis_prefix: String,
    pub overlap: Duration,
    pub lock_ttl: Duration,
    /// Hidden test hook: where the process kills itself or pauses (see `fault`).
    pub faults: crate::fault::Faults,
    /// Days to keep rotated log files; 0 keeps them all.
    pub log_retention_days: u32,
    /// `-v` count.
    pub verbose: u8,
    /// `-q`: errors only on standard error, no progress display.
    pub quiet: bool,
    /// When this process started (ms since the epoch): a job that another runner finished
    /// after this moment is not run again in the same tick.
    pub started_ms: u64,
}

impl Settings {
    pub fn from_args(a: &GlobalArgs) -> Result<Self> {
        if a.redis_prefix.is_empty() || a.redis_prefix.contains(['*', '?', '[', ']', ' ']) {
            return Err(Error::Config(format!(
                "--redis-prefix `{}` must be non-empty without spaces or glob characters",
                a.redis_prefix
            )));
        }
        let master_url = url_setting(
            a.master_url.clone().filter(|s| !s.trim().is_empty()),
            a.master_url_file.as_deref(),
            "--master-url",
        )?;
        let analytics_url = url_setting(
            a.analytics_url.clone().filter(|s| !s.trim().is_empty()),
            a.analytics_url_file.as_deref(),
            "--analytics-url",
        )?;
        let redis_url = url_setting(
            Some(a.redis_url.clone()).filter(|s| s != crate::cli::DEFAULT_REDIS_URL),
            a.redis_url_file.as_deref(),
            "--redis-url",
        )?
        .unwrap_or_else(|| a.redis_url.clone());
        for (flag, url) in [
            ("--master-url", master_url.as_deref()),
            ("--analytics-url", analytics_url.as_deref()),
            ("--redis-url", Some(redis_url.as_str())),
        ] {
            check_url(flag, url)?;
        }
        Ok(Settings {
            master_url: master_url.map(SecretUrl),
            analytics_url: analytics_url.map(SecretUrl),
            redis_url: SecretUrl(redis_url),
            jobs_dir: a.jobs_dir.clone(),
            log_dir: a.log_dir.clone(),
            redis_prefix: a.redis_prefix.clone(),
            overlap: Duration::from_secs(a.overlap_seconds),
            lock_ttl: Duration::from_secs(a.lock_ttl_seconds),
            faults: faults(a),
            log_retention_days: a.log_retention_days,
            verbose: a.verbose,
            quiet: a.quiet,
            started_ms: crate::state::now_ms(),
        })
    }

    pub fn master_url(&self) -> Result<&str> {
        self.master_url
            .as_ref()
            .map(SecretUrl::expose)
            .ok_or_else(|| {
                Error::Config(
                    "the master database is not set: use --master-url or ELT_MASTER_URL".into(),
                )
            })
    }

    pub fn analytics_url(&self) -> Result<&str> {
        self.analytics_url
            .as_ref()
            .map(SecretUrl::expose)
            .ok_or_else(|| {
                Error::Config(
                    "the analytics database is not set: use --analytics-url or ELT_ANALYTICS_URL"
                        .into(),
                )
            })
    }

    pub fn redis_url(&self) -> &str {
        self.redis_url.expose()
    }
}

#[cfg(feature = "fault-injection")]
fn faults(a: &GlobalArgs) -> crate::fault::Faults {
    crate::fault::Faults::new(a.fault_point, a.log_dir.clone())
}

#[cfg(not(feature = "fault-injection"))]
fn faults(_: &GlobalArgs) -> crate::fault::Faults {
    crate::fault::Faults::default()
}

/// Mistakes a URL can be seen to have before connecting: a password with an `@` that was
/// not written `%40` (the URL then names another host). The example is not URL-shaped:
/// the masking of every message would turn a `user:p%40ss@host` into `user:***@host`.
fn check_url(flag: &str, url: Option<&str>) -> Result<()> {
    let Some((_, rest)) = url.and_then(|u| u.split_once("://")) else {
        return Ok(());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if authority.matches('@').count() > 1 {
        return Err(Error::Config(format!(
            "{flag} {}: the part before the host holds more than one `@`; an `@` in a user \
             name or password must be written `%40` (a password p@ss as p%40ss)",
            crate::redact::mask(url.unwrap_or_default())
        )));
    }
    Ok(())
}

/// A connection string from its flag (or variable) or from its file; both at once is an
/// error, so it is always clear which one is in force.
fn url_setting(
    value: Option<String>,
    file: Option<&std::path::Path>,
    flag: &str,
) -> Result<Option<String>> {
    let Some(path) = file else {
        return Ok(value);
    };
    if value.is_some() {
        return Err(Error::Config(format!(
            "both {flag} and {flag}-file are set (flags or environment): give only one"
        )));
    }
    read_secret_file(path, &format!("{flag}-file")).map(Some)
}

/// Reads a connection string from `path`, refusing a file that its group or others may
/// read. Error messages name the file, never its content.
pub fn read_secret_file(path: &std::path::Path, what: &str) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Config(format!("{what} {shown}: cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(Error::Config(format!("{what} {shown}: not a regular file")));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{what} {shown}: group or others may access it (mode {mode:04o}); it holds a \
             password, so make it readable by its owner only: chmod 600 {shown}"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("{what} {shown}: cannot read it: {e}")))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Config(format!("{what} {shown}: the file is empty")));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod url_file_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file_with(mode: u32, text: &str) -> tempfile::TempPath {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f.into_temp_path()
    }

    #[test]
    fn settings_print_without_passwords() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "elt",
            "--master-url=postgres://u:hunter2@h/db",
            "--analytics-url=postgres://u:hunter3@h/a",
            "--redis-url=redis://:hunter4@h:6379/0",
            "status",
        ])
        .unwrap();
        let s = Settings::from_args(&cli.global).unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter"), "{printed}");
        assert!(
            printed.contains("postgres://u:") && printed.contains("@h/db"),
            "{printed}"
        );
        assert_eq!(s.master_url().unwrap(), "postgres://u:hunter2@h/db");
    }

    #[test]
    fn owner_only_file_is_read_and_trimmed() {
        let p = file_with(0o600, "postgres://u:secret@h/db\n");
        let v = url_setting(None, Some(&p), "--master-url").unwrap();
        assert_eq!(v.as_deref(), Some("postgres://u:secret@h/db"));
        let p = file_with(0o400, " redis://h/0 ");
        assert_eq!(read_secret_file(&p, "x").unwrap(), "redis://h/0");
    }

    #[test]
    fn file_readable_by_others_is_refused_without_showing_it() {
        for mode in [0o644, 0o640, 0o604, 0o660, 0o700 | 0o001] {
            let p = file_with(mode, "postgres://u:secret@h/db");
            let e = url_setting(None, Some(&p), "--master-url").unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let msg = e.to_string();
            assert!(msg.contains("chmod 600"), "{msg}");
            assert!(!msg.contains("secret"), "{msg}");
        }
    }

    #[test]
    fn flag_and_file_together_or_bad_files_are_errors() {
        let p = file_with(0o600, "x");
        let e = url_setting(Some("y".into()), Some(&p), "--redis-url").unwrap_err();
        assert!(e.to_string().contains("--redis-url-file"), "{e}");
        let p = file_with(0o600, "  \n");
        assert!(
            read_secret_file(&p, "x")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let e = read_secret_file(std::path::Path::new("/nonexistent/url"), "x").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            url_setting(Some("y".into()), None, "--x")
                .unwrap()
                .as_deref(),
            Some("y")
        );
    }
}
