//! Maps shared by all programs, and the counting helpers over them.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_probe_read_kernel},
    macros::map,
    maps::{Array, RingBuf},
    EbpfContext,
};
use tracer_common::{counters, LostReason, Offsets, ProbeId, EVENTS_DEFAULT_BYTES, OFFSET_UNKNOWN};

/// `BPF_F_NO_COMMON_LRU` for the LRU maps: each CPU evicts from its own list, without the
/// common list's lock that every insert of the default mode takes. An entry removed on another
/// CPU than the one that inserted it goes back to its own CPU's list.
pub const NO_COMMON_LRU: u32 = 2;

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

/// A CPU asks how full the ring buffer is once per this many records it submits.
const FILL_CHECK_EVERY: u64 = 8;
const _: () = assert!(FILL_CHECK_EVERY.is_power_of_two());

/// Flags for submitting a record: no wakeup (the reader polls every few milliseconds and a
/// wakeup per record would cost a context switch per I/O), unless the buffer is filling up.
/// How full it is costs a helper call, so each CPU asks for one record in
/// [`FILL_CHECK_EVERY`] (counted from its own count of records submitted): past the threshold
/// (a quarter of the buffer), the reader is woken within a few records per CPU.
#[inline(always)]
pub fn submit_flags() -> u64 {
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    const BPF_RB_AVAIL_DATA: u64 = 0;
    if counted_here(counters::SUBMITTED) & (FILL_CHECK_EVERY - 1) != 0 {
        return BPF_RB_NO_WAKEUP;
    }
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

/// The offsets' global itself, for its fields read one at a time (`member!`, crate::typed: each
/// a constant to the verifier, which BTF-typed loads need): a
/// read of the whole struct is a load per field (44), volatile, wherever it is taken.
#[inline(always)]
pub fn offsets_ptr() -> *const Offsets {
    &raw const OFFSETS
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

/// Slot `at` (tracer_common::counters) of this CPU's block.
#[inline(always)]
fn counter_here(at: u32) -> Option<*mut u64> {
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    COUNTERS.get_ptr_mut(cpu.wrapping_mul(counters::SLOTS).wrapping_add(at))
}

/// Slot `at` (tracer_common::counters) of this CPU's block, read once (0 when unreadable).
#[inline(always)]
pub fn counted_here(at: u32) -> u64 {
    // SAFETY: a u64 of the map's value area.
    counter_here(at).map_or(0, |p| unsafe { core::ptr::read_volatile(p) })
}

/// Adds `v` to slot `at` (tracer_common::counters) of this CPU's block. A program runs on one
/// CPU from start to end (migration is off), and the add is atomic: a thread preempted in a
/// program, or an interrupt nested in it, cannot lose another's add.
#[inline(always)]
pub fn bump(at: u32, v: u64) -> bool {
    match counter_here(at) {
        Some(p) => {
            // SAFETY: a u64 of the map's value area.
            unsafe { add(p, v) };
            true
        }
        None => false,
    }
}

/// Counts one hit of `probe` that observed `amount` (an amount of 0, which most probes of the
/// block layer always pass, adds nothing: no second counter is touched).
#[inline(always)]
pub fn count(probe: ProbeId, amount: u64) {
    if !bump(counters::HITS + probe as u32, 1) {
        lost(LostReason::BadIndex);
    }
    if amount != 0 {
        bump(counters::AMOUNT + probe as u32, amount);
    }
}

/// Counts an event that could not be recorded.
#[inline(always)]
pub fn lost(reason: LostReason) {
    bump(counters::LOST + reason as u32, 1);
}

/// Words of a trampoline's frame read above an fentry program's context: the arguments (6 at
/// most in registers, plus the return value's slot when fexit programs share the trampoline),
/// the saved frame pointer and the two return addresses.
const TRAMPOLINE_WORDS: usize = 10;

/// Kernel text and modules lie above this address on x86-64.
const KERNEL_TEXT: u64 = 0xffff_ffff_8000_0000;

/// For an fentry program: the traced function's return address into its caller, read from the
/// trampoline's frame instead of walking the stack (the walk is most of a release record's
/// cost). The trampoline is called from the traced function's first instruction, so above the
/// saved arguments (the context) lie the trampoline's saved frame pointer, its return address
/// into the traced function (a few bytes past the function's address, which
/// `bpf_get_func_ip` gives), and then the traced function's own return address. The word
/// after the one that points just past the function is the caller's; None when no word does
/// (another trampoline layout): the caller then walks the stack.
#[inline(always)]
pub fn fentry_caller<C: EbpfContext>(ctx: &C) -> Option<u64> {
    // SAFETY: helper for tracing programs; the context is the trampoline's.
    let ip = unsafe { aya_ebpf::helpers::generated::bpf_get_func_ip(ctx.as_ptr()) };
    let mut words = [0u64; TRAMPOLINE_WORDS];
    if crate::kload::direct() {
        // SAFETY: direct loads are on; `words` has room for TRAMPOLINE_WORDS <= CAST_WORDS
        // words. The first word is an argument, which may be 0: the copy's answer says nothing.
        let _ = unsafe { crate::kload::copy_words::<TRAMPOLINE_WORDS>(words.as_mut_ptr(), ctx.as_ptr() as u64) };
    } else {
        // SAFETY: the helper writes at most the local array's size and checks the source.
        let rc = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                words.as_mut_ptr() as *mut core::ffi::c_void,
                (8 * TRAMPOLINE_WORDS) as u32,
                ctx.as_ptr(),
            )
        };
        if rc != 0 {
            return None;
        }
    }
    if ip < KERNEL_TEXT {
        return None;
    }
    // Unrolled, constant indices: the 6.1 verifier walks a loop here in every program of every
    // chain (minutes of start-up under TCG).
    let at = |i: usize| {
        let back = words[i];
        (back > ip && back - ip <= 16 && words[i + 1] >= KERNEL_TEXT).then_some(words[i + 1])
    };
    at(2).or_else(|| at(3)).or_else(|| at(4)).or_else(|| at(5)).or_else(|| at(6)).or_else(|| at(7)).or_else(|| at(8))
}

/// For a kprobe at a function's first instruction: its return address into its caller, the
/// word the stack pointer points at. None when unreadable or not kernel text.
#[inline(always)]
pub fn kprobe_caller<C: EbpfContext>(ctx: &C) -> Option<u64> {
    let sp: u64 = read_at(ctx.as_ptr() as u64, tracer_common::pt_regs::SP)?;
    read_at::<u64>(sp, 0).filter(|&ip| ip >= KERNEL_TEXT)
}

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
