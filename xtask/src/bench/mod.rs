//! `cargo xtask bench ...`: benchmarks whose results go to docs/benchmarks.md.
//!
//! - `latency`: the tracer's latency figures against fio's clat, on this machine's disk.
//! - `ledger`: the userspace engine's events/s replaying a recorded stream, and its memory per
//!   outstanding pinned page.
//! - `overhead`: fio IOPS untraced, under the tracer and under an equivalent bpftrace script,
//!   in stock-kernel VMs (test/vm/bench-overhead.sh), with per-program BPF run times.
//! - `ablation`: what each part of the tracer's page records costs (test/vm/bench-ablation.sh).
//! - `profile`: where the CPU goes on a 4 KiB read, untraced and traced, by kernel stack
//!   samples (test/vm/bench-profile.sh): dispatch, program bodies, what they call.
//! - `ab`: two tracer builds against each other and bpftrace in one boot (test/vm/bench-ab.sh),
//!   the way a kernel-side change is judged under TCG.

mod ab;
mod ablation;
mod latency;
mod ledger;
mod overhead;
mod profile;
mod report;

pub use ab::{ab, AbBenchArgs};
pub use ablation::{ablation, AblationBenchArgs};
pub use latency::{latency, LatencyBenchArgs};
pub use ledger::{ledger, LedgerBenchArgs};
pub use overhead::{overhead, OverheadBenchArgs};
pub use profile::{profile, ProfileBenchArgs};
