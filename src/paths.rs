//! Paths as messages and logs show them: absolute, so a line means the same whatever the
//! working directory of the run was.

use std::path::{Path, PathBuf};

/// `p` made absolute (symbolic links resolved where the path exists).
pub fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| std::path::absolute(p).unwrap_or(p.to_path_buf()))
}
