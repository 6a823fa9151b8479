//! What the page ledger exports: its totals and the call-path audit.

use std::collections::BTreeMap;

use serde::Serialize;

/// How a call path takes its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// FOLL_GET references (get_user_pages_fast and the iov_iter_get_pages family).
    Get,
    /// FOLL_PIN pins.
    Pin,
    /// FOLL_PIN | FOLL_LONGTERM pins (held by design until unregistered).
    PinLongterm,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Get => "FOLL_GET",
            Class::Pin => "FOLL_PIN",
            Class::PinLongterm => "FOLL_PIN|FOLL_LONGTERM",
        }
    }
}

fn class_name<S: serde::Serializer>(class: &Option<Class>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(class.map_or("?", Class::name))
}

/// One call path of the audit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PathRow {
    /// "FOLL_PIN", "FOLL_PIN|FOLL_LONGTERM" or "FOLL_GET".
    #[serde(serialize_with = "class_name")]
    pub class: Option<Class>,
    /// The entry point ("pin_user_pages_fast").
    pub entry: String,
    /// Its callers, innermost first, as function names.
    pub callers: Vec<String>,
    /// Calls and pages taken.
    pub calls: u64,
    pub pages: u64,
    /// Of those pages: tied to a bio (named by a bio acquisition or release).
    pub with_bio: u64,
    /// Pages released, by release function ("unpin_user_folio <- __bio_release_pages").
    pub released_by: BTreeMap<String, u64>,
    /// Of the releases: those that marked the pages dirty.
    pub released_dirty: u64,
    /// At the snapshot: still held (long-term, held or suspect).
    pub outstanding: u64,
    /// Of those: held longer than the grace period, not long-term, not tied to a bio.
    pub suspect: u64,
}

/// The page ledger's totals. At any moment
/// `pinned = unpinned_matched + outstanding + unlisted`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PageTotals {
    /// FOLL_PIN pages the pin entry points returned (listed or not).
    pub pinned: u64,
    /// Of those: FOLL_LONGTERM.
    pub pinned_longterm: u64,
    /// FOLL_PIN pages tied to a bio.
    pub pinned_with_bio: u64,
    /// Listed FOLL_PIN pages that are tail pages of a large folio (THP, mTHP, hugetlb): the
    /// kernel side read their head page.
    pub pinned_large_folio: u64,
    /// Pin references the unpin variants released.
    pub unpinned: u64,
    /// Of those: matched to a pin seen in this trace.
    pub unpinned_matched: u64,
    /// Unpins with no pin seen (pinned before the trace, or by a call whose pages were not
    /// listed).
    pub unpinned_unknown_origin: u64,
    /// Pins whose pages no record listed (a kretprobe fallback, or a call beyond the record
    /// limit): counted, not followed.
    pub unlisted: u64,
    /// FOLL_GET pages returned (get_user_pages_fast), tied to a bio, and released with their
    /// bio (__bio_release_pages). Others are released with put_page, which no probe sees.
    pub referenced: u64,
    pub referenced_with_bio: u64,
    pub referenced_released_with_bio: u64,
    /// FOLL_GET pages released where a probe sees the reference dropped: pipe buffers over
    /// vmspliced user pages (page_cache_pipe_buf_release), NFS O_DIRECT once its requests are
    /// built (nfs_direct_{read,write}_schedule_iovec return).
    pub referenced_released_put: u64,
    /// At the snapshot: pins still held, by judgement.
    pub outstanding: u64,
    pub outstanding_longterm: u64,
    pub outstanding_with_bio: u64,
    /// Of the outstanding: taken by a process that exited a grace period ago or more (these
    /// are suspects, long-term or not, unless a bio still holds them).
    pub outstanding_owner_exited: u64,
    pub suspect: u64,
    /// Records whose kernel stack could not be read, or names an address no symbols record
    /// described.
    pub unknown_stacks: u64,
}

/// One process's FOLL_PIN pages, by the owner of each pin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerPins {
    pub comm: String,
    /// The cgroup (v2, its id: the inode number of its directory) the process was in when it
    /// first pinned: the one of the pin whose comm names it.
    pub cgroup: u64,
    pub pinned: u64,
    pub unpinned: u64,
}

/// Upper bounds (ns) of the age classes of outstanding pins: 1 ms to 1 h, by tens then
/// minutes ([`PageSnapshot::ages`]).
pub const AGE_BOUNDS_NS: [u64; 8] = [
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    60_000_000_000,
    600_000_000_000,
    3_600_000_000_000,
];

/// The age class of a pin held `held_ns`: its index in [`AGE_BOUNDS_NS`], or its length for
/// older ones.
pub fn age_class(held_ns: u64) -> usize {
    AGE_BOUNDS_NS.iter().position(|&b| held_ns <= b).unwrap_or(AGE_BOUNDS_NS.len())
}

/// The page ledger at a moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PageSnapshot {
    pub totals: PageTotals,
    /// Call paths, most pages first.
    pub paths: Vec<PathRow>,
    /// Outstanding pinned pages by age class (how long they have been held): one count per
    /// bound of [`AGE_BOUNDS_NS`], then the older ones.
    #[serde(skip)]
    pub ages: Vec<u64>,
}
