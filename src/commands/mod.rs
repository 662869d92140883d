//! One file per subcommand; each takes `Settings` and returns the process exit status.

pub mod completions;
pub mod new;
pub mod reset_state;
pub mod run;
pub mod status;
pub mod validate;
pub mod verify;
