//! Rendering: text tables or NDJSON (schema in docs/output.md). Pure: takes plain data and
//! returns strings, so every line is testable.

use serde::Serialize;
use tracer_common::{ProbeId, ProbeRole};

use crate::{
    latency::{kind_name, size_name, Key, Stats},
    plan::ProbeOutcome,
    stats::{ProcCounts, Snapshot},
    vmstat::FollPin,
};

fn role_name(role: ProbeRole) -> &'static str {
    match role {
        ProbeRole::Pin => "pin",
        ProbeRole::Unpin => "unpin",
        ProbeRole::Accounting => "pin_accounting",
        ProbeRole::BlockIssue => "block_issue",
        ProbeRole::BlockComplete => "block_complete",
        ProbeRole::Latency => "latency",
    }
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Reason {
    pub method: &'static str,
    pub reason: String,
}

/// One probe's status (`"type": "probe"`).
#[derive(Serialize, Debug, PartialEq)]
pub struct ProbeRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub target: &'static str,
    pub role: &'static str,
    /// The attach method, or null when missing.
    pub attached: Option<&'static str>,
    /// Why each other method was not used.
    pub reasons: Vec<Reason>,
}

impl ProbeRecord {
    pub fn from_outcome(o: &ProbeOutcome) -> ProbeRecord {
        ProbeRecord {
            kind: "probe",
            target: o.def.target,
            role: role_name(o.def.role),
            attached: o.attached.map(|m| m.name()),
            reasons: o.failures.iter().map(|(m, r)| Reason { method: m.name(), reason: r.clone() }).collect(),
        }
    }
}

/// Calls and pages seen at one pin or unpin entry point.
#[derive(Serialize, Debug, PartialEq)]
pub struct EntryPoint {
    pub function: &'static str,
    pub role: &'static str,
    pub calls: u64,
    pub pages: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Block {
    pub requests_issued: Option<u64>,
    pub requests_completed: Option<u64>,
    pub bytes_completed: Option<u64>,
}

/// One process (`"type": "process"`).
#[derive(Serialize, Debug, PartialEq)]
pub struct ProcessRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub tgid: u32,
    pub comm: String,
    pub pages_pinned: u64,
    pub pages_unpinned: u64,
}

/// Figures for a span of time: an interval or the whole run.
#[derive(Serialize, Debug, PartialEq)]
pub struct Figures {
    /// "interval" or "summary".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Seconds since tracing started (end of the span).
    pub elapsed_s: f64,
    /// Length of the span in seconds.
    pub span_s: f64,
    /// Exact FOLL_PIN pages acquired / released in the span (kernel accounting); 0 and
    /// `pin_accounting: "unverifiable"` when its probe is missing.
    pub pages_pinned: u64,
    pub pages_unpinned: u64,
    /// "measured" or "unverifiable".
    pub pin_accounting: &'static str,
    pub lost_events: u64,
    /// /proc/vmstat deltas over the same span (null where the kernel has none).
    pub vmstat: Option<FollPin>,
    pub entry_points: Vec<EntryPoint>,
    pub block: Block,
    /// Summary only: the traced command's exit status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_exit_status: Option<i32>,
    /// Summary only: probes that could not attach (details in the probe records).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probes_missing: Vec<&'static str>,
}

impl Figures {
    pub fn new(
        kind: &'static str,
        outcomes: &[ProbeOutcome],
        span: &Snapshot,
        elapsed_s: f64,
        span_s: f64,
        vmstat: Option<FollPin>,
    ) -> Figures {
        let attached = |id: ProbeId| outcomes[id as usize].attached.is_some();
        let stat = |id: ProbeId| attached(id).then(|| span.probes[id as usize]);
        let entry_points = outcomes
            .iter()
            .filter(|o| matches!(o.def.role, ProbeRole::Pin | ProbeRole::Unpin) && o.attached.is_some())
            .map(|o| EntryPoint {
                function: o.def.target,
                role: role_name(o.def.role),
                calls: span.probes[o.def.id as usize].hits,
                pages: span.probes[o.def.id as usize].amount,
            })
            .collect();
        let measured = attached(ProbeId::PinAccounting);
        Figures {
            kind,
            elapsed_s: round3(elapsed_s),
            span_s: round3(span_s),
            pages_pinned: span.pages_pinned,
            pages_unpinned: span.pages_unpinned,
            pin_accounting: if measured { "measured" } else { "unverifiable" },
            lost_events: span.lost_events(),
            vmstat,
            entry_points,
            block: Block {
                requests_issued: stat(ProbeId::BlockRqIssue).map(|s| s.hits),
                requests_completed: stat(ProbeId::BlockRqComplete).map(|s| s.hits),
                bytes_completed: stat(ProbeId::BlockRqComplete).map(|s| s.amount),
            },
            command_exit_status: None,
            probes_missing: outcomes.iter().filter(|o| o.attached.is_none()).map(|o| o.def.target).collect(),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn process_records(procs: &std::collections::BTreeMap<u32, ProcCounts>) -> Vec<ProcessRecord> {
    procs
        .iter()
        .map(|(tgid, p)| ProcessRecord {
            kind: "process",
            tgid: *tgid,
            comm: p.comm.clone(),
            pages_pinned: p.pages_pinned,
            pages_unpinned: p.pages_unpinned,
        })
        .collect()
}

/// One latency row (`"type": "latency"`).
#[derive(Serialize, Debug, PartialEq)]
pub struct LatencyRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// "interval" or "cumulative".
    pub scope: &'static str,
    /// "d2c" (issue -> complete), "q2c" (bio queued -> complete), "dio" (iomap DIO call).
    pub figure: &'static str,
    pub device: String,
    /// "major:minor".
    pub dev: String,
    pub op: String,
    /// Size class ("4k", "128k", ...; "all" for every size together).
    pub size: String,
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: u64,
    pub stddev_ns: u64,
    pub max_ns: u64,
    /// "p50", "p99.9", ... -> nanoseconds.
    pub percentiles: serde_json::Map<String, serde_json::Value>,
}

/// Names the rows need: device names by dev_t and operation names by REQ_OP value.
pub trait Names {
    fn device(&self, dev: u32) -> String;
    fn op(&self, op: u32) -> String;
}

pub fn latency_records(rows: &[(Key, Stats)], scope: &'static str, names: &dyn Names) -> Vec<LatencyRecord> {
    rows.iter()
        .map(|(k, st)| LatencyRecord {
            kind: "latency",
            scope,
            figure: kind_name(k.kind),
            device: names.device(k.dev),
            dev: format!("{}:{}", k.dev >> 20, k.dev & 0xfffff),
            op: names.op(k.op),
            size: size_name(k.size_class),
            count: st.count,
            min_ns: st.min_ns,
            mean_ns: st.mean_ns.round() as u64,
            stddev_ns: st.stddev_ns.round() as u64,
            max_ns: st.max_ns,
            percentiles: st
                .percentiles
                .iter()
                .map(|(p, v)| (format!("p{p}"), serde_json::Value::from(*v)))
                .collect(),
        })
        .collect()
}

/// Latency rows as a text table in microseconds.
pub fn latency_text(records: &[LatencyRecord]) -> String {
    let Some(first) = records.first() else { return String::new() };
    let pcts: Vec<&String> = first.percentiles.keys().collect();
    let mut s = format!("latency ({}), microseconds:\n", first.scope);
    s.push_str(&format!("  {:<4} {:<10} {:<8} {:>5} {:>9} {:>9} {:>9} {:>9}", "FIG", "DEVICE", "OP", "SIZE", "COUNT", "MEAN", "STDDEV", "MIN"));
    for p in &pcts {
        s.push_str(&format!(" {:>9}", p));
    }
    s.push_str(&format!(" {:>9}\n", "MAX"));
    let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
    for r in records {
        s.push_str(&format!(
            "  {:<4} {:<10} {:<8} {:>5} {:>9} {:>9} {:>9} {:>9}",
            r.figure, r.device, r.op, r.size, r.count, us(r.mean_ns), us(r.stddev_ns), us(r.min_ns)
        ));
        for p in &pcts {
            let v = r.percentiles.get(*p).and_then(|v| v.as_u64()).unwrap_or(0);
            s.push_str(&format!(" {:>9}", us(v)));
        }
        s.push_str(&format!(" {:>9}\n", us(r.max_ns)));
    }
    s
}

/// One NDJSON line.
pub fn json_line<T: Serialize>(record: &T) -> String {
    serde_json::to_string(record).expect("records serialize: plain data, string keys")
}

/// The probe plan as a text table.
pub fn probes_text(records: &[ProbeRecord], kernel: &str) -> String {
    let attached = records.iter().filter(|r| r.attached.is_some()).count();
    let mut s = format!("kernel {kernel}: {attached} of {} probes attached\n", records.len());
    for r in records {
        match r.attached {
            Some(m) => s.push_str(&format!("  ok       {:<34} {:<15} {m}\n", r.target, r.role)),
            None => {
                s.push_str(&format!("  MISSING  {:<34} {}\n", r.target, r.role));
                for why in &r.reasons {
                    s.push_str(&format!("             {:<10} {}\n", why.method, why.reason));
                }
            }
        }
    }
    s
}

/// One paragraph for the start of a run: what attached, what did not (details: `tracer check`).
pub fn probes_brief(records: &[ProbeRecord], kernel: &str) -> String {
    let (ok, missing): (Vec<_>, Vec<_>) = records.iter().partition(|r| r.attached.is_some());
    let mut s = format!("kernel {kernel}: {} of {} probes attached
", ok.len(), records.len());
    let list = |v: &[&ProbeRecord]| v.iter().map(|r| r.target).collect::<Vec<_>>().join(", ");
    s.push_str(&format!("  attached: {}
", list(&ok)));
    if !missing.is_empty() {
        s.push_str(&format!("  missing:  {} (reasons: `tracer check`)
", list(&missing)));
    }
    s
}

/// Figures (interval or summary) and the processes, as text.
pub fn figures_text(f: &Figures, procs: &[ProcessRecord]) -> String {
    let mut s = String::new();
    let title = if f.kind == "summary" { "summary" } else { "interval" };
    s.push_str(&format!("--- {title}: {:.3} s (at {:.3} s) ---\n", f.span_s, f.elapsed_s));
    if f.pin_accounting == "measured" {
        let outstanding = f.pages_pinned as i128 - f.pages_unpinned as i128;
        s.push_str(&format!(
            "FOLL_PIN pages: pinned {}  unpinned {}  net {outstanding:+}\n",
            f.pages_pinned, f.pages_unpinned
        ));
    } else {
        s.push_str("FOLL_PIN pages: unverifiable (mod_node_page_state probe missing; see `tracer check`)\n");
    }
    if let Some(v) = f.vmstat {
        s.push_str(&format!(
            "/proc/vmstat:   nr_foll_pin_acquired +{}  nr_foll_pin_released +{}\n",
            v.nr_foll_pin_acquired, v.nr_foll_pin_released
        ));
    }
    s.push_str(&format!("lost events:    {}\n", f.lost_events));
    if !f.entry_points.is_empty() {
        s.push_str(&format!("  {:<34} {:>6} {:>10} {:>12}\n", "ENTRY POINT", "ROLE", "CALLS", "PAGES"));
        for e in &f.entry_points {
            s.push_str(&format!("  {:<34} {:>6} {:>10} {:>12}\n", e.function, e.role, e.calls, e.pages));
        }
    }
    if let (Some(issued), Some(done), Some(bytes)) =
        (f.block.requests_issued, f.block.requests_completed, f.block.bytes_completed)
    {
        s.push_str(&format!("block requests: issued {issued}  completed {done}  bytes {bytes}\n"));
    }
    if !procs.is_empty() {
        s.push_str(&format!("  {:>8} {:<16} {:>12} {:>16}\n", "TGID", "COMM", "PINNED", "UNPINNED(ctx)"));
        for p in procs {
            s.push_str(&format!("  {:>8} {:<16} {:>12} {:>16}\n", p.tgid, p.comm, p.pages_pinned, p.pages_unpinned));
        }
    }
    if let Some(code) = f.command_exit_status {
        s.push_str(&format!("command exit status: {code}\n"));
    }
    if !f.probes_missing.is_empty() {
        s.push_str(&format!("probes missing: {}\n", f.probes_missing.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use tracer_common::{ProbeStat, PROBES};

    use super::*;
    use crate::plan::Method;

    fn outcomes(attached: &[ProbeId]) -> Vec<ProbeOutcome> {
        PROBES
            .iter()
            .map(|d| ProbeOutcome {
                def: *d,
                attached: attached.contains(&d.id).then_some(Method::Fentry),
                failures: if attached.contains(&d.id) {
                    vec![]
                } else {
                    vec![(Method::Fentry, "no BTF FUNC record".into())]
                },
            })
            .collect()
    }

    #[test]
    fn summary_json_has_the_documented_integer_fields() {
        let o = outcomes(&[ProbeId::PinAccounting, ProbeId::PinUserPagesFast]);
        let mut snap = Snapshot { pages_pinned: 1648, pages_unpinned: 1648, ..Snapshot::default() };
        snap.probes[ProbeId::PinUserPagesFast as usize] = ProbeStat { hits: 103, amount: 1648 };
        let mut f = Figures::new("summary", &o, &snap, 2.0, 2.0, None);
        f.command_exit_status = Some(0);
        let v: serde_json::Value = serde_json::from_str(&json_line(&f)).unwrap();
        assert_eq!(v["type"], "summary");
        assert_eq!(v["pages_pinned"], 1648);
        assert_eq!(v["pages_unpinned"], 1648);
        assert_eq!(v["lost_events"], 0);
        assert_eq!(v["pin_accounting"], "measured");
        assert_eq!(v["entry_points"][0]["function"], "pin_user_pages_fast");
        assert_eq!(v["entry_points"][0]["pages"], 1648);
        assert!(v["block"]["requests_issued"].is_null(), "unattached block probes are null, not 0");
        assert!(v["probes_missing"].as_array().unwrap().iter().any(|m| m == "unpin_user_folio"));
    }

    #[test]
    fn missing_accounting_is_unverifiable_not_zero_pins() {
        let o = outcomes(&[ProbeId::BlockRqIssue, ProbeId::BlockRqComplete]);
        let f = Figures::new("summary", &o, &Snapshot::default(), 2.0, 2.0, None);
        assert_eq!(f.pin_accounting, "unverifiable");
        let text = figures_text(&f, &[]);
        assert!(text.contains("unverifiable"), "{text}");
        assert!(!text.contains("pinned 0"), "{text}");
    }

    struct FakeNames;
    impl Names for FakeNames {
        fn device(&self, _dev: u32) -> String {
            "vda".into()
        }
        fn op(&self, op: u32) -> String {
            if op == 0 { "read".into() } else { format!("op{op}") }
        }
    }

    #[test]
    fn latency_rows_render_with_percentiles_in_order() {
        use crate::latency::Latency;
        use tracer_common::{LatencyEvent, LatencyKind};
        let mut l = Latency::default();
        for ns in [100_000u64, 200_000, 300_000] {
            l.record(&LatencyEvent { kind: LatencyKind::D2c as u32, dev: 254 << 20, op: 0, _pad: 0, bytes: 4096, start_ns: 0, end_ns: ns });
        }
        let recs = latency_records(&l.cumulative(&[50.0, 99.9]), "cumulative", &FakeNames);
        assert_eq!(recs.len(), 2, "an all-sizes row and a 4k row");
        let v: serde_json::Value = serde_json::from_str(&json_line(&recs[0])).unwrap();
        assert_eq!(v["type"], "latency");
        assert_eq!(v["dev"], "254:0");
        assert_eq!(v["op"], "read");
        assert_eq!(v["size"], "all");
        assert_eq!(v["count"], 3);
        assert!(v["percentiles"]["p50"].as_u64().unwrap().abs_diff(200_000) < 200);
        let text = latency_text(&recs);
        assert!(text.contains("latency (cumulative)"), "{text}");
        assert!(text.contains("p50") && text.contains("p99.9"), "{text}");
        assert!(text.contains("d2c  vda"), "{text}");
    }

    #[test]
    fn probe_table_names_each_missing_probe_with_its_reason() {
        let o = outcomes(&[ProbeId::BlockRqIssue]);
        let recs: Vec<_> = o.iter().map(ProbeRecord::from_outcome).collect();
        let text = probes_text(&recs, "6.18.0");
        assert!(text.contains("1 of 20 probes attached"), "{text}");
        assert!(text.contains("MISSING  pin_user_pages_fast"), "{text}");
        assert!(text.contains("no BTF FUNC record"), "{text}");
    }
}
