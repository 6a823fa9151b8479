//! Maps shared by all programs, and the counting helpers over them.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};
use tracer_common::{
    LostReason, PinTotal, ProbeId, ProbeStat, ProcStat, LOST_REASONS, MAX_PROCS, PIN_TOTALS,
    PROBE_COUNT,
};

#[map(name = "PROBE_STATS")]
static PROBE_STATS: PerCpuArray<ProbeStat> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

#[map(name = "PROC_STATS")]
static PROC_STATS: PerCpuHashMap<u32, ProcStat> = PerCpuHashMap::with_max_entries(MAX_PROCS, 0);

#[map(name = "LOST")]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_REASONS, 0);

#[map(name = "PIN_TOTALS")]
static PIN_TOTALS_MAP: PerCpuArray<u64> = PerCpuArray::with_max_entries(PIN_TOTALS, 0);

/// Adds to one of the exact FOLL_PIN totals.
#[inline(always)]
pub fn count_total(which: PinTotal, pages: u64) {
    match PIN_TOTALS_MAP.get_ptr_mut(which as u32) {
        // SAFETY: per-CPU slot.
        Some(slot) => unsafe { *slot += pages },
        None => lost(LostReason::BadIndex),
    }
}

/// Counts one hit of `probe` that observed `amount`.
#[inline(always)]
pub fn count(probe: ProbeId, amount: u64) {
    match PROBE_STATS.get_ptr_mut(probe as u32) {
        // SAFETY: per-CPU slot; programs do not nest on one CPU for the same slot.
        Some(stat) => unsafe {
            (*stat).hits += 1;
            (*stat).amount += amount;
        },
        None => lost(LostReason::BadIndex),
    }
}

/// Counts an event that could not be recorded.
#[inline(always)]
pub fn lost(reason: LostReason) {
    if let Some(slot) = LOST.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot.
        unsafe { *slot += 1 };
    }
}

/// Adds FOLL_PIN pages to the current process's entry, creating it on first use.
/// When the map is full the pages still count in the totals; the loss is counted and logged.
#[inline(always)]
pub fn count_process<C: EbpfContext>(ctx: &C, pinned: u64, unpinned: u64) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let mut entry = PROC_STATS.get_ptr_mut(tgid);
    if entry.is_none() {
        let mut fresh = ProcStat::ZERO;
        if let Ok(comm) = bpf_get_current_comm() {
            fresh.comm = comm;
        }
        // BPF_NOEXIST: another CPU may have created it meanwhile; then just use it.
        let _ = PROC_STATS.insert(tgid, fresh, 1);
        entry = PROC_STATS.get_ptr_mut(tgid);
    }
    match entry {
        // SAFETY: per-CPU value of this CPU.
        Some(stat) => unsafe {
            (*stat).pages_pinned += pinned;
            (*stat).pages_unpinned += unpinned;
        },
        None => {
            lost(LostReason::ProcMapFull);
            aya_log_ebpf::warn!(ctx, "PROC_STATS full: tgid {} counted in totals only", tgid);
        }
    }
}
