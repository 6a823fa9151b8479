//! The rows of each table panel, taken from the snapshot as it gives them: nothing here judges
//! (verdicts, suspects and leaks are the ledgers'), it only picks and names the figures.

use super::{
    table::{Column, TableData, TableRow, Tone, Value},
    Shown,
};
use crate::{
    engine::{
        bio::{LeakReport, MismatchReport},
        detect::Verdict,
        latency::{kind_name, Key, Stats},
        pages::{Class, PathRow},
    },
    probes::plan::{role_name, ProbeOutcome},
    snapshot::Snapshot,
};

/// Processes by the owner of each pin, most pages pinned first: since the start, and per second
/// over the last interval.
pub fn processes(shown: Option<&Shown>) -> TableData {
    let columns = vec![
        Column::new("TGID", 8, 9),
        Column::new("COMM", 16, 9),
        Column::new("PINNED", 10, 8),
        Column::new("UNPINNED", 10, 7),
        Column::new("HELD", 9, 6),
        Column::new("PIN/S", 9, 3),
        Column::new("UNPIN/S", 9, 2),
    ];
    let rows = shown.map_or_else(Vec::new, |s| {
        let span = s.interval.figures.span_s;
        let per_s = |n: u64| if span > 0.0 { Value::Rate(n as f64 / span) } else { Value::None };
        s.totals
            .procs_most_pinned_first()
            .into_iter()
            .map(|p| {
                let now = s.interval.procs.iter().find(|i| i.tgid == p.tgid);
                let (ip, iu) = now.map_or((0, 0), |i| (i.pages_pinned, i.pages_unpinned));
                let held = p.pages_pinned as i128 - p.pages_unpinned as i128;
                let detail = vec![
                    format!("process {} (tgid {})", p.comm, p.tgid),
                    format!("FOLL_PIN pages pinned since the start: {}", p.pages_pinned),
                    format!("unpinned since the start: {} (held now: {held:+})", p.pages_unpinned),
                    format!("last interval ({span:.1} s): {ip} pinned, {iu} unpinned"),
                    "pins are counted for their owner: the process that took them".into(),
                ];
                let cells = vec![
                    Value::Int(p.tgid.into()),
                    Value::Text(p.comm.clone()),
                    Value::Int(p.pages_pinned),
                    Value::Int(p.pages_unpinned),
                    Value::Signed(held),
                    per_s(ip),
                    per_s(iu),
                ];
                TableRow::new(p.tgid.to_string(), cells, detail)
            })
            .collect()
    });
    TableData {
        columns,
        rows,
        notes: Vec::new(),
        empty: "no process pinned pages yet",
        default_sort: None,
        given_order: "most pinned first",
    }
}

fn class_short(class: Option<Class>) -> &'static str {
    match class {
        Some(Class::Get) => "get",
        Some(Class::Pin) => "pin",
        Some(Class::PinLongterm) => "longterm",
        None => "?",
    }
}

/// A call path's identity: its class, entry point and callers.
fn path_key(p: &PathRow) -> String {
    format!("{}:{}<-{}", class_short(p.class), p.entry, p.callers.join("<-"))
}

fn path_detail(p: &PathRow) -> Vec<String> {
    let mut d = vec![
        format!("{} pages taken by {}", p.class.map_or("?", Class::name), p.entry),
        "callers, innermost first:".into(),
    ];
    d.extend(p.callers.iter().map(|c| format!("  <- {c}")));
    if p.callers.is_empty() {
        d.push("  (none read)".into());
    }
    d.push(format!("calls {}, pages {}, tied to a bio {}", p.calls, p.pages, p.with_bio));
    d.push(format!("outstanding {}, of which suspect {}", p.outstanding, p.suspect));
    d.push(format!("released (dirty {}):", p.released_dirty));
    d.extend(p.released_by.iter().map(|(by, n)| format!("  {n} by {by}")));
    d
}

/// Outstanding pins by call path (the page ledger's audit).
pub fn call_paths(shown: Option<&Shown>) -> TableData {
    let columns = vec![
        Column::new("CLASS", 9, 5),
        Column::new("ENTRY", 22, 9),
        Column::fill("CALLER", 20, 8),
        Column::new("CALLS", 8, 3),
        Column::new("PAGES", 9, 6),
        Column::new("BIO", 8, 2),
        Column::new("OUTSTANDING", 11, 7),
        Column::new("SUSPECT", 8, 6),
    ];
    let paths = shown.and_then(|s| s.totals.pages.as_deref()).map_or(&[][..], |p| &p.paths[..]);
    let rows = paths
        .iter()
        .map(|p| {
            let cells = vec![
                Value::Text(class_short(p.class).into()),
                Value::Text(p.entry.clone()),
                Value::Text(p.callers.first().cloned().unwrap_or_else(|| "-".into())),
                Value::Int(p.calls),
                Value::Int(p.pages),
                Value::Int(p.with_bio),
                Value::Int(p.outstanding),
                Value::Int(p.suspect),
            ];
            let tone = if p.suspect > 0 { Tone::Bad } else { Tone::Normal };
            TableRow::new(path_key(p), cells, path_detail(p)).tone(tone)
        })
        .collect();
    TableData {
        columns,
        rows,
        notes: Vec::new(),
        empty: "no call path took pages yet",
        default_sort: Some(6),
        given_order: "most pages first",
    }
}

fn verdict_tone(v: Verdict) -> Tone {
    match v {
        Verdict::Clean => Tone::Normal,
        Verdict::Unverifiable => Tone::Doubtful,
        Verdict::LeaksFound | Verdict::MismatchesFound => Tone::Bad,
    }
}

fn leak_row(totals: &Snapshot, l: &LeakReport) -> TableRow {
    let (dev, op) = (totals.names.device(l.dev), totals.names.op(l.op));
    let ended = l.ended_age_ns.map_or("never completed".into(), |ns| format!("completed {:.1} s ago", ns as f64 / 1e9));
    let detail = vec![
        format!("bio {:#x}: {} (bio ledger)", l.bio, l.kind.name()),
        format!("acquired by {} (tgid {}, pid {}, cgroup {})", l.comm, l.tgid, l.pid, l.cgroup),
        format!(
            "{dev} {op}: {} {} pages from {:#x}",
            l.pages,
            if l.pinned { "pinned" } else { "referenced" },
            l.first_page
        ),
        format!("acquired {:.1} s ago, {ended}, status {:?}", l.acquired_age_ns as f64 / 1e9, l.status),
    ];
    let cells = vec![
        Value::Text(format!("bio {}", l.kind.name())),
        Value::Text(format!("{} ({})", l.comm, l.tgid)),
        Value::Text(format!("{dev} {op}")),
        Value::Int(l.pages),
        Value::Secs(l.acquired_age_ns),
    ];
    TableRow::new(format!("leak:{:#x}:{:#x}", l.bio, l.first_page), cells, detail).tone(Tone::Bad)
}

fn mismatch_row(totals: &Snapshot, m: &MismatchReport) -> TableRow {
    let (dev, op) = (totals.names.device(m.dev), totals.names.op(m.op));
    let cells = vec![
        Value::Text("bio mismatch".into()),
        Value::Text(format!("{} ({})", m.comm, m.tgid)),
        Value::Text(format!("{dev} {op}")),
        Value::Int(m.acquired.pages),
        Value::None,
    ];
    let detail = vec![m.to_string(), format!("first vec that differs: {:?}", m.first_vec)];
    TableRow::new(format!("mismatch:{:#x}", m.bio), cells, detail).tone(Tone::Bad)
}

fn suspect_row(p: &PathRow) -> TableRow {
    let caller = p.callers.first().map_or(String::new(), |c| format!(" <- {c}"));
    let cells = vec![
        Value::Text("suspect pins".into()),
        Value::Text(format!("{}{caller}", p.entry)),
        Value::Text("-".into()),
        Value::Int(p.suspect),
        Value::None,
    ];
    TableRow::new(format!("suspect:{}", path_key(p)), cells, path_detail(p)).tone(Tone::Bad)
}

fn findings_notes(totals: &Snapshot) -> Vec<(String, Tone)> {
    let mut notes = Vec::new();
    if let Some(b) = totals.bios.as_deref() {
        let v = b.judgement.verdict;
        notes.push((format!("bio ledger: {} (grace {:.1} s)", v.name(), b.grace_s), verdict_tone(v)));
        notes.extend(b.judgement.reasons.iter().map(|r| (format!("  {r}"), verdict_tone(v))));
        for (n, what) in [(b.ledger.leaks_not_listed, "leaks"), (b.ledger.mismatches_not_listed, "mismatches")] {
            if n > 0 {
                notes.push((format!("  {n} more {what} not listed"), Tone::Bad));
            }
        }
    }
    if let Some(p) = totals.pages.as_deref() {
        let t = &p.totals;
        let tone = if t.suspect > 0 { Tone::Bad } else { Tone::Normal };
        let text = format!(
            "page ledger: {} pins outstanding ({} long-term, {} with a bio, {} of exited owners), {} suspect",
            t.outstanding, t.outstanding_longterm, t.outstanding_with_bio, t.outstanding_owner_exited, t.suspect
        );
        notes.push((text, tone));
    }
    notes
}

/// Leak suspects and mismatches as the bio ledger judged them, and the page ledger's suspect
/// pins by call path.
pub fn findings(shown: Option<&Shown>) -> TableData {
    let columns = vec![
        Column::new("FINDING", 24, 9),
        Column::fill("OWNER / PATH", 22, 8),
        Column::new("DEVICE OP", 14, 4),
        Column::new("PAGES", 7, 7),
        Column::new("AGE", 9, 5),
    ];
    let mut data =
        TableData { columns, empty: "no findings", given_order: "as the ledgers list them", ..TableData::default() };
    let Some(totals) = shown.map(|s| &s.totals) else { return data };
    if let Some(b) = totals.bios.as_deref() {
        data.rows.extend(b.ledger.leaks.iter().map(|l| leak_row(totals, l)));
        data.rows.extend(b.ledger.mismatches.iter().map(|m| mismatch_row(totals, m)));
    }
    if let Some(p) = totals.pages.as_deref() {
        data.rows.extend(p.paths.iter().filter(|p| p.suspect > 0).map(suspect_row));
    }
    data.notes = findings_notes(totals);
    data
}

fn latency_detail(name: String, st: &Stats, now: Option<&Stats>) -> Vec<String> {
    let pct = |st: &Stats| {
        st.percentiles.iter().map(|(p, v)| format!("p{p} {:.1}", *v as f64 / 1e3)).collect::<Vec<_>>().join("  ")
    };
    let mut d = vec![
        name,
        format!("since the start: {} ops", st.count),
        format!(
            "  min {:.1}  mean {:.1}  max {:.1} us",
            st.min_ns as f64 / 1e3,
            st.mean_ns / 1e3,
            st.max_ns as f64 / 1e3
        ),
        format!("  {} us", pct(st)),
    ];
    match now {
        Some(n) => d.extend([format!("last interval: {} ops", n.count), format!("  {} us", pct(n))]),
        None => d.push("last interval: none".into()),
    }
    d
}

fn latency_row(totals: &Snapshot, interval: &Snapshot, (k, st): &(Key, Stats), asked: &[f64]) -> TableRow {
    let (dev, op) = (totals.names.device(k.dev), totals.names.op(k.op));
    let now = interval.latency_all_sizes().find(|(i, _)| i == k).map(|(_, s)| s);
    let mut cells = vec![
        Value::Text(kind_name(k.kind).into()),
        Value::Text(dev.into()),
        Value::Text(op.into()),
        Value::Int(st.count),
    ];
    cells.extend(asked.iter().map(|&p| Value::Us(st.at(p))));
    cells.push(Value::Us(st.max_ns));
    cells.push(now.map_or(Value::Int(0), |n| Value::Int(n.count)));
    cells.push(now.map_or(Value::None, |n| Value::Us(n.max_ns)));
    let name = format!("{} latency of {dev} {op}", kind_name(k.kind));
    let mut row =
        TableRow::new(format!("{}:{}:{}", kind_name(k.kind), k.dev, k.op), cells, latency_detail(name, st, now));
    row.series.push(("since the start", st.buckets.clone()));
    if let Some(n) = now {
        row.series.push(("last interval", n.buckets.clone()));
    }
    row
}

/// Latency per figure, device and operation (all sizes together): since the start, with the
/// last interval's count and maximum, and each row's histograms.
pub fn latency(shown: Option<&Shown>) -> TableData {
    let all = shown.map_or(Vec::new(), |s| s.totals.latency_all_sizes().collect::<Vec<_>>());
    let asked: Vec<f64> = all.first().map_or(vec![50.0, 99.0], |(_, st)| st.percentiles.iter().map(|p| p.0).collect());
    let mut columns = vec![
        Column::new("FIG", 9, 8),
        Column::new("DEVICE", 10, 9),
        Column::new("OP", 7, 8),
        Column::new("COUNT", 9, 7),
    ];
    let last = asked.len().saturating_sub(1);
    columns.extend(
        asked
            .iter()
            .enumerate()
            .map(|(i, p)| Column::new(&format!("P{p}"), 9, if i == 0 || i == last { 6 } else { 3 })),
    );
    columns.extend([Column::new("MAX", 10, 5), Column::new("IVL N", 8, 4), Column::new("IVL MAX", 10, 2)]);
    let rows = match shown {
        Some(s) => all.iter().map(|row| latency_row(&s.totals, &s.interval, row, &asked)).collect(),
        None => Vec::new(),
    };
    let notes = vec![("microseconds, since the start; IVL: the last interval".to_string(), Tone::Normal)];
    TableData {
        columns,
        rows,
        notes,
        empty: "no latency measured yet",
        default_sort: None,
        given_order: "figure, device, operation",
    }
}

/// The probe plan: how each probe attached, or why it is missing.
pub fn probes(outcomes: &[ProbeOutcome], shown: Option<&Shown>) -> TableData {
    let columns = vec![
        Column::fill("PROBE", 28, 9),
        Column::new("ROLE", 15, 4),
        Column::new("METHOD", 11, 8),
        Column::new("SKIPPED", 8, 3),
        Column::fill("WHY MISSING", 30, 6),
    ];
    let skipped = shown.map_or(&[][..], |s| &s.totals.figures.probes_skipped[..]);
    let rows = outcomes
        .iter()
        .map(|o| {
            let why: Vec<String> = o.failures.iter().map(|(m, r)| format!("{}: {r}", m.name())).collect();
            let runs = skipped.iter().find(|s| s.target == o.def.target).map_or(0, |s| s.runs);
            let method = o.attached.map_or(if o.off { "off" } else { "missing" }, |m| m.name());
            let cells = vec![
                Value::Text(o.def.target.into()),
                Value::Text(role_name(o.def.role).into()),
                Value::Text(method.into()),
                Value::Int(runs),
                Value::Text(if o.attached.is_none() { why.join("; ") } else { String::new() }),
            ];
            let mut detail = vec![format!("{} ({}): {method}", o.def.target, role_name(o.def.role))];
            detail.push(format!("runs the kernel skipped: {runs}"));
            if !why.is_empty() {
                detail.push("methods not used:".into());
                detail.extend(why.iter().map(|w| format!("  {w}")));
            }
            let tone = if o.missing() { Tone::Bad } else { Tone::Normal };
            TableRow::new(format!("{}:{}", o.def.id as u32, o.def.target), cells, detail).tone(tone)
        })
        .collect();
    let missing = outcomes.iter().filter(|o| o.missing()).count();
    let attached = outcomes.iter().filter(|o| o.attached.is_some()).count();
    let off = outcomes.len() - attached - missing;
    let mut notes = vec![(format!("{attached} attached, {missing} missing, {off} off"), Tone::Normal)];
    if missing > 0 {
        notes.push(("the figures of missing probes are unverifiable".into(), Tone::Doubtful));
    }
    TableData {
        columns,
        rows,
        notes,
        empty: "no probe in the plan",
        default_sort: None,
        given_order: "catalogue order",
    }
}
