//! Developer tasks: set-up, eBPF build, stock-kernel VMs, the test suite.
//!
//! `cargo xtask --help` lists them. Everything here is host tooling; nothing is shipped.

mod apt;
mod console;
mod cpio;
mod initramfs;
mod kernels;
mod vm;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "tracer developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download (or reuse) the pinned stock kernels of xtask/kernels.toml and extract them.
    Kernels {
        /// Only these kernels (names from kernels.toml); all when omitted.
        names: Vec<String>,
    },
    /// Boot a stock Debian kernel in QEMU and run COMMAND as root inside it.
    Vm(vm::VmArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<i32> = match cli.cmd {
        Cmd::Kernels { names } => kernels::fetch_all(&names).map(|_| 0),
        Cmd::Vm(args) => vm::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::exit(2);
        }
    }
}

/// The workspace root (the parent of xtask/).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}
