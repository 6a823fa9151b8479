//! Property tests: random interleavings of many bios on a few reused addresses, sharing pages,
//! checked against a plain model of the kernel's side.

use std::collections::HashMap;

use proptest::prelude::*;
use tracer_common::{BioEvent, BioRecord, BIO_MAX_VECS};

use super::tests::rec;
use super::*;

/// What the simulated kernel does next.
#[derive(Clone, Debug)]
enum Op {
    /// A new bio at `addr` acquires pages (a bio still there was freed without release).
    Acquire {
        addr: u8,
        tgid: u8,
        vecs: Vec<(u8, u16)>,
        pinned: bool,
    },
    /// The bio at `addr`, if not completed, acquires one more vec.
    Refill {
        addr: u8,
        vec: (u8, u16),
    },
    /// bio_endio at `addr` (of a bio the ledger may not know).
    End {
        addr: u8,
    },
    /// __bio_release_pages at `addr`: of the bio there (with other pages if `alter`), or of a
    /// bio acquired before the trace.
    Release {
        addr: u8,
        alter: bool,
        vecs: Vec<(u8, u16)>,
    },
    Wait {
        ns: u64,
    },
}

fn vecs() -> impl Strategy<Value = Vec<(u8, u16)>> {
    prop::collection::vec((0u8..24, 1u16..4), 0..5)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, 0u8..3, vecs(), any::<bool>())
            .prop_map(|(addr, tgid, vecs, pinned)| Op::Acquire { addr, tgid, vecs, pinned }),
        1 => (0u8..8, (0u8..24, 1u16..4)).prop_map(|(addr, vec)| Op::Refill { addr, vec }),
        3 => (0u8..8).prop_map(|addr| Op::End { addr }),
        3 => (0u8..8, prop::bool::weighted(0.05), vecs())
            .prop_map(|(addr, alter, vecs)| Op::Release { addr, alter, vecs }),
        2 => (0u64..600_000_000).prop_map(|ns| Op::Wait { ns }),
    ]
}

/// A page pool where neighbours overlap: vec (i, n) covers struct pages i .. i+n.
fn spans(v: &[(u8, u16)]) -> Vec<(u64, u16)> {
    v.iter().map(|&(i, n)| (0x10_0000 + i as u64 * 64, n)).collect()
}

fn pages(v: &[(u64, u16)]) -> u64 {
    v.iter().map(|&(_, n)| n as u64).sum()
}

/// One bio's life in the model.
struct Life {
    task: (u32, u32),
    vecs: Vec<(u64, u16)>,
    pinned: bool,
    ended: Option<u64>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    acquired: Count,
    matched: Count,
    mismatched: Count,
    unknown_origin: Count,
    leaked: Count,
    in_flight: Count,
    releasing: Count,
    ends_untracked: u64,
}

/// Runs the ops through the model and the ledger; returns both views at the end.
fn run(ops: &[Op], tail_ns: u64) -> (Ledger, LedgerSnapshot, Expected, HashMap<u64, Life>, u64) {
    let mut ledger = Ledger::new(Config::default());
    let mut lives: HashMap<u64, Life> = HashMap::new();
    let mut exp = Expected::default();
    let mut now = 0u64;
    let mut next_pid = 1000u32;
    for op in ops {
        now += 1;
        match op {
            Op::Acquire { addr, tgid, vecs, pinned } => {
                let addr = 0xb000 + *addr as u64;
                if let Some(old) = lives.remove(&addr) {
                    exp.leaked.add(pages(&old.vecs));
                }
                next_pid += 1;
                let task = (*tgid as u32 + 1, next_pid);
                let v = spans(vecs);
                exp.acquired.add(pages(&v));
                feed(&mut ledger, rec(BioEvent::Acquire, addr, now, (task.0, task.1, "t"), &v, *pinned)).unwrap();
                lives.insert(addr, Life { task, vecs: v, pinned: *pinned, ended: None });
            }
            Op::Refill { addr, vec } => {
                let addr = 0xb000 + *addr as u64;
                let Some(life) = lives.get_mut(&addr) else { continue };
                if life.ended.is_some() || life.vecs.len() >= BIO_MAX_VECS {
                    continue;
                }
                life.vecs.extend(spans(&[*vec]));
                exp.acquired.add_pages(vec.1 as u64);
                let r = rec(BioEvent::Acquire, addr, now, (life.task.0, life.task.1, "t"), &life.vecs, life.pinned);
                feed(&mut ledger, r).unwrap();
            }
            Op::End { addr } => {
                let addr = 0xb000 + *addr as u64;
                match lives.get_mut(&addr) {
                    Some(life) => life.ended = Some(now),
                    None => exp.ends_untracked += 1,
                }
                feed(&mut ledger, rec(BioEvent::End, addr, now, (999, 999, "irq"), &[], false)).unwrap();
            }
            Op::Release { addr, alter, vecs } => {
                let addr = 0xb000 + *addr as u64;
                let r = match lives.remove(&addr) {
                    Some(life) => {
                        exp.matched.add(pages(&life.vecs));
                        let mut v = life.vecs.clone();
                        if *alter {
                            exp.mismatched.add(pages(&life.vecs));
                            v.push((0xdead_0000, 1));
                        }
                        rec(BioEvent::Release, addr, now, (999, 999, "irq"), &v, life.pinned)
                    }
                    None => {
                        let v = spans(vecs);
                        exp.unknown_origin.add(pages(&v));
                        rec(BioEvent::Release, addr, now, (999, 999, "irq"), &v, true)
                    }
                };
                feed(&mut ledger, r).unwrap();
            }
            Op::Wait { ns } => now += ns,
        }
    }
    let end = now + tail_ns;
    let grace = Config::default().grace_ns;
    for life in lives.values() {
        let n = pages(&life.vecs);
        match life.ended {
            None => exp.in_flight.add(n),
            Some(t) if end - t >= grace => exp.leaked.add(n),
            Some(_) => exp.releasing.add(n),
        }
    }
    let snap = ledger.snapshot(end);
    (ledger, snap, exp, lives, now)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_agrees_with_the_model(ops in prop::collection::vec(op(), 0..300), tail in 0u64..2_000_000_000) {
        let (_, s, exp, _, _) = run(&ops, tail);
        let t = &s.totals;
        let got = Expected {
            acquired: t.acquired,
            matched: t.matched,
            mismatched: t.mismatched,
            unknown_origin: t.unknown_origin,
            leaked: t.leaked,
            in_flight: t.in_flight,
            releasing: t.releasing,
            ends_untracked: t.ends_untracked,
        };
        prop_assert_eq!(got, exp);
    }

    #[test]
    fn pages_are_conserved_and_never_below_zero(ops in prop::collection::vec(op(), 0..300), tail in 0u64..2_000_000_000) {
        let (mut ledger, s, _, lives, now) = run(&ops, tail);
        let t = &s.totals;
        // Conservation: every page acquired is released, in flight, releasing or leaked.
        prop_assert_eq!(t.acquired, t.matched + t.in_flight + t.releasing + t.leaked);
        prop_assert_eq!(t.released, t.matched + t.unknown_origin);
        prop_assert_eq!(t.acquired, t.pinned + t.referenced);
        let by_owner = s.owners.iter().fold(Group::default(), |a, o| sum(a, o.counts));
        let by_device = s.devices.iter().fold(Group::default(), |a, d| sum(a, d.counts));
        prop_assert_eq!(by_owner, by_device);
        prop_assert_eq!(by_owner.acquired, t.acquired);
        prop_assert_eq!(by_owner.leaked, t.leaked);
        prop_assert_eq!(s.leaks.len() as u64 + s.leaks_not_listed, t.leaked.bios);
        // Unknown-origin releases never become leaks: only acquired bios are listed.
        prop_assert!(s.leaks.iter().all(|l| l.tgid != 999 && l.comm == "t"));
        // Releasing everything still held leaves no page held and none below zero.
        for (addr, life) in lives {
            ledger.apply(&rec(BioEvent::Release, addr, now + 1, (999, 999, "irq"), &life.vecs, life.pinned));
        }
        ledger.check_invariants().map_err(TestCaseError::fail)?;
        let after = ledger.snapshot(now + 1);
        prop_assert_eq!(after.pages_held, 0);
        prop_assert_eq!(after.totals.in_flight + after.totals.releasing, Count::default());
    }
}

fn feed(ledger: &mut Ledger, r: BioRecord) -> Result<(), String> {
    ledger.apply(&r);
    ledger.check_invariants()
}

fn sum(a: Group, b: Group) -> Group {
    Group {
        acquired: a.acquired + b.acquired,
        matched: a.matched + b.matched,
        in_flight: a.in_flight + b.in_flight,
        releasing: a.releasing + b.releasing,
        leaked: a.leaked + b.leaked,
    }
}
