//! Layout of `COUNTERS`, the map every counter of the programs lives in.
//!
//! It is a plain array map created with `BPF_F_MMAPABLE`: one block of [`SLOTS`] u64 per
//! possible CPU (the loader sizes it), a program adding atomically to its CPU's block. Userspace
//! reads it through a shared mapping, without a system call. That matters for exactness, not only
//! for cost: every `bpf(BPF_MAP_LOOKUP_ELEM)` raises the CPU's `bpf_prog_active` while it copies
//! (bpf_disable_instrumentation), and a reader preempted in there (full or lazy preemption) makes
//! the kernel skip the perf tracepoint programs (the `syscalls:*` ones) of every thread that runs
//! on that CPU meanwhile. Reading hundreds of per-CPU slots at each interval opened that window
//! hundreds of times a second (sid: `sys_enter`/`sys_exit` runs skipped).

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
/// Slots in use in a CPU's block.
pub const USED: u32 = CHAIN_DEBUG + PROBE_COUNT * CHAIN_DEBUG_KINDS;
/// u64 slots per CPU: whole cache lines, so that CPUs never write to the same line.
pub const SLOTS: u32 = USED.div_ceil(8) * 8;
/// CPUs the map is declared for; the loader sets the real count of possible CPUs.
pub const DECLARED_CPUS: u32 = 64;
