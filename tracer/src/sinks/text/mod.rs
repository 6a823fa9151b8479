//! The text format: tables and paragraphs, formatted from the typed snapshot.

mod ledger;

use std::{collections::BTreeMap, io::Write};

pub use self::ledger::{ledger_text, page_ledger_text};
use super::Sink;
use crate::{
    engine::{
        filter::FilterStatus,
        latency::{kind_name, size_name, Key, Stats},
    },
    probes::plan::{role_name, ProbeOutcome, ACQUIRED_AT_QUEUE},
    snapshot::{Block, Figures, NameTable, PinAccounting, Process, Recording, Scope, Snapshot, Start},
};

/// Text on a stream: the start, every interval (unless the dashboard shows them), the end.
pub struct TextSink<W: Write> {
    pub out: W,
}

impl<W: Write> TextSink<W> {
    fn text(&mut self, s: &str) {
        // A closed stdout does not stop the trace.
        let _ = self.out.write_all(s.as_bytes()).and_then(|()| self.out.flush());
    }
}

impl<W: Write> Sink for TextSink<W> {
    fn start(&mut self, start: &Start) -> std::io::Result<()> {
        if let Some(r) = &start.recording {
            self.text(&recording_text(r));
        }
        self.text(&probes_brief(&start.probes, &start.kernel));
        Ok(())
    }

    fn interval(&mut self, snap: &Snapshot, _totals: Option<&Snapshot>) -> std::io::Result<()> {
        self.text(&latency_text(&snap.latency, Scope::Interval, &snap.names));
        self.text(&figures_text(&snap.figures, &snap.procs));
        Ok(())
    }

    fn end(&mut self, snap: &Snapshot) -> std::io::Result<()> {
        self.text(&latency_text(&snap.latency, Scope::Summary, &snap.names));
        if let Some(b) = &snap.bios {
            self.text(&ledger_text(b, &snap.names));
        }
        if let Some(p) = &snap.pages {
            self.text(&page_ledger_text(p));
        }
        self.text(&figures_text(&snap.figures, &snap.procs));
        Ok(())
    }

    fn recorded(&mut self, file: &str, records: u64) {
        self.text(&format!("record file {file}: {records} records\n"));
    }
}

/// "p50", "p99.9", ... -> nanoseconds, in the order of their labels.
fn labelled(st: &Stats) -> BTreeMap<String, u64> {
    st.percentiles.iter().map(|(p, v)| (format!("p{p}"), *v)).collect()
}

/// Latency rows as a text table in microseconds.
pub fn latency_text(rows: &[(Key, Stats)], scope: Scope, names: &NameTable) -> String {
    let Some((_, first)) = rows.first() else { return String::new() };
    let pcts: Vec<String> = labelled(first).into_keys().collect();
    let scope = match scope {
        Scope::Interval => "interval",
        Scope::Summary => "cumulative",
    };
    let mut s = format!("latency ({scope}), microseconds:\n");
    s.push_str(&format!(
        "  {:<4} {:<10} {:<8} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "FIG", "DEVICE", "OP", "SIZE", "COUNT", "MEAN", "STDDEV", "MIN"
    ));
    for p in &pcts {
        s.push_str(&format!(" {:>9}", p));
    }
    s.push_str(&format!(" {:>9}\n", "MAX"));
    let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
    for (k, r) in rows {
        let (figure, device, op, size) =
            (kind_name(k.kind), names.device(k.dev), names.op(k.op), size_name(k.size_class));
        let (mean, stddev) = (r.mean_ns.round() as u64, r.stddev_ns.round() as u64);
        s.push_str(&format!(
            "  {:<4} {:<10} {:<8} {:>5} {:>9} {:>9} {:>9} {:>9}",
            figure,
            device,
            op,
            size,
            r.count,
            us(mean),
            us(stddev),
            us(r.min_ns)
        ));
        let values = labelled(r);
        for p in &pcts {
            let v = values.get(p).copied().unwrap_or(0);
            s.push_str(&format!(" {:>9}", us(v)));
        }
        s.push_str(&format!(" {:>9}\n", us(r.max_ns)));
    }
    s
}

/// The probe plan as a text table.
pub fn probes_text(probes: &[ProbeOutcome], kernel: &str) -> String {
    let attached = probes.iter().filter(|o| o.attached.is_some()).count();
    let mut s = format!("kernel {kernel}: {attached} of {} probes attached\n", probes.len());
    for o in probes {
        let (target, role) = (o.def.target, role_name(o.def.role));
        match o.attached {
            Some(m) => s.push_str(&format!("  ok       {:<34} {:<15} {}\n", target, role, m.name())),
            None if o.off => {
                let why = o.failures.first().map_or("", |(_, r)| r.as_str());
                s.push_str(&format!("  off      {:<34} {:<15} {why}\n", target, role));
            }
            None => {
                s.push_str(&format!("  MISSING  {:<34} {}\n", target, role));
                for (method, reason) in &o.failures {
                    s.push_str(&format!("             {:<10} {}\n", method.name(), reason));
                }
            }
        }
    }
    s
}

/// One paragraph for the start of a run: what attached, what did not (details: `tracer check`).
pub fn probes_brief(probes: &[ProbeOutcome], kernel: &str) -> String {
    let (ok, rest): (Vec<_>, Vec<_>) = probes.iter().partition(|o| o.attached.is_some());
    let (off, missing): (Vec<_>, Vec<_>) = rest.into_iter().partition(|o| o.off);
    let mut s = format!("kernel {kernel}: {} of {} probes attached\n", ok.len(), probes.len());
    let list = |v: &[&ProbeOutcome]| v.iter().map(|o| o.def.target).collect::<Vec<_>>().join(", ");
    s.push_str(&format!("  attached: {}\n", list(&ok)));
    if !missing.is_empty() {
        s.push_str(&format!("  missing:  {} (reasons: `tracer check`)\n", list(&missing)));
    }
    // Off by a run's choice (--syscall-latency), or because another probe streams its records.
    let (covered, chosen): (Vec<_>, Vec<_>) =
        off.into_iter().partition(|o| o.failures.iter().any(|(_, r)| r == ACQUIRED_AT_QUEUE));
    if !chosen.is_empty() {
        s.push_str(&format!("  off:      {} (--syscall-latency)\n", list(&chosen)));
    }
    if !covered.is_empty() {
        s.push_str(&format!("  off:      {} (block_bio_queue streams its records)\n", list(&covered)));
    }
    s
}

/// The lost events line of `f` and what each kind of loss means.
fn losses_text(f: &Figures) -> String {
    let mut s = String::new();
    s.push_str(&format!("lost events:    {}", f.lost_events));
    if !f.lost_by_reason.is_empty() {
        let why: Vec<String> = f.lost_by_reason.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s.push_str(&format!(" ({})", why.join(", ")));
    }
    if f.records_read < f.records_submitted {
        let unread = f.records_submitted - f.records_read;
        s.push_str(&format!("; {unread} records submitted since the start not read yet"));
    }
    s.push('\n');
    if f.lost_by_reason.contains_key("ring_full") {
        s.push_str(
            "  records found the ring buffer full: the reader fell behind the probes (a larger --ring-buffer \
             absorbs bursts; where every CPU is busy the reader gets too little of them: run the tracer \
             at a higher priority, e.g. --nice -10)\n",
        );
    }
    let wrong = f.stack_paths[tracer_common::counters::PathCount::Wrong as usize];
    if wrong > 0 {
        s.push_str(&format!(
            "  {wrong} learned call paths disagreed with a walk of the stack (dropped; call paths of pins may be wrong)\n"
        ));
    }
    for skip in &f.probes_skipped {
        s.push_str(&format!(
            "  {} skipped {} times (its programs were all busy on that CPU: an interrupt nested in them, or threads preempted inside them)\n",
            skip.target, skip.runs
        ));
    }
    if !f.probes_skipped.is_empty() {
        s.push_str("  more backups per probe rescue more of those calls (--backups 3; each costs every call one more program run)\n");
    }
    s
}

/// Figures (interval or summary) and the processes, as text.
pub fn figures_text(f: &Figures, procs: &[Process]) -> String {
    let mut s = String::new();
    let title = match f.scope {
        Scope::Summary => "summary",
        Scope::Interval => "interval",
    };
    s.push_str(&format!("--- {title}: {:.3} s (at {:.3} s) ---\n", f.span_s, f.elapsed_s));
    if let Some(filter) = &f.filter {
        s.push_str(&filter_text(filter));
    }
    if f.pin_accounting == PinAccounting::Measured {
        let outstanding = f.net_pinned();
        let wide = if f.filter.is_some() { " (machine-wide)" } else { "" };
        s.push_str(&format!(
            "FOLL_PIN pages{wide}: pinned {}  unpinned {}  net {outstanding:+}\n",
            f.pages_pinned, f.pages_unpinned
        ));
    } else {
        s.push_str("FOLL_PIN pages: unverifiable (this kernel's /proc/vmstat has no nr_foll_pin_* counters)\n");
    }
    if let Some(v) = f.vmstat {
        s.push_str(&format!(
            "/proc/vmstat:   nr_foll_pin_acquired +{}  nr_foll_pin_released +{}\n",
            v.nr_foll_pin_acquired, v.nr_foll_pin_released
        ));
    }
    s.push_str(&losses_text(f));
    if !f.entry_points.is_empty() {
        s.push_str(&format!("  {:<34} {:>6} {:>10} {:>12}\n", "ENTRY POINT", "ROLE", "CALLS", "PAGES"));
        for e in &f.entry_points {
            s.push_str(&format!("  {:<34} {:>6} {:>10} {:>12}\n", e.function, role_name(e.role), e.calls, e.pages));
        }
    }
    if let (Some(issued), Some(done), Some(bytes)) =
        (f.block.requests_issued, f.block.requests_completed, f.block.bytes_completed)
    {
        s.push_str(&format!("block requests: issued {issued}  completed {done}  bytes {bytes}\n"));
    }
    s.push_str(&untimed_text(&f.block));
    if !procs.is_empty() {
        s.push_str(&format!("  {:>8} {:<16} {:>12} {:>16}\n", "TGID", "COMM", "PINNED", "UNPINNED"));
        for p in procs {
            s.push_str(&format!("  {:>8} {:<16} {:>12} {:>16}\n", p.tgid, p.comm, p.pages_pinned, p.pages_unpinned));
        }
    }
    if let Some(verdict) = f.verdict {
        s.push_str(&format!("pin ledger: {}\n", verdict.name()));
    }
    if let Some(code) = f.command_exit_status {
        s.push_str(&format!("command exit status: {code}\n"));
    }
    if !f.probes_missing.is_empty() {
        s.push_str(&format!("probes missing: {}\n", f.probes_missing.join(", ")));
    }
    s
}

/// What a filter let through, and what it does not apply to.
/// The block I/O a summary's latency figures leave out, when there is any.
fn untimed_text(b: &Block) -> String {
    let Some((untimed, dropped)) = b.untimed() else {
        return String::new();
    };
    format!(
        "latency: {untimed} block requests completed untimed (no issue seen: in flight when the trace \
         began, the rest of a partial completion, or the issue's record lost), {dropped} starts dropped \
         uncompleted\n"
    )
}

fn filter_text(f: &FilterStatus) -> String {
    let mut s = match f.matched {
        0 => format!("filter {} matched no records\n", f.label),
        n => format!("filter {}: {n} records matched, {} dropped\n", f.label, f.dropped),
    };
    s.push_str("  filtered: both ledgers and the processes (by the owner of each pin and bio); latency rows by\n");
    s.push_str("  --device only (they name no process). Machine-wide: the FOLL_PIN totals, /proc/vmstat, entry\n");
    s.push_str("  points, block requests (/proc/vmstat check: not applicable under a filter)\n");
    if f.unattributed_unpins > 0 {
        s.push_str(&format!(
            "  {} unpins of pins taken before the trace (owner unknown) left out\n",
            f.unattributed_unpins
        ));
    }
    s
}

pub fn recording_text(r: &Recording) -> String {
    let mut s = format!(
        "record file {}: {} records, tracer {}, started {}\n",
        r.file,
        r.records,
        r.tracer_version,
        utc(r.start_unix_ns)
    );
    if !r.command.is_empty() {
        s.push_str(&format!("command: {}\n", r.command.join(" ")));
    }
    s
}

/// "2024-05-01 12:00:00 UTC".
pub fn utc(unix_ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_ns / 1_000_000_000);
    // RFC 3339 "2024-05-01T12:00:00Z", respelled.
    humantime::format_rfc3339_seconds(t).to_string().replacen('T', " ", 1).replacen('Z', " UTC", 1)
}

#[cfg(test)]
mod tests {
    use tracer_common::{ProbeId, PROBES};

    use super::*;
    use crate::probes::plan::{Method, SYSCALL_LATENCY_OFF};

    fn outcome(id: ProbeId, attached: Option<Method>, off_why: Option<&str>) -> ProbeOutcome {
        let failures = off_why.map(|why| vec![(Method::Fexit, why.to_string())]).unwrap_or_default();
        ProbeOutcome { def: PROBES[id as usize], off: off_why.is_some(), attached, failures }
    }

    /// A loss to a full ring buffer says what it means and what helps; skipped runs say that all
    /// the chain's programs were busy, whatever the kernel's preemption.
    #[test]
    fn losses_say_their_cause() {
        use crate::snapshot::{PinAccounting, Scope, Skipped};
        let f = Figures {
            scope: Scope::Summary,
            elapsed_s: 1.0,
            span_s: 1.0,
            pages_pinned: 10,
            pages_unpinned: 10,
            pin_accounting: PinAccounting::Unverifiable,
            lost_events: 5,
            lost_by_reason: [("ring_full", 4)].into(),
            stacks_unread: 0,
            records_submitted: 0,
            records_read: 0,
            stack_paths: Default::default(),
            vmstat: None,
            entry_points: vec![],
            block: Block::NONE,
            command_exit_status: None,
            probes_missing: vec![],
            probes_skipped: vec![Skipped { target: "pin_user_pages_fast", runs: 1 }],
            verdict: None,
            filter: None,
        };
        let text = figures_text(&f, &[]);
        assert!(text.contains("lost events:    5 (ring_full 4)\n"), "{text}");
        assert!(text.contains("the reader fell behind the probes (a larger --ring-buffer"), "{text}");
        assert!(text.contains("pin_user_pages_fast skipped 1 times (its programs were all busy on that CPU"), "{text}");
        assert!(text.contains("rescue more of those calls (--backups 3;"), "{text}");
        let f = Figures { lost_by_reason: [("scratch_busy", 4)].into(), probes_skipped: vec![], ..f };
        let text = figures_text(&f, &[]);
        assert!(!text.contains("ring buffer full"));
        assert!(!text.contains("--backups"), "{text}");
        // Requests timed by no issue are said, with why; none, not at all.
        assert!(!text.contains("untimed"), "{text}");
        let block = Block { requests_untimed: Some(3), starts_dropped: Some(0), ..Block::NONE };
        let text = figures_text(&Figures { block, ..f }, &[]);
        assert!(text.contains("latency: 3 block requests completed untimed (no issue seen: in flight when"), "{text}");
        assert!(text.contains("0 starts dropped uncompleted\n"), "{text}");
    }

    /// Each probe that is off says why in the run's first lines: the run's choice, or another
    /// probe streaming its records; a probe that did not attach is missing, not off.
    #[test]
    fn the_brief_tells_probes_off_by_choice_from_those_another_probe_covers() {
        let probes = [
            outcome(ProbeId::BlockBioQueue, Some(Method::TpBtf), None),
            outcome(ProbeId::SysEnter, None, Some(SYSCALL_LATENCY_OFF)),
            outcome(ProbeId::BioIovIterGetPages, None, Some(ACQUIRED_AT_QUEUE)),
            outcome(ProbeId::UnpinFolios, None, None),
        ];
        let text = probes_brief(&probes, "6.12");
        assert!(text.contains("1 of 4 probes attached"), "{text}");
        assert!(text.contains("  off:      sys_enter (--syscall-latency)\n"), "{text}");
        assert!(text.contains("  off:      bio_iov_iter_get_pages (block_bio_queue streams its records)\n"), "{text}");
        assert!(text.contains("  missing:  unpin_folios"), "{text}");
    }
}
