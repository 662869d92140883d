//! Stopping a run on SIGTERM or SIGINT (systemd's `TimeoutStopSec`, `timeout(1)`, Ctrl-C):
//! the signal is remembered, the queries in flight on M and A are cancelled so the job's
//! transactions end within moments, and the run checks `requested()` between its steps.
//! A second signal ends the process at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// The signal that asked the run to stop (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// What cancels the statement in flight on one database session.
type Canceller = Box<dyn Fn() + Send>;

static CANCELLERS: Mutex<Vec<(u64, Canceller)>> = Mutex::new(Vec::new());

/// A signal that stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
}

impl Signal {
    fn from_raw(n: i32) -> Option<Signal> {
        match n {
            SIGTERM => Some(Signal::Term),
            SIGINT => Some(Signal::Int),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        }
    }

    /// The exit status of a run stopped by this signal (128 + its number, as shells report).
    pub fn exit_code(self) -> i32 {
        128 + match self {
            Signal::Term => SIGTERM,
            Signal::Int => SIGINT,
        }
    }
}

/// The signal received, if a stop was requested.
pub fn requested() -> Option<Signal> {
    Signal::from_raw(SIGNAL.load(Ordering::SeqCst))
}

/// `Err` once a stop was requested: the job unwinds (`?` makes it the run's error), its
/// transactions roll back.
pub fn check() -> Result<(), Signal> {
    match requested() {
        Some(sig) => Err(sig),
        None => Ok(()),
    }
}

/// Starts listening for SIGTERM and SIGINT (once per process).
pub fn install() -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("elt-signals".into())
        .spawn(move || {
            for raw in signals.forever() {
                let Some(sig) = Signal::from_raw(raw) else {
                    continue;
                };
                if SIGNAL.swap(raw, Ordering::SeqCst) != 0 {
                    // asked twice: stop now; the servers roll back what is open
                    std::process::exit(sig.exit_code());
                }
                if let Ok(list) = CANCELLERS.lock() {
                    for (_, cancel) in list.iter() {
                        cancel();
                    }
                }
            }
        })?;
    Ok(())
}

/// Cancels the statement in flight of a session while registered; dropping it unregisters.
pub struct CancelGuard(u64);

/// Registers `cancel` to run when a stop is requested.
pub fn on_stop(cancel: Canceller) -> CancelGuard {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut list) = CANCELLERS.lock() {
        list.push((id, cancel));
    }
    CancelGuard(id)
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Ok(mut list) = CANCELLERS.lock() {
            list.retain(|(id, _)| *id != self.0);
        }
    }
}
