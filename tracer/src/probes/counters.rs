//! Kernel counters read from the maps, as plain data. Pure: the ebpf module fills
//! them, output renders them, intervals are differences of two snapshots.

use std::collections::BTreeMap;

use tracer_common::{counters::PATH_COUNTS, ProbeStat, LOST_REASONS, PROBE_COUNT};

/// One process's FOLL_PIN pages (see tracer_common::ProcStat for the attribution rule).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcCounts {
    pub comm: String,
    /// The cgroup (v2, its id: the inode number of its directory) the process was in when it
    /// first pinned: the one of the pin whose comm names it.
    pub cgroup: u64,
    pub pages_pinned: u64,
    pub pages_unpinned: u64,
}

impl ProcCounts {
    /// A process's pages pinned and unpinned since `before` (its counts then, zeros when it had
    /// none), with its comm and cgroup; None when it pinned and unpinned nothing since.
    pub fn grown(comm: &str, cgroup: u64, now: (u64, u64), before: (u64, u64)) -> Option<ProcCounts> {
        let pinned = now.0.saturating_sub(before.0);
        let unpinned = now.1.saturating_sub(before.1);
        (pinned > 0 || unpinned > 0).then(|| ProcCounts {
            comm: comm.to_string(),
            cgroup,
            pages_pinned: pinned,
            pages_unpinned: unpinned,
        })
    }
}

/// All counters at one moment, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Indexed by ProbeId.
    pub probes: [ProbeStat; PROBE_COUNT as usize],
    /// Exact FOLL_PIN pages acquired / released (the kernel's own accounting).
    pub pages_pinned: u64,
    pub pages_unpinned: u64,
    /// Keyed by tgid.
    pub procs: BTreeMap<u32, ProcCounts>,
    /// Indexed by tracer_common::LostReason.
    pub lost: [u64; LOST_REASONS as usize],
    /// Indexed by ProbeId: times the probe's program did not run because it was already
    /// running on that CPU (an interrupt nested in it), from the kernel's recursion_misses.
    pub missed: [u64; PROBE_COUNT as usize],
    /// Records the programs put into the ring buffer, and records the reader took out, since
    /// the programs were loaded (not differences: [`Counters::since`] keeps them). Once the
    /// reader drained a quiet ring buffer they are equal: every record not counted lost was
    /// read.
    pub records_submitted: u64,
    pub records_read: u64,
    /// Indexed by tracer_common::counters::PathCount: how pin records got their stacks.
    pub stack_paths: [u64; PATH_COUNTS as usize],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            probes: [ProbeStat::default(); PROBE_COUNT as usize],
            pages_pinned: 0,
            pages_unpinned: 0,
            procs: BTreeMap::new(),
            lost: [0; LOST_REASONS as usize],
            missed: [0; PROBE_COUNT as usize],
            records_submitted: 0,
            records_read: 0,
            stack_paths: [0; PATH_COUNTS as usize],
        }
    }
}

impl Counters {
    /// Events seen by a probe but not fully recorded, and probe runs the kernel skipped.
    /// Events lost: records not streamed and probe runs the kernel skipped. An unread kernel
    /// stack is not one (the record still streams; only its call path is unknown).
    pub fn lost_events(&self) -> u64 {
        let stacks = self.lost[tracer_common::LostReason::StackLost as usize];
        self.lost.iter().sum::<u64>() - stacks + self.missed.iter().sum::<u64>()
    }

    /// What happened between `earlier` and `self` (counters only grow; saturate if a map
    /// entry was recreated).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut d = self.clone();
        for (now, then) in d.probes.iter_mut().zip(earlier.probes.iter()) {
            now.hits = now.hits.saturating_sub(then.hits);
            now.amount = now.amount.saturating_sub(then.amount);
        }
        d.pages_pinned = self.pages_pinned.saturating_sub(earlier.pages_pinned);
        d.pages_unpinned = self.pages_unpinned.saturating_sub(earlier.pages_unpinned);
        for (now, then) in d.lost.iter_mut().zip(earlier.lost.iter()) {
            *now = now.saturating_sub(*then);
        }
        for (now, then) in d.missed.iter_mut().zip(earlier.missed.iter()) {
            *now = now.saturating_sub(*then);
        }
        for (now, then) in d.stack_paths.iter_mut().zip(earlier.stack_paths.iter()) {
            *now = now.saturating_sub(*then);
        }
        d.procs = self
            .procs
            .iter()
            .filter_map(|(tgid, p)| {
                let before = earlier.procs.get(tgid).map_or((0, 0), |b| (b.pages_pinned, b.pages_unpinned));
                let grown = ProcCounts::grown(&p.comm, p.cgroup, (p.pages_pinned, p.pages_unpinned), before)?;
                Some((*tgid, grown))
            })
            .collect();
        d
    }
}

/// What the kernel and the chain counted for one chained probe, cumulative since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainCounts {
    /// The primary's skips (recursion_misses).
    pub primary_skips: u64,
    /// The primary's skips when the backups began to act: none of them was rescued.
    pub skipped_before_armed: u64,
    /// Invocations a backup took care of.
    pub rescued: u64,
    /// The primary's skips when every program of the chain was attached.
    pub skipped_before_complete: u64,
    /// The fewest skips of one of the chain's backups, when it has any.
    pub backup_skips: Option<u64>,
    /// The chain filters first (the raw system call tracepoints): the only chains whose backups
    /// rescue every skip they must whenever they run, so the only ones `backup_skips` bounds.
    /// Elsewhere a backup that runs can decline for a skipped invocation: a stale word or no
    /// word at all (word rule), or, where the kernel's guards are not known, the CPU rule's window over the
    /// programs' own counts (an interrupt between the kernel taking the primary's `active` and
    /// its first instruction; seen on 6.12: `__bio_release_pages` skipped once, no backup
    /// skipped, no rescue), and the skip is lost.
    pub filters_first: bool,
}

/// Invocations of a chained probe that no program of the chain took care of, and how many
/// the backups took care of twice (their rules broke).
///
/// Two upper bounds of the same figure, both exact when nothing goes wrong, and the smaller
/// is kept: the primary's skips less the rescues (too high by the skips of invocations a
/// backup could not tell were skipped: a thread preempted in the kernel's few instructions
/// before or after a primary, while the invocation was one the probe filters out), and, once
/// the chain is complete and only for chains that filter first, the skips of any one of its
/// backups (there an invocation is lost only when every program of the chain skipped it; too
/// high by those another program ran). Elsewhere a backup that ran may have declined
/// ([`ChainCounts::filters_first`]), and only the first bound holds.
pub fn chain_losses(c: ChainCounts) -> (u64, u64) {
    let before = c.skipped_before_armed.min(c.primary_skips);
    let after = c.primary_skips - before;
    let doubled = c.rescued.saturating_sub(after);
    let by_rescues = before + after.saturating_sub(c.rescued) + doubled;
    match c.backup_skips {
        Some(fewest) if doubled == 0 && c.filters_first => {
            (by_rescues.min(c.skipped_before_complete.min(c.primary_skips) + fewest), 0)
        }
        _ => (by_rescues, doubled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_losses_keep_the_smaller_bound() {
        let c = ChainCounts {
            primary_skips: 100,
            rescued: 95,
            backup_skips: Some(0),
            filters_first: true,
            ..ChainCounts::default()
        };
        assert_eq!(chain_losses(c), (0, 0), "no invocation lost when a backup skipped none");
        let c = ChainCounts { backup_skips: Some(9), ..c };
        assert_eq!(chain_losses(c), (5, 0), "the rescues bound when it is the smaller");
        let c = ChainCounts { skipped_before_armed: 10, skipped_before_complete: 10, rescued: 85, ..c };
        assert_eq!(chain_losses(c), (15, 0), "skips before the backups acted are lost");
        let c = ChainCounts { backup_skips: Some(2), ..c };
        assert_eq!(chain_losses(c), (12, 0));
        let c = ChainCounts { primary_skips: 4, rescued: 6, backup_skips: Some(0), ..ChainCounts::default() };
        assert_eq!(chain_losses(c), (2, 2), "doubles count as lost, whatever the backups say");
        let c = ChainCounts { primary_skips: 7, rescued: 3, backup_skips: None, ..ChainCounts::default() };
        assert_eq!(chain_losses(c), (4, 0), "without a backup only the rescues bound holds");
        let c = ChainCounts { primary_skips: 1, rescued: 0, backup_skips: Some(0), ..ChainCounts::default() };
        assert_eq!(chain_losses(c), (1, 0), "a backup that ran may have declined: the skip is lost");
    }

    #[test]
    fn interval_is_the_difference_and_drops_idle_processes() {
        let mut a = Counters { pages_pinned: 10, pages_unpinned: 4, ..Counters::default() };
        a.probes[0] = ProbeStat { hits: 2, amount: 10 };
        a.procs.insert(7, ProcCounts { comm: "fio".into(), cgroup: 1, pages_pinned: 10, pages_unpinned: 4 });
        a.procs.insert(8, ProcCounts { comm: "idle".into(), cgroup: 1, pages_pinned: 1, pages_unpinned: 1 });
        let mut b = a.clone();
        b.pages_pinned = 25;
        b.pages_unpinned = 20;
        b.probes[0] = ProbeStat { hits: 5, amount: 25 };
        b.procs.get_mut(&7).unwrap().pages_pinned = 25;
        b.procs.get_mut(&7).unwrap().pages_unpinned = 20;
        b.lost[0] = 3;
        b.missed[1] = 2;
        let d = b.since(&a);
        assert_eq!((d.pages_pinned, d.pages_unpinned), (15, 16));
        assert_eq!(d.probes[0], ProbeStat { hits: 3, amount: 15 });
        assert_eq!(d.procs.len(), 1);
        assert_eq!(d.procs[&7].pages_unpinned, 16);
        assert_eq!(d.lost_events(), 5, "lost records and skipped probe runs");
    }
}
