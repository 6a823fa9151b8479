//! The pin ledger: each bio's user pages from acquisition to completion to release, page by
//! page. Pure: fed with decoded [`BioRecord`]s; time comes only from their timestamps and from
//! the moment a snapshot is asked for. Rules and states: docs/ledger.md.
//!
//! - Acquire (bio_iov_iter_get_pages returned 0, or on 6.2+ the bio's first queueing, which
//!   sees the same vecs): the bio holds its pages, pinned
//!   (`BIO_FLAG_PINNED`) or referenced. An Acquire on an address whose bio still holds pages is
//!   either the same bio filled further (not completed, same thread, the vecs grow) or a new
//!   bio: the earlier one was freed without release, a leak.
//! - End (bio_endio): completed; its pages should be released soon.
//! - Release (__bio_release_pages): the pages are unpinned or put. Matched against the
//!   acquisition; differing pages are a mismatch. A release with no acquisition is of
//!   unknown origin (acquired before the trace started), never a leak.
//! - At a snapshot: not completed = in flight; completed longer than the grace period ago =
//!   leaked (suspect); completed more recently = releasing.

mod report;

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;

use tracer_common::{BioEvent, BioRecord, Owner, BIO_FLAG_PINNED};

pub use self::report::{
    seconds, Count, DeviceRow, Group, LeakKind, LeakReport, LedgerSnapshot, MismatchReport, OwnerRow, PagesSeen,
    Timing, Totals,
};
use super::{
    detect::{self, BioState},
    page_list::PageList,
    Config, Map,
};
use crate::model::comm_to_string;

/// A matched release's timings (the `hold` and `unpin_lag` latency figures), with the bio's
/// device, op and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BioTiming {
    /// Acquisition (the first) to release.
    pub hold_ns: u64,
    /// Completion (the last bio_endio) to release; None if the bio was released uncompleted.
    pub unpin_lag_ns: Option<u64>,
    pub dev: u32,
    pub op: u32,
    /// The bio's size at its last acquisition (bi_size once filled).
    pub bytes: u32,
}

/// What one record did to the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A bio acquired its pages. `freed`: the bio that held pages at the same address before,
    /// freed without release (a leak).
    Acquired {
        freed: Option<LeakReport>,
    },
    /// More pages acquired by a bio that already held some (filled in several calls).
    Refilled,
    Ended,
    /// Release of an acquired bio; `mismatch` if the pages released differ.
    Released {
        timing: BioTiming,
        mismatch: Option<MismatchReport>,
    },
    /// Release with no acquisition seen.
    UnknownOrigin,
    /// Completion of a bio the ledger does not follow.
    Untracked,
    /// Unknown event.
    Invalid,
}

/// The count of a group that bios in `state` are counted in.
fn count_of(state: BioState, g: &mut Group) -> &mut Count {
    match state {
        BioState::InFlight => &mut g.in_flight,
        BioState::Releasing => &mut g.releasing,
        BioState::Leaked => &mut g.leaked,
    }
}

/// One bio holding pages.
#[derive(Clone, Debug)]
struct Bio {
    owner: Owner,
    dev: u32,
    op: u32,
    pinned: bool,
    acquired_ns: u64,
    /// bi_size at the last acquisition.
    bytes: u32,
    /// The last completion: time and bi_status.
    end: Option<(u64, i32)>,
    pages: PageList,
}

impl Bio {
    /// (tgid, comm): the comm as the kernel's bytes, made text only in snapshots.
    fn owner_key(&self) -> (u32, [u8; tracer_common::COMM_LEN]) {
        (self.owner.tgid, self.owner.comm)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Ledger {
    config: Config,
    /// Bios holding pages, by address.
    bios: Map<u64, Bio>,
    /// Totals that only grow (in flight, releasing and suspects are added at a snapshot).
    totals: Totals,
    owners: BTreeMap<(u32, [u8; tracer_common::COMM_LEN]), Group>,
    devices: BTreeMap<(u32, u32), Group>,
    /// Freed without release, in the order found.
    leaks: Vec<LeakReport>,
    leaks_not_listed: u64,
    mismatches: Vec<MismatchReport>,
    mismatches_not_listed: u64,
}

impl Ledger {
    pub fn new(config: Config) -> Ledger {
        Ledger { config, ..Ledger::default() }
    }

    /// Whether the ledger follows the bio at `addr` (it holds user pages, not released yet).
    pub fn follows(&self, addr: u64) -> bool {
        self.bios.contains_key(&addr)
    }

    pub fn apply(&mut self, rec: &BioRecord) -> Step {
        if rec.event == BioEvent::Acquire as u32 {
            self.acquire(rec)
        } else if rec.event == BioEvent::End as u32 {
            self.end(rec)
        } else if rec.event == BioEvent::Release as u32 {
            self.release(rec)
        } else {
            self.totals.invalid_records += 1;
            Step::Invalid
        }
    }

    fn acquire(&mut self, rec: &BioRecord) -> Step {
        let list = PageList::of(rec);
        let pinned = rec.flags & BIO_FLAG_PINNED != 0;
        let mut freed = None;
        if let Some(old) = self.bios.remove(&rec.bio) {
            let refill = old.end.is_none() && old.owner.pid == rec.owner.pid && list.extends(&old.pages);
            if refill {
                self.refill(rec, old, list);
                return Step::Refilled;
            }
            let report = self.leak_report(LeakKind::FreedWithoutRelease, rec.bio, &old, rec.ts_ns);
            let pages = old.pages.pages();
            self.totals.leaked.add(pages);
            self.group(&old, |g| g.leaked.add(pages));
            log::info!("leak: {report}");
            if self.leaks.len() < self.config.max_reports {
                self.leaks.push(report.clone());
            } else {
                self.leaks_not_listed += 1;
            }
            freed = Some(report);
        }
        let bio = Bio {
            owner: rec.owner,
            dev: rec.dev,
            op: rec.op,
            pinned,
            acquired_ns: rec.ts_ns,
            bytes: rec.bytes,
            end: None,
            pages: list,
        };
        let pages = bio.pages.pages();
        self.totals.acquired.add(pages);
        if pinned { &mut self.totals.pinned } else { &mut self.totals.referenced }.add(pages);
        if bio.pages.truncated() {
            self.totals.truncated_bios += 1;
        }
        self.group(&bio, |g| g.acquired.add(pages));
        self.bios.insert(rec.bio, bio);
        Step::Acquired { freed }
    }

    /// The same bio, more pages: follow the new list, count the pages added.
    fn refill(&mut self, rec: &BioRecord, mut bio: Bio, list: PageList) {
        let addr = rec.bio;
        bio.bytes = rec.bytes;
        let added = list.pages().saturating_sub(bio.pages.pages());
        let newly_truncated = list.truncated() && !bio.pages.truncated();
        bio.pages = list;
        self.totals.acquired.add_pages(added);
        if bio.pinned { &mut self.totals.pinned } else { &mut self.totals.referenced }.add_pages(added);
        if newly_truncated {
            self.totals.truncated_bios += 1;
        }
        self.group(&bio, |g| g.acquired.add_pages(added));
        self.bios.insert(addr, bio);
    }

    fn end(&mut self, rec: &BioRecord) -> Step {
        let Some(bio) = self.bios.get_mut(&rec.bio) else {
            self.totals.ends_untracked += 1;
            return Step::Untracked;
        };
        if bio.end.is_none() {
            self.totals.ended.add(bio.pages.pages());
        }
        // A chained bio can see bio_endio more than once; the last call is its completion.
        bio.end = Some((rec.ts_ns, rec.status));
        Step::Ended
    }

    fn release(&mut self, rec: &BioRecord) -> Step {
        let released = PageList::of(rec);
        let Some(bio) = self.bios.remove(&rec.bio) else {
            self.totals.released.add(released.pages());
            self.totals.unknown_origin.add(released.pages());
            return Step::UnknownOrigin;
        };
        let pages = bio.pages.pages();
        self.totals.released.add(pages);
        self.totals.matched.add(pages);
        self.group(&bio, |g| g.matched.add(pages));

        let released_pinned = rec.flags & BIO_FLAG_PINNED != 0;
        let mut differences = Vec::new();
        if released.nr_vecs() != bio.pages.nr_vecs() {
            differences.push("vec_count");
        }
        let first_vec = bio.pages.first_difference(&released);
        if first_vec.is_some() {
            differences.push("pages");
        }
        if released_pinned != bio.pinned {
            differences.push("pin_kind");
        }
        let mismatch = (!differences.is_empty()).then(|| {
            let seen = |l: &PageList, pinned| PagesSeen {
                vecs: l.nr_vecs(),
                pages: l.pages(),
                pinned,
                first_page: l.first_page(),
            };
            MismatchReport {
                bio: rec.bio,
                tgid: bio.owner.tgid,
                pid: bio.owner.pid,
                comm: comm_to_string(&bio.owner.comm),
                dev: bio.dev,
                op: bio.op,
                acquired: seen(&bio.pages, bio.pinned),
                released: seen(&released, released_pinned),
                differences,
                first_vec,
            }
        });
        if let Some(m) = &mismatch {
            log::info!("mismatch: {m}");
            self.totals.mismatched.add(pages);
            if self.mismatches.len() < self.config.max_reports {
                self.mismatches.push(m.clone());
            } else {
                self.mismatches_not_listed += 1;
            }
        }

        let timing = BioTiming {
            hold_ns: rec.ts_ns.saturating_sub(bio.acquired_ns),
            unpin_lag_ns: bio.end.map(|(ended, _)| rec.ts_ns.saturating_sub(ended)),
            dev: bio.dev,
            op: bio.op,
            bytes: bio.bytes,
        };
        self.totals.hold.add(timing.hold_ns);
        if let Some(lag) = timing.unpin_lag_ns {
            self.totals.unpin_lag.add(lag);
        }
        Step::Released { timing, mismatch }
    }

    /// The ledger at `now_ns` (bpf_ktime_get_ns clock): bios still holding pages are judged
    /// in flight, releasing or leaked by then.
    pub fn snapshot(&self, now_ns: u64) -> LedgerSnapshot {
        let mut totals = self.totals.clone();
        let mut owners = self.owners.clone();
        let mut devices = self.devices.clone();
        let holds = self.holds();
        let mut suspects = Vec::new();
        for (&addr, bio) in &self.bios {
            let pages = bio.pages.pages();
            let state = detect::bio_state(bio.end.map(|(ended, _)| ended), now_ns, self.config.grace_ns);
            if state == BioState::Leaked {
                suspects.push(self.leak_report(LeakKind::NotReleased, addr, bio, now_ns));
            }
            let total = match state {
                BioState::InFlight => &mut totals.in_flight,
                BioState::Releasing => &mut totals.releasing,
                BioState::Leaked => &mut totals.leaked,
            };
            total.add(pages);
            count_of(state, owners.entry(bio.owner_key()).or_default()).add(pages);
            count_of(state, devices.entry((bio.dev, bio.op)).or_default()).add(pages);
        }
        suspects.sort_by_key(|l| (std::cmp::Reverse(l.acquired_age_ns), l.bio));
        let mut leaks = self.leaks.clone();
        let room = self.config.max_reports.saturating_sub(leaks.len());
        let leaks_not_listed = self.leaks_not_listed + suspects.len().saturating_sub(room) as u64;
        leaks.extend(suspects.into_iter().take(room));
        LedgerSnapshot {
            at_ns: now_ns,
            grace_ns: self.config.grace_ns,
            totals,
            owners: owners
                .into_iter()
                .map(|((tgid, comm), counts)| OwnerRow { tgid, comm: comm_to_string(&comm), counts })
                .collect(),
            devices: devices.into_iter().map(|((dev, op), counts)| DeviceRow { dev, op, counts }).collect(),
            leaks,
            leaks_not_listed,
            mismatches: self.mismatches.clone(),
            mismatches_not_listed: self.mismatches_not_listed,
            pages_held: holds.len() as u64,
            pages_shared: holds.values().filter(|&&n| n > 1).count() as u64,
        }
    }

    fn leak_report(&self, kind: LeakKind, addr: u64, bio: &Bio, now_ns: u64) -> LeakReport {
        LeakReport {
            kind,
            bio: addr,
            tgid: bio.owner.tgid,
            pid: bio.owner.pid,
            comm: comm_to_string(&bio.owner.comm),
            cgroup: bio.owner.cgroup,
            dev: bio.dev,
            op: bio.op,
            pinned: bio.pinned,
            pages: bio.pages.pages(),
            first_page: bio.pages.first_page(),
            acquired_age_ns: now_ns.saturating_sub(bio.acquired_ns),
            ended_age_ns: bio.end.map(|(ended, _)| now_ns.saturating_sub(ended)),
            status: bio.end.map(|(_, status)| status),
        }
    }

    fn group(&mut self, bio: &Bio, f: impl Fn(&mut Group)) {
        f(self.owners.entry(bio.owner_key()).or_default());
        f(self.devices.entry((bio.dev, bio.op)).or_default());
    }

    /// Holds per page (struct page address) of the bios holding pages: pages shared by bios
    /// have more than one (counted at snapshots only, from the bios' page lists).
    fn holds(&self) -> Map<u64, u32> {
        let mut holds: Map<u64, u32> = Map::default();
        for bio in self.bios.values() {
            for page in bio.pages.each_page(self.config.struct_page_size) {
                *holds.entry(page).or_insert(0) += 1;
            }
        }
        holds
    }

    /// Checks the ledger's own bookkeeping: every bio and page acquired is matched by a
    /// release, leaked, or still held by a bio the ledger follows.
    #[cfg(test)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let t = &self.totals;
        let held = self.bios.values().map(|b| b.pages.pages()).sum::<u64>();
        let followed = Count { bios: self.bios.len() as u64, pages: held };
        let accounted = Count {
            bios: t.matched.bios + t.leaked.bios + followed.bios,
            pages: t.matched.pages + t.leaked.pages + followed.pages,
        };
        if accounted != t.acquired {
            return Err(format!("acquired {:?}, but matched + leaked + followed = {accounted:?}", t.acquired));
        }
        Ok(())
    }
}
