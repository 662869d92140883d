//! Build script: records the git commit for `elt --version` (`ELT_GIT_COMMIT` overrides it,
//! for builds from a source archive), or `unknown` when there is no git; never fails the build.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ELT_GIT_COMMIT");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let manifest = Path::new(&manifest);
    let from_env = std::env::var("ELT_GIT_COMMIT")
        .ok()
        .filter(|s| !s.trim().is_empty());
    // Only this crate's own repository counts: a crate unpacked inside some other repository
    // (a home directory under git, a vendored tree) must not report that repository's commit.
    let own_repo = git(&["rev-parse", "--show-toplevel"], manifest)
        .and_then(|top| std::fs::canonicalize(top).ok())
        .zip(std::fs::canonicalize(manifest).ok())
        .is_some_and(|(top, here)| top == here);
    let mut commit = from_env;
    if own_repo {
        if commit.is_none() {
            commit = git(&["rev-parse", "--short=10", "HEAD"], manifest);
        }
        // rebuild when HEAD moves: a commit, a checkout, a fetch that updates packed refs
        if let Some(git_dir) = git(&["rev-parse", "--git-dir"], manifest) {
            let git_dir = manifest.join(git_dir);
            for p in ["HEAD", "refs", "packed-refs"] {
                let p = git_dir.join(p);
                if p.exists() {
                    println!("cargo:rerun-if-changed={}", p.display());
                }
            }
        }
    }
    println!(
        "cargo:rustc-env=ELT_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}
