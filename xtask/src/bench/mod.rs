//! `cargo xtask bench ...`: benchmarks whose results go to docs/benchmarks.md.
//!
//! - `latency`: the tracer's latency figures against fio's clat, on this machine's disk.
//! - `overhead`: fio IOPS untraced, under the tracer and under an equivalent bpftrace script,
//!   in stock-kernel VMs (test/vm/bench-overhead.sh), with per-program BPF run times.
//! - `ablation`: what each part of the tracer's page records costs (test/vm/bench-ablation.sh).

mod ablation;
mod latency;
mod overhead;
mod report;

pub use ablation::{ablation, AblationBenchArgs};
pub use latency::{latency, LatencyBenchArgs};
pub use overhead::{overhead, OverheadBenchArgs};
