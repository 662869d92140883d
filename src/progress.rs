//! The live progress line of `run`/`run-job` on interactive terminals: rows extracted and
//! loaded, rate and stage, drawn on standard error with indicatif, and never shown under cron,
//! systemd, pipes or `--json`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading rows from M, diffing them against Redis and loading changed ones in batches.
    Extract,
    /// Writing the last batch into A.
    Load,
    /// Finding and deleting rows that M no longer has.
    Delete,
    /// Committing A and writing hashes and the watermark to Redis.
    State,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Extract => "extracting",
            Stage::Load => "loading",
            Stage::Delete => "deleting",
            Stage::State => "saving state",
        }
    }
}

/// One progress report from the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    /// Rows returned by `SELECT_SOURCE_SQL` so far.
    pub rows_read: u64,
    /// Rows written to A so far.
    pub rows_loaded: u64,
}

type Listener = Box<dyn Fn(Progress) + Send + Sync>;

/// Where the pipeline reports its progress; does nothing unless a display listens, so the
/// pipeline never has to know whether anyone is watching.
#[derive(Default)]
pub struct Observer(Option<Listener>);

impl Observer {
    /// Nobody listens.
    pub fn none() -> Self {
        Observer(None)
    }

    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        Observer(Some(Box::new(f)))
    }

    pub fn tell(&self, stage: Stage, rows_read: u64, rows_loaded: u64) {
        if let Some(f) = &self.0 {
            f(Progress {
                stage,
                rows_read,
                rows_loaded,
            });
        }
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Observer(listening)"
        } else {
            "Observer(none)"
        })
    }
}

/// Whether to draw progress. Only a person watching a terminal wants it: cron and systemd give
/// no terminal, a pipe or file must receive clean text, `--json` promises one document, `-q`
/// asks for silence, and `TERM=dumb` cannot redraw a line.
pub fn should_show(
    stdout_is_tty: bool,
    stderr_is_tty: bool,
    json: bool,
    quiet: bool,
    term: Option<&str>,
) -> bool {
    stdout_is_tty && stderr_is_tty && !json && !quiet && term.is_some_and(|t| t != "dumb")
}

/// [`should_show`] for this process.
pub fn wanted(json: bool, quiet: bool) -> bool {
    should_show(
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
        json,
        quiet,
        std::env::var("TERM").ok().as_deref(),
    )
}

/// The bar being drawn now, so log lines written to standard error can step around it.
static CURRENT: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` (which writes to standard error) with the progress line hidden, so a warning does
/// not end up glued to the bar.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = CURRENT.lock().ok().and_then(|g| g.clone());
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// The progress line of one job; cleared when dropped.
pub struct JobProgress {
    bar: ProgressBar,
}

impl JobProgress {
    /// Starts drawing the line of `job` on standard error.
    pub fn start(job: &str) -> JobProgress {
        let style = ProgressStyle::with_template(
            "{spinner} {prefix}: {msg} · {pos} rows read · {rate} · {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} rows/s", s.per_sec());
        });
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(8));
        bar.set_style(style);
        bar.set_prefix(job.to_string());
        bar.set_message(Stage::Extract.label());
        // A steady tick keeps the spinner and the elapsed time moving during long statements
        // (a big deletion anti-join) when no rows arrive.
        bar.enable_steady_tick(Duration::from_millis(250));
        if let Ok(mut g) = CURRENT.lock() {
            *g = Some(bar.clone());
        }
        JobProgress { bar }
    }

    /// The observer that feeds this line.
    pub fn observer(&self) -> Observer {
        let bar = self.bar.clone();
        Observer::new(move |p| {
            bar.set_position(p.rows_read);
            bar.set_message(format!("{} · {} loaded", p.stage.label(), p.rows_loaded));
        })
    }
}

impl Drop for JobProgress {
    fn drop(&mut self) {
        if let Ok(mut g) = CURRENT.lock() {
            *g = None;
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_only_to_a_person_at_a_terminal() {
        let xterm = Some("xterm-256color");
        assert!(should_show(true, true, false, false, xterm));
        // cron, systemd, `| tee`, `> file`: stdout is not a terminal
        assert!(!should_show(false, true, false, false, xterm));
        // `2> file`: the line would fill a file with redraws
        assert!(!should_show(true, false, false, false, xterm));
        // cron gives no terminal at all, and usually no TERM either
        assert!(!should_show(false, false, false, false, None));
        assert!(!should_show(true, true, true, false, xterm), "--json");
        assert!(!should_show(true, true, false, true, xterm), "-q");
        assert!(!should_show(true, true, false, false, Some("dumb")));
        assert!(!should_show(true, true, false, false, None));
    }

    #[test]
    fn observer_without_listener_does_nothing_and_with_one_reports() {
        Observer::none().tell(Stage::Load, 1, 1);
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let o = Observer::new(move |p| s.lock().unwrap().push(p));
        o.tell(Stage::Extract, 10, 2);
        o.tell(Stage::Delete, 10, 3);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[1],
            Progress {
                stage: Stage::Delete,
                rows_read: 10,
                rows_loaded: 3
            }
        );
    }
}
