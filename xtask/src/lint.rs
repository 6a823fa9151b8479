//! `cargo xtask fmt` and `cargo xtask clippy`: the style gates `./x test` runs first.
//!
//! tracer-ebpf is its own workspace (built for bpfel-unknown-none by tracer/build.rs), so
//! rustfmt runs twice: over the host workspace, and over tracer-ebpf. rustfmt.toml at the root
//! holds the style for both; clippy.toml and `[workspace.lints]` the lints.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::workspace_root;

/// rustfmt over the host workspace and tracer-ebpf (`--check`: fail on any difference).
pub fn fmt(check: bool) -> Result<()> {
    let mut args = vec!["fmt", "--all"];
    if check {
        args.extend(["--", "--check"]);
    }
    run("cargo fmt (workspace)", Command::new("cargo").args(&args).current_dir(workspace_root()))?;
    run("cargo fmt (tracer-ebpf)", Command::new("cargo").args(&args).current_dir(workspace_root().join("tracer-ebpf")))
}

/// clippy over every target of the host workspace, warnings denied. tracer-ebpf is not
/// linted here: it builds only for the BPF target, with Debian's rustc-web (tracer/build.rs),
/// which comes without clippy.
pub fn clippy() -> Result<()> {
    run(
        "cargo clippy",
        Command::new("cargo")
            .args(["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"])
            .current_dir(workspace_root()),
    )
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{what}: cannot start"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
