use super::*;
use crate::engine::bio::tests::{acquire, end, ledger, S};

#[test]
fn verdicts() {
    let mut l = ledger();
    l.apply(&acquire(0xa, 0));
    l.apply(&end(0xa, 0));
    let leaky = l.snapshot(10 * S);
    let missing = vec!["__bio_release_pages".to_string()];
    let j = judge(&leaky, &missing, 0);
    assert_eq!(j.verdict, Verdict::Unverifiable, "without the release probe every bio looks leaked");
    assert!(j.reasons[0].contains("__bio_release_pages"), "{:?}", j.reasons);
    // One leak suspect and three lost records: the lost records may explain it.
    assert_eq!(judge(&leaky, &[], 3).verdict, Verdict::Unverifiable);
    assert!(judge(&leaky, &[], 3).reasons.iter().any(|r| r.contains("3 records lost")));
    assert!(judge(&leaky, &[], 3).reasons.iter().any(|r| r.contains("may come from the 3 lost records")));
    assert_eq!(judge(&leaky, &[], 0).verdict, Verdict::LeaksFound);
    // More suspects than lost records: at least one leak is real.
    let mut two = ledger();
    for bio in [0xa, 0xb] {
        two.apply(&acquire(bio, 0));
        two.apply(&end(bio, 0));
    }
    assert_eq!(judge(&two.snapshot(10 * S), &[], 1).verdict, Verdict::LeaksFound);
    let nothing = ledger().snapshot(0);
    assert_eq!(judge(&nothing, &[], 0), Judgement { verdict: Verdict::Clean, reasons: vec![] });
    assert_eq!(judge(&nothing, &[], 1).verdict, Verdict::Unverifiable);
    assert_eq!(judge(&nothing, &missing, 0).verdict, Verdict::Unverifiable);
    assert_eq!(Verdict::LeaksFound.name(), "leaks found");
}

#[test]
fn bio_and_hold_states() {
    assert_eq!(bio_state(None, 10 * S, S), BioState::InFlight);
    assert_eq!(bio_state(Some(9 * S + 1), 10 * S, S), BioState::Releasing);
    assert_eq!(bio_state(Some(9 * S), 10 * S, S), BioState::Leaked);
    let h = HoldFacts { tied_to_bio: false, longterm: false, orphaned: false, held_ns: S };
    assert_eq!(hold_state(h, S), HoldState::Suspect);
    assert_eq!(hold_state(HoldFacts { held_ns: S - 1, ..h }, S), HoldState::Held);
    assert_eq!(hold_state(HoldFacts { longterm: true, ..h }, S), HoldState::LongTerm);
    assert_eq!(hold_state(HoldFacts { longterm: true, orphaned: true, ..h }, S), HoldState::Suspect);
    assert_eq!(hold_state(HoldFacts { tied_to_bio: true, orphaned: true, ..h }, S), HoldState::WithBio);
    assert!(orphaned(Some(S), 0, 2 * S, S), "exited a grace period ago");
    assert!(!orphaned(Some(S), 2 * S, 3 * S, S), "a later process with the same tgid");
    assert!(!orphaned(None, 0, 9 * S, S));
}
