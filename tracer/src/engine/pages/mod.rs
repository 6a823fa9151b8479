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

use std::collections::{BTreeMap, VecDeque};

use tracer_common::{BioEvent, BioRecord, PageEvent, ProbeId, BIO_FLAG_PINNED, BIO_FLAG_UNPINS_LISTED, PROBES};

mod release;
mod report;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub use self::release::listed_unpins;
pub use self::release::listed_unpins_into;
pub use self::report::{age_class, Class, OwnerPins, PageSnapshot, PageTotals, PathRow, AGE_BOUNDS_NS};
use super::{
    detect::{self, HoldFacts, HoldState},
    holds::{Call, Hold, Holds},
    page_list::PageList,
    Map,
};
use crate::model::{comm_to_string, FollBits, PagesRecord, SymbolsRecord};

/// Frames of the call path kept for the audit.
const PATH_DEPTH: usize = 6;

#[derive(Clone, Debug, Default)]
pub struct PageLedger {
    foll: FollBits,
    grace_ns: u64,
    /// Function names of return addresses.
    symbols: Map<u64, String>,
    /// Audit rows; `path_index` finds them by (class, entry, callers).
    paths: Vec<PathRow>,
    /// The scope function (see [`SCOPES`]) each audit row's calls run inside, if any.
    scopes: Vec<Option<ProbeId>>,
    path_index: Map<(Class, u32, Vec<String>), u32>,
    /// Calls whose every frame had a name, by [class, probe, frames...]: their audit row (the
    /// names of an address never change, so neither does the row).
    frame_paths: Map<Vec<u64>, u32>,
    /// Release names of such calls, by [probe, frames...].
    release_names: Map<Vec<u64>, std::rc::Rc<str>>,
    /// The key being looked up in those two (one buffer, no allocation per record).
    frames_key: Vec<u64>,
    /// FOLL_PIN holds by folio, oldest first.
    holds: Holds,
    /// Folio of each page with holds filed under another key than the page itself (tail pages
    /// of large folios); a page filed under itself is found in `holds` (see [`Self::filed`]).
    page_folio: Map<u64, u64>,
    /// FOLL_GET references by page, oldest first (followed until their bio releases them).
    refs: Holds,
    /// Processes that exited, and when (the latest exit of each tgid).
    exited: Map<u32, u64>,
    /// The process of each thread that took pins or references.
    threads: Map<u32, u32>,
    /// Followed references a scope release will drop: by (thread, scope probe), their pages.
    scoped: Map<(u32, u32), Vec<u64>>,
    /// Pages a pinned bio's release named, by the thread it ran on, in the bio's order, with the
    /// release's time: the folio-level unpins that follow on that thread
    /// (`unpin_user_folio(folio, npages)` per folio in `__bio_release_pages`) release them.
    releasing: Map<u32, VecDeque<(u64, u64)>>,
    /// sizeof(struct page), from the bio records (0 until one came: 64 is assumed).
    struct_page: u64,
    /// Whether pin records name each page's real folio; if not, tail pages were filed under
    /// themselves and folio-level unpins look for them by address.
    folio_heads: bool,
    /// FOLL_PIN pages per process (tgid) that pinned them: pinned, and unpinned (matched to
    /// their pins: a release is the pin owner's, whatever task ran it).
    owners: BTreeMap<u32, OwnerPins>,
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

/// The key `page`'s hold is filed under in `holds`: its folio (from `page_folio`), or the page
/// itself (a small page, or a tail page whose folio was not known); None when it has no hold.
fn filed_in(holds: &Holds, page_folio: &Map<u64, u64>, page: u64) -> Option<u64> {
    if let Some(&folio) = page_folio.get(&page) {
        return Some(folio);
    }
    holds.holds_page(page, page).then_some(page)
}

/// FOLL_GET references followed at most; beyond, they are counted only.
const MAX_REFS_FOLLOWED: usize = 1 << 20;

/// Pages of bio releases kept per thread for the unpins that follow (a bio names at most 16
/// vecs; with large folios a vec can cover 512 pages).
const MAX_RELEASING: usize = 1 << 13;

/// How long the pages of a bio release wait for their unpins, which the same call makes right
/// after it is entered: older ones are leftovers (pages whose unpins no probe saw).
const RELEASING_NS: u64 = 1_000_000_000;

/// How far into a thread's releasing pages an unpin looks for one of its folio.
const RELEASING_WINDOW: usize = 1024;

/// Pages of the largest folio whose tails a folio-level unpin looks for among the pages filed
/// under themselves (a PMD-sized THP of 4 KiB pages).
const FOLIO_SPAN_PAGES: u64 = 512;

impl PageLedger {
    /// `folio_heads`: whether the pin records name each page's real folio (see
    /// [`super::Config::folio_heads`]).
    pub fn new(foll: FollBits, grace_ns: u64, folio_heads: bool) -> PageLedger {
        let mut ledger = PageLedger { foll, grace_ns, folio_heads, ..PageLedger::default() };
        ledger.symbols.insert(release::BIO_RELEASE_FRAME, "__bio_release_pages".into());
        ledger
    }

    pub fn symbols(&mut self, s: &SymbolsRecord) {
        // The name of an address never changes within a trace: one described again (a stream
        // replayed after another) keeps its name.
        for (ip, name) in &s.symbols {
            self.symbols.entry(*ip).or_insert_with(|| function_name(name));
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

    /// The audit row of a call: from [`Self::frame_paths`] when its frames were seen before.
    fn path_of(&mut self, class: Class, probe: u32, frames: &[u64]) -> u32 {
        self.by_frames(
            |l| &mut l.frame_paths,
            &[class as u64, u64::from(probe)],
            frames,
            |l| {
                let callers = l.callers(frames, probe);
                l.path(class, probe, callers)
            },
        )
    }

    /// The value the cache `pick` keeps for `prefix` and `frames`, or `make`'s, kept when every
    /// frame had a name (the names of an address never change, so neither does the value).
    fn by_frames<T: Clone>(
        &mut self,
        pick: fn(&mut PageLedger) -> &mut Map<Vec<u64>, T>,
        prefix: &[u64],
        frames: &[u64],
        make: impl FnOnce(&mut PageLedger) -> T,
    ) -> T {
        let mut key = std::mem::take(&mut self.frames_key);
        key.clear();
        key.extend_from_slice(prefix);
        key.extend_from_slice(frames);
        let value = match pick(self).get(key.as_slice()).cloned() {
            Some(value) => value,
            None => {
                let unknown = self.totals.unknown_stacks;
                let value = make(self);
                if self.totals.unknown_stacks == unknown {
                    pick(self).insert(key.clone(), value.clone());
                }
                value
            }
        };
        self.frames_key = key;
        value
    }

    fn path(&mut self, class: Class, probe: u32, callers: Vec<String>) -> u32 {
        let key = (class, probe, callers);
        if let Some(&i) = self.path_index.get(&key) {
            return i;
        }
        let i = self.paths.len() as u32;
        let entry = PROBES.get(probe as usize).map_or("?", |d| d.target).to_string();
        let inside = |names: &[&str]| key.2.iter().any(|c| c.split(' ').next().is_some_and(|f| names.contains(&f)));
        self.scopes.push(SCOPES.iter().find(|(_, names)| inside(names)).map(|&(scope, _)| scope));
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
        let path = self.path_of(class, rec.probe, &rec.frames);
        let call = Call { ts_ns: rec.ts_ns, pid: rec.owner.pid, path };
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
            if self.refs.keys() + listed as usize <= MAX_REFS_FOLLOWED {
                self.refs.add(call, rec.entries.iter().map(|&(page, _)| (page, page)));
                // Taken inside a function that drops them all before it returns.
                if let Some(scope) = self.scopes[path as usize] {
                    let pages = rec.entries.iter().map(|&(page, _)| page);
                    self.scoped.entry((rec.owner.pid, scope as u32)).or_default().extend(pages);
                }
            }
            return;
        }
        self.totals.pinned += counted;
        self.totals.unlisted += unlisted;
        let owner = self.owners.entry(rec.owner.tgid).or_default();
        owner.pinned += counted;
        // The process's name: the comm of its first thread that pinned, unless that was one of
        // io_uring's worker threads (iou-wrk-PID, iou-sqp-PID) and another thread pins later.
        let io_thread = |c: &str| c.starts_with("iou-wrk-") || c.starts_with("iou-sqp-");
        if owner.comm.is_empty() || io_thread(&owner.comm) {
            let comm = comm_to_string(&rec.owner.comm);
            if owner.comm.is_empty() || !io_thread(&comm) {
                owner.comm = comm;
                owner.cgroup = rec.owner.cgroup;
            }
        }
        if class == Class::PinLongterm {
            self.totals.pinned_longterm += counted;
        }
        self.holds.add(call, rec.entries.iter().map(|&(page, folio)| (folio, page)));
        for &(page, folio) in &rec.entries {
            if page != 0 && folio != page {
                self.page_folio.insert(page, folio);
                self.totals.pinned_large_folio += 1;
            }
        }
    }

    /// A bio record: the held pages it names are tied to a bio; a referenced bio's release
    /// releases its FOLL_GET references.
    pub fn bio(&mut self, rec: &BioRecord, struct_page_size: u64) {
        let pinned = rec.flags & BIO_FLAG_PINNED != 0;
        let release = rec.event == BioEvent::Release as u32;
        if rec.event != BioEvent::Acquire as u32 && !release {
            return;
        }
        let list = PageList::of(rec);
        self.struct_page = struct_page_size;
        // A release that lists its unpins is not followed by unpin records to wait for.
        if pinned && release && rec.flags & BIO_FLAG_UNPINS_LISTED == 0 {
            let queue = self.releasing.entry(rec.owner.pid).or_default();
            queue.extend(list.each_page(struct_page_size).map(|page| (page, rec.ts_ns)));
            let over = queue.len().saturating_sub(MAX_RELEASING);
            queue.drain(..over);
        }
        // Pinned pages are tied to a bio only if some hold is not tied yet (at a release,
        // usually none is: each bio's acquisition tied its pages).
        if pinned && !self.holds.any_untied() {
            return;
        }
        for page in list.each_page(struct_page_size) {
            if pinned {
                let folio = self.filed_or(page, page);
                if let Some(h) = self.holds.tie_untied(folio, page) {
                    self.totals.pinned_with_bio += 1;
                    self.paths[h.path as usize].with_bio += 1;
                }
            } else if self.refs.contains(page) {
                if let Some(h) = self.refs.position(page, |h| !h.bio).and_then(|at| self.refs.tie_to_bio(page, at)) {
                    self.totals.referenced_with_bio += 1;
                    self.paths[h.path as usize].with_bio += 1;
                }
                if release {
                    if let Some(h) = self.refs.position(page, |h| h.bio).and_then(|at| self.refs.remove(page, at)) {
                        self.totals.referenced_released_with_bio += 1;
                        release::count_release(&mut self.paths[h.path as usize].released_by, "__bio_release_pages", 1);
                    }
                }
            }
        }
    }

    /// FOLL_PIN pages per process that pinned them (tgid), since the ledger began: its pins,
    /// and the unpins matched to them, whoever ran them.
    pub fn owners(&self) -> &BTreeMap<u32, OwnerPins> {
        &self.owners
    }

    /// The running totals (outstanding pins are counted at a snapshot only).
    pub fn totals(&self) -> &PageTotals {
        &self.totals
    }

    /// The ledger at `now_ns`.
    pub fn snapshot(&self, now_ns: u64) -> PageSnapshot {
        let mut totals = self.totals.clone();
        let mut paths = self.paths.clone();
        let mut ages = vec![0; AGE_BOUNDS_NS.len() + 1];
        for h in self.holds.iter() {
            let row = &mut paths[h.path as usize];
            row.outstanding += 1;
            totals.outstanding += 1;
            // Its process exited (after taking it) a grace period ago or more: nothing will
            // release it on the process's behalf any more, long-term or not. A bio still
            // holding it is the bio ledger's to judge.
            let exit = self.threads.get(&h.pid).and_then(|tgid| self.exited.get(tgid)).copied();
            let orphaned = detect::orphaned(exit, h.ts_ns, now_ns, self.grace_ns);
            if orphaned {
                totals.outstanding_owner_exited += 1;
            }
            let longterm = row.class == Some(Class::PinLongterm);
            let held_ns = now_ns.saturating_sub(h.ts_ns);
            ages[age_class(held_ns)] += 1;
            let hold = HoldFacts { tied_to_bio: h.bio, longterm, orphaned, held_ns };
            match detect::hold_state(hold, self.grace_ns) {
                HoldState::WithBio => totals.outstanding_with_bio += 1,
                HoldState::LongTerm => totals.outstanding_longterm += 1,
                HoldState::Suspect => {
                    row.suspect += 1;
                    totals.suspect += 1;
                }
                HoldState::Held => {}
            }
        }
        paths.sort_by(|a, b| {
            b.pages.cmp(&a.pages).then_with(|| a.entry.cmp(&b.entry)).then_with(|| a.callers.cmp(&b.callers))
        });
        PageSnapshot { totals, paths, ages }
    }
}
