//! Puts the git commit the binary is built from into `CHATGATE_GIT_COMMIT`,
//! which `--version` prints; `unknown` outside a git checkout (a crate
//! tarball) or without git.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| text.trim().to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CHATGATE_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    // A commit moves the branch HEAD names, not HEAD itself, so both are
    // watched (and packed-refs, where git may move the branch); in a
    // worktree `.git` is a file, so git says where they are. A path that
    // does not exist would make every build rerun this script.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
