//! What the bio ledger exports: plain data for the snapshot.

use std::fmt;

use serde::Serialize;

/// Bios and the pages they hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub bios: u64,
    pub pages: u64,
}

impl Count {
    pub(super) fn add(&mut self, pages: u64) {
        self.bios += 1;
        self.pages += pages;
    }

    /// Pages added to bios already counted (a bio filled in several calls).
    pub(super) fn add_pages(&mut self, pages: u64) {
        self.pages += pages;
    }
}

impl std::ops::Add for Count {
    type Output = Count;
    fn add(self, o: Count) -> Count {
        Count { bios: self.bios + o.bios, pages: self.pages + o.pages }
    }
}

/// Durations of one kind (nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub count: u64,
    pub total_ns: u128,
    pub max_ns: u64,
}

impl Timing {
    pub(super) fn add(&mut self, ns: u64) {
        self.count += 1;
        self.total_ns += ns as u128;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn mean_ns(&self) -> Option<u64> {
        (self.count > 0).then(|| (self.total_ns / self.count as u128) as u64)
    }

    /// The longest, if any.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max_ns)
    }
}

/// Totals over the run. At any moment
/// `acquired = matched + in_flight + releasing + leaked` (bios and pages), and unknown-origin
/// releases are counted apart (`released = matched + unknown_origin`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bios whose pages were acquired (bio_iov_iter_get_pages returned 0), and their pages.
    pub acquired: Count,
    /// Of those: FOLL_PIN pins (BIO_PAGE_PINNED) ...
    pub pinned: Count,
    /// ... and FOLL_GET references (Linux 6.1 Direct I/O).
    pub referenced: Count,
    /// Acquired bios that completed (bio_endio).
    pub ended: Count,
    /// Every release seen (__bio_release_pages): matched + unknown origin.
    pub released: Count,
    /// Releases of a bio acquired during the trace (counted with the pages it acquired).
    pub matched: Count,
    /// Matched releases whose pages or kind (pin / reference) differ from the acquisition.
    pub mismatched: Count,
    /// Acquired, not completed yet.
    pub in_flight: Count,
    /// Completed less than the grace period ago and not released yet.
    pub releasing: Count,
    /// Freed without release (the address was reused) or completed longer than the grace
    /// period ago and not released.
    pub leaked: Count,
    /// Releases of bios acquired before the trace started (or by a path that does not go
    /// through bio_iov_iter_get_pages). Never leaks.
    pub unknown_origin: Count,
    /// bio_endio of a bio the ledger does not follow.
    pub ends_untracked: u64,
    /// Bios with more vecs than a record holds: their further pages are not counted.
    pub truncated_bios: u64,
    /// Records with an unknown event.
    pub invalid_records: u64,
    /// Acquisition to release, per matched release.
    pub hold: Timing,
    /// Completion to release, per matched release of a completed bio.
    pub unpin_lag: Timing,
}

/// One owner's or one device's share (pages attributed to the task that acquired them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub acquired: Count,
    pub matched: Count,
    pub in_flight: Count,
    pub releasing: Count,
    pub leaked: Count,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRow {
    pub tgid: u32,
    pub comm: String,
    pub counts: Group,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// Kernel dev_t (major << 20 | minor).
    pub dev: u32,
    /// REQ_OP_*.
    pub op: u32,
    pub counts: Group,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakKind {
    /// A new bio acquired pages at the address of a bio that still held pages: that bio was
    /// freed without releasing them. Certain (unless the release record was lost).
    FreedWithoutRelease,
    /// Completed longer than the grace period ago, not released. A suspect.
    NotReleased,
}

impl LeakKind {
    pub fn name(self) -> &'static str {
        match self {
            LeakKind::FreedWithoutRelease => "freed_without_release",
            LeakKind::NotReleased => "not_released",
        }
    }
}

/// A bio whose pages were never released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakReport {
    pub kind: LeakKind,
    pub bio: u64,
    /// The task that acquired the pages.
    pub tgid: u32,
    pub pid: u32,
    pub comm: String,
    pub cgroup: u64,
    pub dev: u32,
    pub op: u32,
    pub pinned: bool,
    pub pages: u64,
    /// struct page address of the first page.
    pub first_page: u64,
    /// Time from the acquisition to the moment the leak was found (the reuse, or the end of
    /// the trace).
    pub acquired_age_ns: u64,
    /// Time from completion to that moment; None if the bio never completed.
    pub ended_age_ns: Option<u64>,
    /// bi_status at completion.
    pub status: Option<i32>,
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            LeakKind::FreedWithoutRelease => "freed without release",
            LeakKind::NotReleased => "not released",
        };
        write!(
            f,
            "bio {:#x} of {} (tgid {}, pid {}): {} {} pages {what}, acquired {} ago",
            self.bio,
            self.comm,
            self.tgid,
            self.pid,
            self.pages,
            if self.pinned { "pinned" } else { "referenced" },
            seconds(self.acquired_age_ns),
        )?;
        match self.ended_age_ns {
            Some(ns) => write!(f, ", completed {} ago", seconds(ns)),
            None => write!(f, ", never completed"),
        }
    }
}

/// The pages of one side of a mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagesSeen {
    pub vecs: u32,
    pub pages: u64,
    pub pinned: bool,
    pub first_page: u64,
}

/// A release whose pages differ from what its bio acquired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MismatchReport {
    pub bio: u64,
    /// The task that acquired the pages.
    pub tgid: u32,
    pub pid: u32,
    pub comm: String,
    pub dev: u32,
    pub op: u32,
    pub acquired: PagesSeen,
    pub released: PagesSeen,
    /// "vec_count", "pages" (a vec's page or size, from `first_vec`), "pin_kind".
    pub differences: Vec<&'static str>,
    /// First vec that differs.
    pub first_vec: Option<usize>,
}

impl fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |p: &PagesSeen| {
            format!("{} vecs, {} {} pages", p.vecs, p.pages, if p.pinned { "pinned" } else { "referenced" })
        };
        write!(
            f,
            "bio {:#x} of {} (tgid {}): acquired {}, released {} ({})",
            self.bio,
            self.comm,
            self.tgid,
            side(&self.acquired),
            side(&self.released),
            self.differences.join(", ")
        )
    }
}

/// Seconds with millisecond precision.
pub fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// The ledger at one moment, as plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// The moment (bpf_ktime_get_ns clock) the states were judged at.
    pub at_ns: u64,
    pub grace_ns: u64,
    pub totals: Totals,
    /// By (tgid, comm) of the acquiring task.
    pub owners: Vec<OwnerRow>,
    /// By (dev, op).
    pub devices: Vec<DeviceRow>,
    /// Freed without release (in the order found), then not released (oldest first); at most
    /// the configured number.
    pub leaks: Vec<LeakReport>,
    pub leaks_not_listed: u64,
    pub mismatches: Vec<MismatchReport>,
    pub mismatches_not_listed: u64,
    /// Distinct pages held by unreleased bios, and those held by more than one.
    pub pages_held: u64,
    pub pages_shared: u64,
}
