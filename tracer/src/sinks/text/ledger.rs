//! The two ledgers as text.

use crate::{
    engine::{
        bio::{seconds, Count, Group, LeakKind, LeakReport, LedgerSnapshot, MismatchReport, PagesSeen},
        pages::{Class, PageSnapshot},
    },
    snapshot::{BioLedger, NameTable},
};

/// A duration in a readable unit: "850 ns", "12.3 us", "2.50 ms", "1.234 s".
fn duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

/// The bio ledger as text.
pub fn ledger_text(b: &BioLedger, names: &NameTable) -> String {
    let (l, t) = (&b.ledger, &b.ledger.totals);
    let mut s = format!("pin ledger (bio pages: acquired -> completed -> released): {}\n", b.judgement.verdict.name());
    for why in &b.judgement.reasons {
        s.push_str(&format!("  - {why}\n"));
    }
    let row = |s: &mut String, name: &str, c: &Count, note: String| {
        s.push_str(&format!("  {name:<14} {:>10} {:>12}{}\n", c.bios, c.pages, note));
    };
    s.push_str(&format!("  {:<14} {:>10} {:>12}\n", "", "BIOS", "PAGES"));
    row(
        &mut s,
        "acquired",
        &t.acquired,
        format!("   pinned {}, referenced {} pages", t.pinned.pages, t.referenced.pages),
    );
    row(&mut s, "completed", &t.ended, String::new());
    row(&mut s, "released", &t.matched, String::new());
    row(&mut s, "in flight", &t.in_flight, "   not completed yet".into());
    row(&mut s, "releasing", &t.releasing, format!("   completed less than {} s ago", b.grace_s));
    row(&mut s, "leaked", &t.leaked, String::new());
    row(&mut s, "mismatched", &t.mismatched, String::new());
    row(&mut s, "unknown origin", &t.unknown_origin, "   released, acquired before the trace".into());
    let d = |ns: Option<u64>| ns.map_or("-".to_string(), duration);
    s.push_str(&format!(
        "  hold: mean {}, max {}; unpin lag: mean {}, max {}\n",
        d(t.hold.mean_ns()),
        d(t.hold.max()),
        d(t.unpin_lag.mean_ns()),
        d(t.unpin_lag.max())
    ));
    s.push_str(&format!("  pages held at the end: {} ({} by more than one bio)\n", l.pages_held, l.pages_shared));
    if t.ends_untracked + t.truncated_bios + t.invalid_records > 0 {
        s.push_str(&format!(
            "  completions of untracked bios {}, truncated bios {}, invalid records {}\n",
            t.ends_untracked, t.truncated_bios, t.invalid_records
        ));
    }
    s.push_str(&groups_text(l, names));
    s.push_str(&leaks_text(l, names));
    s.push_str(&mismatches_text(l, names));
    s
}

/// Pages by owner and by device.
fn groups_text(l: &LedgerSnapshot, names: &NameTable) -> String {
    let mut s = String::new();
    let header =
        format!(" {:>10} {:>10} {:>10} {:>10} {:>10}", "ACQUIRED", "RELEASED", "IN FLIGHT", "RELEASING", "LEAKED");
    let counts = |g: &Group| {
        let p = |c: Count| c.pages;
        let (a, r, f, g2, k) = (p(g.acquired), p(g.matched), p(g.in_flight), p(g.releasing), p(g.leaked));
        format!(" {a:>10} {r:>10} {f:>10} {g2:>10} {k:>10}")
    };
    if !l.owners.is_empty() {
        s.push_str(&format!("  pages by the task that acquired them:\n  {:>8} {:<16}{header}\n", "TGID", "COMM"));
        for o in &l.owners {
            s.push_str(&format!("  {:>8} {:<16}{}\n", o.tgid, o.comm, counts(&o.counts)));
        }
    }
    if !l.devices.is_empty() {
        s.push_str(&format!("  pages by device and operation:\n  {:<10} {:<14}{header}\n", "DEVICE", "OP"));
        for d in &l.devices {
            s.push_str(&format!("  {:<10} {:<14}{}\n", names.device(d.dev), names.op(d.op), counts(&d.counts)));
        }
    }
    s
}

fn leaks_text(l: &LedgerSnapshot, names: &NameTable) -> String {
    if l.leaks.is_empty() {
        return String::new();
    }
    let mut s = String::from("  leaks:\n");
    for k in &l.leaks {
        s.push_str(&leak_line(k, names));
    }
    if l.leaks_not_listed > 0 {
        s.push_str(&format!("    ... and {} more\n", l.leaks_not_listed));
    }
    s
}

fn leak_line(l: &LeakReport, names: &NameTable) -> String {
    let what = match l.kind {
        LeakKind::FreedWithoutRelease => "freed without release",
        LeakKind::NotReleased => "not released",
    };
    let ended = l.ended_age_ns.map_or("never completed".to_string(), |ns| format!("completed {} ago", seconds(ns)));
    format!(
        "    bio {:#x} {} {}: {} {} pages of {} (tgid {}, pid {}) {what}; acquired {} ago, {ended}\n",
        l.bio,
        names.device(l.dev),
        names.op(l.op),
        l.pages,
        if l.pinned { "pinned" } else { "referenced" },
        l.comm,
        l.tgid,
        l.pid,
        seconds(l.acquired_age_ns),
    )
}

fn mismatches_text(l: &LedgerSnapshot, names: &NameTable) -> String {
    if l.mismatches.is_empty() {
        return String::new();
    }
    let mut s = String::from("  mismatches:\n");
    for m in &l.mismatches {
        s.push_str(&mismatch_line(m, names));
    }
    if l.mismatches_not_listed > 0 {
        s.push_str(&format!("    ... and {} more\n", l.mismatches_not_listed));
    }
    s
}

fn mismatch_line(m: &MismatchReport, names: &NameTable) -> String {
    let side = |p: &PagesSeen| {
        let kind = if p.pinned { "pinned" } else { "referenced" };
        format!("{} vecs / {} {kind} pages from {:#x}", p.vecs, p.pages, p.first_page)
    };
    let from = m.first_vec.map_or(String::new(), |i| format!(" from vec {i}"));
    format!(
        "    bio {:#x} {} {} of {} (tgid {}): acquired {}, released {} (differ: {}{from})\n",
        m.bio,
        names.device(m.dev),
        names.op(m.op),
        m.comm,
        m.tgid,
        side(&m.acquired),
        side(&m.released),
        m.differences.join(", ")
    )
}

/// The page ledger and the audit as text.
pub fn page_ledger_text(r: &PageSnapshot) -> String {
    let t = &r.totals;
    let mut s = String::from("page ledger (pages of each pin call matched to their unpins):\n");
    s.push_str(&format!(
        "  pinned {} pages ({} long-term, {} tied to a bio, {} in large folios, {} not listed); unpinned {} ({} matched, {} pinned before the trace)\n",
        t.pinned, t.pinned_longterm, t.pinned_with_bio, t.pinned_large_folio, t.unlisted, t.unpinned, t.unpinned_matched, t.unpinned_unknown_origin
    ));
    s.push_str(&format!(
        "  still pinned at the end: {} ({} long-term, {} with a bio, {} held past the grace period)\n",
        t.outstanding, t.outstanding_longterm, t.outstanding_with_bio, t.suspect
    ));
    if t.outstanding_owner_exited > 0 {
        s.push_str(&format!(
            "  outliving their process: {} (the process that pinned them exited a grace period ago or more)\n",
            t.outstanding_owner_exited
        ));
    }
    if t.referenced > 0 {
        s.push_str(&format!(
            "  FOLL_GET references: {} pages ({} tied to a bio, {} released with it, {} released where a probe sees them dropped; others are dropped by put_page, which no probe sees)\n",
            t.referenced, t.referenced_with_bio, t.referenced_released_with_bio, t.referenced_released_put
        ));
    }
    if t.unknown_stacks > 0 {
        s.push_str(&format!("  records without a known call path: {}\n", t.unknown_stacks));
    }
    if !r.paths.is_empty() {
        s.push_str("  call paths:\n");
    }
    for p in &r.paths {
        let via = if p.callers.is_empty() { "(call path unknown)".to_string() } else { p.callers.join(" <- ") };
        s.push_str(&format!(
            "    {:<22} {} <- {}\n      {} calls, {} pages, {} with a bio, {} outstanding ({} suspect)",
            p.class.map_or("?", Class::name),
            p.entry,
            via,
            p.calls,
            p.pages,
            p.with_bio,
            p.outstanding,
            p.suspect
        ));
        if !p.released_by.is_empty() {
            let by: Vec<String> = p.released_by.iter().map(|(f, n)| format!("{f}: {n}")).collect();
            s.push_str(&format!("; released by {}", by.join(", ")));
        }
        if p.released_dirty > 0 {
            s.push_str(&format!(" ({} dirtied)", p.released_dirty));
        }
        s.push('\n');
    }
    s
}
