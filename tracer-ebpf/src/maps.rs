//! Maps shared by all programs, and the counting helpers over them.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_probe_read_kernel},
    macros::map,
    maps::{Array, RingBuf},
    EbpfContext,
};
use tracer_common::{counters, LostReason, Offsets, ProbeId, EVENTS_DEFAULT_BYTES, OFFSET_UNKNOWN};

/// Records for userspace (`RecordType`-tagged: latency events and bio records); the loader
/// sets its size (`--ring-buffer`).
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_DEFAULT_BYTES, 0);

/// Kernel struct offsets from BTF, patched by the loader.
#[unsafe(no_mangle)]
static OFFSETS: Offsets = Offsets::UNKNOWN;

/// Data waiting in `EVENTS` above which a submit wakes the reader at once (patched by the
/// loader to a quarter of the ring buffer's size).
#[unsafe(no_mangle)]
static EVENTS_WAKE_AT: u64 = (EVENTS_DEFAULT_BYTES / 4) as u64;

/// Flags for submitting a record: no wakeup (the reader polls every few milliseconds and a
/// wakeup per record would cost a context switch per I/O), unless the buffer is filling up.
#[inline(always)]
pub fn submit_flags() -> u64 {
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    const BPF_RB_AVAIL_DATA: u64 = 0;
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    let wake_at = unsafe { core::ptr::read_volatile(&EVENTS_WAKE_AT) };
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= wake_at {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Counts a record put into `EVENTS` (tracer_common::counters::SUBMITTED).
#[inline(always)]
pub fn submitted() {
    bump(counters::SUBMITTED, 1);
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

/// `BPF_F_MMAPABLE`: userspace reads the counters through a shared mapping.
const MMAPABLE: u32 = 1 << 10;

/// Every counter, a block of `counters::SLOTS` per CPU (tracer_common::counters).
#[map(name = "COUNTERS")]
static COUNTERS: Array<u64> = Array::with_max_entries(counters::DECLARED_CPUS * counters::SLOTS, MMAPABLE);

/// Adds `v` to slot `at` (tracer_common::counters) of this CPU's block. A program runs on one
/// CPU from start to end (migration is off), and the add is atomic: a thread preempted in a
/// program, or an interrupt nested in it, cannot lose another's add.
#[inline(always)]
pub fn bump(at: u32, v: u64) -> bool {
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    match COUNTERS.get_ptr_mut(cpu.wrapping_mul(counters::SLOTS).wrapping_add(at)) {
        Some(p) => {
            // SAFETY: a u64 of the map's value area.
            unsafe { add(p, v) };
            true
        }
        None => false,
    }
}

/// Counts one hit of `probe` that observed `amount`.
#[inline(always)]
pub fn count(probe: ProbeId, amount: u64) {
    if !bump(counters::HITS + probe as u32, 1) {
        lost(LostReason::BadIndex);
    }
    bump(counters::AMOUNT + probe as u32, amount);
}

/// Counts an event that could not be recorded.
#[inline(always)]
pub fn lost(reason: LostReason) {
    bump(counters::LOST + reason as u32, 1);
}

/// Argument `n` of the traced function, read with bpf_get_func_arg (fentry/fexit). Unlike a
/// direct context read, it takes any argument type: the verifier refuses direct reads of
/// pointer-to-pointer arguments such as `struct page **pages` ("type PTR is not a struct").
#[inline(always)]
pub fn func_arg<C: EbpfContext>(ctx: &C, n: u32) -> u64 {
    let mut value = 0u64;
    // SAFETY: the helper writes one u64 through a valid pointer to a local; it checks `n`.
    let rc = unsafe { aya_ebpf::helpers::generated::bpf_get_func_arg(ctx.as_ptr(), n, &mut value) };
    if rc == 0 {
        value
    } else {
        0
    }
}
