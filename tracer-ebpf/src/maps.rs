//! Maps shared by all programs, and the counting helpers over them.

use core::intrinsics::{atomic_and, atomic_or, atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
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

/// Invocations a probe's program chain has taken care of on one CPU, each named by the address
/// of its context (the trampoline's or the tracepoint's argument block: the same for every
/// program of one invocation, different for any invocation that nests in it) and the thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Handled {
    ctx: [u64; HANDLED_SLOTS],
    thread: [u64; HANDLED_SLOTS],
    /// When each slot was written (bpf_ktime_get_ns).
    at: [u64; HANDLED_SLOTS],
    /// Bit i set while slot i is in use; claimed and released atomically, since a thread can be
    /// preempted between reading and writing it.
    busy: u64,
}

/// Invocations in flight at once on one CPU: process context preempted inside a program (the
/// kernel runs tracing programs with migration, not preemption, disabled), softirq, hardirq
/// and NMI nest well within this. An entry whose last twin was itself skipped stays behind;
/// when all slots are in use, the oldest entry, such a leftover, is reused.
const HANDLED_SLOTS: usize = 8;

/// Per-CPU, indexed by ProbeId: see [`Handled`].
#[map(name = "HANDLED")]
static HANDLED: PerCpuArray<Handled> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// Per-CPU, indexed by ProbeId: invocations a twin took care of because the kernel skipped the
/// programs before it (the loader subtracts these from the primary's recursion_misses).
#[map(name = "RESCUED")]
static RESCUED: PerCpuArray<u64> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// Defines a probe's program and its twins on the same target. The kernel skips a tracing
/// program for a call that arrives while that same program is running on the CPU (an interrupt,
/// or in process context another thread that preempted it: recursion_misses); a twin is a
/// second program on the target that does the same work, only for the invocations no program
/// before it in the chain took care of (see [`as_primary`], [`as_twin`]).
macro_rules! with_twin {
    // One program of a chain: `$run` is as_primary, or as_twin with whether it is the last.
    (@program #[$attr:meta] $name:ident, $id:expr, $run:ident($($last:literal)?), |$ctx:ident: $ty:ty| $body:expr) => {
        #[$attr]
        pub fn $name($ctx: $ty) -> u32 {
            $crate::maps::$run($id, aya_ebpf::EbpfContext::as_ptr(&$ctx) as u64, $($last,)? || $body)
        }
    };
    // With three twins (the system call tracepoints).
    (#[$attr:meta] $primary:ident, $twin:ident, $twin2:ident, $twin3:ident, $id:expr, |$ctx:ident: $ty:ty| $body:expr) => {
        with_twin!(@program #[$attr] $primary, $id, as_primary(), |$ctx: $ty| $body);
        with_twin!(@program #[$attr] $twin, $id, as_twin(false), |$ctx: $ty| $body);
        with_twin!(@program #[$attr] $twin2, $id, as_twin(false), |$ctx: $ty| $body);
        with_twin!(@program #[$attr] $twin3, $id, as_twin(true), |$ctx: $ty| $body);
    };
    // With a second twin, for targets hot enough that calls nest two deep.
    (#[$attr:meta] $primary:ident, $twin:ident, $twin2:ident, $id:expr, |$ctx:ident: $ty:ty| $body:expr) => {
        with_twin!(@program #[$attr] $primary, $id, as_primary(), |$ctx: $ty| $body);
        with_twin!(@program #[$attr] $twin, $id, as_twin(false), |$ctx: $ty| $body);
        with_twin!(@program #[$attr] $twin2, $id, as_twin(true), |$ctx: $ty| $body);
    };
    (#[$attr:meta] $primary:ident, $twin:ident, $id:expr, |$ctx:ident: $ty:ty| $body:expr) => {
        with_twin!(@program #[$attr] $primary, $id, as_primary(), |$ctx: $ty| $body);
        with_twin!(@program #[$attr] $twin, $id, as_twin(true), |$ctx: $ty| $body);
    };
}

/// The slot of `probe`'s [`Handled`] that holds (ctx, thread), if any.
#[inline(always)]
fn handled_slot(h: *mut Handled, ctx: u64, thread: u64) -> Option<usize> {
    for i in 0..HANDLED_SLOTS {
        // SAFETY: `h` is this CPU's entry; i < HANDLED_SLOTS.
        if unsafe { (*h).ctx[i] == ctx && (*h).thread[i] == thread } {
            return Some(i);
        }
    }
    None
}

/// Records that the invocation at `ctx` is taken care of: in its slot if it has one (a leftover
/// of an earlier invocation at the same place), else in a free one, else in the oldest.
#[inline(always)]
fn mark_handled(h: *mut Handled, ctx: u64, thread: u64) {
    let slot = handled_slot(h, ctx, thread).unwrap_or_else(|| {
        let mut free = HANDLED_SLOTS;
        for i in 0..HANDLED_SLOTS {
            let bit = 1u64 << i;
            // SAFETY: this CPU's entry; `busy` is only ever changed atomically.
            if unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*h).busy, bit) } & bit == 0 {
                free = i;
                break;
            }
        }
        if free < HANDLED_SLOTS {
            return free;
        }
        let mut oldest = 0;
        for i in 1..HANDLED_SLOTS {
            // SAFETY: this CPU's entry; i, oldest < HANDLED_SLOTS.
            if unsafe { (*h).at[i] < (*h).at[oldest] } {
                oldest = i;
            }
        }
        oldest
    });
    if slot < HANDLED_SLOTS {
        // SAFETY: this CPU's entry; slot < HANDLED_SLOTS; the helper has no preconditions.
        unsafe {
            (*h).ctx[slot] = ctx;
            (*h).thread[slot] = thread;
            (*h).at[slot] = bpf_ktime_get_ns();
        }
    }
}

/// Frees slot `i`.
#[inline(always)]
fn unmark(h: *mut Handled, i: usize) {
    if i < HANDLED_SLOTS {
        // SAFETY: this CPU's entry; i < HANDLED_SLOTS; `busy` is only ever changed atomically.
        unsafe {
            (*h).ctx[i] = 0;
            (*h).thread[i] = 0;
            atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*h).busy, !(1u64 << i));
        }
    }
}

/// Runs `f` as the primary program of `probe` for the invocation at `ctx`, first recording
/// that the invocation is taken care of, for the twins that run after it.
#[inline(always)]
pub fn as_primary(probe: ProbeId, ctx: u64, f: impl FnOnce() -> u32) -> u32 {
    if let Some(h) = HANDLED.get_ptr_mut(probe as u32) {
        mark_handled(h, ctx, bpf_get_current_pid_tgid());
    }
    f()
}

/// Runs `f` as a twin of `probe` for the invocation at `ctx`, only when no program before it
/// took care of the invocation (the kernel skipped them all); counts that as rescued. The
/// `last` twin of the chain clears the invocation's entry; an earlier twin leaves it, or makes
/// it, for the twins after it.
#[inline(always)]
pub fn as_twin(probe: ProbeId, ctx: u64, last: bool, f: impl FnOnce() -> u32) -> u32 {
    let Some(h) = HANDLED.get_ptr_mut(probe as u32) else { return 0 };
    let thread = bpf_get_current_pid_tgid();
    if let Some(i) = handled_slot(h, ctx, thread) {
        if last {
            unmark(h, i);
        }
        return 0;
    }
    if !last {
        mark_handled(h, ctx, thread);
    }
    if let Some(p) = RESCUED.get_ptr_mut(probe as u32) {
        // SAFETY: this CPU's slot.
        unsafe { add(p, 1) };
    }
    f()
}

/// Adds `v` to the per-CPU counter at `p` atomically: a thread preempted between the load and
/// the store of a plain `+=` would overwrite what a program of another thread added meanwhile.
///
/// # Safety
/// `p` points to a u64 of a map value.
#[inline(always)]
pub unsafe fn add(p: *mut u64, v: u64) {
    // SAFETY: the caller's; the result is unused, so this is the BPF v1 atomic add.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
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
        Some(slot) => unsafe { add(slot, pages) },
        None => lost(LostReason::BadIndex),
    }
}

/// Counts one hit of `probe` that observed `amount`.
#[inline(always)]
pub fn count(probe: ProbeId, amount: u64) {
    match PROBE_STATS.get_ptr_mut(probe as u32) {
        // SAFETY: per-CPU slot, changed only atomically.
        Some(stat) => unsafe {
            add(&raw mut (*stat).hits, 1);
            add(&raw mut (*stat).amount, amount);
        },
        None => lost(LostReason::BadIndex),
    }
}

/// Counts an event that could not be recorded.
#[inline(always)]
pub fn lost(reason: LostReason) {
    if let Some(slot) = LOST.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot.
        unsafe { add(slot, 1) };
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
            add(&raw mut (*stat).pages_pinned, pinned);
            add(&raw mut (*stat).pages_unpinned, unpinned);
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
