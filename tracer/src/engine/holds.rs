//! The page ledger's holds (pins or followed references), by key (a folio, or a page), each
//! key's oldest first, stored for memory: memory per outstanding pinned page is a benchmark
//! target (`cargo xtask bench ledger`, <= 64 bytes).
//!
//! - What the holds of one call share (time, thread, audit row) is kept once per call.
//! - The common case, one hold of a small page filed under itself, takes 16 bytes of map (the
//!   key and a slot naming the call); any other key's holds go to a queue of 16-byte entries.

use std::collections::{hash_map::Entry as MapEntry, VecDeque};

use super::Map;

/// One hold, as the ledger reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hold {
    /// The struct page held (0: a hold of the folio that names no page).
    pub page: u64,
    /// When it was taken.
    pub ts_ns: u64,
    /// The thread that took it.
    pub pid: u32,
    /// Its audit row.
    pub path: u32,
    /// Whether a bio named the page.
    pub bio: bool,
}

/// What the holds one call took share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Call {
    pub ts_ns: u64,
    pub pid: u32,
    pub path: u32,
}

/// A hold in a queue: its page and its call (bits 0..31) with the [`TIED`] bit.
#[derive(Clone, Copy, Debug)]
struct Entry {
    page: u64,
    call_bio: u32,
}

const TIED: u32 = 1 << 31;
/// A slot naming a queue (its index in the low 32 bits) rather than one hold of the key's own
/// page (its `call_bio` in the low 32 bits).
const QUEUED: u64 = 1 << 63;

#[derive(Clone, Debug)]
struct CallEntry {
    call: Call,
    /// Holds of the call still stored (the entry is freed at 0).
    holds: u32,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Holds {
    keys: Map<u64, u64>,
    queues: Vec<VecDeque<Entry>>,
    free_queues: Vec<u32>,
    calls: Vec<CallEntry>,
    free_calls: Vec<u32>,
    /// Holds no bio has named yet (none: nothing to tie, whatever the key).
    untied: usize,
}

/// Stores `value` in a free place of `slab`, or at its end; its index.
fn alloc<T>(slab: &mut Vec<T>, free: &mut Vec<u32>, value: T) -> u32 {
    match free.pop() {
        Some(i) => {
            slab[i as usize] = value;
            i
        }
        None => {
            slab.push(value);
            (slab.len() - 1) as u32
        }
    }
}

/// The entries of the key `key` whose slot is `slot`, oldest first.
fn slot_entries(queues: &[VecDeque<Entry>], key: u64, slot: u64) -> impl Iterator<Item = Entry> + '_ {
    let one = (slot & QUEUED == 0).then_some(Entry { page: key, call_bio: slot as u32 });
    let many = (slot & QUEUED != 0).then(|| queues[slot as u32 as usize].iter().copied());
    one.into_iter().chain(many.into_iter().flatten())
}

/// Where the first entry of the key `key` whose slot is `slot` that `pred` accepts is (a hot
/// path: no iterator for a slot of one hold).
fn find_in(queues: &[VecDeque<Entry>], key: u64, slot: u64, mut pred: impl FnMut(Entry) -> bool) -> Option<usize> {
    if slot & QUEUED == 0 {
        return pred(Entry { page: key, call_bio: slot as u32 }).then_some(0);
    }
    queues[slot as u32 as usize].iter().position(|&e| pred(e))
}

/// Marks the entry at `at` of the key `key` whose slot is `slot` as named by a bio; the entry,
/// and whether it was not named before.
fn tie_at(queues: &mut [VecDeque<Entry>], key: u64, slot: &mut u64, at: usize) -> Option<(Entry, bool)> {
    let was = if *slot & QUEUED != 0 {
        let e = queues[*slot as u32 as usize].get_mut(at)?;
        let was = *e;
        e.call_bio |= TIED;
        was
    } else if at == 0 {
        let was = Entry { page: key, call_bio: *slot as u32 };
        *slot |= u64::from(TIED);
        was
    } else {
        return None;
    };
    Some((Entry { call_bio: was.call_bio | TIED, ..was }, was.call_bio & TIED == 0))
}

impl Holds {
    /// Holds of `call`, each `(key, page)` filed under its key after the key's earlier holds.
    /// Live calls stay below 2^31 (each has a hold, and holds are far fewer).
    pub fn add(&mut self, call: Call, holds: impl IntoIterator<Item = (u64, u64)>) {
        let id = alloc(&mut self.calls, &mut self.free_calls, CallEntry { call, holds: 0 });
        let mut n = 0;
        for (key, page) in holds {
            self.push(key, Entry { page, call_bio: id & !TIED });
            n += 1;
        }
        self.calls[id as usize].holds = n;
        self.untied += n as usize;
        if n == 0 {
            self.free_calls.push(id);
        }
    }

    fn push(&mut self, key: u64, e: Entry) {
        match self.keys.entry(key) {
            MapEntry::Vacant(v) if e.page == key => {
                v.insert(u64::from(e.call_bio));
            }
            MapEntry::Vacant(v) => {
                v.insert(QUEUED | u64::from(alloc(&mut self.queues, &mut self.free_queues, VecDeque::from([e]))));
            }
            MapEntry::Occupied(mut o) => {
                let slot = *o.get();
                if slot & QUEUED != 0 {
                    self.queues[slot as u32 as usize].push_back(e);
                } else {
                    let first = Entry { page: key, call_bio: slot as u32 };
                    let q = alloc(&mut self.queues, &mut self.free_queues, VecDeque::from([first, e]));
                    o.insert(QUEUED | u64::from(q));
                }
            }
        }
    }

    fn hold(&self, e: Entry) -> Hold {
        let c = &self.calls[(e.call_bio & !TIED) as usize].call;
        Hold { page: e.page, ts_ns: c.ts_ns, pid: c.pid, path: c.path, bio: e.call_bio & TIED != 0 }
    }

    /// The entries of `key`, oldest first.
    #[cfg(test)]
    fn entries(&self, key: u64) -> impl Iterator<Item = Entry> + '_ {
        self.keys.get(&key).into_iter().flat_map(move |&slot| slot_entries(&self.queues, key, slot))
    }

    /// Where the first entry of `key` that `pred` accepts is.
    fn find(&self, key: u64, pred: impl FnMut(Entry) -> bool) -> Option<usize> {
        find_in(&self.queues, key, *self.keys.get(&key)?, pred)
    }

    pub fn contains(&self, key: u64) -> bool {
        self.keys.contains_key(&key)
    }

    /// Keys with holds.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Holds of `key`.
    #[cfg(test)]
    pub fn count(&self, key: u64) -> usize {
        self.entries(key).count()
    }

    /// Where the first hold of `key` that `pred` accepts is in its queue.
    pub fn position(&self, key: u64, mut pred: impl FnMut(&Hold) -> bool) -> Option<usize> {
        self.find(key, |e| pred(&self.hold(e)))
    }

    /// Ties to a bio the first hold of `key` of `page` not tied yet, or else the first such
    /// hold that names no page (folio_add_pin: it stands for any page of its folio); the hold.
    pub fn tie_untied(&mut self, key: u64, page: u64) -> Option<Hold> {
        let slot = self.keys.get_mut(&key)?;
        let untied = |e: &Entry| e.call_bio & TIED == 0;
        let first = |want: u64| find_in(&self.queues, key, *slot, |e| e.page == want && untied(&e));
        let at = first(page).or_else(|| first(0))?;
        let (e, newly) = tie_at(&mut self.queues, key, slot, at)?;
        self.untied -= usize::from(newly);
        Some(self.hold(e))
    }

    /// Whether a hold no bio named is stored (else [`Self::tie_untied`] finds none).
    pub fn any_untied(&self) -> bool {
        self.untied > 0
    }

    /// Whether `key` holds `page`.
    pub fn holds_page(&self, key: u64, page: u64) -> bool {
        self.find(key, |e| e.page == page).is_some()
    }

    /// Marks the hold at `at` of `key` as named by a bio; the hold.
    pub fn tie_to_bio(&mut self, key: u64, at: usize) -> Option<Hold> {
        let slot = self.keys.get_mut(&key)?;
        let (e, newly) = tie_at(&mut self.queues, key, slot, at)?;
        self.untied -= usize::from(newly);
        Some(self.hold(e))
    }

    /// Takes the hold at `at` of `key` (None past the end of its queue).
    pub fn remove(&mut self, key: u64, at: usize) -> Option<Hold> {
        self.take(key, |_| Some(at)).map(|(hold, _)| hold)
    }

    /// Takes the hold of `page` under `key`, or else the key's oldest (`page` 0: the oldest);
    /// the hold, and whether `key` still holds its page.
    pub fn take_page(&mut self, key: u64, page: u64) -> Option<(Hold, bool)> {
        self.take(key, |q| Some(if page == 0 { 0 } else { q.iter().position(|e| e.page == page).unwrap_or(0) }))
    }

    /// Takes the hold of `key` at the position `at` picks in its queue (an inline hold is at 0);
    /// the hold, and whether `key` still holds its page.
    fn take(&mut self, key: u64, at: impl FnOnce(&VecDeque<Entry>) -> Option<usize>) -> Option<(Hold, bool)> {
        let MapEntry::Occupied(mut o) = self.keys.entry(key) else { return None };
        let slot = *o.get();
        let (e, still) = if slot & QUEUED != 0 {
            let i = slot as u32;
            let q = &mut self.queues[i as usize];
            let e = q.remove(at(q)?)?;
            let still = q.iter().any(|x| x.page == e.page);
            match q.len() {
                0 => {
                    o.remove();
                }
                1 if q[0].page == key => {
                    o.insert(u64::from(q[0].call_bio));
                }
                _ => return Some((self.forget(e), still)),
            }
            self.queues[i as usize] = VecDeque::new();
            self.free_queues.push(i);
            (e, still)
        } else {
            if at(&VecDeque::new()).is_some_and(|at| at != 0) {
                return None;
            }
            o.remove();
            (Entry { page: key, call_bio: slot as u32 }, false)
        };
        Some((self.forget(e), still))
    }

    /// The hold of a removed entry; its call is freed with its last hold.
    fn forget(&mut self, e: Entry) -> Hold {
        let hold = self.hold(e);
        let id = e.call_bio & !TIED;
        self.untied -= usize::from(e.call_bio & TIED == 0);
        let call = &mut self.calls[id as usize];
        call.holds -= 1;
        if call.holds == 0 {
            self.free_calls.push(id);
        }
        hold
    }

    /// Every hold (keys in no particular order, each key's oldest first).
    pub fn iter(&self) -> impl Iterator<Item = Hold> + '_ {
        self.keys.iter().flat_map(move |(&key, &slot)| slot_entries(&self.queues, key, slot).map(move |e| self.hold(e)))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Calls with holds stored.
    #[cfg(test)]
    fn live_calls(&self) -> usize {
        self.calls.len() - self.free_calls.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn one_small_page_takes_one_slot_and_its_call_once() {
        let mut h = Holds::default();
        let call = Call { ts_ns: 5, pid: 7, path: 3 };
        h.add(call, (0..4).map(|k| (0x1000 + k * 64, 0x1000 + k * 64)));
        assert_eq!((h.keys(), h.len(), h.live_calls(), h.queues.len()), (4, 4, 1, 0));
        assert_eq!(
            h.tie_to_bio(0x1040, 0).map(|x| (x.page, x.ts_ns, x.pid, x.path, x.bio)),
            Some((0x1040, 5, 7, 3, true))
        );
        assert!(h.position(0x1040, |x| x.bio).is_some() && h.position(0x1000, |x| x.bio).is_none());
        for k in 0..4 {
            assert!(h.remove(0x1000 + k * 64, 0).is_some());
        }
        assert!(h.is_empty() && h.live_calls() == 0);
        h.add(call, std::iter::empty());
        assert_eq!(h.live_calls(), 0, "a call without holds keeps nothing");
    }

    /// (push to key, or remove at position of key, or tie at position of key)
    fn op() -> impl Strategy<Value = (u8, u64, u64, usize)> {
        (0u8..5, 0u64..3, 0u64..4, 0usize..3)
    }

    proptest! {
        /// The store behaves as a map of queues of (page, call, tied), whatever is pushed,
        /// removed or tied, and keeps no call nor queue nobody uses.
        #[test]
        fn behaves_as_a_map_of_queues(ops in prop::collection::vec(op(), 0..80)) {
            let mut h = Holds::default();
            let mut model: BTreeMap<u64, VecDeque<Hold>> = BTreeMap::new();
            for (i, (what, key, page, at)) in ops.into_iter().enumerate() {
                let key = 0x1000 * (key + 1);
                // Pages: the key's own, another in its folio, or none.
                let page = [key, key + 64, 0, key][page as usize];
                let call = Call { ts_ns: i as u64, pid: i as u32 % 3, path: i as u32 % 5 };
                match what {
                    0 => {
                        h.add(call, [(key, page), (key, page)].into_iter().take(1 + i % 2));
                        for _ in 0..1 + i % 2 {
                            let held = Hold { page, ts_ns: call.ts_ns, pid: call.pid, path: call.path, bio: false };
                            model.entry(key).or_default().push_back(held);
                        }
                    }
                    1 => {
                        let want = model.get_mut(&key).and_then(|q| q.remove(at));
                        model.retain(|_, q| !q.is_empty());
                        prop_assert_eq!(h.remove(key, at), want);
                    }
                    3 => {
                        let had = model.get(&key).is_some_and(|q| q.iter().any(|x| x.page == page));
                        prop_assert_eq!(h.holds_page(key, page), had);
                        let want = model.get_mut(&key).and_then(|q| {
                            let at = if page == 0 { 0 } else { q.iter().position(|x| x.page == page).unwrap_or(0) };
                            let hold = q.remove(at)?;
                            Some((hold, q.iter().any(|x| x.page == hold.page)))
                        });
                        model.retain(|_, q| !q.is_empty());
                        prop_assert_eq!(h.take_page(key, page), want);
                    }
                    4 => {
                        let want = model.get_mut(&key).and_then(|q| {
                            let at = q.iter().position(|x| x.page == page && !x.bio);
                            let x = q.get_mut(at.or_else(|| q.iter().position(|x| x.page == 0 && !x.bio))?)?;
                            x.bio = true;
                            Some(*x)
                        });
                        prop_assert_eq!(h.tie_untied(key, page), want);
                    }
                    _ => {
                        let want = model.get_mut(&key).and_then(|q| q.get_mut(at)).map(|x| {
                            x.bio = true;
                            *x
                        });
                        prop_assert_eq!(h.tie_to_bio(key, at), want);
                    }
                }
                let total: usize = model.values().map(VecDeque::len).sum();
                prop_assert_eq!(h.len(), total);
                prop_assert_eq!(h.keys(), model.len());
                for (k, q) in &model {
                    let got: Vec<Hold> = h.entries(*k).map(|e| h.hold(e)).collect();
                    prop_assert_eq!(&got, &q.iter().copied().collect::<Vec<_>>());
                }
                prop_assert_eq!(h.iter().count(), total);
                let untied = model.values().flatten().filter(|x| !x.bio).count();
                prop_assert_eq!((h.untied, h.any_untied()), (untied, untied > 0));
                let calls: std::collections::BTreeSet<u64> = model.values().flatten().map(|x| x.ts_ns).collect();
                prop_assert_eq!(h.live_calls(), calls.len());
                prop_assert_eq!(h.queues.len() - h.free_queues.len(), h.keys.values().filter(|s| *s & QUEUED != 0).count());
            }
        }
    }
}
