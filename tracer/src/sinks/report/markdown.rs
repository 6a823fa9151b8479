//! The Markdown report: the JSON report's figures as tables, and the ledgers as the text report
//! prints them (fixed-width, in fenced blocks: kernel bug trackers and mailing lists read text).

use std::fmt::Write;

use super::json::Report;
use crate::{
    sinks::text::{ledger_text, page_ledger_text},
    snapshot::Snapshot,
};

/// Cell text with the characters Markdown tables treat specially escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or("-".into(), |n| n.to_string())
}

pub fn render(r: &Report, snap: &Snapshot) -> String {
    let mut s = String::new();
    let verdict = r.summary.ledger.unwrap_or("none");
    let _ = writeln!(s, "# tracer report: {verdict}\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ =
        writeln!(s, "| tool | {} {} (report schema {} v{}) |", r.tool.name, r.tool.version, r.schema, r.schema_version);
    let _ = writeln!(s, "| kernel | {} |", cell(&r.kernel));
    if !r.command.is_empty() {
        let _ = writeln!(s, "| command | `{}` |", cell(&r.command.join(" ")));
    }
    if let Some(rec) = &r.recording {
        let _ = writeln!(s, "| replay of | {} ({} records) |", cell(&rec.file), rec.records);
    }
    let _ = writeln!(s, "| traced | {:.3} s |", r.window.traced_s);
    let _ = writeln!(
        s,
        "| thresholds | leak grace {} s; percentiles {} |",
        r.thresholds.leak_grace_s,
        r.thresholds.percentiles.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    );
    if let Some(code) = r.summary.command_exit_status {
        let _ = writeln!(s, "| command exit status | {code} |");
    }
    totals(&mut s, r);
    probes(&mut s, r);
    processes(&mut s, r);
    latency(&mut s, r);
    if let Some(b) = &snap.bios {
        let _ = writeln!(s, "\n## Bio ledger\n\n```\n{}```", ledger_text(b, &snap.names));
    }
    if let Some(p) = &snap.pages {
        let _ = writeln!(s, "\n## Page ledger\n\n```\n{}```", page_ledger_text(p));
    }
    s
}

fn totals(s: &mut String, r: &Report) {
    let f = &r.summary;
    let _ = writeln!(s, "\n## FOLL_PIN totals and losses\n\n| figure | value |\n|---|---|");
    if let Some(filter) = &f.filter {
        let _ = writeln!(s, "| filter | {} |", super::filter_line(filter));
    }
    if f.pin_accounting == "measured" {
        let _ = writeln!(s, "| pages pinned (kernel accounting) | {} |", f.pages_pinned);
        let _ = writeln!(s, "| pages unpinned (kernel accounting) | {} |", f.pages_unpinned);
    } else {
        let _ = writeln!(s, "| FOLL_PIN pages | unverifiable (no nr_foll_pin_* in /proc/vmstat) |");
    }
    if let Some(v) = &f.vmstat {
        let _ = writeln!(s, "| /proc/vmstat nr_foll_pin_acquired delta | {} |", v.nr_foll_pin_acquired);
        let _ = writeln!(s, "| /proc/vmstat nr_foll_pin_released delta | {} |", v.nr_foll_pin_released);
    }
    if let Some(p) = &r.page_ledger {
        let _ = writeln!(s, "| page ledger: pages pinned / unpinned | {} / {} |", p.totals.pinned, p.totals.unpinned);
        let _ = writeln!(s, "| page ledger: outstanding / suspect | {} / {} |", p.totals.outstanding, p.totals.suspect);
    }
    let _ = writeln!(s, "| lost events | {} |", f.lost_events);
    for (why, n) in &f.lost_by_reason {
        let _ = writeln!(s, "| lost: {why} | {n} |");
    }
    for k in &f.probes_skipped {
        let _ = writeln!(s, "| runs the kernel skipped: {} | {} |", k.target, k.runs);
    }
    if f.stacks_unread > 0 {
        let _ = writeln!(s, "| page records without a readable stack | {} |", f.stacks_unread);
    }
    let b = &f.block;
    let _ = writeln!(
        s,
        "| block requests issued / completed / bytes | {} / {} / {} |",
        or_dash(b.requests_issued),
        or_dash(b.requests_completed),
        or_dash(b.bytes_completed)
    );
    if b.requests_untimed.unwrap_or(0) + b.starts_dropped.unwrap_or(0) > 0 {
        let _ = writeln!(
            s,
            "| block requests completed untimed (no issue seen) / starts dropped uncompleted | {} / {} |",
            or_dash(b.requests_untimed),
            or_dash(b.starts_dropped)
        );
    }
}

fn probes(s: &mut String, r: &Report) {
    let attached = r.probes.iter().filter(|p| p.attached.is_some()).count();
    let off = r.probes.iter().filter(|p| p.off).count();
    let _ = writeln!(
        s,
        "\n## Probes ({attached} attached, {} missing, {off} off)\n\n| probe | role | attached | why not (other methods) |\n|---|---|---|---|",
        r.probes.len() - attached - off
    );
    for p in &r.probes {
        let why: Vec<String> = p.reasons.iter().map(|x| format!("{}: {}", x.method, x.reason)).collect();
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} |",
            p.target,
            p.role,
            p.attached.unwrap_or(if p.off { "off" } else { "**missing**" }),
            cell(&why.join("; "))
        );
    }
}

fn processes(s: &mut String, r: &Report) {
    if r.processes.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## Processes (by the owner of each pin)\n\n| tgid | comm | pages pinned | pages unpinned |\n|---|---|---|---|");
    for p in &r.processes {
        let _ = writeln!(s, "| {} | {} | {} | {} |", p.tgid, cell(&p.comm), p.pages_pinned, p.pages_unpinned);
    }
}

fn latency(s: &mut String, r: &Report) {
    let rows: Vec<_> = r.latency.iter().filter(|l| l.size == "all").collect();
    if rows.is_empty() {
        return;
    }
    let labels: Vec<&String> = rows[0].percentiles.keys().collect();
    let _ = write!(s, "\n## Latency, cumulative (µs)\n\n| figure | device | op | count | mean |");
    labels.iter().for_each(|l| {
        let _ = write!(s, " {l} |");
    });
    let _ = write!(s, " max |\n|---|---|---|---|---|");
    labels.iter().for_each(|_| s.push_str("---|"));
    s.push_str("---|\n");
    for l in rows {
        let _ = write!(
            s,
            "| {} | {} ({}) | {} | {} | {:.1} |",
            l.figure,
            cell(&l.device),
            l.dev,
            l.op,
            l.count,
            l.mean_ns as f64 / 1e3
        );
        for k in &labels {
            let v = l.percentiles.get(k.as_str()).and_then(|v| v.as_f64()).unwrap_or(0.0);
            let _ = write!(s, " {:.1} |", v / 1e3);
        }
        let _ = writeln!(s, " {:.1} |", l.max_ns as f64 / 1e3);
    }
}
