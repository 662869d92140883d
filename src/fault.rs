//! Fault injection for the fault suite: `--fault-point POINT[:ACTION]` (hidden, and compiled
//! only with the `fault-injection` feature, which `cargo test` turns on and release builds
//! leave off) stops a run exactly between two steps: `kill` (the default) makes the process
//! kill itself with SIGKILL, as `kill -9` from outside would; `pause` makes it wait until the
//! test removes the file `<log-dir>/fault-POINT.paused`, so tests order concurrent events
//! without sleeping.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A place in a job's run where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// after each batch of extracted rows
    Extract,
    /// after rows were written to A (each load flush)
    Load,
    /// before the keys of M and A are compared
    Delete,
    /// right before A commits
    BeforeCommit,
    /// right after A committed, before any state is written
    AfterCommit,
    /// after the row hashes were written to Redis, before the watermark
    State,
}

impl FaultPoint {
    pub const ALL: [FaultPoint; 6] = [
        FaultPoint::Extract,
        FaultPoint::Load,
        FaultPoint::Delete,
        FaultPoint::BeforeCommit,
        FaultPoint::AfterCommit,
        FaultPoint::State,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::Extract => "extract",
            FaultPoint::Load => "load",
            FaultPoint::Delete => "delete",
            FaultPoint::BeforeCommit => "before-commit",
            FaultPoint::AfterCommit => "after-commit",
            FaultPoint::State => "state",
        }
    }
}

impl fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happens at the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    Kill,
    Pause,
}

/// One injected fault: where and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub point: FaultPoint,
    pub action: FaultAction,
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (point, action) = s.split_once(':').unwrap_or((s, "kill"));
        let point = FaultPoint::ALL
            .into_iter()
            .find(|p| p.name() == point)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultPoint::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown fault point `{point}` (one of {})",
                    names.join(", ")
                )
            })?;
        let action = match action {
            "kill" => FaultAction::Kill,
            "pause" => FaultAction::Pause,
            other => return Err(format!("unknown fault action `{other}` (kill or pause)")),
        };
        Ok(Fault { point, action })
    }
}

/// The fault of this process, if any, and where pause files go.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    fault: Option<Fault>,
    dir: PathBuf,
}

impl Faults {
    pub fn new(fault: Option<Fault>, dir: PathBuf) -> Self {
        Faults { fault, dir }
    }

    /// Injects the fault if it is set for `point`.
    pub fn reach(&self, point: FaultPoint) {
        match self.fault {
            Some(f) if f.point == point => match f.action {
                FaultAction::Kill => kill(point),
                FaultAction::Pause => self.pause(point),
            },
            _ => {}
        }
    }

    /// Waits until the test removes the pause file (or the run is asked to stop).
    fn pause(&self, point: FaultPoint) {
        let file = self.dir.join(format!("fault-{point}.paused"));
        // written aside and renamed, so a test that sees the file also reads the pid in it
        let aside = self.dir.join(format!("fault-{point}.paused.tmp"));
        let written = std::fs::write(&aside, std::process::id().to_string())
            .and_then(|()| std::fs::rename(&aside, &file));
        if let Err(e) = written {
            log::warn!("fault injection: cannot write {}: {e}", file.display());
            return;
        }
        log::warn!(
            "fault injection: paused at `{point}` until {} is removed",
            file.display()
        );
        while file.exists() && crate::stop::requested().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

fn kill(point: FaultPoint) -> ! {
    log::warn!("fault injection: killing the process at `{point}`");
    let pid = std::process::id().to_string();
    // SIGKILL from outside the process: no destructor, no unwinding, no flush.
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    // If `kill` is unavailable, abort is the closest equivalent.
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_points_parse_with_their_action() {
        assert_eq!(
            "load".parse::<Fault>(),
            Ok(Fault {
                point: FaultPoint::Load,
                action: FaultAction::Kill
            })
        );
        assert_eq!(
            "before-commit:pause".parse::<Fault>().map(|f| f.action),
            Ok(FaultAction::Pause)
        );
        assert!(
            "lod"
                .parse::<Fault>()
                .unwrap_err()
                .contains("extract, load")
        );
        assert!("load:sleep".parse::<Fault>().is_err());
    }
}
