//! Fault injection for the fault suite: `--fault-point NAME` (hidden) makes the process
//! kill itself with SIGKILL at that point of a job, as `kill -9` from outside would, so
//! tests can stop a run exactly between two steps.

use crate::settings::Settings;

/// Kills the process with SIGKILL if `settings` names `point`.
pub fn point(settings: &Settings, point: &str) {
    if settings.fault_point.as_deref() != Some(point) {
        return;
    }
    log::warn!("fault injection: killing the process at `{point}`");
    let pid = std::process::id().to_string();
    // SIGKILL from outside the process: no destructor, no unwinding, no flush.
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    // If `kill` is unavailable, abort is the closest equivalent.
    std::process::abort();
}
