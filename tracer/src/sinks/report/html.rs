//! The HTML report: one self-contained page (inline style and SVG charts, no script, nothing
//! fetched) with the JSON report's figures as tables, the ledgers as the text report prints
//! them, and charts: latency histograms per figure, device and op, the ages of the pins still
//! outstanding, and outstanding pins over the run.

use std::fmt::Write;

use super::{charts, json::Report};
use crate::{
    engine::{
        latency::{kind_name, BUCKETS_NS},
        pages::AGE_BOUNDS_NS,
    },
    sinks::text::{ledger_text, page_ledger_text},
    snapshot::Snapshot,
};

/// One point of the run: seconds since the start, pages outstanding in the page ledger.
pub type Point = (f64, u64);

/// Text with the characters HTML treats specially escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:72em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:left}\
th{background:#eee}pre{background:#f6f6f6;padding:.5em;overflow-x:auto}.missing{color:#b00}\
figure{display:inline-block;margin:.5em}";

pub fn render(r: &Report, snap: &Snapshot, series: &[Point]) -> String {
    let mut s = String::new();
    let verdict = r.summary.ledger.unwrap_or("none");
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tracer report: {}</title>\
         <style>{STYLE}</style></head><body>\n<h1>tracer report: {}</h1>\n<table>",
        esc(verdict),
        esc(verdict)
    );
    row(
        &mut s,
        "tool",
        &format!("{} {} (report schema {} v{})", r.tool.name, r.tool.version, r.schema, r.schema_version),
    );
    row(&mut s, "kernel", &r.kernel);
    if !r.command.is_empty() {
        row(&mut s, "command", &r.command.join(" "));
    }
    if let Some(rec) = &r.recording {
        row(&mut s, "replay of", &format!("{} ({} records)", rec.file, rec.records));
    }
    row(&mut s, "traced", &format!("{:.3} s", r.window.traced_s));
    let percentiles: Vec<String> = r.thresholds.percentiles.iter().map(|p| p.to_string()).collect();
    row(
        &mut s,
        "thresholds",
        &format!("leak grace {} s; percentiles {}", r.thresholds.leak_grace_s, percentiles.join(", ")),
    );
    s.push_str("</table>\n");
    totals(&mut s, r);
    pin_charts(&mut s, snap, series);
    latency(&mut s, snap);
    probes(&mut s, r);
    processes(&mut s, r);
    if let Some(b) = &snap.bios {
        let _ = writeln!(s, "<h2>Bio ledger</h2>\n<pre>{}</pre>", esc(&ledger_text(b, &snap.names)));
    }
    if let Some(p) = &snap.pages {
        let _ = writeln!(s, "<h2>Page ledger</h2>\n<pre>{}</pre>", esc(&page_ledger_text(p)));
    }
    s.push_str("</body></html>\n");
    s
}

fn row(s: &mut String, key: &str, value: &str) {
    let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(key), esc(value));
}

fn totals(s: &mut String, r: &Report) {
    let f = &r.summary;
    s.push_str("<h2>FOLL_PIN totals and losses</h2>\n<table>");
    if let Some(filter) = &f.filter {
        row(s, "filter", &super::filter_line(filter));
    }
    if f.pin_accounting == "measured" {
        row(s, "pages pinned (kernel accounting)", &f.pages_pinned.to_string());
        row(s, "pages unpinned (kernel accounting)", &f.pages_unpinned.to_string());
    } else {
        row(s, "FOLL_PIN pages", "unverifiable (no nr_foll_pin_* in /proc/vmstat)");
    }
    if let Some(v) = &f.vmstat {
        row(s, "/proc/vmstat nr_foll_pin_acquired delta", &v.nr_foll_pin_acquired.to_string());
        row(s, "/proc/vmstat nr_foll_pin_released delta", &v.nr_foll_pin_released.to_string());
    }
    if let Some(p) = &r.page_ledger {
        row(s, "page ledger: pages pinned / unpinned", &format!("{} / {}", p.totals.pinned, p.totals.unpinned));
        row(s, "page ledger: outstanding / suspect", &format!("{} / {}", p.totals.outstanding, p.totals.suspect));
    }
    row(s, "lost events", &f.lost_events.to_string());
    for (why, n) in &f.lost_by_reason {
        row(s, &format!("lost: {why}"), &n.to_string());
    }
    for k in &f.probes_skipped {
        row(s, &format!("runs the kernel skipped: {}", k.target), &k.runs.to_string());
    }
    s.push_str("</table>\n");
}

/// Outstanding pins over the run and their ages at the end.
fn pin_charts(s: &mut String, snap: &Snapshot, series: &[Point]) {
    let Some(p) = &snap.pages else { return };
    s.push_str("<h2>Outstanding pins</h2>\n");
    let over_time = charts::line("Pages outstanding in the page ledger", "pages", series);
    let _ = writeln!(
        s,
        "<figure id=\"outstanding-over-time\">{over_time}<figcaption>At the start, every interval \
         (<code>--interval</code>) and the end.</figcaption></figure>"
    );
    let mut classes: Vec<(String, u64)> =
        AGE_BOUNDS_NS.iter().zip(&p.ages).map(|(&b, &n)| (format!("≤ {}", human_ns(b)), n)).collect();
    classes
        .push((format!("> {}", human_ns(AGE_BOUNDS_NS[AGE_BOUNDS_NS.len() - 1])), p.ages.last().copied().unwrap_or(0)));
    let ages = charts::bars("Ages of the pins outstanding at the end", "held for", &classes);
    let _ = writeln!(
        s,
        "<figure id=\"pin-ages\">{ages}<figcaption>{} pages outstanding.</figcaption></figure>",
        p.totals.outstanding
    );
}

/// "2.5 ms", "10 s", "1 min": a bound in the largest unit it reaches.
fn human_ns(ns: u64) -> String {
    let (unit, name) = match ns {
        n if n >= 60_000_000_000 => (60e9, "min"),
        n if n >= 1_000_000_000 => (1e9, "s"),
        n if n >= 1_000_000 => (1e6, "ms"),
        _ => (1e3, "µs"),
    };
    format!("{} {name}", ns as f64 / unit)
}

/// Per figure, device and op (every size together): a table of percentiles and a histogram.
fn latency(s: &mut String, snap: &Snapshot) {
    let rows: Vec<_> = snap.latency_all_sizes().collect();
    if rows.is_empty() {
        return;
    }
    s.push_str("<h2>Latency, cumulative</h2>\n<table><tr><th>figure</th><th>device</th><th>op</th><th>count</th><th>mean µs</th>");
    if let Some((_, first)) = rows.first() {
        for (p, _) in first.percentiles.iter() {
            let _ = write!(s, "<th>p{p} µs</th>");
        }
    }
    s.push_str("<th>max µs</th></tr>\n");
    for &(key, st) in rows.iter().map(|r| (&r.0, &r.1)).collect::<Vec<_>>().iter() {
        let fig = kind_name(key.kind);
        let _ = write!(
            s,
            "<tr><td>{fig}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td>",
            esc(snap.names.device(key.dev)),
            esc(snap.names.op(key.op)),
            st.count,
            st.mean_ns / 1e3
        );
        for (_, v) in &st.percentiles {
            let _ = write!(s, "<td>{:.1}</td>", *v as f64 / 1e3);
        }
        let _ = writeln!(s, "<td>{:.1}</td></tr>", st.max_ns as f64 / 1e3);
    }
    s.push_str("</table>\n");
    for (key, st) in &rows {
        let (dev, op) = (snap.names.device(key.dev), snap.names.op(key.op));
        let fig = kind_name(key.kind);
        let mut classes: Vec<(String, u64)> =
            BUCKETS_NS.iter().zip(&st.buckets).map(|(&b, &n)| (format!("≤ {}", human_ns(b)), n)).collect();
        classes.push(("more".into(), st.buckets.get(BUCKETS_NS.len()).copied().unwrap_or(0)));
        // The classes from the first to the last with values.
        let first = classes.iter().position(|c| c.1 > 0).unwrap_or(0);
        let last = classes.iter().rposition(|c| c.1 > 0).unwrap_or(0);
        let svg = charts::bars(&format!("{fig} {dev} {op}"), "latency", &classes[first..=last.max(first)]);
        let _ = writeln!(s, "<figure class=\"latency\" id=\"latency-{fig}-{}-{}\">{svg}</figure>", esc(dev), esc(op));
    }
}

fn probes(s: &mut String, r: &Report) {
    let attached = r.probes.iter().filter(|p| p.attached.is_some()).count();
    let off = r.probes.iter().filter(|p| p.off).count();
    let _ = writeln!(
        s,
        "<h2>Probes ({attached} attached, {} missing, {off} off)</h2>\n<table><tr><th>probe</th><th>role</th><th>attached</th><th>why not (other methods)</th></tr>",
        r.probes.len() - attached - off
    );
    for p in &r.probes {
        let why: Vec<String> = p.reasons.iter().map(|x| format!("{}: {}", x.method, x.reason)).collect();
        let attached = match p.attached {
            Some(m) => esc(m),
            None if p.off => "off".into(),
            None => "<span class=\"missing\">missing</span>".into(),
        };
        let _ = writeln!(
            s,
            "<tr><td><code>{}</code></td><td>{}</td><td>{attached}</td><td>{}</td></tr>",
            esc(p.target),
            esc(p.role),
            esc(&why.join("; "))
        );
    }
    s.push_str("</table>\n");
}

fn processes(s: &mut String, r: &Report) {
    if r.processes.is_empty() {
        return;
    }
    s.push_str("<h2>Processes (by the owner of each pin)</h2>\n<table><tr><th>tgid</th><th>comm</th><th>pages pinned</th><th>pages unpinned</th></tr>\n");
    for p in &r.processes {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.tgid,
            esc(&p.comm),
            p.pages_pinned,
            p.pages_unpinned
        );
    }
    s.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn bounds_read_as_people_write_them() {
        assert_eq!(super::human_ns(2_500_000), "2.5 ms");
        assert_eq!(super::human_ns(10_000), "10 µs");
        assert_eq!(super::human_ns(3_600_000_000_000), "60 min");
        assert_eq!(super::esc("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }
}
