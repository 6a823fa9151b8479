//! Layout of `COUNTERS`, the map every counter of the programs lives in.
//!
//! It is a plain array map created with `BPF_F_MMAPABLE`: one block of [`SLOTS`] u64 per
//! possible CPU (the loader sizes it), a program adding atomically to its CPU's block. Userspace
//! reads it through a shared mapping, without a system call: cheaper than hundreds of
//! `bpf(BPF_MAP_LOOKUP_ELEM)` per interval, and no such call raises the CPU's `bpf_prog_active`
//! (bpf_disable_instrumentation) while it copies, during which the kernel skips perf tracepoint
//! and kprobe programs on that CPU (for as long as the reader is preempted in there, on a kernel
//! with full or lazy preemption).

use crate::{chain::CHAIN_DEBUG_KINDS, LOST_REASONS, PROBE_COUNT};

/// `hits` of a probe, at `HITS + ProbeId` (times the probe ran and counted something).
pub const HITS: u32 = 0;
/// `amount` of a probe, at `AMOUNT + ProbeId` (what it counts: see `ProbeRole`).
pub const AMOUNT: u32 = HITS + PROBE_COUNT;
/// Events not recorded, at `LOST + LostReason`.
pub const LOST: u32 = AMOUNT + PROBE_COUNT;
/// Invocations a backup of the chain took care of, at `RESCUED + ProbeId`.
pub const RESCUED: u32 = LOST + LOST_REASONS;
/// Chain diagnostics, at `CHAIN_DEBUG + ProbeId * CHAIN_DEBUG_KINDS + ChainDebug`.
pub const CHAIN_DEBUG: u32 = RESCUED + PROBE_COUNT;
/// Records the programs put into the `EVENTS` ring buffer, at `SUBMITTED` (with the reader's
/// count of the records it took out, this tells that every record not counted lost was read).
pub const SUBMITTED: u32 = CHAIN_DEBUG + PROBE_COUNT * CHAIN_DEBUG_KINDS;
/// Learned call paths (crate::stack_path), at `PATHS + PathCount`.
pub const PATHS: u32 = SUBMITTED + 1;
/// Slots in use in a CPU's block.
pub const USED: u32 = PATHS + PATH_COUNTS;

/// What the pin records' learned call paths did (counters at `PATHS + PathCount`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathCount {
    /// A record took its stack from a learned path (no walk).
    Reused = 0,
    /// A reuse walked the stack anyway to check the path (one in `REWALK_EVERY`).
    Rewalked,
    /// ... and the walk disagreed with the path (which was dropped).
    Wrong,
    /// Samples sent to learn a path from.
    Sampled,
    /// Records that walked the stack because no path matched.
    Walked,
    /// ... of which a learned path was there but its checks no longer held (a word it checks
    /// changed: the call came by another way, or the path checks a stale copy).
    Stale,
    /// Learned paths dropped because their checks failed for
    /// [`crate::stack_path::STALE_RUN_MAX`] calls in a row (the next call learns its key again).
    Relearned,
}

/// Kinds of [`PathCount`].
pub const PATH_COUNTS: u32 = PathCount::Relearned as u32 + 1;
/// u64 slots per CPU: whole cache lines, so that CPUs never write to the same line.
pub const SLOTS: u32 = USED.div_ceil(8) * 8;
/// CPUs the map is declared for; the loader sets the real count of possible CPUs.
pub const DECLARED_CPUS: u32 = 64;
