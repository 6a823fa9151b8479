//! The chain rules (src/chain.rs) against a model of how the kernel runs a chain: each program
//! of an invocation is entered (the kernel takes the program's per-CPU `active` count and skips
//! the program when it was already taken), runs its body (counted in `running`, the count the
//! programs keep themselves), and is left. Threads are preempted between any two steps and
//! migrate between programs where programs are preemptible; interrupts nest on any step of any
//! CPU, two deep (on the CPU's own interrupt stack). Every invocation must be taken care of at
//! most once, and when nobody took care of it, the cause must be one of the two the rules
//! document (a holder inside the kernel's entry or exit window, or a word left by an earlier
//! invocation at the same context address).

use proptest::{prelude::*, strategy::ValueTree};
use tracer_common::chain::{
    claimable, counted_hand_off, cpu_rule_acts, owns, word_decide, word_of, word_slot, WordAt, WordSlots, BLOCK_SLOTS,
    MAX_CHAIN, SLOT_CANDIDATES,
};

const CPUS: usize = 2;
const THREADS: usize = 3;
const CALLS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Enter,
    BodyStart,
    Decide,
    BodyEnd,
    Exit,
}

#[derive(Default, Clone)]
struct Cpu {
    active: Vec<u32>,
    running: Vec<u32>,
}

#[derive(Clone, Debug, Default)]
struct Outcome {
    acts: u32,
    ran: u32,
    primary_skipped: bool,
    /// Why nobody acted although a program ran, as the model sees it.
    window_holder: bool,
    stale_word: bool,
    /// A program of it found no slot for its word (counted by the programs).
    no_word: bool,
    /// Its thread was preempted after the primary's decision (or the kernel's skip of it) and
    /// before a backup's.
    preempted_between: bool,
}

/// One invocation's progress through the chain.
#[derive(Clone, Debug)]
struct Call {
    id: usize,
    ctx: u64,
    pos: usize,
    step: Step,
    skipped: bool,
}

/// The table of words, with the invocation that wrote each slot.
struct Table {
    words: Vec<u64>,
    writers: Vec<usize>,
    /// The invocation whose program is deciding.
    current: usize,
}

impl WordSlots for Table {
    fn load(&mut self, i: u32) -> Option<u64> {
        self.words.get(i as usize).copied()
    }

    fn swap(&mut self, i: u32, old: u64, new: u64) -> bool {
        match self.words.get_mut(i as usize) {
            Some(w) if *w == old => {
                *w = new;
                self.writers[i as usize] = self.current;
                true
            }
            _ => false,
        }
    }
}

/// Where thread `t`'s stack begins (stacks lie far apart, as vmapped ones do).
fn stack_of(t: usize) -> u64 {
    0xffff_c900_0000_0000 + ((t as u64 + 1) << 20)
}

/// Where a thread's invocations have their context (every one at the same address: the worst
/// case for left-behind words).
fn thread_ctx(t: usize) -> u64 {
    stack_of(t) + 0x3f28
}

/// Where the model's interrupt stacks lie (above every thread's stack).
const IRQ_STACKS: u64 = 0xffff_fe00_0000_0000;

/// Where an invocation in interrupt context at `depth` on `cpu` has its context: on the CPU's
/// interrupt stack, deeper for a nested one. The programs tell it from a thread's by the
/// current task's stack; interrupts use the CPU rule.
fn irq_ctx(cpu: usize, depth: u64) -> u64 {
    IRQ_STACKS + ((cpu as u64 + 1) << 16) - 0x100 - depth * 0x100
}

/// The probe the model's chain belongs to.
const PROBE: u32 = 3;

struct World {
    len: usize,
    preemptible: bool,
    cpus: Vec<Cpu>,
    /// The words, in a table of `BLOCK_SLOTS << block_bits` slots.
    table: Table,
    block_bits: u32,
    outcomes: Vec<Outcome>,
    /// Entry/exit windows: whether interrupts and preemption may land between the kernel's
    /// `active` and the program's own count.
    windows: bool,
    /// The word rule for interrupts too (a thread-only target's chain, which keeps no running
    /// counts, reached in an interrupt after all).
    words_everywhere: bool,
    /// The CPU rule reads the kernel's counts (`active`), as the programs do where the loader
    /// found them, instead of the programs' own (`running`).
    kernel_counts: bool,
    /// Every invocation is one the probe only counts: the primary hands it off to the first
    /// backup through the CPU's mark, the backups decide by the CPU rule otherwise
    /// (counted_hand_off), whatever the context.
    counted: bool,
    /// Each CPU's mark (counted invocations).
    marks: Vec<u64>,
}

impl World {
    fn new(len: usize, preemptible: bool, windows: bool, block_bits: u32) -> Self {
        let slots = (BLOCK_SLOTS << block_bits) as usize;
        World {
            len,
            preemptible,
            cpus: vec![Cpu { active: vec![0; len], running: vec![0; len] }; CPUS],
            table: Table { words: vec![0; slots], writers: vec![usize::MAX; slots], current: usize::MAX },
            block_bits,
            outcomes: Vec::new(),
            windows,
            words_everywhere: false,
            kernel_counts: false,
            counted: false,
            marks: vec![0; CPUS],
        }
    }

    fn begin(&mut self, ctx: u64) -> Call {
        self.outcomes.push(Outcome::default());
        Call { id: self.outcomes.len() - 1, ctx, pos: 0, step: Step::Enter, skipped: false }
    }

    /// Runs one step of `call` on `cpu`. Returns false once the call is over.
    fn step(&mut self, cpu: usize, call: &mut Call) -> bool {
        let len = self.len;
        let kernel_counts = self.kernel_counts;
        let c = &mut self.cpus[cpu];
        match call.step {
            Step::Enter => {
                c.active[call.pos] += 1;
                call.skipped = c.active[call.pos] != 1;
                if call.skipped && call.pos == 0 {
                    self.outcomes[call.id].primary_skipped = true;
                }
                call.step = if call.skipped { Step::Exit } else { Step::BodyStart };
            }
            Step::BodyStart => {
                c.running[call.pos] += 1;
                call.step = Step::Decide;
            }
            Step::Decide => {
                let pos = call.pos;
                let out = &mut self.outcomes[call.id];
                out.ran += 1;
                let acts = if self.counted {
                    let busy = |i: usize| if kernel_counts { c.active[i] > 0 } else { c.running[i] > 0 };
                    if counted_hand_off(pos, &mut self.marks[cpu], call.ctx, busy) {
                        // The primary's mark: its own, unless an earlier invocation at the same
                        // address left it (its first backup skipped).
                        out.stale_word |= out.acts == 0;
                        if out.acts == 0 && !kernel_counts {
                            out.window_holder |= (0..pos).any(|i| c.running[i] == 0 && c.active[i] > 0);
                        }
                        false
                    } else {
                        let acts = cpu_rule_acts(pos, busy);
                        if !acts && out.acts == 0 && !kernel_counts {
                            out.window_holder |= (0..pos).any(|i| c.running[i] == 0 && c.active[i] > 0);
                        }
                        acts
                    }
                } else if self.preemptible && (self.words_everywhere || call.ctx < IRQ_STACKS) {
                    self.table.current = call.id;
                    let writers = self.table.writers.clone();
                    let (acts, at) = word_decide(&mut self.table, PROBE, call.ctx, pos, len, self.block_bits);
                    match at {
                        WordAt::Found(i, _) if !acts && out.acts == 0 => {
                            out.stale_word |= writers[i as usize] != call.id;
                        }
                        WordAt::Nowhere => out.no_word = true,
                        _ => {}
                    }
                    acts
                } else {
                    let acts = cpu_rule_acts(pos, |i| if kernel_counts { c.active[i] > 0 } else { c.running[i] > 0 });
                    // Over the kernel's counts, a holder in a window is no cause: nothing is.
                    if !acts && out.acts == 0 && !kernel_counts {
                        out.window_holder |= (0..pos).any(|i| c.running[i] == 0 && c.active[i] > 0);
                    }
                    acts
                };
                if acts {
                    out.acts += 1;
                }
                call.step = Step::BodyEnd;
            }
            Step::BodyEnd => {
                c.running[call.pos] -= 1;
                call.step = Step::Exit;
            }
            Step::Exit => {
                c.active[call.pos] -= 1;
                call.pos += 1;
                call.step = Step::Enter;
                if call.pos == len {
                    return false;
                }
            }
        }
        true
    }

    /// Whether an interrupt or a preemption may come before the next step of `call`.
    fn may_land(&self, call: &Call) -> bool {
        self.windows || !matches!(call.step, Step::BodyStart | Step::Exit)
    }

    /// Runs a whole invocation in interrupt context on `cpu` (nothing preempts it), nesting
    /// another one where `choices` say so when `depth` allows.
    fn interrupt(&mut self, cpu: usize, depth: u64, choices: &mut impl Iterator<Item = u8>) {
        let mut call = self.begin(irq_ctx(cpu, depth));
        loop {
            if depth < 2 && self.may_land(&call) && choices.next().unwrap_or(0).is_multiple_of(8) {
                self.interrupt(cpu, depth + 1, choices);
            }
            if !self.step(cpu, &mut call) {
                return;
            }
        }
    }
}

struct Thread {
    calls_left: usize,
    call: Option<Call>,
    /// The CPU the thread is bound to while inside a program (migration is disabled there).
    bound: Option<usize>,
}

/// Runs THREADS threads of CALLS invocations each on CPUS CPUs, as `choices` say.
fn simulate(len: usize, preemptible: bool, windows: bool, choices: Vec<u8>) -> World {
    simulate_in(len, preemptible, windows, 8, choices)
}

/// [`simulate`] with a table of `BLOCK_SLOTS << block_bits` slots (0: every thread's
/// candidates are the same two slots).
fn simulate_in(len: usize, preemptible: bool, windows: bool, block_bits: u32, choices: Vec<u8>) -> World {
    simulate_world(World::new(len, preemptible, windows, block_bits), choices)
}

/// [`simulate`] of a chain that decides every invocation by the word rule, interrupts too.
fn simulate_words_everywhere(len: usize, windows: bool, choices: Vec<u8>) -> World {
    let mut w = World::new(len, true, windows, 8);
    w.words_everywhere = true;
    simulate_world(w, choices)
}

/// [`simulate`] of a chain whose CPU rule reads the kernel's counts.
fn simulate_kernel_counts(len: usize, preemptible: bool, choices: Vec<u8>) -> World {
    let mut w = World::new(len, preemptible, true, 8);
    w.kernel_counts = true;
    simulate_world(w, choices)
}

/// [`simulate`] of a chain whose every invocation is only counted (counted_hand_off), its CPU
/// rule over the kernel's counts or the programs' own.
fn simulate_counted(len: usize, preemptible: bool, kernel_counts: bool, choices: Vec<u8>) -> World {
    let mut w = World::new(len, preemptible, true, 8);
    w.kernel_counts = kernel_counts;
    w.counted = true;
    simulate_world(w, choices)
}

fn simulate_world(mut w: World, choices: Vec<u8>) -> World {
    let mut threads: Vec<Thread> =
        (0..THREADS).map(|_| Thread { calls_left: CALLS, call: None, bound: None }).collect();
    let mut current: Vec<Option<usize>> = (0..CPUS).map(|c| (c < THREADS).then_some(c)).collect();
    let mut choices = choices.into_iter();
    let mut guard = 0;
    while threads.iter().any(|t| t.calls_left > 0 || t.call.is_some()) {
        guard += 1;
        assert!(guard < 100_000, "the model does not end");
        let pick = choices.next();
        let cpu = pick.map_or(guard % CPUS, |p| p as usize % CPUS);
        let action = pick.map_or(0, |p| p / 16 % 4);
        match (action, current[cpu]) {
            // An interrupt on the CPU.
            (1, Some(t)) if threads[t].call.as_ref().is_none_or(|c| w.may_land(c)) => w.interrupt(cpu, 0, &mut choices),
            // A switch to another thread: allowed where the current one can be preempted.
            (2, cur) => {
                let preemptible_now = match cur {
                    None => true,
                    Some(t) => match &threads[t].call {
                        None => true,
                        Some(c) => w.preemptible && w.may_land(c),
                    },
                };
                if preemptible_now {
                    if let Some(c) = cur.and_then(|t| threads[t].call.as_ref()) {
                        let after_primary = match c.pos {
                            0 => matches!(c.step, Step::BodyEnd | Step::Exit),
                            _ => matches!(c.step, Step::Enter | Step::BodyStart | Step::Decide),
                        };
                        if after_primary {
                            w.outcomes[c.id].preempted_between = true;
                        }
                    }
                    let next = (0..THREADS).map(|k| (k + cpu + pick.unwrap_or(0) as usize) % THREADS).find(|&k| {
                        !current.contains(&Some(k))
                            && threads[k].bound.is_none_or(|b| b == cpu)
                            && (threads[k].calls_left > 0 || threads[k].call.is_some())
                    });
                    if let Some(k) = next {
                        current[cpu] = Some(k);
                    }
                }
            }
            (_, Some(t)) => {
                let th = &mut threads[t];
                if th.call.is_none() && th.calls_left > 0 {
                    th.calls_left -= 1;
                    th.call = Some(w.begin(thread_ctx(t)));
                }
                if let Some(mut call) = th.call.take() {
                    if w.step(cpu, &mut call) {
                        th.bound = (call.step != Step::Enter).then_some(cpu);
                        th.call = Some(call);
                    } else {
                        th.bound = None;
                    }
                } else {
                    // This thread is done: give the CPU to one that is not.
                    current[cpu] = (0..THREADS).find(|&k| {
                        !current.contains(&Some(k))
                            && threads[k].bound.is_none_or(|b| b == cpu)
                            && (threads[k].calls_left > 0 || threads[k].call.is_some())
                    });
                }
            }
            (_, None) => {
                current[cpu] = (0..THREADS).find(|&k| {
                    !current.contains(&Some(k))
                        && threads[k].bound.is_none_or(|b| b == cpu)
                        && (threads[k].calls_left > 0 || threads[k].call.is_some())
                });
            }
        }
    }
    for c in &w.cpus {
        assert!(c.active.iter().chain(&c.running).all(|&n| n == 0), "counts left over: {:?}", c.active);
    }
    w
}

fn check(w: &World) -> Result<(), TestCaseError> {
    for (id, o) in w.outcomes.iter().enumerate() {
        prop_assert!(o.acts <= 1 || o.no_word, "invocation {id} taken care of {} times: {o:?}", o.acts);
        if o.acts == 0 && o.ran > 0 {
            prop_assert!(
                o.window_holder || o.stale_word || o.no_word,
                "invocation {id} lost for no documented cause: {o:?}"
            );
        }
        if !w.windows {
            prop_assert!(!(o.acts == 0 && o.window_holder), "a window holder without windows: {o:?}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn preemptible_chains_never_double(len in 2usize..=MAX_CHAIN, windows: bool, choices in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&simulate(len, true, windows, choices))?;
    }

    /// Every invocation's candidates in the same two slots: slots are taken over and given up
    /// all the time. A double needs a program that found no slot (counted) and a later one of
    /// the same invocation that claimed one; a loss without another cause needs a backup that
    /// found none and declined.
    #[test]
    fn preemptible_chains_sharing_slots_double_or_lose_only_without_a_word(len in 2usize..=MAX_CHAIN, windows: bool, choices in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&simulate_in(len, true, windows, 0, choices))?;
    }

    /// A thread-only target's chain on a preemptive kernel (word rule, no running counts)
    /// reached in interrupts after all: what it loses has a cause (a word an earlier interrupt
    /// left at the same address), and it never doubles.
    #[test]
    fn word_rule_chains_reached_in_interrupts_never_double(len in 2usize..=MAX_CHAIN, windows: bool, choices in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&simulate_words_everywhere(len, windows, choices))?;
    }

    #[test]
    fn atomic_chains_over_the_kernels_counts_lose_only_what_every_program_missed(len in 2usize..=MAX_CHAIN, choices in prop::collection::vec(any::<u8>(), 0..400)) {
        // Windows on: interrupts land between the kernel's count and the program's first
        // instruction, which the programs' own counts cannot see.
        let w = simulate_kernel_counts(len, false, choices);
        check(&w)?;
        for (id, o) in w.outcomes.iter().enumerate() {
            prop_assert!(o.acts == 1 || o.ran == 0, "invocation {id} lost although a program ran: {o:?}");
        }
    }

    #[test]
    fn preemptible_chains_over_the_kernels_counts_never_double(len in 2usize..=MAX_CHAIN, choices in prop::collection::vec(any::<u8>(), 0..400)) {
        let w = simulate_kernel_counts(len, true, choices);
        check(&w)?;
        for (id, o) in w.outcomes.iter().enumerate() {
            prop_assert!(o.acts == 1 || o.ran == 0 || o.stale_word, "invocation {id} lost for no word: {o:?}");
        }
    }

    /// Counted invocations where nothing preempts the programs (interrupts nest, two deep, on
    /// every step): the primary's hand-off to the first backup never loses nor doubles one;
    /// over the kernel's counts only an invocation every program skipped goes uncounted, over
    /// the programs' own a holder in the kernel's window too.
    #[test]
    fn atomic_counted_chains_count_each_invocation_once(len in 2usize..=MAX_CHAIN, kernel_counts: bool, choices in prop::collection::vec(any::<u8>(), 0..400)) {
        let w = simulate_counted(len, false, kernel_counts, choices);
        check(&w)?;
        for (id, o) in w.outcomes.iter().enumerate() {
            prop_assert!(o.acts == 1 || o.ran == 0 || o.window_holder, "invocation {id} lost although a program ran: {o:?}");
        }
    }

    /// Counted invocations where threads are preempted inside the programs: one goes uncounted
    /// only when its thread was preempted after the primary and before a backup's decision, or
    /// when the mark it found was left by an earlier invocation at its address.
    #[test]
    fn preemptible_counted_chains_report_what_they_miss(len in 2usize..=MAX_CHAIN, choices in prop::collection::vec(any::<u8>(), 0..400)) {
        let w = simulate_counted(len, true, true, choices);
        // A double needs another thread preempted inside the primary, or in the kernel's skip of
        // it, while the invocation goes on to a backup: not tracked here.
        for (id, o) in w.outcomes.iter().enumerate() {
            if o.acts == 0 && o.ran > 0 {
                prop_assert!(o.preempted_between || o.stale_word, "invocation {id} lost for no documented cause: {o:?}");
            }
        }
    }

    #[test]
    fn atomic_chains_never_double(len in 2usize..=MAX_CHAIN, windows: bool, choices in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&simulate(len, false, windows, choices))?;
    }
}

/// Without entry/exit windows, a chain of programs that nothing preempts loses an invocation
/// only when the kernel skipped every program of it.
#[test]
fn atomic_chain_without_windows_loses_only_what_all_programs_missed() {
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&(2usize..=MAX_CHAIN, prop::collection::vec(any::<u8>(), 0..400)), |(len, choices)| {
            let w = simulate(len, false, false, choices);
            for o in &w.outcomes {
                prop_assert!(o.acts == 1 || o.ran == 0, "{o:?}");
            }
            Ok(())
        })
        .unwrap();
}

/// The model does produce the situations the rules must survive (skips, and backups that act
/// for an invocation whose primary was skipped), and the rules lose far fewer invocations than
/// they rescue even under this much contention (windows left out: in the kernel they are a few
/// instructions against a program body of hundreds, here they would be as likely as a body).
#[test]
fn the_model_skips_and_rescues() {
    let (mut total, mut skipped, mut rescued, mut all_skipped, mut window, mut stale) = (0, 0, 0, 0, 0, 0);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..500 {
        let choices = prop::collection::vec(any::<u8>(), 400).new_tree(&mut runner).unwrap().current();
        let w = simulate(4, true, false, choices);
        for o in &w.outcomes {
            total += 1;
            skipped += o.primary_skipped as u32;
            rescued += (o.acts == 1 && o.primary_skipped) as u32;
            all_skipped += (o.ran == 0) as u32;
            window += (o.acts == 0 && o.window_holder) as u32;
            stale += (o.acts == 0 && o.stale_word) as u32;
        }
    }
    println!("{total} invocations, primary skipped {skipped}, rescued {rescued}, lost: every program skipped {all_skipped}, window {window}, stale word {stale}");
    assert!(rescued > 100, "rescued {rescued}");
    assert!(window + stale < rescued / 4, "lost {window} + {stale} of {rescued} rescued");
}

/// With a table of 256 blocks, where the model's context addresses (three threads', and two
/// depths of interrupts on two CPUs) fall in distinct blocks, every invocation found a slot: none
/// was counted without a word, so none may be doubled.
#[test]
fn a_roomy_table_always_has_a_word() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..300 {
        let choices = prop::collection::vec(any::<u8>(), 400).new_tree(&mut runner).unwrap().current();
        let w = simulate(4, true, false, choices);
        let ctxs: Vec<u64> =
            (0..THREADS).map(thread_ctx).chain((0..CPUS).flat_map(|c| (0..3).map(move |d| irq_ctx(c, d)))).collect();
        let distinct: std::collections::BTreeSet<u32> =
            ctxs.iter().map(|&c| word_slot(c, PROBE, 0, 8) / BLOCK_SLOTS).collect();
        assert_eq!(distinct.len(), ctxs.len(), "the model's addresses share a block");
        for o in &w.outcomes {
            assert!(!o.no_word && o.acts <= 1, "{o:?}");
        }
    }
}

/// Ownership by context address, take-over only of empty or finished words, and a take-over
/// that loses the race to another invocation moves on to the next candidate.
#[test]
fn slots_are_owned_by_address_and_taken_over_only_when_done() {
    let (a, b) = (thread_ctx(0), thread_ctx(1));
    assert!(owns(word_of(a, 2), a) && !owns(word_of(a, 2), b) && !owns(word_of(a + 8, 2), a));
    assert!(!owns(0, a) && !owns(0, 0), "an empty slot is nobody's");
    assert!(claimable(0, 4) && claimable(word_of(b, 3), 4) && !claimable(word_of(b, 2), 4));
    assert!(claimable(word_of(b, 1), 2), "a chain of two is done after its second program");
    for k in 0..SLOT_CANDIDATES {
        assert_eq!(word_slot(a, PROBE, k, 0), PROBE * SLOT_CANDIDATES + k, "block 0 holds every probe's candidates");
    }
    assert_ne!(word_slot(a, PROBE, 0, 8), word_slot(a, PROBE + 1, 0, 8), "probes at one address part");

    /// A table where another invocation takes slot `stolen` over between this one's load and
    /// swap.
    struct Racy {
        table: Table,
        stolen: u32,
    }
    impl WordSlots for Racy {
        fn load(&mut self, i: u32) -> Option<u64> {
            self.table.load(i)
        }
        fn swap(&mut self, i: u32, old: u64, new: u64) -> bool {
            if i == self.stolen {
                self.table.words[i as usize] = word_of(thread_ctx(2), 0);
            }
            self.table.swap(i, old, new)
        }
    }
    let first = word_slot(a, PROBE, 0, 0);
    let mut words = vec![0; BLOCK_SLOTS as usize];
    words[first as usize] = word_of(b, 3);
    let mut racy = Racy { table: Table { words, writers: vec![0; BLOCK_SLOTS as usize], current: 7 }, stolen: first };
    let (acts, at) = word_decide(&mut racy, PROBE, a, 0, 4, 0);
    assert!(acts);
    assert_eq!(at, WordAt::Claimed(first + 1), "the next candidate, once the first was taken");
    // The invocation finds its word there for its next program, which does not act.
    racy.stolen = u32::MAX;
    let (acts, at) = word_decide(&mut racy, PROBE, a, 1, 4, 0);
    assert!(!acts);
    assert_eq!(at, WordAt::Found(first + 1, word_of(a, 0)));
    // Every candidate held by other invocations between two programs: no word (counted); a
    // backup declines (it cannot tell whether the primary ran), a primary acts.
    for k in 1..SLOT_CANDIDATES {
        racy.table.words[(first + k) as usize] = word_of(b + 16 * k as u64, 1);
    }
    let (acts, at) = word_decide(&mut racy, PROBE, thread_ctx(3), 1, 4, 0);
    assert!(!acts);
    assert_eq!(at, WordAt::Nowhere);
    let (acts, at) = word_decide(&mut racy, PROBE, thread_ctx(3), 0, 4, 0);
    assert!(acts);
    assert_eq!(at, WordAt::Nowhere);
}
