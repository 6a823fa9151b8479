//! The page ledger's releases: unpins matched to their holds, references dropped.

use tracer_common::{
    BioEvent, BioRecord, PageEvent, ProbeId, BIO_FLAG_PINNED, BIO_FLAG_UNPINS_LISTED, BIO_MAX_VECS, PAGES_FLAG_DIRTY,
    PAGES_FLAG_QUEUED, PROBES,
};

use super::{filed_in, Hold, PageLedger, FOLIO_SPAN_PAGES, RELEASING_NS, RELEASING_WINDOW};
use crate::{engine::page_list::PageList, model::PagesRecord};

/// The frame the unpins a release record lists are named with: a stand-in address the ledgers
/// know as `__bio_release_pages` (kernel text never lies this high).
pub(crate) const BIO_RELEASE_FRAME: u64 = u64::MAX - 0xfff;

/// The unpins a pinned bio's release lists ([`BIO_FLAG_UNPINS_LISTED`]: the kernel streams no
/// record for its `unpin_user_folio` calls), as the unpin record they stand for: one pin of each
/// page each vec covers, named by page (its folio is the one its hold was filed under), released
/// by `unpin_user_folio` called from `__bio_release_pages`. None for any other bio record.
#[cfg(test)]
pub fn listed_unpins(rec: &BioRecord, struct_page_size: u64) -> Option<PagesRecord> {
    let mut out = PagesRecord::default();
    listed_unpins_into(rec, struct_page_size, &mut out).then_some(out)
}

/// [`listed_unpins`] into `out` (its vectors reused); false, `out` untouched, for any other bio
/// record.
pub fn listed_unpins_into(rec: &BioRecord, struct_page_size: u64, out: &mut PagesRecord) -> bool {
    let listed = BIO_FLAG_PINNED | BIO_FLAG_UNPINS_LISTED;
    if rec.event != BioEvent::Release as u32 || rec.flags & listed != listed {
        return false;
    }
    let list = PageList::of(rec);
    out.entries.clear();
    out.entries.extend(list.each_page(struct_page_size).map(|page| (page, page)));
    // Pages of vecs the list does not follow (unreadable pages, absurd sizes) are counted only;
    // a vec whose bytes could not be read counts as one page at least.
    let vecs = (rec.nr_vecs as usize).min(BIO_MAX_VECS);
    let unread = rec.vec_pages[..vecs].iter().filter(|&&pages| pages == 0).count() as u64;
    out.nr = u32::try_from(list.pages() + unread).unwrap_or(u32::MAX).max(out.entries.len() as u32);
    out.event = PageEvent::Unpin as u32;
    out.ts_ns = rec.ts_ns;
    out.probe = ProbeId::UnpinUserFolio as u32;
    out.gup_flags = 0;
    out.refs = 1;
    out.flags = 0;
    out.owner = rec.owner;
    out.frames.clear();
    out.frames.push(BIO_RELEASE_FRAME);
    true
}

impl PageLedger {
    /// The name of a release: the unpin variant and the function that called it.
    pub(crate) fn release_name(&mut self, rec: &PagesRecord) -> std::rc::Rc<str> {
        self.by_frames(
            |l| &mut l.release_names,
            &[u64::from(rec.probe)],
            &rec.frames,
            |l| {
                let variant = PROBES.get(rec.probe as usize).map_or("?", |d| d.target);
                match l.callers(&rec.frames, rec.probe).first() {
                    Some(caller) => format!("{variant} <- {caller}").into(),
                    None => variant.into(),
                }
            },
        )
    }

    pub(super) fn release(&mut self, rec: &PagesRecord) {
        let name = self.release_name(rec);
        // The holds a call releases are mostly of one pin call: charged by runs of one
        // (thread, audit row), not one by one.
        let mut run: Option<(u32, u32, u64)> = None;
        for &entry in &rec.entries {
            for _ in 0..rec.refs.max(1) {
                let Some(h) = self.take_ref(rec, entry) else { continue };
                match &mut run {
                    Some((pid, path, n)) if (*pid, *path) == (h.pid, h.path) => *n += 1,
                    _ => {
                        if let Some((pid, path, n)) = run.replace((h.pid, h.path, 1)) {
                            self.charge(rec, pid, path, n, &name);
                        }
                    }
                }
            }
        }
        if let Some((pid, path, n)) = run {
            self.charge(rec, pid, path, n, &name);
        }
        self.release_unlisted(rec);
    }

    /// One pin reference of the entry `(page, folio)` of the unpin `rec`, released by `name`.
    pub(crate) fn release_ref(&mut self, rec: &PagesRecord, entry: (u64, u64), name: &str) {
        if let Some(h) = self.take_ref(rec, entry) {
            self.charge(rec, h.pid, h.path, 1, name);
        }
    }

    /// Takes the hold one pin reference of the entry `(page, folio)` of the unpin `rec`
    /// releases, counting the unpin (of unknown origin when no hold matches).
    fn take_ref(&mut self, rec: &PagesRecord, (page, folio): (u64, u64)) -> Option<Hold> {
        self.totals.unpinned += 1;
        // An unpin that names only a folio takes the hold of the next page the bio being
        // released on this thread names in that folio, if any.
        let named = if page == 0 { self.next_releasing(rec.owner.pid, folio, rec.ts_ns).unwrap_or(0) } else { page };
        let hold = self.unhold(folio, named).or_else(|| if page == 0 { self.unhold_tail(folio) } else { None });
        if hold.is_none() {
            self.totals.unpinned_unknown_origin += 1;
        }
        hold
    }

    /// `n` holds taken by thread `pid` on audit row `path`, released by `name` in the unpin
    /// `rec`: counted to the row and to the pin owner (a release is the pin owner's, whatever
    /// task ran it).
    fn charge(&mut self, rec: &PagesRecord, pid: u32, path: u32, n: u64, name: &str) {
        self.totals.unpinned_matched += n;
        if let Some(owner) = self.threads.get(&pid).and_then(|tgid| self.owners.get_mut(tgid)) {
            owner.unpinned += n;
        }
        let row = &mut self.paths[path as usize];
        count_release(&mut row.released_by, name, n);
        if rec.flags & PAGES_FLAG_DIRTY != 0 {
            row.released_dirty += n;
        }
    }

    /// The pages of the unpin `rec` it does not list (a kretprobe fallback, or beyond the
    /// record): counted only.
    pub(crate) fn release_unlisted(&mut self, rec: &PagesRecord) {
        let n = (rec.nr as u64).saturating_sub(rec.entries.len() as u64) * rec.refs.max(1) as u64;
        self.totals.unpinned += n;
        self.totals.unpinned_unknown_origin += n;
    }

    /// Whether an unpin reference of `(page, folio)` would find a hold here (see
    /// [`Self::release_ref`]): a hold of the page, or of its folio, or (folio-level unpins of
    /// pins filed before the folio was known) of a tail of the folio filed under itself.
    pub(crate) fn would_release(&self, page: u64, folio: u64) -> bool {
        if (page != 0 && self.filed(page).is_some()) || self.holds.contains(folio) {
            return true;
        }
        let size = self.struct_page();
        page == 0 && !self.folio_heads && (1..FOLIO_SPAN_PAGES).any(|i| self.self_filed_tail(folio + i * size, folio))
    }

    /// Whether a FOLL_GET reference of `page` is followed here.
    pub(crate) fn follows_reference(&self, page: u64) -> bool {
        self.refs.contains(page)
    }

    /// FOLL_GET references dropped where a probe sees it: the pages of a pipe buffer over
    /// vmspliced user pages, or every page the thread took inside a returning scope function
    /// (PutScope). Each releases the oldest followed reference of its page not held by a bio
    /// (of that thread, for a scope).
    pub(super) fn put(&mut self, rec: &PagesRecord) {
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
            let mine = |h: &Hold| !h.bio && thread.is_none_or(|pid| h.pid == pid);
            let Some(h) = self.refs.position(page, mine).and_then(|at| self.refs.remove(page, at)) else { continue };
            self.totals.referenced_released_put += 1;
            count_release(&mut self.paths[h.path as usize].released_by, &name, 1);
        }
    }

    pub(super) fn struct_page(&self) -> u64 {
        if self.struct_page == 0 {
            64
        } else {
            self.struct_page
        }
    }

    /// Whether `page` is a tail page of the folio at `folio` that was filed under itself (its
    /// folio was not known when it was pinned: an unreadable or unknown struct page layout).
    pub(super) fn self_filed_tail(&self, page: u64, folio: u64) -> bool {
        if self.folio_heads {
            return false;
        }
        let span = FOLIO_SPAN_PAGES * self.struct_page();
        page > folio && page - folio < span && self.filed(page) == Some(page)
    }

    /// The key `page`'s hold is filed under, else `folio` (`self.filed(page).unwrap_or(folio)`,
    /// without looking for the page under itself when that is `folio` anyway).
    pub(super) fn filed_or(&self, page: u64, folio: u64) -> u64 {
        match self.page_folio.get(&page) {
            Some(&key) => key,
            None if folio == page || self.holds.holds_page(page, page) => page,
            None => folio,
        }
    }

    /// The key `page`'s hold is filed under (see [`filed_in`]).
    pub(super) fn filed(&self, page: u64) -> Option<u64> {
        filed_in(&self.holds, &self.page_folio, page)
    }

    /// A folio-level unpin found no hold of its folio: the hold of one of its tail pages filed
    /// under itself, if the pins of that folio were taken when its layout was unknown. Any
    /// tail of the folio will do: the kernel counts pins per folio.
    pub(super) fn unhold_tail(&mut self, folio: u64) -> Option<Hold> {
        let size = self.struct_page();
        let tail = (1..FOLIO_SPAN_PAGES).map(|i| folio + i * size).find(|&p| self.self_filed_tail(p, folio))?;
        self.unhold(tail, tail)
    }

    /// The next page of the bio being released on thread `pid` that lies in `folio`: the
    /// kernel releases a bio's pages folio by folio in the bio's order, so the first page whose
    /// hold lies under `folio` (or, when its folio was not known when it was pinned, a tail of
    /// `folio` filed under itself) is the one. Leftovers (older than [`RELEASING_NS`], or no
    /// longer held) are dropped on the way.
    pub(super) fn next_releasing(&mut self, pid: u32, folio: u64, now_ns: u64) -> Option<u64> {
        let span = FOLIO_SPAN_PAGES * self.struct_page();
        let queue = self.releasing.get_mut(&pid)?;
        let held = |page: &u64| filed_in(&self.holds, &self.page_folio, *page);
        while let Some(&(page, ts)) = queue.front() {
            if now_ns.saturating_sub(ts) < RELEASING_NS && held(&page).is_some() {
                break;
            }
            queue.pop_front();
        }
        let tail_of = |page: u64| !self.folio_heads && page > folio && page - folio < span;
        let at = queue
            .iter()
            .take(RELEASING_WINDOW)
            .position(|&(page, _)| held(&page).is_some_and(|key| key == folio || (key == page && tail_of(page))));
        let page = at.and_then(|at| queue.remove(at)).map(|(page, _)| page);
        if queue.is_empty() {
            self.releasing.remove(&pid);
        }
        page
    }

    /// Takes one hold of `folio`: the one of `page` if named (wherever it was filed: under the
    /// page itself when its folio was not known at pin time), else the folio's oldest.
    pub(super) fn unhold(&mut self, folio: u64, page: u64) -> Option<Hold> {
        let folio = if page != 0 { self.filed_or(page, folio) } else { folio };
        let (hold, still) = self.holds.take_page(folio, page)?;
        // The map of tail pages is mostly empty: not hashed then.
        if hold.page != 0 && !still && !self.page_folio.is_empty() {
            self.page_folio.remove(&hold.page);
        }
        Some(hold)
    }
}

/// `n` more releases by `name` (its key allocated only the first time).
pub(super) fn count_release(by: &mut std::collections::BTreeMap<String, u64>, name: &str, n: u64) {
    match by.get_mut(name) {
        Some(count) => *count += n,
        None => {
            by.insert(name.to_string(), n);
        }
    }
}
