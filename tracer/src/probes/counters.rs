//! Kernel counters read from the maps, as plain data. Pure: the ebpf module fills
//! them, output renders them, intervals are differences of two snapshots.

use std::collections::BTreeMap;

use tracer_common::{ProbeStat, LOST_REASONS, PROBE_COUNT};

/// One process's FOLL_PIN pages (see tracer_common::ProcStat for the attribution rule).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcCounts {
    pub comm: String,
    pub pages_pinned: u64,
    pub pages_unpinned: u64,
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
        d.procs = self
            .procs
            .iter()
            .filter_map(|(tgid, p)| {
                let before = earlier.procs.get(tgid);
                let pinned = p.pages_pinned.saturating_sub(before.map_or(0, |b| b.pages_pinned));
                let unpinned = p.pages_unpinned.saturating_sub(before.map_or(0, |b| b.pages_unpinned));
                (pinned > 0 || unpinned > 0).then(|| {
                    (*tgid, ProcCounts { comm: p.comm.clone(), pages_pinned: pinned, pages_unpinned: unpinned })
                })
            })
            .collect();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_the_difference_and_drops_idle_processes() {
        let mut a = Counters { pages_pinned: 10, pages_unpinned: 4, ..Counters::default() };
        a.probes[0] = ProbeStat { hits: 2, amount: 10 };
        a.procs.insert(7, ProcCounts { comm: "fio".into(), pages_pinned: 10, pages_unpinned: 4 });
        a.procs.insert(8, ProcCounts { comm: "idle".into(), pages_pinned: 1, pages_unpinned: 1 });
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
