//! Maps shared by all programs, and the counting helpers over them.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap, RingBuf},
};
use tracer_common::{
    LostReason, Offsets, PinTotal, ProbeId, ProbeStat, ProcStat, LOST_REASONS, MAX_PROCS, OFFSET_UNKNOWN,
    PIN_TOTALS, PROBE_COUNT,
};

/// Bytes of the event ring buffer (a power of two multiple of the page size).
const EVENTS_BYTES: u32 = 8 << 20;

/// Records for userspace (`RecordType`-tagged: latency events and bio records).
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// Kernel struct offsets from BTF, patched by the loader.
#[unsafe(no_mangle)]
static OFFSETS: Offsets = Offsets::UNKNOWN;

/// Data waiting in `EVENTS` above which a submit wakes the reader at once.
const WAKE_AT_BYTES: u64 = (EVENTS_BYTES / 4) as u64;

/// Flags for submitting a record: no wakeup (the reader polls every few milliseconds and a
/// wakeup per record would cost a context switch per I/O), unless the buffer is filling up.
#[inline(always)]
pub fn submit_flags() -> u64 {
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    const BPF_RB_AVAIL_DATA: u64 = 0;
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKE_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
pub fn offsets() -> Offsets {
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// Reads a `T` at `base + off`; None when the offset is unknown or the read faults.
#[inline(always)]
pub fn read_at<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == OFFSET_UNKNOWN {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address and reports faults.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

/// Per-CPU, indexed by ProbeId: how many programs of the probe are doing its work on this CPU
/// (the primary, and twins acting for calls the kernel skipped it for).
#[map(name = "ACTIVE")]
static ACTIVE: PerCpuArray<u32> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// Per-CPU, indexed by ProbeId: nested calls a backup program recorded for its primary.
#[map(name = "RESCUED")]
static RESCUED: PerCpuArray<u64> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// Defines a probe's program and its twin on the same target (see [`as_backup`]): the twin
/// does the same work, only for the calls the kernel skips the program for.
macro_rules! with_twin {
    // With a second twin, for targets hot enough that calls nest two deep.
    (#[$attr:meta] $primary:ident, $twin:ident, $twin2:ident, $id:expr, |$ctx:ident: $ty:ty| $body:expr) => {
        with_twin!(#[$attr] $primary, $twin, $id, |$ctx: $ty| $body);

        #[$attr]
        pub fn $twin2($ctx: $ty) -> u32 {
            $crate::maps::as_backup_at($id, 2, || $body)
        }
    };
    (#[$attr:meta] $primary:ident, $twin:ident, $id:expr, |$ctx:ident: $ty:ty| $body:expr) => {
        #[$attr]
        pub fn $primary($ctx: $ty) -> u32 {
            $crate::maps::as_primary($id, || $body)
        }

        #[$attr]
        pub fn $twin($ctx: $ty) -> u32 {
            $crate::maps::as_backup($id, || $body)
        }
    };
}

/// Runs `f` as the primary program of `probe`, counted active on this CPU meanwhile.
#[inline(always)]
pub fn as_primary(probe: ProbeId, f: impl FnOnce() -> u32) -> u32 {
    acting(probe, f)
}

#[inline(always)]
fn acting(probe: ProbeId, f: impl FnOnce() -> u32) -> u32 {
    let depth = ACTIVE.get_ptr_mut(probe as u32);
    if let Some(p) = depth {
        // SAFETY: this CPU's slot.
        unsafe { *p += 1 };
    }
    let rc = f();
    if let Some(p) = depth {
        // SAFETY: this CPU's slot.
        unsafe { *p = (*p).saturating_sub(1) };
    }
    rc
}

/// Runs `f` as the twin at `level` (1, 2, ...) of `probe`: only for a call for which the kernel
/// skipped the primary and the twins below, which it does exactly while they are active on
/// this CPU (at least `level` of them). Counts the call as rescued.
#[inline(always)]
pub fn as_backup_at(probe: ProbeId, level: u32, f: impl FnOnce() -> u32) -> u32 {
    // SAFETY: this CPU's slot.
    let deep_enough = ACTIVE.get_ptr_mut(probe as u32).is_some_and(|p| unsafe { *p } >= level);
    if !deep_enough {
        return 0;
    }
    if let Some(p) = RESCUED.get_ptr_mut(probe as u32) {
        // SAFETY: this CPU's slot.
        unsafe { *p += 1 };
    }
    acting(probe, f)
}

/// The first twin of `probe` (see [`as_backup_at`]).
#[inline(always)]
pub fn as_backup(probe: ProbeId, f: impl FnOnce() -> u32) -> u32 {
    as_backup_at(probe, 1, f)
}

#[inline(always)]
pub fn current_tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

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

/// Argument `n` of the traced function, read with bpf_get_func_arg (fentry/fexit). Unlike a
/// direct context read, it takes any argument type: the verifier refuses direct reads of
/// pointer-to-pointer arguments such as `struct page **pages` ("type PTR is not a struct").
#[inline(always)]
pub fn func_arg<C: EbpfContext>(ctx: &C, n: u32) -> u64 {
    let mut value = 0u64;
    // SAFETY: the helper writes one u64 through a valid pointer to a local; it checks `n`.
    let rc = unsafe { aya_ebpf::helpers::generated::bpf_get_func_arg(ctx.as_ptr(), n, &mut value) };
    if rc == 0 { value } else { 0 }
}
