use tracer_common::{
    BioEvent, Owner, ProbeId, BIO_MAX_VECS, COMM_LEN, PAGES_FLAG_QUEUED, PAGES_FLAG_TRUNCATED, PAGES_FLAG_UNLISTED,
    PAGES_MAX_ENTRIES,
};

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
    let mut l = PageLedger::new(FOLL, S, true);
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
        first_vec: 0,
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
    l.apply(&rec(
        PageEvent::Pin,
        ProbeId::PinUserPagesFast,
        10,
        &[(0x1000, 0x1000), (0x1040, 0x1040), (0x3040, 0x3000), (0x3080, 0x3000)],
    ));
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
    assert_eq!(
        (soon.totals.outstanding_owner_exited, soon.totals.suspect),
        (0, 0),
        "within the grace period of the exit"
    );
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
    assert_eq!(l.refs.count(0x4000), 1, "the queued read's reference");
}

#[test]
fn nfs_references_are_released_when_their_scope_returns() {
    let mut l = ledger();
    l.symbols(&SymbolsRecord {
        symbols: vec![
            (0x30, "nfs_direct_read_schedule_iovec+0x90\t[nfs]".into()),
            (0x31, "nfs_file_direct_read [nfs]+0x10".into()),
        ],
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
    let nfs = s
        .paths
        .iter()
        .find(|p| p.callers.iter().any(|c| c == "nfs_direct_read_schedule_iovec [nfs]"))
        .expect("nfs path");
    assert_eq!(nfs.released_by.get("nfs_direct_read_schedule_iovec <- nfs_file_direct_read [nfs]"), Some(&2));
    assert_eq!(l.refs.count(0x4000), 1, "the other thread's reference");
    // A second scope end of the thread finds nothing more to release.
    l.apply(&end);
    assert_eq!(l.snapshot(10 * S).totals.referenced_released_put, 2);
}

#[test]
fn a_release_that_lists_its_unpins_releases_every_page_of_its_records() {
    use tracer_common::BIO_FLAG_UNPINS_LISTED;
    let mut l = ledger();
    // Three small pages and two pages of a large folio (head 0x3000) in one bio, listed by a
    // release in two records (the second carries the bio's last vec).
    let pins = [(0x1000, 0x1000), (0x1040, 0x1040), (0x1080, 0x1080), (0x3040, 0x3000), (0x3080, 0x3000)];
    l.apply(&rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 10, &pins));
    l.bio(&bio(BioEvent::Acquire, true, 0x1000, 3), 64);
    let mut first = bio(BioEvent::Release, true, 0x1000, 3);
    first.flags |= BIO_FLAG_UNPINS_LISTED;
    let mut second = bio(BioEvent::Release, true, 0x3040, 2);
    second.flags |= BIO_FLAG_UNPINS_LISTED | 1 << tracer_common::BIO_CHUNK_SHIFT;
    second.first_vec = 16;
    for r in [&first, &second] {
        l.bio(r, 64);
        l.apply(&listed_unpins(r, 64).expect("a listed release"));
    }
    let s = l.snapshot(40);
    assert_eq!((s.totals.pinned, s.totals.unpinned, s.totals.unpinned_matched), (5, 5, 5));
    assert_eq!((s.totals.outstanding, s.totals.unpinned_unknown_origin), (0, 0));
    assert_eq!(s.paths[0].released_by.get("unpin_user_folio <- __bio_release_pages"), Some(&5));
    // Nothing waits for unpin records that will not come.
    assert!(l.releasing.is_empty());
    // A release that does not list them, or of a bio that holds references, stands for nothing.
    assert!(listed_unpins(&bio(BioEvent::Release, true, 0x1000, 3), 64).is_none());
    let mut refs = first;
    refs.flags &= !BIO_FLAG_PINNED;
    assert!(listed_unpins(&refs, 64).is_none());
}

#[test]
fn a_listed_release_whose_vecs_could_not_be_read_counts_its_unpins_as_unknown() {
    use tracer_common::BIO_FLAG_UNPINS_LISTED;
    let mut l = ledger();
    let mut unread = bio(BioEvent::Release, true, 0, 0);
    unread.flags |= BIO_FLAG_UNPINS_LISTED;
    unread.nr_vecs = 3;
    let unpins = listed_unpins(&unread, 64).expect("a listed release");
    assert_eq!((unpins.nr, unpins.entries.len()), (3, 0));
    l.apply(&unpins);
    let s = l.snapshot(1);
    assert_eq!((s.totals.unpinned, s.totals.unpinned_unknown_origin), (3, 3));
}

#[test]
fn a_call_path_seen_before_its_names_is_named_once_they_come() {
    // The stream names each address once, ahead of the first record naming it: a record whose
    // frames had no names yet gets an unnamed path, and the same frames named later get theirs
    // (the frames -> path cache keeps only fully named calls).
    let mut l = PageLedger::new(FOLL, S, true);
    let mut unpin = rec(PageEvent::Unpin, ProbeId::UnpinUserPages, 2, &[(0x1000, 0x1000)]);
    unpin.frames = vec![0x20];
    let mut early = rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 1, &[(0x1000, 0x1000)]);
    early.frames = vec![0x11, 0x14];
    l.apply(&early);
    l.apply(&unpin);
    let names =
        [(0x11, "pin_user_pages_fast+0x5"), (0x14, "bio_iov_iter_get_pages+0x9"), (0x20, "__bio_release_pages+0x4")];
    l.symbols(&SymbolsRecord { symbols: names.iter().map(|&(ip, n)| (ip, n.to_string())).collect() });
    let mut named = rec(PageEvent::Pin, ProbeId::PinUserPagesFast, 3, &[(0x2000, 0x2000)]);
    named.frames = vec![0x11, 0x14];
    l.apply(&named);
    l.apply(&named.clone());
    unpin.entries = vec![(0x2000, 0x2000)];
    l.apply(&unpin);
    l.apply(&unpin);
    let s = l.snapshot(10 * S);
    assert_eq!(s.totals.unknown_stacks, 2, "the pin and the unpin before the names");
    let path = s.paths.iter().find(|p| p.callers == ["bio_iov_iter_get_pages"]).expect("the named path");
    assert_eq!(path.calls, 2);
    assert_eq!(path.released_by.get("unpin_user_pages <- __bio_release_pages"), Some(&2));
}
