//! Developer tasks: set-up, eBPF build, stock-kernel VMs, the test suite.
//!
//! `cargo xtask --help` lists them. Everything here is host tooling; nothing is shipped.

mod apt;
mod bench;
mod console;
mod cpio;
mod initramfs;
mod kernels;
mod large_folios;
mod lint;
mod oversubscribed;
mod report_browser;
mod suite;
mod terminal;
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
    /// The whole test suite: host tests, host live run, harness tests, VM tests on every kernel.
    Test(suite::TestArgs),
    /// rustfmt over every crate (tracer-ebpf too); with --check, fail on any difference instead.
    Fmt {
        /// Report the differences and fail instead of rewriting.
        #[arg(long)]
        check: bool,
    },
    /// clippy over the workspace (every target) and tracer-ebpf, warnings denied.
    Clippy,
    /// Benchmarks (results go to docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
    /// `tracer run` inside a stock-kernel VM with a demo workload: fio plus a process that keeps
    /// pages pinned (io_uring registered buffers) past the end of the trace.
    Demo {
        /// Kernel to boot (a name from kernels.toml).
        #[arg(long, default_value = "6.12")]
        kernel: String,
        /// Seconds to trace.
        #[arg(long, default_value_t = 20)]
        duration: u32,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Tracer latency percentiles against fio's clat percentiles for the same runs.
    Latency(bench::LatencyBenchArgs),
    /// fio IOPS untraced, under the tracer and under bpftrace, in stock-kernel VMs, with the
    /// BPF run time per program.
    Overhead(bench::OverheadBenchArgs),
    /// The userspace engine on one core: events/s replaying a large recorded stream, and memory
    /// per outstanding pinned page.
    Ledger(bench::LedgerBenchArgs),
    /// What each part of the tracer's page records costs: the tracer once per part left out,
    /// in stock-kernel VMs, with the BPF run time per program.
    Ablation(bench::AblationBenchArgs),
    /// Where the CPU goes on a 4 KiB read, untraced and traced, from kernel stack samples in
    /// stock-kernel VMs: the programs' dispatch, their bodies, what they call, the rest.
    Profile(bench::ProfileBenchArgs),
    /// Two tracer builds against each other and bpftrace in one stock-kernel VM boot: IOPS over
    /// untraced, BPF time an I/O, each program's ns a run side by side.
    Ab(bench::AbBenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<i32> = match cli.cmd {
        Cmd::Kernels { names } => kernels::fetch_all(&names).map(|_| 0),
        Cmd::Vm(args) => vm::run(args),
        Cmd::Test(args) => suite::test(&args),
        Cmd::Fmt { check } => lint::fmt(check).map(|_| 0),
        Cmd::Clippy => lint::clippy().map(|_| 0),
        Cmd::Bench { which: BenchCmd::Latency(args) } => bench::latency(&args),
        Cmd::Bench { which: BenchCmd::Overhead(args) } => bench::overhead(&args),
        Cmd::Bench { which: BenchCmd::Ledger(args) } => bench::ledger(&args),
        Cmd::Bench { which: BenchCmd::Ablation(args) } => bench::ablation(&args),
        Cmd::Bench { which: BenchCmd::Profile(args) } => bench::profile(&args),
        Cmd::Bench { which: BenchCmd::Ab(args) } => bench::ab(&args),
        Cmd::Demo { kernel, duration } => suite::demo(&kernel, duration),
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
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives inside the workspace").to_path_buf()
}
