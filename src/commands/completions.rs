//! `elt completions SHELL` and `elt man`: shell completion scripts and man pages generated from
//! the clap definitions, so they never drift from the real flags.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Result, io};

/// Writes `bytes` to standard output; a reader that stopped early (`| head`) is not an error.
fn print(bytes: &[u8], what: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(io(what.to_string())(e)),
        _ => Ok(0),
    }
}

/// Prints the completion script for `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "elt", &mut script);
    print(&script, "writing the completion script")
}

/// Prints `elt.1` on standard output, or writes `elt.1` and one page per subcommand
/// (`elt-run.1`, ...) into `dir`.
pub fn man(dir: Option<&Path>) -> Result<i32> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(io(format!("creating the folder {}", dir.display())))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(io(format!("writing man pages into {}", dir.display())))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(io("rendering the man page"))?;
            return print(&page, "writing the man page");
        }
    }
    Ok(0)
}
