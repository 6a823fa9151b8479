//! Property tests of the page ledger on shared large folios: several holders (pin calls of
//! several threads, bios or processes) pin pages of the same folios, and release them in any
//! order, partly or at once, by folio-level unpins that name only the folio and a count, by
//! page-level unpins, with or without the bio release record that names their pages, on the
//! same releasing thread or on several. Checked against a plain model of the kernel's counts.

use std::collections::HashMap;

use proptest::prelude::*;
use tracer_common::{BioEvent, BioRecord, Owner, PageEvent, ProbeId, BIO_FLAG_PINNED, BIO_MAX_VECS, COMM_LEN};

use super::*;

const S: u64 = 64;
/// Folio heads: two PMD-sized (512 pages) and one order-4 (16 pages) folio, apart in the vmemmap.
const FOLIOS: [(u64, u64); 3] = [(0x10_0000, 512), (0x20_0000, 512), (0x30_0000, 16)];

/// How a holder's pages are released.
#[derive(Clone, Copy, Debug)]
enum How {
    /// A bio release record naming the pages, then `unpin_user_folio(folio, n)` in parts.
    BioFolio,
    /// `unpin_user_folio(folio, n)` in parts with no bio record (io_uring unmapping).
    Folio,
    /// `unpin_user_pages` naming each page.
    Pages,
}

/// One pin call: `len` pages of folio `folio` from page `start`, released in parts of `parts`.
#[derive(Clone, Debug)]
struct Holder {
    folio: usize,
    start: u64,
    len: u64,
    /// The thread the release runs on (0: the idle task, shared by several CPUs).
    releaser: u32,
    how: How,
    /// Sizes of the release's parts (their sum is `len`).
    parts: Vec<u64>,
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![3 => Just(How::BioFolio), 1 => Just(How::Folio), 1 => Just(How::Pages)]
}

fn holder(shared_releaser: bool) -> impl Strategy<Value = Holder> {
    (0..FOLIOS.len(), 0u64..512, 1u64..64, 0u32..4, how(), prop::collection::vec(1u64..64, 1..3)).prop_map(
        move |(folio, start, len, releaser, how, cuts)| {
            let size = FOLIOS[folio].1;
            let start = start % size;
            let len = len.min(size - start);
            // Parts of the release: cut points within len.
            let mut parts = Vec::new();
            let mut left = len;
            for c in cuts {
                if left == 0 {
                    break;
                }
                let p = c.min(left);
                parts.push(p);
                left -= p;
            }
            if left > 0 {
                parts.push(left);
            }
            // A bio names at most 16 vecs; one vec here, so its release is listed whole.
            let releaser = if shared_releaser { releaser } else { 100 + releaser };
            Holder { folio, start, len, releaser, how, parts }
        },
    )
}

/// One step of the schedule: which holder moves next (by index modulo those left).
fn schedule() -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(any::<u16>(), 0..400)
}

fn owner(pid: u32) -> Owner {
    Owner { tgid: pid, pid, cgroup: 1, comm: [b'w'; COMM_LEN] }
}

fn pages_rec(event: PageEvent, probe: ProbeId, ts: u64, pid: u32, refs: u32, entries: Vec<(u64, u64)>) -> PagesRecord {
    PagesRecord {
        event: event as u32,
        ts_ns: ts,
        probe: probe as u32,
        gup_flags: 0,
        nr: entries.len() as u32,
        refs,
        flags: 0,
        owner: owner(pid),
        frames: Vec::new(),
        entries,
    }
}

fn bio_release(ts: u64, pid: u32, first: u64, pages: u64) -> BioRecord {
    let mut r = BioRecord {
        record: 2,
        event: BioEvent::Release as u32,
        ts_ns: ts,
        bio: 0xb10 + first,
        dev: 1,
        op: 0,
        flags: BIO_FLAG_PINNED,
        status: 0,
        bytes: (4096 * pages) as u32,
        first_vec: 0,
        owner: owner(pid),
        nr_vecs: 1,
        nr_pages: pages as u32,
        pages: [0; BIO_MAX_VECS],
        vec_pages: [0; BIO_MAX_VECS],
    };
    r.pages[0] = first;
    r.vec_pages[0] = pages as u16;
    r
}

/// Where a holder stands in the schedule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    ToPin,
    /// Released parts so far (the bio record, if any, went out with the first part).
    Releasing(usize),
    Done,
}

/// Runs the holders through the ledger in the order `order` picks. `heads`: whether pin records
/// name the real folio (else every page is filed as its own folio, as tracers before 7.x
/// support did). `exact`: releases on distinct threads, each bio record right before its
/// unpins. Returns the ledger after every step checked, with per-folio counts.
fn run(holders: &[Holder], order: &[u16], heads: bool, exact: bool) -> Result<PageLedger, TestCaseError> {
    let mut l = PageLedger::new(FollBits::default(), 1_000_000_000, heads);
    let mut stage = vec![Stage::ToPin; holders.len()];
    // Model: pins outstanding per folio, and (for `exact`) per page.
    let mut per_folio: HashMap<u64, u64> = HashMap::new();
    let mut held_pages: HashMap<u64, u64> = HashMap::new();
    let mut ts = 0u64;
    let mut steps = order.iter().copied().chain(std::iter::repeat(0));
    let mut pid_of_pin = 1000u32;
    loop {
        let live: Vec<usize> = (0..holders.len()).filter(|&i| stage[i] != Stage::Done).collect();
        if live.is_empty() {
            break;
        }
        let i = live[steps.next().unwrap_or(0) as usize % live.len()];
        let h = &holders[i];
        let (head, _) = FOLIOS[h.folio];
        let page = |k: u64| head + (h.start + k) * S;
        ts += 1000;
        match stage[i] {
            Stage::ToPin => {
                pid_of_pin += 1;
                let entries = (0..h.len).map(|k| (page(k), if heads { head } else { page(k) })).collect();
                l.apply(&pages_rec(PageEvent::Pin, ProbeId::PinUserPagesFast, ts, pid_of_pin, 1, entries));
                *per_folio.entry(head).or_default() += h.len;
                for k in 0..h.len {
                    *held_pages.entry(page(k)).or_default() += 1;
                }
                stage[i] = Stage::Releasing(0);
            }
            Stage::Releasing(done) => {
                let before: u64 = h.parts[..done].iter().sum();
                let n = h.parts[done];
                if done == 0 && matches!(h.how, How::BioFolio) {
                    l.bio(&bio_release(ts, h.releaser, page(0), h.len), S);
                }
                match h.how {
                    How::BioFolio | How::Folio => l.apply(&pages_rec(
                        PageEvent::Unpin,
                        ProbeId::UnpinUserFolio,
                        ts + 1,
                        h.releaser,
                        n as u32,
                        vec![(0, head)],
                    )),
                    How::Pages => {
                        let entries =
                            (before..before + n).map(|k| (page(k), if heads { head } else { page(k) })).collect();
                        l.apply(&pages_rec(PageEvent::Unpin, ProbeId::UnpinUserPages, ts + 1, h.releaser, 1, entries))
                    }
                }
                *per_folio.get_mut(&head).expect("pinned") -= n;
                for k in before..before + n {
                    *held_pages.get_mut(&page(k)).expect("pinned") -= 1;
                }
                stage[i] = if done + 1 == h.parts.len() { Stage::Done } else { Stage::Releasing(done + 1) };
            }
            Stage::Done => unreachable!(),
        }
        // Every unpin so far matched a pin of its folio, and each folio holds what the kernel
        // counts on it.
        prop_assert_eq!(l.totals.unpinned_unknown_origin, 0);
        let mut got: HashMap<u64, u64> = HashMap::new();
        let mut got_pages: HashMap<u64, u64> = HashMap::new();
        for hold in l.holds.iter() {
            let folio = FOLIOS.iter().find(|&&(f, n)| hold.page >= f && hold.page < f + n * S).map(|&(f, _)| f);
            *got.entry(folio.expect("a page of a test folio")).or_default() += 1;
            *got_pages.entry(hold.page).or_default() += 1;
        }
        per_folio.retain(|_, n| *n > 0);
        prop_assert_eq!(&got, &per_folio, "holds per folio");
        if exact {
            held_pages.retain(|_, n| *n > 0);
            prop_assert_eq!(&got_pages, &held_pages, "holds per page");
        }
    }
    Ok(l)
}

fn balanced(l: &PageLedger) -> Result<(), TestCaseError> {
    let s = l.snapshot(u64::MAX / 2);
    let t = &s.totals;
    prop_assert_eq!(t.unpinned_matched, t.pinned);
    prop_assert_eq!((t.unpinned_unknown_origin, t.outstanding, t.suspect), (0, 0, 0));
    prop_assert!(l.holds.is_empty() && l.page_folio.is_empty());
    // Every release is the pin owner's, never the releasing thread's: each owner unpinned what
    // it pinned, and the threads that only ran releases own nothing.
    for (tgid, o) in l.owners() {
        prop_assert_eq!(o.unpinned, o.pinned, "owner {}", tgid);
    }
    prop_assert!(l.owners().keys().all(|&tgid| tgid > 1000), "only the pinning processes own pins");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Releases on threads of their own, each bio record right before its unpins: every unpin
    /// ends the very pin of its page, whatever the interleaving of holders, whether or not the
    /// pin records named the folio.
    #[test]
    fn bio_releases_end_the_pins_of_their_own_pages(
        holders in prop::collection::vec(holder(false), 1..12), order in schedule(), heads in any::<bool>()
    ) {
        // One holder per releasing thread: no two releases of one thread interleave.
        let holders: Vec<Holder> = holders.into_iter().enumerate().map(|(i, mut h)| {
            h.releaser = 100 + i as u32;
            if !matches!(h.how, How::BioFolio) {
                h.how = How::Pages;
            }
            // The bio's release: one unpin per folio, in one part.
            if matches!(h.how, How::BioFolio) {
                h.parts = vec![h.len];
            }
            h
        }).collect();
        let l = run(&holders, &order, heads, true)?;
        balanced(&l)?;
    }

    /// Any interleaving, releases in parts, on shared threads, with or without bio records:
    /// counts per folio stay exact, no unpin is ever of unknown origin, and a balanced trace
    /// leaves nothing outstanding (never a false leak).
    #[test]
    fn folio_counts_stay_exact_in_any_interleaving(
        holders in prop::collection::vec(holder(true), 1..12), order in schedule(), heads in any::<bool>()
    ) {
        // Where the pin records did not name the folio (record files of tracers before 7.x
        // support), a folio-level unpin without its bio record cannot tell which pages are its
        // folio's from a page-level unpin's: those files come from bio releases only.
        let holders: Vec<Holder> = holders
            .into_iter()
            .map(|mut h| {
                if !heads && matches!(h.how, How::Folio) {
                    h.how = How::BioFolio;
                }
                h
            })
            .collect();
        let l = run(&holders, &order, heads, false)?;
        balanced(&l)?;
    }
}
