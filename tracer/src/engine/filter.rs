//! `--pid`, `--comm`, `--cgroup` and `--device`: which records the engine's consumers see.
//!
//! [`Filter`] is plain data (sets of tgids, comms, cgroup ids and dev_t values), the shape a
//! kernel-side map would take if the filter is one day pushed into the probes. [`Gate`] applies
//! it in userspace, at the engine's input, so the latency histograms, the bio ledger, the page
//! ledger and the per-process table only see matching records.
//!
//! # Unpins under a filter
//! An unpin often runs on another task than the pin it ends (a bio completion in an interrupt, a
//! kworker tearing an io_uring ring down), so its own owner says nothing. The gate keeps two page
//! ledgers: the engine's, fed with the pins of matching owners, and a shadow one fed with the
//! pins filtered out. An unpin is split reference by reference; each goes to the ledger that
//! holds a pin it releases (the engine's first), so it is kept or dropped by the owner of that
//! pin at pin time, with the ledger's own matching rules (by page, by folio, through a bio's
//! release). The matching is therefore the same as without a filter: no unpin of a kept pin is
//! lost, none of a dropped pin is kept. Unpins no ledger can match (pinned before the trace)
//! belong to no known owner: they go to the shadow ledger and are counted as unattributed. Bio
//! records go to both page ledgers (each ties only its own holds), and to the bio ledger when
//! the bio's acquisition matched (its end and release run on other tasks too).
//!
//! Latency records carry a device but no owner: only `--device` filters them.

use std::collections::BTreeSet;

use tracer_common::{BioEvent, BioRecord, LatencyEvent, Owner, PageEvent};

use super::{pages::PageLedger, Map};
use crate::model::{comm_to_string, PagesRecord};

/// What to keep. Empty sets match everything; the sets of different kinds must all match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Thread group ids (the PID `ps` shows).
    pub tgids: BTreeSet<u32>,
    /// Process names as the kernel keeps them (at most 15 bytes).
    pub comms: BTreeSet<String>,
    /// cgroup v2 ids (the inode numbers of the cgroup directories).
    pub cgroups: BTreeSet<u64>,
    /// Kernel dev_t values (major << 20 | minor).
    pub devs: BTreeSet<u32>,
    /// How the command line gave it ("--comm fio --device nullb0"), for the outputs only.
    pub label: String,
}

impl Filter {
    /// Whether it keeps everything.
    pub fn is_empty(&self) -> bool {
        !self.filters_owners() && self.devs.is_empty()
    }

    /// Whether it selects owners (processes or cgroups).
    pub fn filters_owners(&self) -> bool {
        !self.tgids.is_empty() || !self.comms.is_empty() || !self.cgroups.is_empty()
    }

    /// Whether the task `o` is one of the selected owners.
    pub fn owner_matches(&self, o: &Owner) -> bool {
        (self.tgids.is_empty() || self.tgids.contains(&o.tgid))
            && (self.cgroups.is_empty() || self.cgroups.contains(&o.cgroup))
            && (self.comms.is_empty() || self.comms.contains(&comm_to_string(&o.comm)))
    }

    /// Whether a process known by tgid and name only (no cgroup) is selected: None when the
    /// filter needs its cgroup.
    pub fn process_matches(&self, tgid: u32, comm: &str) -> Option<bool> {
        if !self.cgroups.is_empty() {
            return None;
        }
        Some(
            (self.tgids.is_empty() || self.tgids.contains(&tgid))
                && (self.comms.is_empty() || self.comms.contains(comm)),
        )
    }

    /// Whether a record of device `dev` is kept.
    pub fn dev_matches(&self, dev: u32) -> bool {
        self.devs.is_empty() || self.devs.contains(&dev)
    }
}

/// What the filter let through so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterStatus {
    /// The filter as the command line gave it.
    pub label: String,
    /// Records the filter judged and kept: pins and references (by owner), bio acquisitions
    /// (by owner and device), latency records (by device).
    pub matched: u64,
    /// Records the filter judged and dropped.
    pub dropped: u64,
    /// Unpins of pins taken before the trace: no owner is known, so the filter drops them.
    pub unattributed_unpins: u64,
}

/// The filter at the engine's input, with what it needs to judge releases (module docs).
#[derive(Clone, Debug)]
pub struct Gate {
    filter: Filter,
    /// The page ledger of the pins and references filtered out.
    shadow: PageLedger,
    /// Whether each bio acquired in the trace matched, by address (until its release).
    bios: Map<u64, bool>,
    matched: u64,
    dropped: u64,
}

impl Gate {
    /// `shadow`: an empty page ledger configured like the engine's.
    pub fn new(filter: Filter, shadow: PageLedger) -> Gate {
        Gate { filter, shadow, bios: Map::default(), matched: 0, dropped: 0 }
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The shadow ledger, for what both ledgers learn (symbols, process exits).
    pub fn shadow_mut(&mut self) -> &mut PageLedger {
        &mut self.shadow
    }

    pub fn status(&self) -> FilterStatus {
        FilterStatus {
            label: self.filter.label.clone(),
            matched: self.matched,
            dropped: self.dropped,
            unattributed_unpins: self.shadow.totals().unpinned_unknown_origin,
        }
    }

    fn count(&mut self, keep: bool) -> bool {
        if keep {
            self.matched += 1;
        } else {
            self.dropped += 1;
        }
        keep
    }

    /// Whether a latency record is kept (by device; it names no owner).
    pub fn latency(&mut self, ev: &LatencyEvent) -> bool {
        if self.filter.devs.is_empty() {
            return true;
        }
        let keep = self.filter.dev_matches(ev.dev);
        self.count(keep)
    }

    /// Whether the bio ledger gets a bio record: by its acquisition's owner and device; a bio
    /// acquired before the trace by its device alone, and not at all under an owner filter.
    /// The shadow page ledger gets every bio record under an owner filter (see
    /// [`PageLedger::bio`]).
    pub fn bio(&mut self, rec: &BioRecord, struct_page_size: u64) -> bool {
        if self.filter.filters_owners() {
            // Only then does the shadow ledger hold pins.
            self.shadow.bio(rec, struct_page_size);
        }
        let unknown = !self.filter.filters_owners() && self.filter.dev_matches(rec.dev);
        if rec.event == BioEvent::Acquire as u32 {
            let keep = self.filter.owner_matches(&rec.owner) && self.filter.dev_matches(rec.dev);
            self.bios.insert(rec.bio, keep);
            return self.count(keep);
        }
        if rec.event == BioEvent::Release as u32 {
            return self.bios.remove(&rec.bio).unwrap_or(unknown);
        }
        self.bios.get(&rec.bio).copied().unwrap_or(unknown)
    }

    /// Splits a page record between `kept` (the engine's page ledger) and the shadow ledger.
    pub fn pages(&mut self, rec: &PagesRecord, kept: &mut PageLedger) {
        if !self.filter.filters_owners() {
            kept.apply(rec);
            return;
        }
        let event = rec.event;
        if event == PageEvent::Pin as u32 || event == PageEvent::Get as u32 || event == PageEvent::PutScope as u32 {
            // Taken by the task of the record; a scope's references are dropped by the thread
            // that took them.
            let keep = self.filter.owner_matches(&rec.owner);
            if event != PageEvent::PutScope as u32 {
                self.count(keep);
            }
            if keep {
                kept.apply(rec);
            } else {
                self.shadow.apply(rec);
            }
        } else if event == PageEvent::Unpin as u32 {
            self.unpins(rec, kept);
        } else if event == PageEvent::Put as u32 {
            let mine = rec.entries.iter().any(|&(page, _)| kept.follows_reference(page));
            if mine {
                kept.apply(rec);
            } else {
                self.shadow.apply(rec);
            }
        }
    }

    /// An unpin record, reference by reference, to the ledger holding the pin each releases.
    fn unpins(&mut self, rec: &PagesRecord, kept: &mut PageLedger) {
        // Each ledger names the release once per record (its call path).
        let (mut kept_name, mut shadow_name) = (None, None);
        for &entry in &rec.entries {
            for _ in 0..rec.refs.max(1) {
                let (ledger, name) = if kept.would_release(entry.0, entry.1) {
                    (&mut *kept, &mut kept_name)
                } else {
                    (&mut self.shadow, &mut shadow_name)
                };
                let name: &std::rc::Rc<str> = name.get_or_insert_with(|| ledger.release_name(rec));
                ledger.release_ref(rec, entry, name);
            }
        }
        // Pages the record does not list: counted, owner unknown.
        self.shadow.release_unlisted(rec);
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::{LatencyKind, ProbeId, RecordType, BIO_FLAG_PINNED, BIO_MAX_VECS, COMM_LEN};

    use super::*;
    use crate::{
        engine::{Config, Pipeline},
        model::Record,
    };

    const FIO: (u32, &str, u64) = (100, "fio", 10);
    const DD: (u32, &str, u64) = (200, "dd", 20);
    /// An interrupt: bio completions and their unpins run there.
    const IRQ: (u32, &str, u64) = (0, "swapper/1", 1);
    const NULLB0: u32 = 251 << 20;
    const SDA: u32 = 8 << 20;

    fn owner((tgid, comm, cgroup): (u32, &str, u64)) -> Owner {
        let mut c = [0u8; COMM_LEN];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        Owner { tgid, pid: tgid, cgroup, comm: c }
    }

    fn pages(event: PageEvent, task: (u32, &str, u64), ts_ns: u64, entries: &[(u64, u64)], refs: u32) -> Record {
        let probe = if event == PageEvent::Pin { ProbeId::PinUserPagesFast } else { ProbeId::UnpinUserFolio };
        Record::Pages(PagesRecord {
            event: event as u32,
            ts_ns,
            probe: probe as u32,
            gup_flags: 0,
            nr: entries.len() as u32,
            refs,
            flags: 0,
            owner: owner(task),
            frames: Vec::new(),
            entries: entries.to_vec(),
        })
    }

    fn bio(event: BioEvent, addr: u64, dev: u32, task: (u32, &str, u64), first_page: u64) -> Record {
        let mut r = BioRecord {
            record: RecordType::Bio as u32,
            event: event as u32,
            ts_ns: 10,
            bio: addr,
            dev,
            op: 0,
            flags: BIO_FLAG_PINNED,
            status: 0,
            bytes: 4096,
            first_vec: 0,
            owner: owner(task),
            nr_vecs: 1,
            nr_pages: 1,
            pages: [0; BIO_MAX_VECS],
            vec_pages: [0; BIO_MAX_VECS],
        };
        r.pages[0] = first_page;
        r.vec_pages[0] = 1;
        Record::Bio(r)
    }

    fn latency(dev: u32) -> Record {
        Record::Latency(LatencyEvent {
            record: RecordType::Latency as u32,
            kind: LatencyKind::D2c as u32,
            dev,
            op: 0,
            bytes: 4096,
            start_ns: 0,
            end_ns: 1000,
        })
    }

    fn pipeline(filter: Filter) -> Pipeline {
        Pipeline::new(Config { filter: Filter { label: "test".into(), ..filter }, ..Config::default() })
    }

    fn comm(name: &str) -> Filter {
        Filter { comms: [name.to_string()].into(), ..Filter::default() }
    }

    #[test]
    fn kinds_combine_and_values_are_alternatives() {
        let f = Filter { tgids: [100, 300].into(), cgroups: [10].into(), ..Filter::default() };
        assert!(f.owner_matches(&owner(FIO)));
        assert!(!f.owner_matches(&owner((100, "fio", 11))), "another cgroup");
        assert!(!f.owner_matches(&owner(DD)));
        assert_eq!(f.process_matches(100, "fio"), None, "a cgroup filter cannot judge a bare process");
        let f = Filter { comms: ["fio".into()].into(), devs: [NULLB0].into(), ..Filter::default() };
        assert!(f.owner_matches(&owner((7, "fio", 0))) && !f.owner_matches(&owner(DD)));
        assert_eq!((f.process_matches(7, "fio"), f.process_matches(7, "dd")), (Some(true), Some(false)));
        assert!(f.dev_matches(NULLB0) && !f.dev_matches(SDA));
        assert!(Filter::default().is_empty() && Filter::default().owner_matches(&owner(DD)));
        assert!(!f.is_empty() && f.filters_owners());
        assert!(!Filter { devs: [SDA].into(), ..Filter::default() }.filters_owners());
    }

    /// fio and dd pin; an interrupt unpins both: fio's unpin is kept, dd's dropped, by the
    /// owner of the pin each releases.
    #[test]
    fn unpins_follow_the_owner_of_their_pin() {
        let mut p = pipeline(comm("fio"));
        p.apply(&pages(PageEvent::Pin, FIO, 1, &[(0x1000, 0x1000), (0x1040, 0x1040)], 1));
        p.apply(&pages(PageEvent::Pin, DD, 2, &[(0x2000, 0x2000)], 1));
        p.apply(&pages(PageEvent::Unpin, IRQ, 3, &[(0x2000, 0x2000), (0x1000, 0x1000)], 1));
        p.apply(&pages(PageEvent::Unpin, IRQ, 4, &[(0x9000, 0x9000)], 1));
        let t = p.pages.snapshot(5).totals;
        assert_eq!((t.pinned, t.unpinned, t.unpinned_matched, t.unpinned_unknown_origin), (2, 1, 1, 0));
        assert_eq!(t.outstanding, 1, "0x1040 is still pinned by fio");
        let owners = p.pages.owners();
        assert_eq!(owners.keys().copied().collect::<Vec<_>>(), [100]);
        assert_eq!((owners[&100].pinned, owners[&100].unpinned), (2, 1));
        let status = p.filter_status().unwrap();
        assert_eq!((status.matched, status.dropped, status.unattributed_unpins), (1, 1, 1));
    }

    /// A folio-level unpin of two references of a folio both processes pinned: one each.
    #[test]
    fn a_folio_unpin_is_split_reference_by_reference() {
        let mut p = pipeline(comm("fio"));
        p.apply(&pages(PageEvent::Pin, DD, 1, &[(0x3040, 0x3000)], 1));
        p.apply(&pages(PageEvent::Pin, FIO, 2, &[(0x3080, 0x3000)], 1));
        p.apply(&pages(PageEvent::Unpin, IRQ, 3, &[(0, 0x3000)], 2));
        let t = p.pages.snapshot(4).totals;
        assert_eq!((t.pinned, t.unpinned, t.unpinned_matched, t.outstanding), (1, 1, 1, 0));
        assert_eq!(p.filter_status().unwrap().unattributed_unpins, 0);
    }

    /// Without a filter the same records give the same ledger as the filter's two halves.
    #[test]
    fn a_filter_that_keeps_everything_changes_nothing() {
        let records = [
            pages(PageEvent::Pin, FIO, 1, &[(0x1000, 0x1000), (0x3040, 0x3000)], 1),
            pages(PageEvent::Pin, FIO, 2, &[(0x3080, 0x3000)], 1),
            pages(PageEvent::Unpin, IRQ, 3, &[(0, 0x3000), (0x1000, 0x1000)], 1),
            pages(PageEvent::Unpin, IRQ, 4, &[(0x7000, 0x7000)], 1),
        ];
        let mut all = pipeline(Filter::default());
        let mut fio = pipeline(Filter { tgids: [100].into(), ..Filter::default() });
        for r in &records {
            all.apply(r);
            fio.apply(r);
        }
        let (a, f) = (all.pages.snapshot(5).totals, fio.pages.snapshot(5).totals);
        assert_eq!((a.pinned, a.unpinned_matched, a.outstanding), (f.pinned, f.unpinned_matched, f.outstanding));
        assert_eq!((a.unpinned_unknown_origin, f.unpinned_unknown_origin), (1, 0), "left out as unattributed");
        assert!(all.filter_status().is_none());
    }

    /// Bios by the owner and device of their acquisition, whoever completes them; latency
    /// records by device.
    #[test]
    fn bios_and_latency_by_device_and_owner() {
        let mut p = pipeline(Filter { devs: [NULLB0].into(), ..comm("fio") });
        p.apply(&bio(BioEvent::Acquire, 0xa, NULLB0, FIO, 0x1000));
        p.apply(&bio(BioEvent::Acquire, 0xb, NULLB0, DD, 0x2000));
        p.apply(&bio(BioEvent::Acquire, 0xc, SDA, FIO, 0x3000));
        for addr in [0xa, 0xb, 0xc] {
            p.apply(&bio(BioEvent::End, addr, if addr == 0xc { SDA } else { NULLB0 }, IRQ, 0));
        }
        p.apply(&bio(BioEvent::Release, 0xa, NULLB0, IRQ, 0x1000));
        p.apply(&bio(BioEvent::Release, 0xb, NULLB0, IRQ, 0x2000));
        p.apply(&latency(NULLB0));
        p.apply(&latency(SDA));
        let t = p.ledger.snapshot(20).totals;
        assert_eq!((t.acquired.bios, t.ended.bios, t.released.bios, t.unknown_origin.bios), (1, 1, 1, 0));
        let rows = p.latency.cumulative(&[50.0]);
        assert!(rows.iter().all(|(k, _)| k.dev == NULLB0) && !rows.is_empty());
        let status = p.filter_status().unwrap();
        assert_eq!((status.matched, status.dropped), (2, 3));
    }

    #[test]
    fn a_filter_that_matches_nothing_says_so() {
        let mut p = pipeline(comm("nosuch"));
        p.apply(&pages(PageEvent::Pin, FIO, 1, &[(0x1000, 0x1000)], 1));
        p.apply(&pages(PageEvent::Unpin, IRQ, 2, &[(0x1000, 0x1000)], 1));
        let status = p.filter_status().unwrap();
        assert_eq!((status.matched, status.dropped, status.unattributed_unpins), (0, 1, 0));
        assert!(p.pages.owners().is_empty());
        assert_eq!(p.pages.snapshot(3).totals.unpinned, 0);
    }
}
