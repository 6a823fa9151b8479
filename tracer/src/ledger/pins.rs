//! The page ledger: every page a pin entry point returned (FOLL_PIN) matched to the unpin that
//! released it, folio by folio; every page a FOLL_GET entry point returned followed to its bio;
//! and an audit per call path (the symbolized kernel stack of the call): FOLL_GET or FOLL_PIN,
//! LONGTERM or not, how many pages, tied to a bio or not, and which release function ended them.
//!
//! Pure, like the bio ledger: fed with decoded [`PagesRecord`]s, [`SymbolsRecord`]s and the bio
//! records. Rules (docs/ledger.md, "Page ledger"):
//! - A pin adds one hold per page to the page's folio (`folios[i]`, the head page the kernel
//!   counts pins on). An unpin of a page takes the hold of that page, or else the folio's oldest;
//!   an unpin that names only a folio (unpin_user_folio, unpin_folio, unpin_folios) takes the
//!   folio's oldest holds. Counts per folio are exact either way; only which call a hold is
//!   charged to can differ when one folio is pinned by several calls at once.
//! - An unpin with no hold is of unknown origin (pinned before the trace started), never a leak.
//! - A bio acquisition or release that names a held page ties that hold to a bio.
//! - At a snapshot, holds tied to a bio are judged by the bio ledger; FOLL_LONGTERM holds are
//!   long-term (io_uring registered buffers, RDMA, VFIO: held by design); other holds younger
//!   than the grace period are held; older ones are leak suspects.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use tracer_common::{
    BioEvent, BioRecord, Owner, PageEvent, ProbeId, BIO_FLAG_PINNED, PAGES_FLAG_DIRTY, PAGES_FLAG_QUEUED, PROBES,
};

use super::pages::PageList;

/// Values of the FOLL_* flags the audit names, from the traced kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollBits {
    pub write: u32,
    pub longterm: u32,
}

impl FollBits {
    /// Kernels before 6.2 define FOLL_* as macros (not in BTF): FOLL_WRITE 0x01,
    /// FOLL_LONGTERM 0x10000.
    pub const BEFORE_6_2: FollBits = FollBits { write: 0x01, longterm: 0x10000 };
}

impl Default for FollBits {
    fn default() -> FollBits {
        FollBits::BEFORE_6_2
    }
}

/// A decoded page record (tracer_common::PagesHeader and its entries): one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PagesRecord {
    pub event: u32,
    pub ts_ns: u64,
    pub probe: u32,
    pub gup_flags: u32,
    pub nr: u32,
    pub refs: u32,
    pub flags: u32,
    pub owner: Owner,
    /// Kernel stack of the call (return addresses, innermost first; empty when unread).
    pub frames: Vec<u64>,
    /// (struct page or 0, folio) of each listed entry.
    pub entries: Vec<(u64, u64)>,
}

/// Kernel symbols of return addresses ("function+0xoff"), as userspace resolved them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolsRecord {
    pub symbols: Vec<(u64, String)>,
}

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

/// The page ledger at a moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PageSnapshot {
    pub totals: PageTotals,
    /// Call paths, most pages first.
    pub paths: Vec<PathRow>,
}

/// One pin (or followed reference) of a page: 24 bytes, the bulk of the ledger's memory per
/// outstanding page.
#[derive(Clone, Copy, Debug)]
struct Hold {
    page: u64,
    ts_ns: u64,
    /// The thread that took it.
    pid: u32,
    /// The audit row (bits 0..31) and whether a bio named the page ([`TIED_TO_BIO`]).
    path_bio: u32,
}

const TIED_TO_BIO: u32 = 1 << 31;
const _: () = assert!(std::mem::size_of::<Hold>() == 24);

impl Hold {
    fn new(page: u64, rec: &PagesRecord, path: u32) -> Hold {
        Hold { page, ts_ns: rec.ts_ns, pid: rec.owner.pid, path_bio: path & !TIED_TO_BIO }
    }
    fn path(&self) -> usize {
        (self.path_bio & !TIED_TO_BIO) as usize
    }
    fn bio(&self) -> bool {
        self.path_bio & TIED_TO_BIO != 0
    }
    fn tie_to_bio(&mut self) {
        self.path_bio |= TIED_TO_BIO;
    }
}

/// Frames of the call path kept for the audit.
const PATH_DEPTH: usize = 6;

#[derive(Clone, Debug, Default)]
pub struct PageLedger {
    foll: FollBits,
    grace_ns: u64,
    /// Function names of return addresses.
    symbols: HashMap<u64, String>,
    /// Audit rows; `path_index` finds them by (class, entry, callers).
    paths: Vec<PathRow>,
    path_index: HashMap<(Class, u32, Vec<String>), u32>,
    /// FOLL_PIN holds by folio, oldest first.
    holds: HashMap<u64, VecDeque<Hold>>,
    /// Folio of each page with holds.
    page_folio: HashMap<u64, u64>,
    /// FOLL_GET references by page, oldest first (followed until their bio releases them).
    refs: HashMap<u64, VecDeque<Hold>>,
    /// Processes that exited, and when (the latest exit of each tgid).
    exited: HashMap<u32, u64>,
    /// The process of each thread that took pins or references.
    threads: HashMap<u32, u32>,
    /// Followed references a scope release will drop: by (thread, scope probe), their pages.
    scoped: HashMap<(u32, u32), Vec<u64>>,
    totals: PageTotals,
}

/// "func+0x1a/0x80" -> "func"; a module's function keeps its module: "func [nfs]".
fn function_name(symbol: &str) -> String {
    let mut words = symbol.split_whitespace();
    let function = words.next().unwrap_or_default();
    let function = function.split('+').next().unwrap_or(function);
    match words.find(|w| w.starts_with('[')) {
        Some(module) => format!("{function} {}", module.split('+').next().unwrap_or(module)),
        None => function.to_string(),
    }
}

/// Functions that drop, before they return, every FOLL_GET reference their thread took inside
/// them (their probes stream PutScope records), unless they return -EIOCBQUEUED; each with the
/// functions that tell a reference taken inside it in a call path (the path keeps 6 callers:
/// the server's copies of request data through /dev/fuse show fuse_dev_do_read, not
/// fuse_dev_read, which is its only caller that takes references).
const SCOPES: [(ProbeId, &[&str]); 6] = [
    (ProbeId::NfsDirectReadScheduleIovec, &["nfs_direct_read_schedule_iovec"]),
    (ProbeId::NfsDirectWriteScheduleIovec, &["nfs_direct_write_schedule_iovec"]),
    (ProbeId::FuseFileReadIter, &["fuse_file_read_iter"]),
    (ProbeId::FuseFileWriteIter, &["fuse_file_write_iter"]),
    (ProbeId::FuseDevRead, &["fuse_dev_read", "fuse_dev_do_read"]),
    (ProbeId::FuseDevWrite, &["fuse_dev_write", "fuse_dev_do_write"]),
];

/// FOLL_GET references followed at most; beyond, they are counted only.
const MAX_REFS_FOLLOWED: usize = 1 << 20;

impl PageLedger {
    pub fn new(foll: FollBits, grace_ns: u64) -> PageLedger {
        PageLedger { foll, grace_ns, ..PageLedger::default() }
    }

    pub fn symbols(&mut self, s: &SymbolsRecord) {
        for (ip, name) in &s.symbols {
            self.symbols.insert(*ip, function_name(name));
        }
    }

    /// The last thread of process `tgid` exited at `ts_ns`.
    pub fn exit(&mut self, tgid: u32, ts_ns: u64) {
        self.exited.insert(tgid, ts_ns);
    }

    /// Takes the symbols `earlier` learnt (the stream describes each address once).
    pub fn inherit_symbols(&mut self, earlier: &PageLedger) {
        self.symbols.clone_from(&earlier.symbols);
    }

    pub fn apply(&mut self, rec: &PagesRecord) {
        if rec.event == PageEvent::Pin as u32 || rec.event == PageEvent::Get as u32 {
            self.take(rec);
        } else if rec.event == PageEvent::Unpin as u32 {
            self.release(rec);
        } else if rec.event == PageEvent::Put as u32 || rec.event == PageEvent::PutScope as u32 {
            self.put(rec);
        }
    }

    /// Function names of a call's frames, without the tracer's own frames (the BPF program and
    /// its trampoline) and without the probed function itself.
    fn callers(&mut self, frames: &[u64], probe: u32) -> Vec<String> {
        let own = PROBES.get(probe as usize).map_or("", |d| d.target);
        let resolved: Option<Vec<&String>> = frames.iter().map(|ip| self.symbols.get(ip)).collect();
        let Some(resolved) = resolved.filter(|r| !r.is_empty()) else {
            self.totals.unknown_stacks += 1;
            return Vec::new();
        };
        let mut names: Vec<String> = resolved
            .into_iter()
            .filter(|f| !f.starts_with("bpf_") && !f.starts_with("0x") && !f.is_empty())
            .cloned()
            .collect();
        // A function with an fexit trampoline shows twice (its frame and the trampoline's), and
        // the probed function itself may show: the path starts at its caller.
        names.dedup();
        let skip = names.iter().take_while(|f| f.split(' ').next() == Some(own)).count();
        names.drain(..skip);
        names.truncate(PATH_DEPTH);
        names
    }

    fn path(&mut self, class: Class, probe: u32, callers: Vec<String>) -> u32 {
        let key = (class, probe, callers);
        if let Some(&i) = self.path_index.get(&key) {
            return i;
        }
        let i = self.paths.len() as u32;
        let entry = PROBES.get(probe as usize).map_or("?", |d| d.target).to_string();
        self.paths.push(PathRow { class: Some(class), entry, callers: key.2.clone(), ..PathRow::default() });
        self.path_index.insert(key, i);
        i
    }

    fn take(&mut self, rec: &PagesRecord) {
        let class = if rec.event == PageEvent::Get as u32 {
            Class::Get
        } else if rec.gup_flags & self.foll.longterm != 0 {
            Class::PinLongterm
        } else {
            Class::Pin
        };
        let callers = self.callers(&rec.frames, rec.probe);
        let path = self.path(class, rec.probe, callers);
        let row = &mut self.paths[path as usize];
        let listed = rec.entries.len() as u64;
        let counted = rec.nr as u64;
        row.calls += 1;
        row.pages += counted;
        // Pages beyond the record's entries (or all, for a kretprobe) are counted, not followed.
        let unlisted = counted.saturating_sub(listed);
        self.threads.insert(rec.owner.pid, rec.owner.tgid);
        if class == Class::Get {
            self.totals.referenced += counted;
            if self.refs.len() + listed as usize <= MAX_REFS_FOLLOWED {
                for &(page, _) in &rec.entries {
                    self.refs.entry(page).or_default().push_back(Hold::new(page, rec, path));
                }
                // Taken inside a function that drops them all before it returns.
                let callers = &self.paths[path as usize].callers;
                let inside = |names: &[&str]| callers.iter().any(|c| c.split(' ').next().is_some_and(|f| names.contains(&f)));
                if let Some(&(scope, _)) = SCOPES.iter().find(|(_, names)| inside(names)) {
                    let pages = rec.entries.iter().map(|&(page, _)| page);
                    self.scoped.entry((rec.owner.pid, scope as u32)).or_default().extend(pages);
                }
            }
            return;
        }
        self.totals.pinned += counted;
        self.totals.unlisted += unlisted;
        if class == Class::PinLongterm {
            self.totals.pinned_longterm += counted;
        }
        for &(page, folio) in &rec.entries {
            self.holds.entry(folio).or_default().push_back(Hold::new(page, rec, path));
            if page != 0 {
                self.page_folio.insert(page, folio);
            }
        }
    }

    /// The name of a release: the unpin variant and the function that called it.
    fn release_name(&mut self, rec: &PagesRecord) -> String {
        let variant = PROBES.get(rec.probe as usize).map_or("?", |d| d.target);
        match self.callers(&rec.frames, rec.probe).first() {
            Some(caller) => format!("{variant} <- {caller}"),
            None => variant.to_string(),
        }
    }

    fn release(&mut self, rec: &PagesRecord) {
        let name = self.release_name(rec);
        let dirty = rec.flags & PAGES_FLAG_DIRTY != 0;
        let refs = rec.refs.max(1);
        for &(page, folio) in &rec.entries {
            for _ in 0..refs {
                self.totals.unpinned += 1;
                match self.unhold(folio, page) {
                    Some(hold) => {
                        self.totals.unpinned_matched += 1;
                        let row = &mut self.paths[hold.path()];
                        *row.released_by.entry(name.clone()).or_insert(0) += 1;
                        if dirty {
                            row.released_dirty += 1;
                        }
                    }
                    None => self.totals.unpinned_unknown_origin += 1,
                }
            }
        }
        // Entries not listed (a kretprobe fallback, or beyond the record) are counted only.
        let n = (rec.nr as u64).saturating_sub(rec.entries.len() as u64) * refs as u64;
        self.totals.unpinned += n;
        self.totals.unpinned_unknown_origin += n;
    }

    /// FOLL_GET references dropped where a probe sees it: the pages of a pipe buffer over
    /// vmspliced user pages, or every page the thread took inside a returning scope function
    /// (PutScope). Each releases the oldest followed reference of its page not held by a bio
    /// (of that thread, for a scope).
    fn put(&mut self, rec: &PagesRecord) {
        let name = self.release_name(rec);
        let (pages, thread): (Vec<u64>, Option<u32>) = if rec.event == PageEvent::PutScope as u32 {
            let pages = self.scoped.remove(&(rec.owner.pid, rec.probe)).unwrap_or_default();
            if rec.flags & PAGES_FLAG_QUEUED != 0 {
                // The I/O goes on: its references are dropped later, where no probe sees it.
                return;
            }
            (pages, Some(rec.owner.pid))
        } else {
            (rec.entries.iter().map(|&(page, _)| page).collect(), None)
        };
        for page in pages {
            let Some(queue) = self.refs.get_mut(&page) else { continue };
            let mine = |h: &Hold| !h.bio() && thread.is_none_or(|pid| h.pid == pid);
            let Some(h) = queue.iter().position(mine).and_then(|at| queue.remove(at)) else { continue };
            if queue.is_empty() {
                self.refs.remove(&page);
            }
            self.totals.referenced_released_put += 1;
            *self.paths[h.path()].released_by.entry(name.clone()).or_insert(0) += 1;
        }
    }

    /// Takes one hold of `folio`: the one of `page` if named, else the oldest.
    fn unhold(&mut self, folio: u64, page: u64) -> Option<Hold> {
        let queue = self.holds.get_mut(&folio)?;
        let at = if page != 0 { queue.iter().position(|h| h.page == page).unwrap_or(0) } else { 0 };
        let hold = queue.remove(at)?;
        if queue.is_empty() {
            self.holds.remove(&folio);
        }
        if hold.page != 0 && !self.holds.get(&folio).is_some_and(|q| q.iter().any(|h| h.page == hold.page)) {
            self.page_folio.remove(&hold.page);
        }
        Some(hold)
    }

    /// A bio record: the held pages it names are tied to a bio; a referenced bio's release
    /// releases its FOLL_GET references.
    pub fn bio(&mut self, rec: &BioRecord, struct_page_size: u64) {
        let pinned = rec.flags & BIO_FLAG_PINNED != 0;
        let list = PageList::of(rec);
        let release = rec.event == BioEvent::Release as u32;
        if rec.event != BioEvent::Acquire as u32 && !release {
            return;
        }
        for page in list.each_page(struct_page_size) {
            if pinned {
                let folio = self.page_folio.get(&page).copied().unwrap_or(page);
                let Some(queue) = self.holds.get_mut(&folio) else { continue };
                // A hold that names no page (folio_add_pin) stands for any page of its folio.
                let hold = queue.iter().position(|h| h.page == page && !h.bio());
                let hold = hold.or_else(|| queue.iter().position(|h| h.page == 0 && !h.bio()));
                if let Some(h) = hold.and_then(|i| queue.get_mut(i)) {
                    h.tie_to_bio();
                    self.totals.pinned_with_bio += 1;
                    self.paths[h.path()].with_bio += 1;
                }
            } else if let Some(queue) = self.refs.get_mut(&page) {
                if let Some(h) = queue.iter_mut().find(|h| !h.bio()) {
                    h.tie_to_bio();
                    self.totals.referenced_with_bio += 1;
                    self.paths[h.path()].with_bio += 1;
                }
                if release {
                    if let Some(h) = queue.iter().position(|h| h.bio()).and_then(|at| queue.remove(at)) {
                        self.totals.referenced_released_with_bio += 1;
                        *self.paths[h.path()].released_by.entry("__bio_release_pages".into()).or_insert(0) += 1;
                    }
                    if queue.is_empty() {
                        self.refs.remove(&page);
                    }
                }
            }
        }
    }

    /// The ledger at `now_ns`.
    pub fn snapshot(&self, now_ns: u64) -> PageSnapshot {
        let mut totals = self.totals.clone();
        let mut paths = self.paths.clone();
        for queue in self.holds.values() {
            for h in queue {
                let row = &mut paths[h.path()];
                row.outstanding += 1;
                totals.outstanding += 1;
                // Its process exited (after taking it) a grace period ago or more: nothing will
                // release it on the process's behalf any more, long-term or not. A bio still
                // holding it is the bio ledger's to judge.
                let orphaned = self
                    .threads
                    .get(&h.pid)
                    .and_then(|tgid| self.exited.get(tgid))
                    .is_some_and(|&exit| exit >= h.ts_ns && now_ns.saturating_sub(exit) >= self.grace_ns);
                if orphaned {
                    totals.outstanding_owner_exited += 1;
                }
                if h.bio() {
                    totals.outstanding_with_bio += 1;
                } else if orphaned {
                    row.suspect += 1;
                    totals.suspect += 1;
                } else if row.class == Some(Class::PinLongterm) {
                    totals.outstanding_longterm += 1;
                } else if now_ns.saturating_sub(h.ts_ns) >= self.grace_ns {
                    row.suspect += 1;
                    totals.suspect += 1;
                }
            }
        }
        paths.sort_by(|a, b| b.pages.cmp(&a.pages).then_with(|| a.entry.cmp(&b.entry)).then_with(|| a.callers.cmp(&b.callers)));
        PageSnapshot { totals, paths }
    }

}

#[cfg(test)]
mod tests {
    use tracer_common::{BioEvent, ProbeId, BIO_MAX_VECS, COMM_LEN, PAGES_FLAG_TRUNCATED, PAGES_FLAG_UNLISTED, PAGES_MAX_ENTRIES};

    use super::*;

    const S: u64 = 1_000_000_000;
    const FOLL: FollBits = FollBits { write: 1, longterm: 1 << 8 };

    fn owner() -> Owner {
        Owner { tgid: 7, pid: 7, cgroup: 1, comm: [b'f'; COMM_LEN] }
    }

    fn rec(event: PageEvent, probe: ProbeId, ts_ns: u64, entries: &[(u64, u64)]) -> PagesRecord {
        PagesRecord {
            event: event as u32,
            ts_ns,
            probe: probe as u32,
            gup_flags: 0,
            nr: entries.len() as u32,
            refs: 1,
            frames: vec![0x10, 0x11, 0x12, 0x13, 0x14],
            flags: 0,
            owner: owner(),
            entries: entries.to_vec(),
        }
    }

    fn ledger() -> PageLedger {
        let mut l = PageLedger::new(FOLL, S);
        let names = [
            (0x10, "bpf_prog_x+0x10"),
            (0x11, "pin_user_pages_fast+0x5"),
            (0x12, "pin_user_pages_fast+0x9"),
            (0x13, "iov_iter_extract_pages+0x2"),
            (0x14, "bio_iov_iter_get_pages+0x9"),
            (0x20, "__bio_release_pages+0x40/0x90"),
            (0x21, "blkdev_bio_end_io+0x1"),
        ];
        l.symbols(&SymbolsRecord { symbols: names.iter().map(|&(ip, n)| (ip, n.to_string())).collect() });
        l
    }

    fn bio(event: BioEvent, pinned: bool, first_page: u64, pages: u16) -> BioRecord {
        let mut r = BioRecord {
            record: 2,
            event: event as u32,
            ts_ns: 0,
            bio: 0xb10,
            dev: 1,
            op: 0,
            flags: if pinned { BIO_FLAG_PINNED } else { 0 },
            status: 0,
            bytes: 4096 * pages as u32,
            _pad: 0,
            owner: owner(),
            nr_vecs: 1,
            nr_pages: pages as u32,
            pages: [0; BIO_MAX_VECS],
            vec_pages: [0; BIO_MAX_VECS],
        };
        r.pages[0] = first_page;
        r.vec_pages[0] = pages;
        r
    }

    #[test]
    fn pins_match_unpins_by_page_and_by_folio() {
        let mut l = ledger();
        // Two small pages, and two pages of one large folio (head 0x3000).
        l.apply(&rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 10, &[(0x1000, 0x1000), (0x1040, 0x1040), (0x3040, 0x3000), (0x3080, 0x3000)]));
        let mut by_page = rec(PageEvent::Unpin, ProbeId::UnpinUserPages, 20, &[(0x1040, 0x1040), (0x1000, 0x1000)]);
        by_page.frames = vec![0x20, 0x21];
        l.apply(&by_page);
        let mut by_folio = rec(PageEvent::Unpin, ProbeId::UnpinUserFolio, 30, &[(0, 0x3000)]);
        by_folio.refs = 2;
        by_folio.frames = vec![0x20, 0x21];
        l.apply(&by_folio);
        let s = l.snapshot(40);
        assert_eq!((s.totals.pinned, s.totals.unpinned, s.totals.unpinned_matched), (4, 4, 4));
        assert_eq!((s.totals.outstanding, s.totals.unpinned_unknown_origin), (0, 0));
        let path = &s.paths[0];
        assert_eq!(path.class, Some(Class::Pin));
        assert_eq!(path.entry, "pin_user_pages_fast");
        assert_eq!(path.callers, ["iov_iter_extract_pages", "bio_iov_iter_get_pages"], "the BPF frame is dropped");
        assert_eq!(path.released_by.get("unpin_user_pages <- __bio_release_pages"), Some(&2));
        assert_eq!(path.released_by.get("unpin_user_folio <- __bio_release_pages"), Some(&2));
    }

    #[test]
    fn unpins_without_a_pin_are_of_unknown_origin_never_leaks() {
        let mut l = ledger();
        l.apply(&rec(PageEvent::Unpin, ProbeId::UnpinUserPage, 5, &[(0x9000, 0x9000)]));
        let s = l.snapshot(100 * S);
        assert_eq!((s.totals.unpinned, s.totals.unpinned_unknown_origin, s.totals.suspect), (1, 1, 0));
    }

    #[test]
    fn held_pins_are_judged_by_kind_bio_and_age() {
        let mut l = ledger();
        let mut longterm = rec(PageEvent::Pin, ProbeId::PinUserPages, 0, &[(0x1000, 0x1000)]);
        longterm.gup_flags = FOLL.longterm | FOLL.write;
        l.apply(&longterm);
        l.apply(&rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 0, &[(0x2000, 0x2000), (0x2040, 0x2040)]));
        l.apply(&rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 0, &[(0x5000, 0x5000)]));
        l.bio(&bio(BioEvent::Acquire, true, 0x2000, 2), 64);
        let young = l.snapshot(S / 2);
        assert_eq!((young.totals.outstanding, young.totals.suspect), (4, 0));
        let old = l.snapshot(5 * S);
        assert_eq!(old.totals.outstanding_longterm, 1);
        assert_eq!(old.totals.outstanding_with_bio, 2);
        assert_eq!(old.totals.pinned_with_bio, 2);
        assert_eq!(old.totals.suspect, 1, "only the pin neither long-term nor tied to a bio");
        let longterm_row = old.paths.iter().find(|p| p.class == Some(Class::PinLongterm)).expect("a long-term path");
        assert_eq!((longterm_row.pages, longterm_row.suspect), (1, 0));
    }

    #[test]
    fn references_are_followed_to_their_bio_release() {
        let mut l = ledger();
        l.apply(&rec(PageEvent::Get, ProbeId::GetUserPagesFast, 0, &[(0x4000, 0x4000), (0x4040, 0x4040)]));
        l.bio(&bio(BioEvent::Acquire, false, 0x4000, 2), 64);
        l.bio(&bio(BioEvent::Release, false, 0x4000, 2), 64);
        let s = l.snapshot(10 * S);
        assert_eq!((s.totals.referenced, s.totals.referenced_with_bio, s.totals.referenced_released_with_bio), (2, 2, 2));
        assert_eq!((s.totals.pinned, s.totals.suspect), (0, 0), "references are not pins");
        assert_eq!(s.paths[0].class, Some(Class::Get));
        assert_eq!(s.paths[0].released_by.get("__bio_release_pages"), Some(&2));
    }

    #[test]
    fn pages_beyond_the_record_are_counted_unlisted() {
        let mut l = ledger();
        let entries: Vec<(u64, u64)> =
            (0..PAGES_MAX_ENTRIES as u64).map(|i| (0x10_0000 + 64 * i, 0x10_0000 + 64 * i)).collect();
        let mut r = rec(PageEvent::Pin, ProbeId::PinUserPages, 0, &entries);
        r.nr = PAGES_MAX_ENTRIES as u32 + 10;
        r.flags = PAGES_FLAG_TRUNCATED;
        l.apply(&r);
        let s = l.snapshot(0);
        assert_eq!((s.totals.pinned, s.totals.unlisted, s.totals.outstanding), (r.nr as u64, 10, PAGES_MAX_ENTRIES as u64));
        assert_eq!((s.paths[0].calls, s.paths[0].pages), (1, r.nr as u64));
    }

    #[test]
    fn unlisted_calls_are_counted_only() {
        let mut l = ledger();
        let mut r = rec(PageEvent::Pin, ProbeId::PinUserPagesRemote, 0, &[]);
        r.nr = 8;
        r.flags = PAGES_FLAG_UNLISTED;
        l.apply(&r);
        let s = l.snapshot(10 * S);
        assert_eq!((s.totals.pinned, s.totals.unlisted, s.totals.outstanding, s.totals.suspect), (8, 8, 0, 0));
    }

    #[test]
    fn unknown_stacks_are_counted_and_the_path_is_empty() {
        let mut l = ledger();
        let mut r = rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 0, &[(0x1000, 0x1000)]);
        r.frames = vec![];
        l.apply(&r);
        let s = l.snapshot(0);
        assert_eq!(s.totals.unknown_stacks, 1);
        assert!(s.paths[0].callers.is_empty());
    }

    /// Legacy direct I/O (6.2+): the page is pinned, the bio takes an extra pin with
    /// folio_add_pin, the first pin is dropped, the bio releases the extra one.
    #[test]
    fn a_folio_add_pin_hold_stands_for_any_page_of_its_folio() {
        let mut l = ledger();
        l.apply(&rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 0, &[(0x1000, 0x1000)]));
        l.apply(&rec(PageEvent::Pin, ProbeId::FolioAddPin, 1, &[(0, 0x1000)]));
        l.apply(&rec(PageEvent::Unpin, ProbeId::UnpinUserPage, 2, &[(0x1000, 0x1000)]));
        l.bio(&bio(BioEvent::Release, true, 0x1000, 1), 64);
        l.apply(&rec(PageEvent::Unpin, ProbeId::UnpinUserFolio, 3, &[(0, 0x1000)]));
        let s = l.snapshot(10 * S);
        assert_eq!((s.totals.pinned, s.totals.unpinned_matched, s.totals.outstanding), (2, 2, 0));
        assert_eq!(s.totals.pinned_with_bio, 1);
        let add_pin = s.paths.iter().find(|p| p.entry == "folio_add_pin").expect("folio_add_pin path");
        assert_eq!((add_pin.with_bio, add_pin.released_by.values().sum::<u64>()), (1, 1));
    }

    #[test]
    fn pins_outliving_their_process_are_suspects_long_term_or_not() {
        let mut l = ledger();
        let mut longterm = rec(PageEvent::Pin, ProbeId::PinUserPages, 0, &[(0x1000, 0x1000)]);
        longterm.gup_flags = FOLL.longterm;
        l.apply(&longterm);
        l.apply(&rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 0, &[(0x2000, 0x2000)]));
        l.bio(&bio(BioEvent::Acquire, true, 0x2000, 1), 64);
        l.exit(owner().tgid, S);
        // A process reusing the tgid after the exit pins again: not orphaned.
        l.apply(&rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 2 * S, &[(0x3000, 0x3000)]));
        let soon = l.snapshot(S + S / 2);
        assert_eq!((soon.totals.outstanding_owner_exited, soon.totals.suspect), (0, 0), "within the grace period of the exit");
        let later = l.snapshot(2 * S + S / 2);
        assert_eq!(later.totals.outstanding, 3);
        assert_eq!(later.totals.outstanding_owner_exited, 2, "the long-term pin and the bio's, not the later one");
        assert_eq!(later.totals.suspect, 1, "the long-term pin; the bio's is the bio ledger's to judge");
        assert_eq!((later.totals.outstanding_longterm, later.totals.outstanding_with_bio), (0, 1));
        // Another process's exit changes nothing.
        let mut other = l.clone();
        other.exited.clear();
        other.exit(owner().tgid + 1, S);
        assert_eq!(other.snapshot(2 * S + S / 2).totals.outstanding_owner_exited, 0);
    }

    #[test]
    fn vmspliced_references_are_released_with_their_pipe_buffers() {
        let mut l = ledger();
        l.apply(&rec(PageEvent::Get, ProbeId::GetUserPagesFast, 0, &[(0x4000, 0x4000), (0x4040, 0x4040)]));
        let mut put = rec(PageEvent::Put, ProbeId::PipeBufRelease, 1, &[(0x4000, 0x4000)]);
        put.frames = vec![0x20, 0x21];
        l.apply(&put);
        // A page nobody followed (taken before the trace): nothing to release.
        l.apply(&rec(PageEvent::Put, ProbeId::PipeBufRelease, 2, &[(0x9000, 0x9000)]));
        let s = l.snapshot(10 * S);
        assert_eq!((s.totals.referenced, s.totals.referenced_released_put), (2, 1));
        assert_eq!(s.paths[0].released_by.get("page_cache_pipe_buf_release <- __bio_release_pages"), Some(&1));
        assert_eq!((s.totals.pinned, s.totals.unpinned, s.totals.suspect), (0, 0, 0), "references are not pins");
    }

    #[test]
    fn a_fuse_read_that_queued_its_io_releases_nothing_at_return() {
        let mut l = ledger();
        l.symbols(&SymbolsRecord {
            symbols: vec![(0x30, "fuse_direct_io+0x90\t[fuse]".into()), (0x31, "fuse_file_read_iter+0x10 [fuse]".into())],
        });
        let mut get = rec(PageEvent::Get, ProbeId::GetUserPagesFast, 0, &[(0x4000, 0x4000)]);
        get.frames = vec![0x12, 0x30, 0x31];
        // An asynchronous read: the call returns -EIOCBQUEUED, the reference outlives it.
        l.apply(&get);
        let mut queued = rec(PageEvent::PutScope, ProbeId::FuseFileReadIter, 1, &[]);
        queued.nr = 1;
        queued.flags = PAGES_FLAG_QUEUED;
        l.apply(&queued);
        assert_eq!(l.snapshot(10 * S).totals.referenced_released_put, 0);
        // A synchronous read: released when the call returns; the queued one is not.
        l.apply(&get);
        let mut done = queued.clone();
        done.flags = 0;
        l.apply(&done);
        let s = l.snapshot(10 * S);
        assert_eq!((s.totals.referenced, s.totals.referenced_released_put), (2, 1));
        assert_eq!(l.refs.get(&0x4000).map(VecDeque::len), Some(1), "the queued read's reference");
    }

    #[test]
    fn nfs_references_are_released_when_their_scope_returns() {
        let mut l = ledger();
        l.symbols(&SymbolsRecord {
            symbols: vec![(0x30, "nfs_direct_read_schedule_iovec+0x90\t[nfs]".into()), (0x31, "nfs_file_direct_read [nfs]+0x10".into())],
        });
        let mut get = rec(PageEvent::Get, ProbeId::GetUserPagesFast, 0, &[(0x4000, 0x4000), (0x4040, 0x4040)]);
        get.frames = vec![0x12, 0x13, 0x30, 0x31];
        l.apply(&get);
        // Another thread's reference of the same page, outside any scope: stays.
        let mut other = rec(PageEvent::Get, ProbeId::GetUserPagesFast, 0, &[(0x4000, 0x4000)]);
        other.owner.pid = 8;
        l.apply(&other);
        let mut end = rec(PageEvent::PutScope, ProbeId::NfsDirectReadScheduleIovec, 1, &[]);
        end.nr = 1;
        end.frames = vec![0x31];
        l.apply(&end);
        let s = l.snapshot(10 * S);
        assert_eq!((s.totals.referenced, s.totals.referenced_released_put), (3, 2));
        let nfs = s.paths.iter().find(|p| p.callers.iter().any(|c| c == "nfs_direct_read_schedule_iovec [nfs]")).expect("nfs path");
        assert_eq!(nfs.released_by.get("nfs_direct_read_schedule_iovec <- nfs_file_direct_read [nfs]"), Some(&2));
        assert_eq!(l.refs.get(&0x4000).map(VecDeque::len), Some(1), "the other thread's reference");
        // A second scope end of the thread finds nothing more to release.
        l.apply(&end);
        assert_eq!(l.snapshot(10 * S).totals.referenced_released_put, 2);
    }
}
