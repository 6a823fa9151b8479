//! One test per rule of docs/ledger.md.

use tracer_common::{BioEvent, BioRecord, RecordType, BIO_FLAG_HARDIRQ, BIO_FLAG_PINNED, COMM_LEN};

use super::*;
use crate::engine::detect::{judge, Verdict};
use crate::{decode::decode, model::Record};

const MS: u64 = 1_000_000;
pub(crate) const S: u64 = 1_000_000_000;

/// A zeroed Bio record, built through the decoder from zeroed wire bytes (so that new fields
/// of the record types need no change here).
pub(crate) fn blank() -> BioRecord {
    let mut bytes = vec![0u8; 1 << 16];
    bytes[..4].copy_from_slice(&(RecordType::Bio as u32).to_ne_bytes());
    match decode(&bytes) {
        Ok(Record::Bio(r)) => r,
        other => panic!("a zeroed bio record decodes: {other:?}"),
    }
}

pub(super) fn comm(name: &str) -> [u8; COMM_LEN] {
    let mut c = [0u8; COMM_LEN];
    c[..name.len()].copy_from_slice(name.as_bytes());
    c
}

/// A record of `event` for `bio` at `ts`, run by (tgid, pid, comm), with these vecs.
pub(super) fn rec(
    event: BioEvent,
    bio: u64,
    ts: u64,
    task: (u32, u32, &str),
    vecs: &[(u64, u16)],
    pinned: bool,
) -> BioRecord {
    let mut r = blank();
    r.event = event as u32;
    r.bio = bio;
    r.ts_ns = ts;
    r.dev = 254 << 20;
    r.op = 0;
    r.flags = if pinned { BIO_FLAG_PINNED } else { 0 };
    r.owner.tgid = task.0;
    r.owner.pid = task.1;
    r.owner.comm = comm(task.2);
    r.nr_vecs = vecs.len() as u32;
    for (i, &(page, n)) in vecs.iter().take(r.pages.len()).enumerate() {
        r.pages[i] = page;
        r.vec_pages[i] = n;
        r.nr_pages += n as u32;
    }
    r
}

const FIO: (u32, u32, &str) = (100, 101, "fio");
const KWORKER: (u32, u32, &str) = (7, 7, "kworker/0:1");
const VECS: &[(u64, u16)] = &[(0x1000, 4), (0x9000, 2)];

pub(crate) fn acquire(bio: u64, ts: u64) -> BioRecord {
    rec(BioEvent::Acquire, bio, ts, FIO, VECS, true)
}
pub(crate) fn end(bio: u64, ts: u64) -> BioRecord {
    let mut r = rec(BioEvent::End, bio, ts, KWORKER, &[], false);
    r.flags |= BIO_FLAG_HARDIRQ;
    r
}
pub(crate) fn release(bio: u64, ts: u64) -> BioRecord {
    rec(BioEvent::Release, bio, ts, KWORKER, VECS, true)
}

pub(crate) fn ledger() -> Ledger {
    Ledger::new(Config::default())
}

fn conserved(s: &LedgerSnapshot) {
    let t = &s.totals;
    assert_eq!(t.acquired, t.matched + t.in_flight + t.releasing + t.leaked, "conservation: {t:?}");
    assert_eq!(t.released, t.matched + t.unknown_origin);
    assert_eq!(t.acquired, t.pinned + t.referenced);
}

fn clean(s: &LedgerSnapshot) -> Verdict {
    judge(s, &[], 0).verdict
}

#[test]
fn acquire_end_release_matches_and_times_the_bio() {
    let mut l = ledger();
    assert_eq!(l.apply(&acquire(0xb10, 10 * MS)), Step::Acquired { freed: None });
    assert_eq!(l.apply(&end(0xb10, 12 * MS)), Step::Ended);
    let step = l.apply(&release(0xb10, 13 * MS));
    assert_eq!(
        step,
        Step::Released {
            timing: BioTiming { hold_ns: 3 * MS, unpin_lag_ns: Some(MS), dev: 254 << 20, op: 0, bytes: 0 },
            mismatch: None
        }
    );
    let s = l.snapshot(20 * S);
    conserved(&s);
    let t = &s.totals;
    assert_eq!(t.acquired, Count { bios: 1, pages: 6 });
    assert_eq!(t.pinned, Count { bios: 1, pages: 6 });
    assert_eq!(t.ended, Count { bios: 1, pages: 6 });
    assert_eq!(t.matched, Count { bios: 1, pages: 6 });
    assert_eq!(t.leaked, Count::default());
    assert_eq!((t.hold.mean_ns(), t.hold.max_ns, t.unpin_lag.mean_ns()), (Some(3 * MS), 3 * MS, Some(MS)));
    assert_eq!((s.pages_held, s.pages_shared), (0, 0));
    assert_eq!(clean(&s), Verdict::Clean);
    l.check_invariants().unwrap();
}

#[test]
fn release_is_attributed_to_the_acquiring_task_not_the_releasing_one() {
    let mut l = ledger();
    l.apply(&acquire(0xb10, 0));
    l.apply(&end(0xb10, MS));
    l.apply(&release(0xb10, 2 * MS));
    let s = l.snapshot(3 * MS);
    assert_eq!(s.owners.len(), 1, "{:?}", s.owners);
    assert_eq!((s.owners[0].tgid, s.owners[0].comm.as_str()), (100, "fio"));
    assert_eq!(s.owners[0].counts.matched, Count { bios: 1, pages: 6 });
    assert_eq!(s.devices.len(), 1);
    assert_eq!((s.devices[0].dev, s.devices[0].op), (254 << 20, 0));
    assert_eq!(s.devices[0].counts.acquired, Count { bios: 1, pages: 6 });
}

#[test]
fn release_without_acquisition_is_unknown_origin_never_a_leak() {
    let mut l = ledger();
    assert_eq!(l.apply(&release(0xb10, 5 * S)), Step::UnknownOrigin);
    let s = l.snapshot(100 * S);
    conserved(&s);
    assert_eq!(s.totals.unknown_origin, Count { bios: 1, pages: 6 });
    assert_eq!(s.totals.released, Count { bios: 1, pages: 6 });
    assert_eq!(s.totals.leaked, Count::default());
    assert!(s.leaks.is_empty());
    assert_eq!(clean(&s), Verdict::Clean);
    l.check_invariants().unwrap();
}

#[test]
fn release_of_other_pages_is_a_mismatch() {
    let mut l = ledger();
    l.apply(&acquire(0xb10, 0));
    l.apply(&end(0xb10, MS));
    let other = rec(BioEvent::Release, 0xb10, 2 * MS, KWORKER, &[(0x1000, 4), (0xa000, 2)], true);
    let Step::Released { mismatch: Some(m), .. } = l.apply(&other) else { panic!("expected a mismatch") };
    assert_eq!(m.differences, vec!["pages"]);
    assert_eq!(m.first_vec, Some(1));
    assert_eq!((m.tgid, m.comm.as_str()), (100, "fio"));
    let s = l.snapshot(10 * S);
    conserved(&s);
    assert_eq!(s.totals.mismatched, Count { bios: 1, pages: 6 });
    assert_eq!(s.totals.matched, Count { bios: 1, pages: 6 }, "the bio's holds are closed all the same");
    assert_eq!(s.mismatches.len(), 1);
    assert_eq!(clean(&s), Verdict::MismatchesFound);
    l.check_invariants().unwrap();
}

#[test]
fn release_as_references_of_pinned_pages_and_a_vec_count_change_are_mismatches() {
    let mut l = ledger();
    l.apply(&acquire(0xb10, 0));
    let as_refs = rec(BioEvent::Release, 0xb10, MS, KWORKER, VECS, false);
    let Step::Released { mismatch: Some(m), .. } = l.apply(&as_refs) else { panic!("expected a mismatch") };
    assert_eq!(m.differences, vec!["pin_kind"]);
    l.apply(&acquire(0xb20, 0));
    let fewer = rec(BioEvent::Release, 0xb20, MS, KWORKER, &VECS[..1], true);
    let Step::Released { mismatch: Some(m), .. } = l.apply(&fewer) else { panic!("expected a mismatch") };
    assert_eq!(m.differences, vec!["vec_count", "pages"]);
    assert_eq!((m.acquired.pages, m.released.pages), (6, 4));
}

#[test]
fn acquire_over_an_unreleased_bio_is_a_leak_with_owner_and_ages() {
    let mut l = ledger();
    l.apply(&acquire(0xb10, S));
    l.apply(&end(0xb10, S + 5 * MS));
    // The address comes back: a new bio, so the old one was freed without release.
    let again = rec(BioEvent::Acquire, 0xb10, 3 * S, (200, 201, "dd"), &[(0x5000, 1)], false);
    let Step::Acquired { freed: Some(leak) } = l.apply(&again) else { panic!("expected a leak") };
    assert_eq!(leak.kind, LeakKind::FreedWithoutRelease);
    assert_eq!((leak.bio, leak.tgid, leak.pid, leak.comm.as_str()), (0xb10, 100, 101, "fio"));
    assert_eq!((leak.pages, leak.pinned, leak.first_page), (6, true, 0x1000));
    assert_eq!(leak.acquired_age_ns, 2 * S);
    assert_eq!(leak.ended_age_ns, Some(2 * S - 5 * MS));
    assert_eq!(leak.status, Some(0));
    assert!(leak.to_string().contains("freed without release"), "{leak}");
    // The new bio is followed normally.
    l.apply(&end(0xb10, 3 * S + MS));
    let Step::Released { mismatch: None, .. } =
        l.apply(&rec(BioEvent::Release, 0xb10, 3 * S + 2 * MS, KWORKER, &[(0x5000, 1)], false))
    else {
        panic!("the new bio's release matches")
    };
    let s = l.snapshot(4 * S);
    conserved(&s);
    assert_eq!(s.totals.leaked, Count { bios: 1, pages: 6 });
    assert_eq!(s.totals.matched, Count { bios: 1, pages: 1 });
    assert_eq!(s.totals.referenced, Count { bios: 1, pages: 1 });
    assert_eq!(s.leaks, vec![leak]);
    let fio = s.owners.iter().find(|o| o.comm == "fio").unwrap();
    assert_eq!(fio.counts.leaked, Count { bios: 1, pages: 6 });
    assert_eq!(clean(&s), Verdict::LeaksFound);
    l.check_invariants().unwrap();
}

#[test]
fn acquire_over_an_uncompleted_bio_of_another_thread_is_a_leak_too() {
    let mut l = ledger();
    l.apply(&acquire(0xb10, 0));
    let other_thread = rec(BioEvent::Acquire, 0xb10, MS, (100, 102, "fio"), &[(0x1000, 4), (0x9000, 3)], true);
    assert!(matches!(l.apply(&other_thread), Step::Acquired { freed: Some(_) }));
}

#[test]
fn a_bio_filled_in_several_calls_is_one_bio() {
    let mut l = ledger();
    l.apply(&rec(BioEvent::Acquire, 0xb10, 0, FIO, &[(0x1000, 2)], true));
    // Same thread, not completed, the last vec grew and one was appended.
    assert_eq!(l.apply(&rec(BioEvent::Acquire, 0xb10, 10, FIO, &[(0x1000, 4), (0x9000, 2)], true)), Step::Refilled);
    l.apply(&end(0xb10, MS));
    let Step::Released { timing, mismatch: None } = l.apply(&release(0xb10, 2 * MS)) else { panic!("matched") };
    assert_eq!(timing.hold_ns, 2 * MS, "held from the first acquisition");
    let s = l.snapshot(2 * MS);
    conserved(&s);
    assert_eq!(s.totals.acquired, Count { bios: 1, pages: 6 });
    assert_eq!(s.totals.leaked, Count::default());
    l.check_invariants().unwrap();
}

#[test]
fn same_pages_again_on_an_uncompleted_bio_is_a_new_bio() {
    // fio reuses its buffers: a new bio at a reused address can name the very same pages.
    let mut l = ledger();
    l.apply(&acquire(0xb10, 0));
    assert!(matches!(l.apply(&acquire(0xb10, MS)), Step::Acquired { freed: Some(_) }));
}

#[test]
fn at_the_end_uncompleted_is_in_flight_recent_is_releasing_old_is_leaked() {
    let mut l = Ledger::new(Config { grace_ns: 500 * MS, ..Config::default() });
    l.apply(&acquire(0xa, 0)); // never completes: in flight, however long
    l.apply(&acquire(0xb, 0));
    l.apply(&end(0xb, 9_800 * MS)); // completed 200 ms before the end: releasing
    l.apply(&acquire(0xc, 0));
    l.apply(&end(0xc, 9_000 * MS)); // completed 1 s before the end: leaked
    let s = l.snapshot(10 * S);
    conserved(&s);
    assert_eq!(s.totals.in_flight, Count { bios: 1, pages: 6 });
    assert_eq!(s.totals.releasing, Count { bios: 1, pages: 6 });
    assert_eq!(s.totals.leaked, Count { bios: 1, pages: 6 });
    assert_eq!(s.leaks.len(), 1);
    let leak = &s.leaks[0];
    assert_eq!((leak.kind, leak.bio), (LeakKind::NotReleased, 0xc));
    assert_eq!((leak.acquired_age_ns, leak.ended_age_ns), (10 * S, Some(S)));
    assert_eq!(s.owners[0].counts.in_flight, Count { bios: 1, pages: 6 });
    assert_eq!(s.devices[0].counts.releasing, Count { bios: 1, pages: 6 });
    // A snapshot judges, it does not change the ledger: earlier, nothing had leaked yet.
    assert_eq!(l.snapshot(9_100 * MS).totals.leaked, Count::default());
    // The pages are still held, 3 bios × 6 pages on the same 6 pages.
    assert_eq!((s.pages_held, s.pages_shared), (6, 6));
    l.check_invariants().unwrap();
}

#[test]
fn in_flight_alone_is_never_a_leak() {
    let mut l = ledger();
    l.apply(&acquire(0xa, 0));
    let s = l.snapshot(1_000_000 * S);
    assert_eq!(s.totals.leaked, Count::default());
    assert_eq!(clean(&s), Verdict::Clean);
}

#[test]
fn the_last_completion_counts() {
    let mut l = ledger();
    l.apply(&acquire(0xa, 0));
    l.apply(&end(0xa, MS));
    l.apply(&end(0xa, 5 * MS));
    let Step::Released { timing, .. } = l.apply(&release(0xa, 6 * MS)) else { panic!("matched") };
    assert_eq!(timing.unpin_lag_ns, Some(MS));
    assert_eq!(l.snapshot(6 * MS).totals.ended, Count { bios: 1, pages: 6 }, "ended once");
}

#[test]
fn a_release_without_completion_has_no_lag() {
    let mut l = ledger();
    l.apply(&acquire(0xa, 0));
    let Step::Released { timing, .. } = l.apply(&release(0xa, 6 * MS)) else { panic!("matched") };
    assert_eq!(timing, BioTiming { hold_ns: 6 * MS, unpin_lag_ns: None, dev: 254 << 20, op: 0, bytes: 0 });
    assert_eq!(l.snapshot(6 * MS).totals.unpin_lag.count, 0);
}

#[test]
fn untracked_ends_and_unknown_events_are_counted() {
    let mut l = ledger();
    assert_eq!(l.apply(&end(0xa, 0)), Step::Untracked);
    let mut bad = acquire(0xa, 0);
    bad.event = 9;
    assert_eq!(l.apply(&bad), Step::Invalid);
    let s = l.snapshot(0);
    assert_eq!((s.totals.ends_untracked, s.totals.invalid_records), (1, 1));
    assert_eq!(s.totals.acquired, Count::default());
}

#[test]
fn pages_shared_by_two_bios_are_held_twice() {
    let mut l = ledger();
    l.apply(&rec(BioEvent::Acquire, 0xa, 0, FIO, &[(0x1000, 2)], true));
    l.apply(&rec(BioEvent::Acquire, 0xb, 0, FIO, &[(0x1040, 2)], true));
    let s = l.snapshot(0);
    assert_eq!((s.pages_held, s.pages_shared), (3, 1), "0x1040 is in both");
    l.apply(&rec(BioEvent::Release, 0xa, 1, KWORKER, &[(0x1000, 2)], true));
    assert_eq!(l.snapshot(1).pages_held, 2);
    l.check_invariants().unwrap();
}

#[test]
fn truncated_bios_are_counted() {
    let mut l = ledger();
    let mut r = acquire(0xa, 0);
    r.nr_vecs = 40;
    l.apply(&r);
    assert_eq!(l.snapshot(0).totals.truncated_bios, 1);
}

#[test]
fn reports_are_capped_counts_are_not() {
    let mut l = Ledger::new(Config { max_reports: 2, ..Config::default() });
    for i in 0..5u64 {
        l.apply(&acquire(0xa, i * MS));
        l.apply(&end(0xa, i * MS + 1));
    }
    l.apply(&acquire(0xb, 0));
    l.apply(&end(0xb, 1));
    let s = l.snapshot(10 * S);
    assert_eq!(s.totals.leaked.bios, 6, "4 freed without release, the last at 0xa and 0xb not released");
    assert_eq!(s.leaks.len(), 2);
    assert_eq!(s.leaks_not_listed, 4);
}
