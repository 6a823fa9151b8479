//! The decisions of a probe's program chain, shared by the eBPF programs (tracer-ebpf's
//! `chain` module runs them) and the host tests (tests/chain.rs checks them against a model of
//! the kernel's skipping, preemption, migration and nested interrupts).
//!
//! Why chains: the kernel skips a tracing program for an invocation that arrives on a CPU while
//! the same program is running there (its per-CPU `active` count is taken): an interrupt that
//! came while it ran, or, where programs are preemptible (fentry/fexit, and on Debian's 7.2 the
//! tracepoints too, syscall ones included), another thread that preempted it.
//! A chain is the primary program and a few backups on the same target, run by the kernel in
//! order for every invocation; each has its own `active` count, so an invocation is lost only
//! when all of them are skipped. Exactly one program of the chain must do the work for an
//! invocation: the first that runs. These functions let a program tell whether an earlier
//! program of the chain ran for the invocation at hand.
//!
//! Two rules, by the kernel's preemption model and the invocation's context:
//! - [`cpu_rule_acts`], for invocations that nothing can preempt (interrupt context, and every
//!   invocation where the kernel preempts no thread inside a program: no or voluntary
//!   preemption, as Debian's 6.1 and 6.12 boot): while an invocation's program runs,
//!   every other invocation on its CPU is frozen beneath it (only interrupts nest), so the
//!   programs busy on the CPU when its program at `pos` runs are the ones that were busy when
//!   the kernel tried the earlier ones. A program acts when every program before it is busy. No
//!   state, so nothing can be left behind.
//! - [`word_rule_acts`], for invocations in thread context where threads can be preempted
//!   inside programs (full, lazy or RT preemption): each invocation keeps a word, its context
//!   address (the trampoline's or the tracepoint's argument block, the same for every program
//!   of one invocation, and on a stack that no other live invocation of the probe uses at that
//!   address) and the position of the last program that ran for it. A program acts unless the
//!   word names its invocation and an earlier program. The words live in a table of slots
//!   ([`word_decide`]): an invocation's candidates are two slots of a block chosen by a hash of
//!   its context address, and a word is the invocation's when it holds that address. A slot is
//!   taken over only when it is empty or its word's invocation went through the whole chain,
//!   with a compare-and-swap, so a word between two programs of an invocation is never lost,
//!   whatever preemption, migration or interrupts come between them.
//!
//! The word rule costs a table lookup and a compare-and-swap in every program of the chain, and
//! is needed only where the kernel can preempt a thread inside a program. Where it cannot, the
//! CPU rule is exact; the loader tells the programs which through the `TASK_PREEMPTION` global
//! (unknown counts as preemptible), and the model's `atomic_chains_*` tests cover that case.
//!
//! Whether a program is busy on the CPU is read from the kernel's own count (`bpf_prog.active`,
//! the per-CPU count the kernel takes before it runs the program and skips it when taken): the
//! loader finds where each program's count lies on each CPU with an iterator over the kernel's
//! programs ([`ActiveRecord`]) and hands the addresses to the programs. The count is exactly what
//! the kernel decided by, so the CPU rule loses nothing. Where an address is not known (the
//! iterator or the symbol it needs unavailable), the programs count themselves running instead,
//! which the kernel's few instructions around a program escape (below).
//!
//! What each rule can get wrong is a loss (a double only in the word rule's rarest case,
//! below), and the kernel counts every skip of the primary, so `skips - rescues` is exactly the
//! invocations nobody took care of:
//! - CPU rule over the programs' own counts (only where the kernel's are not known): the holder
//!   of an earlier program was in the kernel's few instructions between taking `active` and the
//!   program's first instruction (or between its last and the release), so the program looked
//!   idle although the kernel skipped it.
//! - Word rule: the previous invocation of the probe at the same context address had every
//!   program after some position skipped (its word was left behind) and this one every program
//!   up to that position: over those two invocations, as many others held inside the chain on
//!   their CPU as the chain is long. Or no slot could be kept for the invocation (every
//!   candidate held by another invocation's word that is not done: [`WordAt::Nowhere`]): a
//!   backup that finds none declines (the kernel may have skipped the invocation up to there:
//!   a loss), since the program before it most likely ran without a word, and acting would
//!   double it; a double is left only where a program found no slot and a later one of the same
//!   invocation claimed one that was freed meanwhile. Both are counted (`ChainDebug::NoWord`,
//!   and the loader's `skips - rescues`). Until 2026-12-06 such backups acted: under 12 threads
//!   on 2 vCPUs on sid, 83 doubles in 30 s.

/// Programs in a chain at most (the primary and its backups).
pub const MAX_CHAIN: usize = 4;

/// Bits of a word that hold the position (context addresses are 8-byte aligned).
const POS_MASK: u64 = 7;

const _: () = assert!(MAX_CHAIN as u64 <= POS_MASK + 1);

/// Whether the program at `pos` acts for an invocation nothing can preempt, given which
/// programs of the chain are running on the CPU now (`busy(i)` for each `i < pos`).
#[inline(always)]
pub fn cpu_rule_acts(pos: usize, busy: impl Fn(usize) -> bool) -> bool {
    let mut i = 0;
    while i < pos && i < MAX_CHAIN {
        if !busy(i) {
            return false;
        }
        i += 1;
    }
    true
}

/// For an invocation the probe only counts (tracer-ebpf's `chain::run_or_count`), the hand-off from
/// the primary to the first backup: `mark` is this CPU's word for the probe, where the primary
/// leaves the context address `at` of each such invocation it counts (for `pos` 0 this sets it and
/// answers false: the primary counts). A backup that finds its own address there while the CPU rule
/// says it need not act (`busy(i)`: the program at `i` is running on the CPU) returns at once
/// (true) without testing the invocation itself, and, if first, clears the mark (the next
/// invocation at the same address, the next turn of the caller's loop, must not take it for its
/// own). Otherwise (false) it tests the invocation and, for a counted one, decides by the CPU rule.
/// Where nothing preempts the programs, every invocation is counted exactly once unless every
/// program of the chain was skipped, stale marks included (an earlier invocation at the same
/// address whose first backup was skipped: the CPU rule still sees the primary busy:
/// tests/chain.rs); a wanted invocation is never taken for a counted one (a backup tests the
/// invocation whenever the CPU rule says it acts). Where threads are preempted inside the programs,
/// a backup can count an invocation the primary counted (another thread preempted inside the
/// primary, or in the kernel's skip of it, when the backup decides), or miss one the kernel skipped
/// (its own thread preempted after the primary, or the kernel's skip of it, and before the backup's
/// decision, or a mark left at its address): the kernel's skips less the rescues counts the misses
/// less the doubles, so the counts' total plus that reported loss is still the number of
/// invocations.
#[inline(always)]
pub fn counted_hand_off(pos: usize, mark: &mut u64, at: u64, busy: impl Fn(usize) -> bool) -> bool {
    if pos == 0 {
        *mark = at;
        return false;
    }
    if at == 0 || *mark != at || cpu_rule_acts(pos, busy) {
        return false;
    }
    if pos == 1 {
        *mark = 0;
    }
    true
}

/// Whether the program at `pos` acts for the invocation at `ctx`, given the word found for it
/// (0 when none).
#[inline(always)]
pub fn word_rule_acts(word: u64, ctx: u64, pos: usize) -> bool {
    word & !POS_MASK != ctx & !POS_MASK || (word & POS_MASK) as usize >= pos
}

/// The invocation's word once the program at `pos` ran for it (context address `ctx`).
#[inline(always)]
pub fn word_of(ctx: u64, pos: usize) -> u64 {
    ctx & !POS_MASK | (pos as u64 & POS_MASK)
}

/// The table of words ([`word_decide`]): blocks of [`BLOCK_SLOTS`] slots, one block per
/// context address (by a hash of it), [`SLOT_CANDIDATES`] slots per probe in each block.
pub const WORD_BLOCK_BITS: u32 = 9;
/// Slots of a block: [`SLOT_CANDIDATES`] per probe, rounded up to a power of two.
pub const BLOCK_SLOTS: u32 = (SLOT_CANDIDATES * crate::PROBE_COUNT).next_power_of_two();
/// Slots of the table: 1 MiB of words.
pub const WORD_SLOTS: u32 = BLOCK_SLOTS << WORD_BLOCK_BITS;
/// Candidate slots of an invocation: four, so that no slot is found only when four other
/// addresses of the same block hold words not done (two were too few under 12 threads on 2
/// vCPUs on sid: a few hundred invocations in 30 s found none). An invocation that finds its
/// word finds it in the first candidate it wrote, so the others cost only the claims.
pub const SLOT_CANDIDATES: u32 = 4;

/// The `k`th candidate slot (k < [`SLOT_CANDIDATES`]) of `probe`'s invocation at `ctx`, in a
/// table of `BLOCK_SLOTS << block_bits` slots.
#[inline(always)]
pub fn word_slot(ctx: u64, probe: u32, k: u32, block_bits: u32) -> u32 {
    // Context addresses are 8-byte aligned; a multiplicative hash spreads the rest (one
    // thread's calls at one depth share an address, so its next call finds its own word).
    let hash = (ctx >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let block = if block_bits == 0 { 0 } else { (hash >> (64 - block_bits)) as u32 };
    block * BLOCK_SLOTS + (probe * SLOT_CANDIDATES + k) % BLOCK_SLOTS
}

/// Whether `word` is the word of the invocation at `ctx` (or of an earlier invocation of the
/// probe at the same address, which it stands for).
#[inline(always)]
pub fn owns(word: u64, ctx: u64) -> bool {
    word != 0 && (word ^ ctx) & !POS_MASK == 0
}

/// Whether a slot holding `word` may be taken by another invocation: empty, or its invocation
/// went through every program of its chain of `len`.
#[inline(always)]
pub fn claimable(word: u64, len: usize) -> bool {
    word == 0 || (word & POS_MASK) as usize + 1 >= len
}

/// The table of words as the programs see it (an array map) and the host tests model.
pub trait WordSlots {
    /// The word in slot `i`; None when the table has no such slot.
    fn load(&mut self, i: u32) -> Option<u64>;
    /// Replaces `old` with `new` in slot `i` if it still holds `old`; whether it did.
    fn swap(&mut self, i: u32, old: u64, new: u64) -> bool;
}

/// Where the invocation's word was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordAt {
    /// In slot `.0`, holding `.1` before this program wrote its own.
    Found(u32, u64),
    /// Not found: slot `.0` was empty or its word's invocation done, and is this one's now.
    Claimed(u32),
    /// Not found, and no candidate could be taken (counted, `ChainDebug::NoWord`): the
    /// primary acts, a backup declines, since it cannot tell whether an earlier program of
    /// the invocation ran without a word (an invocation the kernel skipped up to there is then
    /// lost, and counted).
    Nowhere,
}

/// The word rule over a table of words for the program at `pos` of `probe`'s chain of `len`,
/// for the invocation at `ctx`: whether it acts, and where the invocation's word was. The
/// program's own word is written in the same step.
#[inline(always)]
pub fn word_decide(
    slots: &mut impl WordSlots,
    probe: u32,
    ctx: u64,
    pos: usize,
    len: usize,
    block_bits: u32,
) -> (bool, WordAt) {
    let word = word_of(ctx, pos);
    let mut k = 0;
    while k < SLOT_CANDIDATES {
        let i = word_slot(ctx, probe, k, block_bits);
        if let Some(old) = slots.load(i) {
            // A failed swap: another invocation took the slot over (the word was done), so
            // this one has no word there any more.
            if owns(old, ctx) && slots.swap(i, old, word) {
                return (word_rule_acts(old, ctx, pos), WordAt::Found(i, old));
            }
        }
        k += 1;
    }
    let mut k = 0;
    while k < SLOT_CANDIDATES {
        let i = word_slot(ctx, probe, k, block_bits);
        if let Some(old) = slots.load(i) {
            if claimable(old, len) && slots.swap(i, old, word) {
                return (true, WordAt::Claimed(i));
            }
        }
        k += 1;
    }
    (pos == 0, WordAt::Nowhere)
}

/// Diagnostics of the chains, per probe (TRACER_DEBUG_CHAINS), in `CHAIN_DEBUG` at
/// `probe * CHAIN_DEBUG_KINDS + kind`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainDebug {
    /// A backup acted by the CPU rule.
    RescuedByCpuRule = 0,
    /// A backup acted by the word rule.
    RescuedByWordRule,
    /// No word could be kept for the invocation (every candidate slot held by another
    /// invocation's word not done, between two of its programs or left behind by a skip of its
    /// last program): a backup then declines, and a skipped invocation may be lost.
    NoWord,
    /// The invocation's context address could not be read (the CPU rule was used), or whether
    /// it lies on the task's stack could not be told (`task_struct.stack`'s offset unknown: the
    /// word rule was used, in interrupt context too).
    ContextUnknown,
    /// The kernel's recursion count of an earlier program could not be read at the address the
    /// loader gave (taken as not busy: a skip it hid is counted lost).
    CountUnreadable,
    /// A program found its own kernel count taken (1) at the address the loader gave: the
    /// address is right (checked only with TRACER_DEBUG_CHAINS).
    OwnCountSeen,
    /// A program found its own kernel count not taken at the address the loader gave: the
    /// address is wrong, and the backups' decisions with it (TRACER_DEBUG_CHAINS).
    OwnCountWrong,
}

/// Kinds of [`ChainDebug`].
pub const CHAIN_DEBUG_KINDS: u32 = 7;

/// A record of the loader's iterator over the kernel's BPF programs (tracer-ebpf/src/active.rs),
/// from which the loader computes where each chain program's recursion count lies on each CPU:
/// the count's per-CPU offset plus the CPU's per-CPU base.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveRecord {
    /// [`ACTIVE_PROGRAM`] or [`ACTIVE_CPU`].
    pub kind: u32,
    /// The program's id, or the CPU.
    pub index: u32,
    /// `bpf_prog.active` (a per-CPU offset), or the CPU's `__per_cpu_offset`.
    pub value: u64,
}

/// [`ActiveRecord::kind`] of a program's record.
pub const ACTIVE_PROGRAM: u32 = 0;
/// [`ActiveRecord::kind`] of a CPU's record.
pub const ACTIVE_CPU: u32 = 1;
/// CPUs the iterator reports at most (a machine with more possible CPUs keeps the programs'
/// own counts).
pub const ACTIVE_MAX_CPUS: u32 = 1024;

/// The address of a program's recursion count on a CPU, from the iterator's records: None when
/// either is unknown (0).
pub fn active_address(cpu_base: u64, prog_active: u64) -> Option<u64> {
    (cpu_base != 0 && prog_active != 0).then(|| cpu_base.wrapping_add(prog_active))
}
