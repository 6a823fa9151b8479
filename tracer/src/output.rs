//! Rendering: text tables or NDJSON (schema in docs/output.md). Pure: takes plain data and
//! returns strings, so every line is testable.

use serde::Serialize;
use tracer_common::{ProbeId, ProbeRole};

use crate::{
    latency::{kind_name, size_name, Key, Stats},
    ledger::{seconds, Class, Count, Group, Judgement, LedgerSnapshot, PageSnapshot, PageTotals, PagesSeen, PathRow, Timing},
    plan::ProbeOutcome,
    stats::{ProcCounts, Snapshot},
    vmstat::FollPin,
};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Names of the `LostReason`s, in their order.
const LOST_REASON_NAMES: [&str; tracer_common::LOST_REASONS as usize] =
    ["process_map_full", "bad_index", "ring_full", "start_map_full", "stack_lost", "scratch_busy"];

fn role_name(role: ProbeRole) -> &'static str {
    match role {
        ProbeRole::Pin => "pin",
        ProbeRole::Unpin => "unpin",
        ProbeRole::Get => "get",
        ProbeRole::Accounting => "pin_accounting",
        ProbeRole::BlockIssue => "block_issue",
        ProbeRole::BlockComplete => "block_complete",
        ProbeRole::Latency => "latency",
        ProbeRole::Put => "put",
        ProbeRole::Exit => "exit",
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

/// A probe whose program the kernel skipped (recursion_misses).
#[derive(Serialize, Debug, PartialEq)]
pub struct Skipped {
    pub target: &'static str,
    pub runs: u64,
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
    /// Why events were lost, by reason (only reasons with losses; skipped probe runs are in
    /// `probes_skipped`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lost_by_reason: std::collections::BTreeMap<&'static str, u64>,
    /// Page records whose kernel stack could not be read (not lost: their call path is unknown).
    #[serde(skip_serializing_if = "is_zero")]
    pub stacks_unread: u64,
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
    /// Probe runs the kernel skipped because the program was already running on that CPU
    /// (counted in `lost_events` too); only probes with skips are listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probes_skipped: Vec<Skipped>,
    /// Summary only: the pin ledger's verdict (details in the `ledger` record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<&'static str>,
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
            .filter(|o| matches!(o.def.role, ProbeRole::Pin | ProbeRole::Unpin | ProbeRole::Get | ProbeRole::Put) && o.attached.is_some())
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
            lost_by_reason: LOST_REASON_NAMES
                .iter()
                .zip(span.lost.iter())
                .filter(|(&name, &n)| n > 0 && name != "stack_lost")
                .map(|(&name, &n)| (name, n))
                .collect(),
            stacks_unread: span.lost[tracer_common::LostReason::StackLost as usize],
            vmstat,
            entry_points,
            block: Block {
                requests_issued: stat(ProbeId::BlockRqIssue).map(|s| s.hits),
                requests_completed: stat(ProbeId::BlockRqComplete).map(|s| s.hits),
                bytes_completed: stat(ProbeId::BlockRqComplete).map(|s| s.amount),
            },
            command_exit_status: None,
            probes_missing: outcomes.iter().filter(|o| o.attached.is_none()).map(|o| o.def.target).collect(),
            probes_skipped: outcomes
                .iter()
                .filter(|o| span.missed[o.def.id as usize] > 0)
                .map(|o| Skipped { target: o.def.target, runs: span.missed[o.def.id as usize] })
                .collect(),
            ledger: None,
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
    s.push_str(&format!("lost events:    {}", f.lost_events));
    if !f.lost_by_reason.is_empty() {
        let why: Vec<String> = f.lost_by_reason.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s.push_str(&format!(" ({})", why.join(", ")));
    }
    s.push('\n');
    for skip in &f.probes_skipped {
        s.push_str(&format!(
            "  {} skipped {} times (already running on that CPU: nested in an interrupt)\n",
            skip.target, skip.runs
        ));
    }
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
    if let Some(verdict) = f.ledger {
        s.push_str(&format!("pin ledger: {verdict}\n"));
    }
    if let Some(code) = f.command_exit_status {
        s.push_str(&format!("command exit status: {code}\n"));
    }
    if !f.probes_missing.is_empty() {
        s.push_str(&format!("probes missing: {}\n", f.probes_missing.join(", ")));
    }
    s
}

/// The pin ledger at the end of a run (`"type": "ledger"`; docs/ledger.md).
#[derive(Serialize, Debug, PartialEq)]
pub struct LedgerRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// "clean", "unverifiable", "leaks found" or "mismatches found".
    pub verdict: &'static str,
    pub reasons: Vec<String>,
    pub grace_s: f64,
    pub acquired: Count,
    pub pinned: Count,
    pub referenced: Count,
    pub ended: Count,
    pub released: Count,
    pub matched: Count,
    pub mismatched: Count,
    pub in_flight: Count,
    pub releasing: Count,
    pub leaked: Count,
    pub unknown_origin: Count,
    pub ends_untracked: u64,
    pub truncated_bios: u64,
    pub invalid_records: u64,
    pub hold: TimingRecord,
    pub unpin_lag: TimingRecord,
    pub pages_held: u64,
    pub pages_shared: u64,
    pub owners: Vec<LedgerOwner>,
    pub devices: Vec<LedgerDevice>,
    pub leaks: Vec<LeakRecord>,
    pub leaks_not_listed: u64,
    pub mismatches: Vec<MismatchRecord>,
    pub mismatches_not_listed: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct TimingRecord {
    pub count: u64,
    pub mean_ns: Option<u64>,
    pub max_ns: Option<u64>,
}

impl TimingRecord {
    fn of(t: &Timing) -> TimingRecord {
        TimingRecord { count: t.count, mean_ns: t.mean_ns(), max_ns: (t.count > 0).then_some(t.max_ns) }
    }
}

/// Bios or pages by their fate, for one owner or device.
#[derive(Serialize, Debug, PartialEq)]
pub struct Fates {
    pub acquired: u64,
    pub released: u64,
    pub in_flight: u64,
    pub releasing: u64,
    pub leaked: u64,
}

/// One owner's or device's share, as `"bios": {...}, "pages": {...}` (so that the top-level
/// counts of the ledger record are the only `"acquired": {"bios": ...}` of its line).
#[derive(Serialize, Debug, PartialEq)]
pub struct GroupCounts {
    pub bios: Fates,
    pub pages: Fates,
}

impl GroupCounts {
    fn of(g: &Group) -> GroupCounts {
        let fates = |f: fn(&Count) -> u64| Fates {
            acquired: f(&g.acquired),
            released: f(&g.matched),
            in_flight: f(&g.in_flight),
            releasing: f(&g.releasing),
            leaked: f(&g.leaked),
        };
        GroupCounts { bios: fates(|c| c.bios), pages: fates(|c| c.pages) }
    }
}

#[derive(Serialize, Debug, PartialEq)]
pub struct LedgerOwner {
    pub tgid: u32,
    pub comm: String,
    #[serde(flatten)]
    pub counts: GroupCounts,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct LedgerDevice {
    pub device: String,
    pub dev: String,
    pub op: String,
    #[serde(flatten)]
    pub counts: GroupCounts,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct LeakRecord {
    /// "freed_without_release" or "not_released".
    pub kind: &'static str,
    /// The bio's address, hex.
    pub bio: String,
    pub tgid: u32,
    pub pid: u32,
    pub comm: String,
    pub cgroup: u64,
    pub device: String,
    pub dev: String,
    pub op: String,
    pub pinned: bool,
    pub pages: u64,
    pub first_page: String,
    pub acquired_age_ns: u64,
    pub ended_age_ns: Option<u64>,
    pub status: Option<i32>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct PagesRecord {
    pub vecs: u32,
    pub pages: u64,
    pub pinned: bool,
    pub first_page: String,
}

impl PagesRecord {
    fn of(p: &PagesSeen) -> PagesRecord {
        PagesRecord { vecs: p.vecs, pages: p.pages, pinned: p.pinned, first_page: hex(p.first_page) }
    }
}

#[derive(Serialize, Debug, PartialEq)]
pub struct MismatchRecord {
    pub bio: String,
    pub tgid: u32,
    pub pid: u32,
    pub comm: String,
    pub device: String,
    pub dev: String,
    pub op: String,
    pub acquired: PagesRecord,
    pub released: PagesRecord,
    pub differences: Vec<&'static str>,
    pub first_vec: Option<usize>,
}

/// A duration in a readable unit: "850 ns", "12.3 us", "2.50 ms", "1.234 s".
fn duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

fn hex(addr: u64) -> String {
    format!("{addr:#x}")
}

fn dev_name(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xfffff)
}

pub fn ledger_record(s: &LedgerSnapshot, j: &Judgement, names: &dyn Names) -> LedgerRecord {
    let t = &s.totals;
    LedgerRecord {
        kind: "ledger",
        verdict: j.verdict.name(),
        reasons: j.reasons.clone(),
        grace_s: round3(s.grace_ns as f64 / 1e9),
        acquired: t.acquired,
        pinned: t.pinned,
        referenced: t.referenced,
        ended: t.ended,
        released: t.released,
        matched: t.matched,
        mismatched: t.mismatched,
        in_flight: t.in_flight,
        releasing: t.releasing,
        leaked: t.leaked,
        unknown_origin: t.unknown_origin,
        ends_untracked: t.ends_untracked,
        truncated_bios: t.truncated_bios,
        invalid_records: t.invalid_records,
        hold: TimingRecord::of(&t.hold),
        unpin_lag: TimingRecord::of(&t.unpin_lag),
        pages_held: s.pages_held,
        pages_shared: s.pages_shared,
        owners: s
            .owners
            .iter()
            .map(|o| LedgerOwner { tgid: o.tgid, comm: o.comm.clone(), counts: GroupCounts::of(&o.counts) })
            .collect(),
        devices: s
            .devices
            .iter()
            .map(|d| LedgerDevice {
                device: names.device(d.dev),
                dev: dev_name(d.dev),
                op: names.op(d.op),
                counts: GroupCounts::of(&d.counts),
            })
            .collect(),
        leaks: s
            .leaks
            .iter()
            .map(|l| LeakRecord {
                kind: l.kind.name(),
                bio: hex(l.bio),
                tgid: l.tgid,
                pid: l.pid,
                comm: l.comm.clone(),
                cgroup: l.cgroup,
                device: names.device(l.dev),
                dev: dev_name(l.dev),
                op: names.op(l.op),
                pinned: l.pinned,
                pages: l.pages,
                first_page: hex(l.first_page),
                acquired_age_ns: l.acquired_age_ns,
                ended_age_ns: l.ended_age_ns,
                status: l.status,
            })
            .collect(),
        leaks_not_listed: s.leaks_not_listed,
        mismatches: s
            .mismatches
            .iter()
            .map(|m| MismatchRecord {
                bio: hex(m.bio),
                tgid: m.tgid,
                pid: m.pid,
                comm: m.comm.clone(),
                device: names.device(m.dev),
                dev: dev_name(m.dev),
                op: names.op(m.op),
                acquired: PagesRecord::of(&m.acquired),
                released: PagesRecord::of(&m.released),
                differences: m.differences.clone(),
                first_vec: m.first_vec,
            })
            .collect(),
        mismatches_not_listed: s.mismatches_not_listed,
    }
}

/// The ledger as text.
pub fn ledger_text(r: &LedgerRecord) -> String {
    let mut s = format!("pin ledger (bio pages: acquired -> completed -> released): {}\n", r.verdict);
    for why in &r.reasons {
        s.push_str(&format!("  - {why}\n"));
    }
    let row = |s: &mut String, name: &str, c: &Count, note: String| {
        s.push_str(&format!("  {name:<14} {:>10} {:>12}{}\n", c.bios, c.pages, note));
    };
    s.push_str(&format!("  {:<14} {:>10} {:>12}\n", "", "BIOS", "PAGES"));
    row(&mut s, "acquired", &r.acquired, format!("   pinned {}, referenced {} pages", r.pinned.pages, r.referenced.pages));
    row(&mut s, "completed", &r.ended, String::new());
    row(&mut s, "released", &r.matched, String::new());
    row(&mut s, "in flight", &r.in_flight, "   not completed yet".into());
    row(&mut s, "releasing", &r.releasing, format!("   completed less than {} s ago", r.grace_s));
    row(&mut s, "leaked", &r.leaked, String::new());
    row(&mut s, "mismatched", &r.mismatched, String::new());
    row(&mut s, "unknown origin", &r.unknown_origin, "   released, acquired before the trace".into());
    let d = |ns: Option<u64>| ns.map_or("-".to_string(), duration);
    s.push_str(&format!(
        "  hold: mean {}, max {}; unpin lag: mean {}, max {}\n",
        d(r.hold.mean_ns),
        d(r.hold.max_ns),
        d(r.unpin_lag.mean_ns),
        d(r.unpin_lag.max_ns)
    ));
    s.push_str(&format!("  pages held at the end: {} ({} by more than one bio)\n", r.pages_held, r.pages_shared));
    if r.ends_untracked + r.truncated_bios + r.invalid_records > 0 {
        s.push_str(&format!(
            "  completions of untracked bios {}, truncated bios {}, invalid records {}\n",
            r.ends_untracked, r.truncated_bios, r.invalid_records
        ));
    }
    let header =
        format!(" {:>10} {:>10} {:>10} {:>10} {:>10}", "ACQUIRED", "RELEASED", "IN FLIGHT", "RELEASING", "LEAKED");
    let counts = |c: &GroupCounts| {
        let p = &c.pages;
        format!(" {:>10} {:>10} {:>10} {:>10} {:>10}", p.acquired, p.released, p.in_flight, p.releasing, p.leaked)
    };
    if !r.owners.is_empty() {
        s.push_str(&format!("  pages by the task that acquired them:\n  {:>8} {:<16}{header}\n", "TGID", "COMM"));
        for o in &r.owners {
            s.push_str(&format!("  {:>8} {:<16}{}\n", o.tgid, o.comm, counts(&o.counts)));
        }
    }
    if !r.devices.is_empty() {
        s.push_str(&format!("  pages by device and operation:\n  {:<10} {:<14}{header}\n", "DEVICE", "OP"));
        for d in &r.devices {
            s.push_str(&format!("  {:<10} {:<14}{}\n", d.device, d.op, counts(&d.counts)));
        }
    }
    if !r.leaks.is_empty() {
        s.push_str("  leaks:\n");
        for l in &r.leaks {
            let what = if l.kind == "freed_without_release" { "freed without release" } else { "not released" };
            let ended = l.ended_age_ns.map_or("never completed".to_string(), |ns| format!("completed {} ago", seconds(ns)));
            s.push_str(&format!(
                "    bio {} {} {}: {} {} pages of {} (tgid {}, pid {}) {what}; acquired {} ago, {ended}\n",
                l.bio,
                l.device,
                l.op,
                l.pages,
                if l.pinned { "pinned" } else { "referenced" },
                l.comm,
                l.tgid,
                l.pid,
                seconds(l.acquired_age_ns),
            ));
        }
        if r.leaks_not_listed > 0 {
            s.push_str(&format!("    ... and {} more\n", r.leaks_not_listed));
        }
    }
    if !r.mismatches.is_empty() {
        s.push_str("  mismatches:\n");
        let side = |p: &PagesRecord| {
            format!("{} vecs / {} {} pages from {}", p.vecs, p.pages, if p.pinned { "pinned" } else { "referenced" }, p.first_page)
        };
        for m in &r.mismatches {
            let from = m.first_vec.map_or(String::new(), |i| format!(" from vec {i}"));
            s.push_str(&format!(
                "    bio {} {} {} of {} (tgid {}): acquired {}, released {} (differ: {}{from})\n",
                m.bio,
                m.device,
                m.op,
                m.comm,
                m.tgid,
                side(&m.acquired),
                side(&m.released),
                m.differences.join(", ")
            ));
        }
        if r.mismatches_not_listed > 0 {
            s.push_str(&format!("    ... and {} more\n", r.mismatches_not_listed));
        }
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
        use tracer_common::{LatencyEvent, LatencyKind, RecordType};
        let mut l = Latency::default();
        for ns in [100_000u64, 200_000, 300_000] {
            l.record(&LatencyEvent { record: RecordType::Latency as u32, kind: LatencyKind::D2c as u32, dev: 254 << 20, op: 0, bytes: 4096, start_ns: 0, end_ns: ns });
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
        assert!(text.contains(&format!("1 of {} probes attached", PROBES.len())), "{text}");
        assert!(text.contains("MISSING  pin_user_pages_fast"), "{text}");
        assert!(text.contains("no BTF FUNC record"), "{text}");
    }
}

/// The page ledger and the call-path audit (`"type": "pages"`).
#[derive(Serialize, Debug, PartialEq)]
pub struct PageLedgerRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub totals: PageTotals,
    pub paths: Vec<PathRow>,
}

pub fn page_ledger_record(s: &PageSnapshot) -> PageLedgerRecord {
    PageLedgerRecord { kind: "pages", totals: s.totals.clone(), paths: s.paths.clone() }
}

/// The page ledger and the audit as text.
pub fn page_ledger_text(r: &PageLedgerRecord) -> String {
    let t = &r.totals;
    let mut s = String::from("page ledger (pages of each pin call matched to their unpins):\n");
    s.push_str(&format!(
        "  pinned {} pages ({} long-term, {} tied to a bio, {} not listed); unpinned {} ({} matched, {} pinned before the trace)\n",
        t.pinned, t.pinned_longterm, t.pinned_with_bio, t.unlisted, t.unpinned, t.unpinned_matched, t.unpinned_unknown_origin
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
            p.class.map_or("?", Class::name), p.entry, via, p.calls, p.pages, p.with_bio, p.outstanding, p.suspect
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
