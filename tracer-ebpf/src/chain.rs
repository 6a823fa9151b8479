//! Program chains: a probe's primary program and its backups on the same target, of which
//! exactly one does the work for each invocation (the rules and why they hold:
//! tracer_common::chain; the model they are tested against: tracer-common/tests/chain.rs).

use core::intrinsics::{atomic_cxchg, AtomicOrdering};

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, generated},
    macros::map,
    maps::{Array, PerCpuArray},
};
use tracer_common::{
    chain::{
        counted_hand_off, cpu_rule_acts, word_decide, ChainDebug, WordAt, WordSlots, CHAIN_DEBUG_KINDS, MAX_CHAIN,
        WORD_BLOCK_BITS, WORD_SLOTS,
    },
    counters,
    stack_path::TASK_STACK_SIZE,
    ProbeId, OFFSET_UNKNOWN, PROBES, PROBE_COUNT,
};

use crate::maps::{add, bump};

/// Defines a probe's chain: the primary program `$primary` and its backups `backup_<base>`,
/// `backup2_<base>`, `backup3_<base>` on the same target, as many as the
/// catalogue (tracer_common::PROBES) lists for the probe, which a compile-time check enforces.
/// Each runs `$body` only when [`run`] says it is the one to act for the invocation. A probe's
/// filter belongs in `$body`: the kernel counts the runs it skips whatever the arguments, and
/// the loader subtracts the rescues from those counts.
macro_rules! with_backups {
    (@program #[$attr:meta] $name:ident, $id:expr, $pos:literal, $len:literal, |$ctx:ident: $ty:ty| $body:expr) => {
        #[$attr]
        pub fn $name($ctx: $ty) -> u32 {
            $crate::chain::run($id, aya_ebpf::EbpfContext::as_ptr(&$ctx) as u64, $pos, $len, || $body)
        }
    };
    // With a filter applied first, for targets hit by far more invocations than the probe
    // wants (the raw system call tracepoints): an unwanted invocation costs the primary one
    // test and its running count (run_if), and a backup one test and one read of the CPU's
    // running counts. A backup still runs the chain for an unwanted invocation while a
    // primary is running on its CPU (a thread preempted in it): the kernel skipped the
    // primary for it too, and the rescue keeps `skips - rescues` exact (the body then does
    // nothing). Only a thread preempted in the kernel's few instructions around the primary
    // can make an unwanted skip look like a loss: counted, never hidden.
    (@filtered #[$attr:meta] $name:ident, $id:expr, $pos:literal, $len:literal, |$ctx:ident: $ty:ty| $filter:expr, $body:expr) => {
        #[$attr]
        pub fn $name($ctx: $ty) -> u32 {
            let at = aya_ebpf::EbpfContext::as_ptr(&$ctx) as u64;
            if $pos == 0 {
                return $crate::chain::run_if($id, at, 0, $len, || $filter, || $body);
            }
            let wanted = $filter;
            if !wanted && !$crate::chain::primary_running($id) {
                return 0;
            }
            $crate::chain::run_if($id, at, $pos, $len, || true, || if wanted { $body } else { 0 })
        }
    };
    (#[$attr:meta] $primary:ident, $base:ident, $id:expr, filter |$ctx:ident: $ty:ty| $filter:expr, $body:expr) => {
        const _: () = assert!(tracer_common::PROBES[$id as usize].chain_len() == 4, "the catalogue's chain length");
        const _: () = assert!(tracer_common::PROBES[$id as usize].filters_first(), "the catalogue's filters_first");
        paste::paste! {
            with_backups!(@filtered #[$attr] $primary, $id, 0, 4, |$ctx: $ty| $filter, $body);
            with_backups!(@filtered #[$attr] [<backup_ $base>], $id, 1, 4, |$ctx: $ty| $filter, $body);
            with_backups!(@filtered #[$attr] [<backup2_ $base>], $id, 2, 4, |$ctx: $ty| $filter, $body);
            with_backups!(@filtered #[$attr] [<backup3_ $base>], $id, 3, 4, |$ctx: $ty| $filter, $body);
        }
    };
    // With invocations the probe only counts, told apart before the chain's bookkeeping by
    // `$only` (the same answer in every program of the chain): see [`run_or_count`].
    (@split #[$attr:meta] $name:ident, $id:expr, $pos:literal, $len:literal, |$ctx:ident: $ty:ty| $only:expr, $count:expr, $body:expr) => {
        #[$attr]
        pub fn $name($ctx: $ty) -> u32 {
            let at = aya_ebpf::EbpfContext::as_ptr(&$ctx) as u64;
            $crate::chain::run_or_count($id, at, $pos, $len, || $only, || $count, || $body)
        }
    };
    (#[$attr:meta] $primary:ident, $base:ident, $id:expr, count_only |$ctx:ident: $ty:ty| $only:expr, $count:expr, $body:expr) => {
        const _: () = assert!(tracer_common::PROBES[$id as usize].chain_len() == 4, "the catalogue's chain length");
        const _: () = assert!(tracer_common::PROBES[$id as usize].in_interrupts(), "counts kept for the CPU rule");
        paste::paste! {
            with_backups!(@split #[$attr] $primary, $id, 0, 4, |$ctx: $ty| $only, $count, $body);
            with_backups!(@split #[$attr] [<backup_ $base>], $id, 1, 4, |$ctx: $ty| $only, $count, $body);
            with_backups!(@split #[$attr] [<backup2_ $base>], $id, 2, 4, |$ctx: $ty| $only, $count, $body);
            with_backups!(@split #[$attr] [<backup3_ $base>], $id, 3, 4, |$ctx: $ty| $only, $count, $body);
        }
    };
    // With a word of memory of the program's own on this CPU ([`scratch`]) named `$scratch` in
    // the body.
    (@scratch #[$attr:meta] $name:ident, $id:expr, $pos:literal, $len:literal, |$ctx:ident: $ty:ty, $scratch:ident| $body:expr) => {
        #[$attr]
        pub fn $name($ctx: $ty) -> u32 {
            $crate::chain::run($id, aya_ebpf::EbpfContext::as_ptr(&$ctx) as u64, $pos, $len, || {
                let $scratch = $crate::chain::scratch($id, $pos);
                $body
            })
        }
    };
    (#[$attr:meta] $primary:ident, $base:ident, $id:expr, |$ctx:ident: $ty:ty, $scratch:ident| $body:expr) => {
        const _: () = assert!(tracer_common::PROBES[$id as usize].chain_len() == 4, "the catalogue's chain length");
        paste::paste! {
            with_backups!(@scratch #[$attr] $primary, $id, 0, 4, |$ctx: $ty, $scratch| $body);
            with_backups!(@scratch #[$attr] [<backup_ $base>], $id, 1, 4, |$ctx: $ty, $scratch| $body);
            with_backups!(@scratch #[$attr] [<backup2_ $base>], $id, 2, 4, |$ctx: $ty, $scratch| $body);
            with_backups!(@scratch #[$attr] [<backup3_ $base>], $id, 3, 4, |$ctx: $ty, $scratch| $body);
        }
    };
    (#[$attr:meta] $primary:ident, $base:ident, $id:expr, |$ctx:ident: $ty:ty| $body:expr) => {
        const _: () = assert!(tracer_common::PROBES[$id as usize].chain_len() == 4, "the catalogue's chain length");
        paste::paste! {
            with_backups!(@program #[$attr] $primary, $id, 0, 4, |$ctx: $ty| $body);
            with_backups!(@program #[$attr] [<backup_ $base>], $id, 1, 4, |$ctx: $ty| $body);
            with_backups!(@program #[$attr] [<backup2_ $base>], $id, 2, 4, |$ctx: $ty| $body);
            with_backups!(@program #[$attr] [<backup3_ $base>], $id, 3, 4, |$ctx: $ty| $body);
        }
    };
}

const _: () = assert!(MAX_CHAIN == tracer_common::MAX_BACKUPS + 1);

/// Per-CPU, indexed by ProbeId: how many invocations are inside each program of the chain on
/// this CPU now (preempted in it, or interrupted in it), by position; kept only by programs
/// whose kernel guard is not known ([`ACTIVE`]), whose backups then read these instead.
#[map(name = "CHAIN_RUNNING")]
static RUNNING: PerCpuArray<[u64; MAX_CHAIN]> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// Per-CPU, indexed by ProbeId, by position: where the kernel's recursion count
/// (`bpf_prog.active`) of each program of the chain lies on this CPU; 0 when not known (then the
/// program counts itself in [`RUNNING`]). Written by the loader once, from 0 to the address
/// (tracer_common::chain::ActiveRecord), so a program and the backups that ask about it may see
/// it before and after, never the other way round: both ways are exact for the backups.
#[map(name = "CHAIN_ACTIVE")]
static ACTIVE: PerCpuArray<[u64; MAX_CHAIN]> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// This CPU's addresses of the kernel's recursion counts of a chain's programs
/// ([`ACTIVE`]), and the chain's own running counts ([`RUNNING`]) where they are needed.
/// Null pointers where a map has no entry: an `Option` of a pointer kept in a struct leaves an
/// undefined register for `None`, which the verifier refuses to spill.
struct Counts {
    active: *const [u64; MAX_CHAIN],
    running: *mut [u64; MAX_CHAIN],
    probe: ProbeId,
}

impl Counts {
    /// The counts of `probe`'s chain on this CPU, for the program at `slot` (the running counts
    /// are looked up only when it or a program before it has no known kernel count).
    #[inline(always)]
    fn here(probe: ProbeId, slot: usize) -> Counts {
        let active = ACTIVE.get_ptr(probe as u32).unwrap_or(core::ptr::null());
        let mut counts = Counts { active, running: core::ptr::null_mut(), probe };
        let mut i = 0;
        let mut all_known = true;
        while i <= slot && i < MAX_CHAIN {
            all_known &= counts.kernel_at(i) != 0;
            i += 1;
        }
        if !all_known {
            counts.running = RUNNING.get_ptr_mut(probe as u32).unwrap_or(core::ptr::null_mut());
        }
        counts
    }

    /// Where the kernel's count of the program at `i` lies on this CPU; 0 when not known.
    #[inline(always)]
    fn kernel_at(&self, i: usize) -> u64 {
        if self.active.is_null() {
            return 0;
        }
        // SAFETY: this CPU's entry, written by the loader only; i < MAX_CHAIN.
        unsafe { core::ptr::read_volatile(&raw const (*self.active)[i.min(MAX_CHAIN - 1)]) }
    }

    /// Whether the program at `i` is running on this CPU now (the kernel would skip it): the
    /// kernel's own count where its address is known, else the program's count of itself.
    #[inline(always)]
    fn busy(&self, i: usize) -> bool {
        let at = self.kernel_at(i);
        if at != 0 {
            if crate::kload::direct() {
                // A direct load (crate::kload) of the word that starts with this CPU's count
                // (a u8 on 7.x, an int before: the low byte of either holds the count, which
                // never reaches 256; the kernel's per-CPU area goes on past it). A failed load
                // reads 0: not busy, which a hidden skip then counts as lost.
                return crate::kload::word(at) & 0xff != 0;
            }
            // SAFETY: the read helper on this CPU's count (see above).
            match unsafe { bpf_probe_read_kernel(at as *const u8) } {
                Ok(n) => n != 0,
                Err(_) => {
                    debug(self.probe, ChainDebug::CountUnreadable);
                    false
                }
            }
        } else {
            // SAFETY: this CPU's entry when not null; i < MAX_CHAIN.
            !self.running.is_null()
                && unsafe { core::ptr::read_volatile(&raw const (*self.running)[i.min(MAX_CHAIN - 1)]) } != 0
        }
    }

    /// Counts the program at `slot` running (only where the kernel's count is not known);
    /// whether it did, for [`Counts::leave`].
    #[inline(always)]
    fn enter(&self, slot: usize) -> bool {
        if self.kernel_at(slot) != 0 {
            if debug_chains() {
                // This program runs, so the kernel took its count: a check of the address.
                let seen = self.busy(slot);
                debug(self.probe, if seen { ChainDebug::OwnCountSeen } else { ChainDebug::OwnCountWrong });
            }
            return false;
        }
        if self.running.is_null() {
            return false;
        }
        // SAFETY: this CPU's entry; slot < MAX_CHAIN; changed only atomically.
        unsafe { add(&raw mut (*self.running)[slot.min(MAX_CHAIN - 1)], 1) };
        true
    }

    #[inline(always)]
    fn leave(&self, slot: usize, entered: bool) {
        if entered {
            // SAFETY: as in enter (entered only with a running entry).
            unsafe { add(&raw mut (*self.running)[slot.min(MAX_CHAIN - 1)], u64::MAX) };
        }
    }
}

/// Per-CPU, indexed by ProbeId, by position: where a program of the chain turns its context
/// pointer into a number ([`address_of`]). One entry per program and CPU, which nothing else
/// writes meanwhile: the kernel never runs a program inside itself on one CPU.
#[map(name = "CHAIN_ADDRESS")]
static ADDRESS: PerCpuArray<[u64; MAX_CHAIN]> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// The address the program at `pos` of `probe`'s chain has as its context, as a number: the
/// verifier allows no arithmetic on a context pointer, but a privileged program (CAP_PERFMON,
/// which tracing needs anyway) may store one in a map value, and what it loads from there is a
/// number. An inlined per-CPU array lookup, a store and a load: cheaper than the copy through
/// the read helper on the kernels that inline that lookup (6.10+).
#[inline(always)]
fn address_of(probe: ProbeId, pos: usize, ctx: u64) -> Option<u64> {
    let a = ADDRESS.get_ptr_mut(probe as u32)?;
    let slot = pos.min(MAX_CHAIN - 1);
    // SAFETY: this program's own entry on this CPU (see ADDRESS); slot < MAX_CHAIN.
    Some(unsafe { crate::typed::as_number(ctx, &raw mut (*a)[slot]) })
}

/// Per-CPU, indexed by ProbeId, by position: a word each program may use for itself while it
/// runs ([`scratch`]).
#[map(name = "CHAIN_SCRATCH")]
static SCRATCH: PerCpuArray<[u64; MAX_CHAIN]> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// The word of the program at `pos` of `probe`'s chain on this CPU, for its own use while it
/// runs (as [`ADDRESS`]: nothing else writes it meanwhile, the kernel never running a program
/// inside itself on one CPU); null when the map has no entry.
#[inline(always)]
pub fn scratch(probe: ProbeId, pos: usize) -> *mut u64 {
    match SCRATCH.get_ptr_mut(probe as u32) {
        // SAFETY: an entry of the map; pos is bounded.
        Some(a) => unsafe { &raw mut (*a)[pos.min(MAX_CHAIN - 1)] },
        None => core::ptr::null_mut(),
    }
}

/// The invocations' words (tracer_common::chain::word_decide): an array, so a program finds
/// its invocation's word with an address computation (the verifier inlines array lookups), not
/// a hash map's lookup; the loader gives it one slot where the word rule is never used.
#[map(name = "CHAIN_WORDS")]
static WORDS: Array<u64> = Array::with_max_entries(WORD_SLOTS, 0);

/// The table as tracer_common's rule sees it.
struct Words;

impl WordSlots for Words {
    #[inline(always)]
    fn load(&mut self, i: u32) -> Option<u64> {
        // SAFETY: a u64 of the map, changed only by compare-and-swap.
        WORDS.get_ptr(i).map(|p| unsafe { core::ptr::read_volatile(p) })
    }

    #[inline(always)]
    fn swap(&mut self, i: u32, old: u64, new: u64) -> bool {
        // SAFETY: as above; BPF v3's compare-and-exchange on the map value.
        WORDS.get_ptr_mut(i).is_some_and(|p| unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(p, old, new).1
        })
    }
}

/// Index 0: the loader's stage. Below 2 while it attaches the chains: backups keep the rules'
/// state but act for nothing (the programs of a chain attach one by one). 2 once all are.
#[map(name = "CHAIN_STAGE")]
static CHAIN_STAGE: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
fn debug(probe: ProbeId, kind: ChainDebug) {
    bump(counters::CHAIN_DEBUG + probe as u32 * CHAIN_DEBUG_KINDS + kind as u32, 1);
}

/// 1 when threads can be preempted inside tracing programs, 0 when they cannot (patched by the
/// loader from the kernel's preemption model; tracer_common::names::TASK_PREEMPTION). Where they
/// cannot, only interrupts nest, so the CPU rule is exact and the words are never needed.
#[unsafe(no_mangle)]
static TASK_PREEMPTION: u64 = 1;

/// Backups attached to each chain that decides by the word rule (patched by the loader:
/// tracer_common::names::WORD_CHAIN_BACKUPS; `tracer run --backups`): the chain's length for
/// the rule's "done" (a word whose invocation went through the last attached program).
#[unsafe(no_mangle)]
static WORD_CHAIN_BACKUPS: u64 = tracer_common::MAX_BACKUPS as u64;

/// The length of `probe`'s chain of up to `len` programs as attached where it decides by the
/// word rule (a word is done once the last attached program ran for it).
#[inline(always)]
fn word_chain_len(len: usize) -> usize {
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    let backups = unsafe { core::ptr::read_volatile(&WORD_CHAIN_BACKUPS) } as usize;
    len.min(backups.min(tracer_common::MAX_BACKUPS) + 1)
}

/// 1 with TRACER_DEBUG_CHAINS (patched by the loader; tracer_common::names::DEBUG_CHAINS).
#[unsafe(no_mangle)]
static DEBUG_CHAINS: u64 = 0;

#[inline(always)]
fn debug_chains() -> bool {
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    unsafe { core::ptr::read_volatile(&DEBUG_CHAINS) != 0 }
}

#[inline(always)]
fn task_preemption() -> bool {
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    unsafe { core::ptr::read_volatile(&TASK_PREEMPTION) != 0 }
}

#[inline(always)]
fn armed() -> bool {
    // SAFETY: a u64 of the map, written by the loader only.
    CHAIN_STAGE.get_ptr(0).is_some_and(|p| unsafe { core::ptr::read_volatile(p) } >= 2)
}

/// The word rule for the program at `pos` of a chain of `len`, for the invocation at `at`.
#[inline(always)]
fn word_acts(probe: ProbeId, at: u64, pos: usize, len: usize) -> bool {
    let (acts, at_slot) = word_decide(&mut Words, probe as u32, at, pos, len, WORD_BLOCK_BITS);
    if at_slot == WordAt::Nowhere {
        debug(probe, ChainDebug::NoWord);
    }
    acts
}

/// Whether the primary program of `probe`'s chain is running on this CPU now (a thread was
/// preempted in it, or an interrupt came while it ran).
#[inline(always)]
pub fn primary_running(probe: ProbeId) -> bool {
    Counts::here(probe, 0).busy(0)
}

/// Runs `f` as the program at `pos` of `probe`'s chain of `len` for the invocation at `ctx`
/// when it is the one to act for it.
#[inline(always)]
pub fn run(probe: ProbeId, ctx: u64, pos: usize, len: usize, f: impl FnOnce() -> u32) -> u32 {
    run_if(probe, ctx, pos, len, || true, f)
}

/// Per-CPU, indexed by ProbeId: the context address of the last invocation the primary only
/// counted ([`run_or_count`]), for the first backup to see that it need not ask again; 0 once
/// that backup saw it.
#[map(name = "CHAIN_COUNTED")]
static COUNTED: PerCpuArray<u64> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// [`run`] for a probe some of whose invocations are only counted (`only()`, the same answer
/// in every program of the chain: an unpin that a bio's release record lists): those skip the
/// word rule, and are decided by the CPU rule alone (tracer_common::chain::counted_hand_off
/// says why that is exact where nothing preempts the programs, and what preemption can cost).
/// The primary counts them (`count`) and leaves the invocation's context address for the first
/// backup, which then returns at once (the caller test is the dear part); a backup that does
/// not find it tests the invocation and counts a counted one, as a rescue, when every program
/// before it is running on its CPU (the kernel skipped them for it). Only for chains that keep
/// counts for the CPU rule (ProbeDef::in_interrupts).
#[inline(always)]
pub fn run_or_count(
    probe: ProbeId,
    ctx: u64,
    pos: usize,
    len: usize,
    only: impl FnOnce() -> bool,
    count: impl FnOnce(),
    f: impl FnOnce() -> u32,
) -> u32 {
    let at = address_of(probe, pos, ctx).unwrap_or(0);
    let mark = COUNTED.get_ptr_mut(probe as u32).unwrap_or(core::ptr::null_mut());
    let slot = pos.min(MAX_CHAIN - 1);
    if pos > 0 && !mark.is_null() {
        // SAFETY: this CPU's entry, a u64 (see COUNTED).
        let mut word = unsafe { core::ptr::read_volatile(mark) };
        // The kernel's counts are read only when the address matches.
        if at != 0 && word == at {
            let counts = Counts::here(probe, slot);
            if counted_hand_off(pos, &mut word, at, |i| counts.busy(i)) {
                if word != at {
                    // SAFETY: as above.
                    unsafe { core::ptr::write_volatile(mark, word) };
                }
                return 0;
            }
        }
    }
    if !only() {
        if pos == 0 && !mark.is_null() {
            // A mark left at this address (its backup skipped) is not this invocation's.
            // SAFETY: this CPU's entry, a u64 (see COUNTED).
            unsafe {
                if core::ptr::read_volatile(mark) == at {
                    core::ptr::write_volatile(mark, 0);
                }
            }
        }
        return run(probe, ctx, pos, len, f);
    }
    let counts = Counts::here(probe, slot);
    let entered = counts.enter(slot);
    if pos == 0 {
        // The primary acts for every invocation the kernel runs it for; its count of itself
        // (where the kernel's is not known) tells the backups of a nested one.
        count();
        if !mark.is_null() {
            let mut word = 0;
            let _ = counted_hand_off(0, &mut word, at, |_| false);
            // SAFETY: this CPU's entry, a u64 (see COUNTED).
            unsafe { core::ptr::write_volatile(mark, word) };
        }
    } else if cpu_acts(&counts, pos) {
        act(probe, pos, len, true, ChainDebug::RescuedByCpuRule, || {
            count();
            0
        });
    }
    counts.leave(slot, entered);
    0
}

/// Whether `probe`'s chain may decide by the word rule (tracer_common::chain), in thread
/// context: on a kernel that preempts threads inside programs, for a probe whose programs it
/// runs preemptible.
#[inline(always)]
fn word_rule(probe: ProbeId) -> bool {
    PROBES[probe as usize].preemptible() && task_preemption()
}

/// [`run`] for chains that filter first: the program acts only if `wanted()` says so. The
/// primary counts itself running before it asks (so that a backup can tell that the kernel
/// skipped it, whatever the invocation) and goes no further for an unwanted one.
#[inline(always)]
pub fn run_if(
    probe: ProbeId,
    ctx: u64,
    pos: usize,
    len: usize,
    wanted: impl FnOnce() -> bool,
    f: impl FnOnce() -> u32,
) -> u32 {
    // The attached length where words are kept (the CPU rule does not depend on it).
    let len = if word_rule(probe) { word_chain_len(len) } else { len };
    if len <= 1 {
        // No backup attached: nobody to tell, the primary acts alone.
        return if pos == 0 && wanted() { f() } else { 0 };
    }
    if thread_words(probe) {
        return if wanted() { words_only(probe, ctx, pos, len, f) } else { 0 };
    }
    let slot = pos.min(MAX_CHAIN - 1);
    let counts = Counts::here(probe, slot);
    let entered = counts.enter(slot);
    let ret = if wanted() { decide_and_run(probe, &counts, ctx, pos, len, f) } else { 0 };
    counts.leave(slot, entered);
    ret
}

/// Whether `probe`'s chain decides every invocation by the word rule and keeps no running
/// counts: a target only threads reach (ProbeDef::in_interrupts) that filters nothing first,
/// on a kernel that preempts threads inside programs. The counts serve the CPU rule, which
/// only interrupt context uses there; were such a target reached in an interrupt after all,
/// that invocation is judged by the word rule too, and a skip it leaves unrescued is counted
/// lost (a word left by an earlier interrupt at the same address), never doubled.
#[inline(always)]
fn thread_words(probe: ProbeId) -> bool {
    let def = &PROBES[probe as usize];
    !def.in_interrupts() && !def.filters_first() && word_rule(probe)
}

/// [`decide_and_run`] for [`thread_words`] chains: the word rule, no context test, no counts.
#[inline(always)]
fn words_only(probe: ProbeId, ctx: u64, pos: usize, len: usize, f: impl FnOnce() -> u32) -> u32 {
    let acts = match address_of(probe, pos, ctx) {
        Some(at) => word_acts(probe, at, pos, len),
        None => {
            // No way to tell invocations apart: only the primary acts, the backups' skips
            // are counted lost.
            debug(probe, ChainDebug::ContextUnknown);
            pos == 0
        }
    };
    act(probe, pos, len, acts, ChainDebug::RescuedByWordRule, f)
}

/// Whether the invocation at `at` runs on the current task's stack (thread context), not on an
/// interrupt stack; None when `task_struct.stack`'s offset is not known. With vmapped stacks a
/// guard page follows each stack, so twice its size above a task's stack base is still its own.
#[inline(always)]
fn on_task_stack(at: u64) -> Option<bool> {
    let off = member!(task_stack);
    if off == OFFSET_UNKNOWN {
        return None;
    }
    // SAFETY: helper for tracing programs: the current task as a BTF-typed pointer.
    let task = unsafe { generated::bpf_get_current_task_btf() } as *const u8;
    // SAFETY: a BTF-typed load of task_struct.stack (a pointer member, at a constant offset):
    // the verifier checks it against the kernel's BTF and makes it a fault-tolerant load,
    // without the read helper's call.
    let base = unsafe { core::ptr::read_volatile(task.add(off as usize) as *const u64) };
    Some(base != 0 && at.wrapping_sub(base) < 2 * TASK_STACK_SIZE)
}

/// The chain's rules for the program at `pos` (its chain's `counts` on this CPU), then `f` if
/// it acts.
#[inline(always)]
fn decide_and_run(probe: ProbeId, counts: &Counts, ctx: u64, pos: usize, len: usize, f: impl FnOnce() -> u32) -> u32 {
    let (acts, rule) = match word_rule(probe).then(|| address_of(probe, pos, ctx)) {
        // Nothing preempts programs here: the CPU rule.
        None => (cpu_acts(counts, pos), ChainDebug::RescuedByCpuRule),
        Some(None) => {
            debug(probe, ChainDebug::ContextUnknown);
            (cpu_acts(counts, pos), ChainDebug::RescuedByCpuRule)
        }
        Some(Some(at)) => match on_task_stack(at) {
            // An interrupt: nothing preempts it, so the CPU rule is exact (the word rule
            // would be too, but loses more: interrupts on a CPU share their stack's addresses).
            Some(false) => (cpu_acts(counts, pos), ChainDebug::RescuedByCpuRule),
            Some(true) => (word_acts(probe, at, pos, len), ChainDebug::RescuedByWordRule),
            None => {
                debug(probe, ChainDebug::ContextUnknown);
                (word_acts(probe, at, pos, len), ChainDebug::RescuedByWordRule)
            }
        },
    };
    act(probe, pos, len, acts, rule, f)
}

/// `f` when the program at `pos` acts (`acts`, decided by `rule`); a backup's action is counted
/// as a rescue, and none is taken before the loader arms the chains.
#[inline(always)]
fn act(probe: ProbeId, pos: usize, len: usize, acts: bool, rule: ChainDebug, f: impl FnOnce() -> u32) -> u32 {
    if !acts {
        0
    } else if pos == 0 {
        f()
    } else if (armed() || PROBES[probe as usize].filters_first()) && pos < len {
        bump(counters::RESCUED + probe as u32, 1);
        debug(probe, rule);
        f()
    } else {
        0
    }
}

/// The CPU rule for the program at `pos`, over this CPU's counts.
#[inline(always)]
fn cpu_acts(counts: &Counts, pos: usize) -> bool {
    cpu_rule_acts(pos, |i| counts.busy(i))
}
