//! Maps shared by all programs, and the counting helpers over them.

use core::{
    ffi::c_void,
    intrinsics::{atomic_cxchg, atomic_xadd, AtomicOrdering},
};

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_smp_processor_id,
        bpf_ktime_get_ns,
        bpf_map_lookup_percpu_elem, bpf_probe_read_kernel,
    },
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
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

/// Programs in a probe's chain at most: the primary and its twins (see [`with_twin!`]).
const CHAIN: usize = tracer_common::MAX_TWINS + 1;

/// The state of a probe's program chain on one CPU: the invocations it has taken care of, each
/// named by the address of its context (the trampoline's or the tracepoint's argument block:
/// the same for every program of one invocation, different for any invocation that nests in
/// it) and the thread, and which of its programs are running on the CPU now.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Handled {
    ctx: [u64; HANDLED_SLOTS],
    thread: [u64; HANDLED_SLOTS],
    /// When each slot was taken (bpf_ktime_get_ns, bit 0 cleared), 0 when free; bit 0 set once
    /// no program of the chain will look at the slot any more. A slot belongs to whoever swaps
    /// this word from the value it read (compare-and-swap): a thread can be preempted between
    /// reading and writing a slot, and another thread on the CPU take it meanwhile.
    at: [u64; HANDLED_SLOTS],
    /// The positions of the chain that ran for each slot's invocation, bit per position. A
    /// program finding a slot where a program at or after its own position already ran has
    /// found a leftover of an earlier invocation at the same place (the programs of one run in
    /// order), not a mark of its own.
    progress: [u64; HANDLED_SLOTS],
    /// Invocations inside each program of the chain on this CPU (preempted, or interrupted),
    /// by position: while one is, the kernel skips that program for any other invocation.
    running: [u64; CHAIN],
}

/// Invocations in flight at once on one CPU: process context preempted inside a program (the
/// kernel runs tracing programs with migration, not preemption, disabled), softirq, hardirq
/// and NMI nest well within this.
const HANDLED_SLOTS: usize = 8;

/// Age after which a slot can be taken again although nobody freed it: the last program of a chain frees its invocation's slot, and a program that sees that
/// every program after it is busy on the CPU (so the kernel will skip them) releases it early,
/// but an invocation can still leave one behind when the last program is skipped for it (an
/// interrupt that comes while that program is entering or leaving on the CPU). One
/// invocation's programs run within microseconds unless the thread is preempted between them.
const STALE_NS: u64 = 50_000_000;

/// Bit 0 of [`Handled::at`]: the slot can be reused.
const DONE: u64 = 1;

/// Bit 1 of [`Handled::at`]: the invocation ran on an interrupt stack.
const IRQ_STACK: u64 = 2;

/// Per-CPU, indexed by ProbeId: see [`Handled`].
#[map(name = "HANDLED")]
static HANDLED: PerCpuArray<Handled> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// Per-CPU, indexed by ProbeId: invocations a twin took care of because the kernel skipped the
/// programs before it (the loader subtracts these from the primary's recursion_misses).
#[map(name = "RESCUED")]
static RESCUED: PerCpuArray<u64> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// Diagnostics of the twin chains (printed with TRACER_DEBUG_TWINS), per probe, at
/// [probe * 8 + k]: k = 0 marks found on another CPU (the thread migrated between two programs
/// of one invocation), 1 marks that found no free slot, 2 slots of nested invocations freed by
/// the invocation they nested in; 3 marks kept in OVERFLOW, 4 found there, 5 that could not be
/// kept there; 6 slots taken for leftovers (see [`last_one_busy`]); 7 spare.
#[map(name = "TWIN_DEBUG")]
static TWIN_DEBUG: PerCpuArray<u64> = PerCpuArray::with_max_entries(PROBE_COUNT * 8, 0);

/// Index 0: the loader's stage of the twin chains. 0 while it attaches them: primaries act
/// without marking, twins act for nothing. 1 once every chain is attached: primaries mark,
/// twins free marks but still act for nothing. 2 a moment later, when no invocation that began
/// before stage 1 can be left: twins act for the invocations nobody marked.
#[map(name = "CHAIN_STAGE")]
static CHAIN_STAGE: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
fn twin_debug(probe: u32, k: u32) {
    if let Some(p) = TWIN_DEBUG.get_ptr_mut(probe * 8 + k) {
        // SAFETY: this CPU's slot.
        unsafe { add(p, 1) };
    }
}

#[inline(always)]
fn chain_stage() -> u64 {
    // SAFETY: a u64 of the map, written by the loader only.
    CHAIN_STAGE.get_ptr(0).map_or(0, |p| unsafe { core::ptr::read_volatile(p) })
}

/// Defines a probe's program and its twins on the same target. The kernel skips a tracing
/// program for a call that arrives while that same program is running on the CPU (an interrupt,
/// or in process context another thread that preempted it: recursion_misses); a twin is one
/// more program on the target that does the same work, only for the invocations no program
/// before it in the chain took care of (see [`as_primary`], [`as_twin`]). Every probe has
/// 3 of them, `nested_<base>`, `nested2_<base>` and `nested3_<base>` (5 with `long:`): with
/// preemptible programs (lazy preemption, 7.x), several threads of one CPU can be inside the
/// programs of one chain at once, and the kernel loses an invocation only when it skipped all
/// of them.
macro_rules! with_twin {
    // One program of a chain: `$run` is as_primary, or as_twin with its position.
    (@program #[$attr:meta] $name:ident, $id:expr, $run:ident($($arg:literal)*), |$ctx:ident: $ty:ty| $body:expr) => {
        #[$attr]
        pub fn $name($ctx: $ty) -> u32 {
            $crate::maps::$run($id, aya_ebpf::EbpfContext::as_ptr(&$ctx) as u64, $($arg,)* || $body)
        }
    };
    (#[$attr:meta] $primary:ident, $base:ident, $id:expr, |$ctx:ident: $ty:ty| $body:expr) => {
        paste::paste! {
            with_twin!(@program #[$attr] $primary, $id, as_primary(4), |$ctx: $ty| $body);
            with_twin!(@program #[$attr] [<nested_ $base>], $id, as_twin(1 4), |$ctx: $ty| $body);
            with_twin!(@program #[$attr] [<nested2_ $base>], $id, as_twin(2 4), |$ctx: $ty| $body);
            with_twin!(@program #[$attr] [<nested3_ $base>], $id, as_twin(3 4), |$ctx: $ty| $body);
        }
    };
    // A chain of 5 twins, for a target hit so often that threads preempted inside its programs
    // can hold 4 of them on a CPU at once (tracer_common::ProbeDef::twins).
    (long: #[$attr:meta] $primary:ident, $base:ident, $id:expr, |$ctx:ident: $ty:ty| $body:expr) => {
        paste::paste! {
            with_twin!(@program #[$attr] $primary, $id, as_primary(6), |$ctx: $ty| $body);
            with_twin!(@program #[$attr] [<nested_ $base>], $id, as_twin(1 6), |$ctx: $ty| $body);
            with_twin!(@program #[$attr] [<nested2_ $base>], $id, as_twin(2 6), |$ctx: $ty| $body);
            with_twin!(@program #[$attr] [<nested3_ $base>], $id, as_twin(3 6), |$ctx: $ty| $body);
            with_twin!(@program #[$attr] [<nested4_ $base>], $id, as_twin(4 6), |$ctx: $ty| $body);
            with_twin!(@program #[$attr] [<nested5_ $base>], $id, as_twin(5 6), |$ctx: $ty| $body);
        }
    };
}

const _: () = assert!(CHAIN == 6, "with_twin!(long: ...) defines 5 twins");

/// The slot of `h` in use that holds (ctx, thread), if any.
#[inline(always)]
fn handled_slot(h: *mut Handled, ctx: u64, thread: u64) -> Option<usize> {
    for i in 0..HANDLED_SLOTS {
        // SAFETY: `h` is an entry of HANDLED; i < HANDLED_SLOTS.
        if unsafe { (*h).ctx[i] == ctx && (*h).thread[i] == thread } && stamp(h, i) != 0 {
            return Some(i);
        }
    }
    None
}

/// Whether slot `i` of `h` is a mark of the invocation whose program at `pos` runs now: no
/// program at `pos` or after ran for it. Records that the program at `pos` did, if so.
#[inline(always)]
fn progress(h: *mut Handled, i: usize, pos: usize) -> bool {
    if i >= HANDLED_SLOTS {
        return false;
    }
    // SAFETY: an entry of HANDLED; i < HANDLED_SLOTS; only the programs of the slot's
    // invocation write it, one after the other.
    unsafe {
        let ran = (*h).progress[i];
        if ran >> pos != 0 {
            return false;
        }
        (*h).progress[i] = ran | 1 << pos;
    }
    true
}

/// Whether the last program that ran for slot `i`'s invocation is held on this CPU now by
/// another invocation (a thread preempted inside it, or the task an interrupt came in on): the
/// kernel then skips it for every other invocation, so it most likely skipped it for the one at
/// hand too, and the slot is a leftover of an earlier invocation at the same place (one whose
/// later programs were all skipped), not a mark.
#[inline(always)]
fn last_one_busy(h: *mut Handled, probe: ProbeId, i: usize) -> bool {
    if i >= HANDLED_SLOTS {
        return false;
    }
    // SAFETY: an entry of HANDLED; i < HANDLED_SLOTS.
    let ran = unsafe { (*h).progress[i] };
    let mut last = 0;
    for j in 0..CHAIN {
        if ran >> j & 1 != 0 {
            last = j;
        }
    }
    // SAFETY: an entry of HANDLED; last < CHAIN.
    let busy = ran != 0 && last < CHAIN && unsafe { core::ptr::read_volatile(&raw const (*h).running[last]) } != 0;
    if busy {
        twin_debug(probe as u32, 6);
    }
    busy
}

/// `at` of slot `i` of `h`.
#[inline(always)]
fn stamp(h: *mut Handled, i: usize) -> u64 {
    if i >= HANDLED_SLOTS {
        return 0;
    }
    // SAFETY: an entry of HANDLED; i < HANDLED_SLOTS.
    unsafe { core::ptr::read_volatile(&raw const (*h).at[i]) }
}

/// Swaps `at` of slot `i` of `h` from `seen` to `new`: true when this program did it.
#[inline(always)]
fn swap_stamp(h: *mut Handled, i: usize, seen: u64, new: u64) -> bool {
    if i >= HANDLED_SLOTS {
        return false;
    }
    // SAFETY: an entry of HANDLED; i < HANDLED_SLOTS; `at` is only ever changed atomically.
    unsafe { atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(&raw mut (*h).at[i], seen, new).1 }
}

/// Kernel stacks are this size and aligned to it (x86-64 without KASAN); with vmapped stacks a
/// guard page follows each, so twice this above a task's stack base is still its own.
const THREAD_SIZE: u64 = 16 << 10;

/// Whether `ctx` (a trampoline's or a tracepoint's argument block, on the stack the invocation
/// runs on) lies on the current task's stack: Some(false) for an invocation on an interrupt
/// stack (hardirq, softirq), None when the kernel's `task_struct.stack` offset is unknown.
#[inline(always)]
fn on_task_stack(ctx: u64) -> Option<bool> {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let base: u64 = read_at(task, offsets().task_stack)?;
    // The verifier allows no arithmetic on a context pointer: a copy through the read helper is
    // a plain number to it.
    // SAFETY: reads a local of this frame.
    let at: u64 = unsafe { bpf_probe_read_kernel(&raw const ctx) }.ok()?;
    Some(base != 0 && at >= base && at - base < 2 * THREAD_SIZE)
}

/// Records that the invocation at `ctx` is taken care of: in its slot if it has one (a leftover
/// of an earlier invocation at the same place), else in a free, released or expired one, or in
/// the slot of an invocation that is over for sure: one made on an interrupt stack when this
/// program runs on a task stack (interrupts on a CPU end before it returns to a task, and
/// cannot be preempted or migrate). Returns the slot and its stamp. With none (more than
/// HANDLED_SLOTS invocations in flight on the CPU), a twin may act again for the invocation:
/// the loader reports and counts that as lost.
#[inline(always)]
fn mark_handled(h: *mut Handled, probe: ProbeId, pos: usize, ctx: u64, thread: u64) -> Option<(usize, u64)> {
    let on_task = on_task_stack(ctx);
    // SAFETY: helper without preconditions.
    let mut now = unsafe { bpf_ktime_get_ns() } & !(DONE | IRQ_STACK);
    if on_task == Some(false) {
        now |= IRQ_STACK;
    }
    if let Some(i) = handled_slot(h, ctx, thread) {
        if swap_stamp(h, i, stamp(h, i), now) {
            // SAFETY: this program owns slot i now.
            unsafe { (*h).progress[i & (HANDLED_SLOTS - 1)] = 1 << pos };
            return Some((i, now));
        }
    }
    for i in 0..HANDLED_SLOTS {
        let seen = stamp(h, i);
        let free = seen == 0
            || seen & DONE != 0
            || (seen < now && now - seen > STALE_NS)
            || (seen & IRQ_STACK != 0 && on_task == Some(true));
        if free && swap_stamp(h, i, seen, now) {
            // SAFETY: this program owns slot i now.
            unsafe {
                (*h).ctx[i] = ctx;
                (*h).thread[i] = thread;
                (*h).progress[i] = 1 << pos;
            }
            return Some((i, now));
        }
    }
    twin_debug(probe as u32, 1);
    None
}

/// Frees slot `i` of `h` (an entry of any CPU: a thread can migrate between two programs of
/// one invocation).
#[inline(always)]
fn unmark(h: *mut Handled, i: usize) {
    if i < HANDLED_SLOTS {
        // SAFETY: an entry of HANDLED; i < HANDLED_SLOTS.
        unsafe {
            (*h).ctx[i] = 0;
            (*h).thread[i] = 0;
            core::ptr::write_volatile(&raw mut (*h).at[i], 0);
        }
    }
}

/// Frees the slots of `thread` on this CPU stamped after slot `i`, its invocation's: between
/// the programs of one invocation the thread runs nothing but interrupts, so those are of
/// invocations that nested in it and are over. Their last program was skipped when it came
/// while this invocation's was entering: nothing else would free them.
#[inline(always)]
fn sweep_nested(h: *mut Handled, probe: ProbeId, i: usize, thread: u64) {
    let mine = stamp(h, i) & !(DONE | IRQ_STACK);
    for j in 0..HANDLED_SLOTS {
        // SAFETY: an entry of HANDLED; j < HANDLED_SLOTS.
        if j != i && unsafe { (*h).thread[j] } == thread {
            let seen = stamp(h, j);
            if seen & !(DONE | IRQ_STACK) > mine && swap_stamp(h, j, seen, 0) {
                twin_debug(probe as u32, 2);
            }
        }
    }
}

/// Counts the program at `pos` of the chain in (`delta` 1) or out (`delta` u64::MAX, i.e. -1).
#[inline(always)]
fn running(h: *mut Handled, pos: usize, delta: u64) {
    if pos < CHAIN {
        // SAFETY: an entry of HANDLED; pos < CHAIN.
        unsafe { add(&raw mut (*h).running[pos], delta) };
    }
}

/// Whether every program after `pos` is running on this CPU: the kernel will skip them all for
/// the invocation at hand, so none of them would free its mark. (Checked before the program's
/// work, not after: the programs those invocations are in stay busy while this one runs on the
/// CPU, and the verifier then checks the work once.)
#[inline(always)]
fn rest_busy(h: *mut Handled, pos: usize, len: usize) -> bool {
    for j in 1..CHAIN {
        // SAFETY: an entry of HANDLED; j < CHAIN.
        if j > pos && j < len && unsafe { core::ptr::read_volatile(&raw const (*h).running[j]) } == 0 {
            return false;
        }
    }
    true
}

/// Releases slot `i` (stamped `at`) early when every program after `pos` is busy (see
/// [`rest_busy`]).
#[inline(always)]
fn release_if_rest_busy(h: *mut Handled, pos: usize, len: usize, i: usize, at: u64) {
    if rest_busy(h, pos, len) {
        swap_stamp(h, i, at, at | DONE);
    }
}

/// An invocation's mark kept in [`OVERFLOW`] (the CPU's slots were all in use).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MarkKey {
    ctx: u64,
    thread: u64,
    probe: u64,
}

/// Its stamp and progress, as in [`Handled`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Mark {
    at: u64,
    progress: u64,
}

/// Marks that found every slot of their CPU in use (threads preempted inside the chain, slots
/// left behind): shared by all CPUs, so a thread that migrates finds its mark here too. A
/// leftover lives until evicted, and is told apart by its progress and its age as in the slots.
#[map(name = "OVERFLOW")]
static OVERFLOW: LruHashMap<MarkKey, Mark> = LruHashMap::with_max_entries(4096, 0);

/// Marks the invocation in [`OVERFLOW`] for the programs after `pos`, unless they are all busy.
#[inline(always)]
fn mark_overflow(h: *mut Handled, probe: ProbeId, pos: usize, len: usize, key: &MarkKey) {
    if rest_busy(h, pos, len) {
        let _ = OVERFLOW.remove(key);
        return;
    }
    // SAFETY: helper without preconditions.
    let at = unsafe { bpf_ktime_get_ns() };
    if OVERFLOW.insert(key, &Mark { at, progress: 1 << pos }, 0).is_ok() {
        twin_debug(probe as u32, 3);
    } else {
        twin_debug(probe as u32, 5);
    }
}

/// Whether [`OVERFLOW`] holds the mark of the invocation whose program at `pos` runs now (not a
/// leftover: no program at or after `pos` ran for it, and younger than [`STALE_NS`]). Frees it
/// when this program is the last to look at it.
#[inline(always)]
fn overflow_mark(h: *mut Handled, probe: ProbeId, pos: usize, len: usize, key: &MarkKey) -> bool {
    let Some(m) = OVERFLOW.get_ptr_mut(key) else { return false };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a value of OVERFLOW; only the programs of the mark's invocation write it, one
    // after the other.
    let ran = unsafe { (*m).progress };
    let at = unsafe { (*m).at };
    if ran >> pos != 0 || (at < now && now - at > STALE_NS) {
        return false;
    }
    twin_debug(probe as u32, 4);
    if pos + 1 == len || rest_busy(h, pos, len) {
        let _ = OVERFLOW.remove(key);
    } else {
        // SAFETY: as above.
        unsafe { (*m).progress = ran | 1 << pos };
    }
    true
}

/// Runs `f` as the primary program of `probe` for the invocation at `ctx`, first recording
/// that the invocation is taken care of, for the twins that run after it.
#[inline(always)]
pub fn as_primary(probe: ProbeId, ctx: u64, len: usize, f: impl FnOnce() -> u32) -> u32 {
    let Some(h) = HANDLED.get_ptr_mut(probe as u32) else { return f() };
    running(h, 0, 1);
    if chain_stage() >= 1 {
        let thread = bpf_get_current_pid_tgid();
        match mark_handled(h, probe, 0, ctx, thread) {
            Some((i, at)) => release_if_rest_busy(h, 0, len, i, at),
            None => mark_overflow(h, probe, 0, len, &MarkKey { ctx, thread, probe: probe as u64 }),
        }
    }
    // Nothing of the bookkeeping is live across the work: the verifier checks it once.
    let r = f();
    running(h, 0, u64::MAX);
    r
}

/// CPUs searched at most for a mark a thread left before it migrated (see [`find_elsewhere`]);
/// a thread that moved to a CPU beyond these shows as a double ("twins acted ..."), counted as
/// lost, never silently.
const SEARCH_CPUS: u32 = 512;

/// Possible CPUs of the running kernel, set by the loader (the verifier then walks only that
/// many iterations of the search).
#[unsafe(no_mangle)]
static NR_CPUS: u32 = SEARCH_CPUS;

/// The entry of `probe` on another CPU that holds (ctx, thread), and its slot. A trampoline or a
/// faultable tracepoint disables migration for each program, not for the whole chain: a thread
/// preempted between two programs of one invocation can continue on another CPU, where the
/// mark of the programs before is not. Marks are keyed by thread, so one found on another CPU
/// is this thread's own.
#[inline(always)]
fn find_elsewhere(probe: ProbeId, ctx: u64, thread: u64) -> Option<(*mut Handled, usize)> {
    // SAFETY: helper without preconditions.
    let here = unsafe { bpf_get_smp_processor_id() };
    let key = probe as u32;
    // SAFETY: a plain u32 the loader may have set.
    let cpus = unsafe { core::ptr::read_volatile(&raw const NR_CPUS) };
    for cpu in 0..SEARCH_CPUS {
        if cpu >= cpus {
            break;
        }
        if cpu == here {
            continue;
        }
        // SAFETY: HANDLED is a per-CPU array of `Handled`; the helper returns NULL past the
        // last possible CPU.
        let h = unsafe {
            bpf_map_lookup_percpu_elem(
                &raw const HANDLED as *mut c_void,
                &raw const key as *const c_void,
                cpu,
            )
        } as *mut Handled;
        if h.is_null() {
            break;
        }
        if let Some(i) = handled_slot(h, ctx, thread) {
            twin_debug(probe as u32, 0);
            return Some((h, i));
        }
    }
    None
}

/// Runs `f` as the twin at position `pos` of `probe`'s chain for the invocation at `ctx`, only
/// when no program before it took care of the invocation (the kernel skipped them all); counts
/// that as rescued. The last twin frees the invocation's slot, wherever the thread left it; an
/// earlier one leaves it, or makes it, for the programs after it.
#[inline(always)]
pub fn as_twin(probe: ProbeId, ctx: u64, pos: usize, len: usize, f: impl FnOnce() -> u32) -> u32 {
    let Some(h) = HANDLED.get_ptr_mut(probe as u32) else { return 0 };
    let last = pos + 1 == len;
    running(h, pos, 1);
    let thread = bpf_get_current_pid_tgid();
    let found = match handled_slot(h, ctx, thread) {
        Some(i) if !last_one_busy(h, probe, i) && progress(h, i, pos) => Some((h, i)),
        _ => find_elsewhere(probe, ctx, thread).filter(|&(at, i)| progress(at, i, pos)),
    };
    let key = MarkKey { ctx, thread, probe: probe as u64 };
    let r = match found {
        None if overflow_mark(h, probe, pos, len, &key) => 0,
        Some((at, i)) => {
            if last {
                if at == h {
                    sweep_nested(h, probe, i, thread);
                }
                unmark(at, i);
            } else if at == h {
                release_if_rest_busy(h, pos, len, i, stamp(h, i) & !DONE);
            }
            0
        }
        None if chain_stage() >= 2 => {
            if !last {
                match mark_handled(h, probe, pos, ctx, thread) {
                    Some((i, at)) => release_if_rest_busy(h, pos, len, i, at),
                    None => mark_overflow(h, probe, pos, len, &key),
                }
            }
            if let Some(p) = RESCUED.get_ptr_mut(probe as u32) {
                // SAFETY: this CPU's slot.
                unsafe { add(p, 1) };
            }
            f()
        }
        None => 0,
    };
    running(h, pos, u64::MAX);
    r
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
