//! Every verdict rule: which probes the ledgers need, which records count as lost, how the bio
//! ledger's totals and the page ledger's suspects make the run's verdict.

use tracer_common::{LostReason, ProbeId, PROBES};

use super::{
    bio::{Count, LedgerSnapshot, Step},
    pages::PageTotals,
};
use crate::probes::{counters::Counters, plan::ProbeOutcome};

#[cfg(test)]
mod tests;

/// The probes whose records the ledgers (bio and page) are made of. Without any of them the
/// verdict is unverifiable.
pub const PROBES_NEEDED: [ProbeId; 7] = [
    ProbeId::BioIovIterGetPages,
    // The bios' completions (the I/O ended: a leak suspect from then on).
    ProbeId::BlockRqComplete,
    ProbeId::BlockBioComplete,
    ProbeId::BioReleasePages,
    ProbeId::PinUserPagesFast,
    ProbeId::UnpinUserPage,
    ProbeId::UnpinUserPages,
];

/// Probes whose records feed the page ledger: a run they skipped lost records.
pub fn feeds_page_ledger(id: ProbeId) -> bool {
    use tracer_common::ProbeRole::{Get, Pin, Put, Unpin};
    matches!(tracer_common::PROBES[id as usize].role, Pin | Unpin | Get | Put)
}

/// The ledger probes of `outcomes` that did not attach.
pub fn missing_probes(outcomes: &[ProbeOutcome]) -> Vec<String> {
    PROBES_NEEDED
        .iter()
        .map(|&id| &outcomes[id as usize])
        .filter(|o| o.missing())
        .map(|o| o.def.target.to_string())
        .collect()
}

/// Ledger records lost in the ring buffer, undecodable, or never produced because the kernel
/// skipped a ledger probe (it was already running on that CPU).
pub fn lost_records(span: &Counters, undecodable: u64) -> u64 {
    let skipped: u64 = PROBES
        .iter()
        .filter(|d| PROBES_NEEDED.contains(&d.id) || feeds_page_ledger(d.id))
        .map(|d| span.missed[d.id as usize])
        .sum();
    span.lost[LostReason::RingFull as usize] + span.lost[LostReason::ScratchBusy as usize] + undecodable + skipped
}

/// The run's verdict from both ledgers at the end.
pub fn verdict(ledger: &LedgerSnapshot, pages: &PageTotals, outcomes: &[ProbeOutcome], lost: u64) -> Judgement {
    judge(ledger, &missing_probes(outcomes), lost).with_page_suspects(pages, lost)
}

/// Whether a step of the bio ledger found a leak (a bio freed without release) or a mismatch.
pub fn is_finding(step: &Step) -> bool {
    matches!(step, Step::Acquired { freed: Some(_) } | Step::Released { mismatch: Some(_), .. })
}

/// Where a bio still holding pages stands at a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BioState {
    /// Not completed.
    InFlight,
    /// Completed less than the grace period ago.
    Releasing,
    /// Completed the grace period ago or more and not released: a leak suspect.
    Leaked,
}

/// The state of a bio last completed at `ended_ns` (None: not completed), at `now_ns`.
pub fn bio_state(ended_ns: Option<u64>, now_ns: u64, grace_ns: u64) -> BioState {
    match ended_ns {
        None => BioState::InFlight,
        Some(ended) if now_ns.saturating_sub(ended) >= grace_ns => BioState::Leaked,
        Some(_) => BioState::Releasing,
    }
}

/// What the page ledger knows of one outstanding hold at a snapshot.
#[derive(Clone, Copy, Debug)]
pub struct HoldFacts {
    /// A bio named its page.
    pub tied_to_bio: bool,
    /// Taken with FOLL_LONGTERM.
    pub longterm: bool,
    /// Its process exited after taking it, a grace period ago or more (see [`orphaned`]).
    pub orphaned: bool,
    /// How long it has been held.
    pub held_ns: u64,
}

/// How an outstanding hold is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldState {
    /// The bio ledger's to judge.
    WithBio,
    /// Held by design (io_uring registered buffers, RDMA, VFIO).
    LongTerm,
    /// Younger than the grace period.
    Held,
    /// Held past the grace period, or outliving its process: a leak suspect.
    Suspect,
}

/// A hold whose process exited (at `exit_ns`, after taking it at `taken_ns`) a grace period
/// ago or more: nothing will release it on the process's behalf any more, long-term or not.
pub fn orphaned(exit_ns: Option<u64>, taken_ns: u64, now_ns: u64, grace_ns: u64) -> bool {
    exit_ns.is_some_and(|exit| exit >= taken_ns && now_ns.saturating_sub(exit) >= grace_ns)
}

/// A hold tied to a bio is the bio ledger's; an orphaned one is a suspect, long-term or not; a
/// long-term one is held by design; others are suspects once held for the grace period.
pub fn hold_state(h: HoldFacts, grace_ns: u64) -> HoldState {
    if h.tied_to_bio {
        HoldState::WithBio
    } else if h.orphaned {
        HoldState::Suspect
    } else if h.longterm {
        HoldState::LongTerm
    } else if h.held_ns >= grace_ns {
        HoldState::Suspect
    } else {
        HoldState::Held
    }
}

/// "1 bio, 16 pages".
fn bios_and_pages(c: Count) -> String {
    let s = |n: u64| if n == 1 { "" } else { "s" };
    format!("{} bio{}, {} page{}", c.bios, s(c.bios), c.pages, s(c.pages))
}

/// The ledger's conclusion about a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every acquisition matched, nothing leaked, every needed probe attached, nothing lost.
    Clean,
    /// Probes the ledger needs are missing, or records were lost and nothing was found.
    Unverifiable,
    LeaksFound,
    MismatchesFound,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Unverifiable => "unverifiable",
            Verdict::LeaksFound => "leaks found",
            Verdict::MismatchesFound => "mismatches found",
        }
    }
}

/// A verdict with the facts behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

/// Judges a snapshot. `missing_probes`: the ledger's probes that did not attach (see
/// [`PROBES_NEEDED`]); `lost_records`: records the kernel could not stream or userspace
/// could not decode. Missing probes make every finding meaningless (without the release probe
/// every bio looks leaked), so they decide first; lost records make a clean run unverifiable
/// and findings uncertain.
pub fn judge(snap: &LedgerSnapshot, missing_probes: &[String], lost_records: u64) -> Judgement {
    let t = &snap.totals;
    let mut reasons = Vec::new();
    if !missing_probes.is_empty() {
        reasons.push(format!("probes missing: {}", missing_probes.join(", ")));
    }
    if t.leaked.bios > 0 {
        reasons.push(format!("leaked: {}", bios_and_pages(t.leaked)));
    }
    if t.mismatched.bios > 0 {
        reasons.push(format!("released other pages than acquired: {}", bios_and_pages(t.mismatched)));
    }
    if lost_records > 0 {
        reasons.push(format!(
            "{lost_records} records lost: a lost release looks like a leak and a lost acquisition hides one"
        ));
    }
    // Each lost record can fake one finding (a lost release leaves a bio looking leaked; a lost
    // acquisition makes a reused address look mismatched). Findings that lost records can
    // explain are not reported as facts: no false alarms.
    let findings = t.leaked.bios + t.mismatched.bios;
    let explained = lost_records > 0 && findings <= lost_records;
    if explained && findings > 0 {
        reasons.push(format!("all {findings} findings may come from the {lost_records} lost records"));
    }
    let verdict = if !missing_probes.is_empty() || explained {
        Verdict::Unverifiable
    } else if t.leaked.bios > 0 {
        Verdict::LeaksFound
    } else if t.mismatched.bios > 0 {
        Verdict::MismatchesFound
    } else {
        Verdict::Clean
    };
    Judgement { verdict, reasons }
}

impl Judgement {
    /// Adds the page ledger's findings: pins not tied to a bio that are held past the grace
    /// period (not long-term), or that outlive the process that took them by as much (long-term
    /// or not). Lost records can fake them (a lost unpin record leaves its pages held), so with
    /// any loss they make the verdict unverifiable, not "leaks found".
    pub fn with_page_suspects(mut self, pages: &PageTotals, lost_records: u64) -> Judgement {
        let suspect_pages = pages.suspect;
        if suspect_pages == 0 {
            return self;
        }
        let exited = match pages.outstanding_owner_exited {
            0 => String::new(),
            n => format!("; {n} held pages outlive the process that pinned them"),
        };
        self.reasons.push(format!(
            "{suspect_pages} pinned pages held past the grace period, not tied to a bio and not FOLL_LONGTERM, or outliving their process{exited}"
        ));
        if lost_records > 0 {
            self.reasons.push(format!("they may come from the {lost_records} lost records"));
            if self.verdict == Verdict::Clean {
                self.verdict = Verdict::Unverifiable;
            }
        } else if matches!(self.verdict, Verdict::Clean | Verdict::MismatchesFound) {
            self.verdict = Verdict::LeaksFound;
        }
        self
    }
}
