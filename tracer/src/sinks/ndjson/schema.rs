//! The NDJSON schema (docs/output.md): one record per line, made field by field from the
//! typed snapshot.

use serde::Serialize;

use crate::{
    engine::{
        bio::{Count, Group, LeakReport, MismatchReport, PagesSeen, Timing},
        detect::Verdict,
        filter::FilterStatus,
        latency::{kind_name, size_name, Key, Stats},
        pages::{PageSnapshot, PageTotals, PathRow},
    },
    model::Dev,
    probes::{
        plan::{role_name, ProbeOutcome},
        vmstat::FollPin,
    },
    snapshot::{BioLedger, Figures, NameTable, PinAccounting, Process, Recording, Scope},
};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Reason {
    pub method: &'static str,
    pub reason: String,
}

/// One probe's status (`"type": "probe"`).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ProbeRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub target: &'static str,
    pub role: &'static str,
    /// The attach method, or null when missing or off.
    pub attached: Option<&'static str>,
    /// Not asked for (`--syscall-latency`): not attached, not missing; absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub off: bool,
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
            off: o.off,
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
    /// Summaries only: requests completed with no latency figure (no issue seen).
    pub requests_untimed: Option<u64>,
    /// Summaries only: starts dropped uncompleted.
    pub starts_dropped: Option<u64>,
}

/// One process (`"type": "process"`).
#[derive(Serialize, Debug, PartialEq)]
pub struct ProcessRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub tgid: u32,
    pub comm: String,
    /// The cgroup (v2) id: the inode number of its directory under /sys/fs/cgroup.
    pub cgroup: u64,
    pub pages_pinned: u64,
    pub pages_unpinned: u64,
}

/// Figures for a span of time: an interval or the whole run.
#[derive(Serialize, Debug, PartialEq)]
pub struct FiguresRecord {
    /// "interval" or "summary".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Seconds since tracing started (end of the span).
    pub elapsed_s: f64,
    /// Length of the span in seconds.
    pub span_s: f64,
    /// Exact FOLL_PIN pages acquired / released in the span: the kernel's own accounting
    /// (/proc/vmstat nr_foll_pin_acquired / nr_foll_pin_released); 0 and
    /// `pin_accounting: "unverifiable"` where the kernel has no such counters.
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
    /// Records the probes put into the ring buffer and the tracer read, since the probes were
    /// loaded (not over the span): equal once the reader drained a quiet ring buffer, so that
    /// every record not counted lost was read. Absent in replays of files without them.
    #[serde(skip_serializing_if = "is_zero")]
    pub records_submitted: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub records_read: u64,
    /// How pin records got their kernel stacks: from a learned call path, walked again to
    /// check one (and found wrong), samples sent to learn one, walked (absent when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_paths: Option<StackPaths>,
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
    /// Probe runs the kernel skipped because every program of the probe's chain was already
    /// running on that CPU (counted in `lost_events` too); only probes with skips are listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probes_skipped: Vec<Skipped>,
    /// Summary only: the pin ledger's verdict (details in the `ledger` record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<&'static str>,
    /// The filter (`--pid`, `--comm`, `--cgroup`, `--device`) and what it let through; absent
    /// without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterRecord>,
}

/// A filter and what it let through (`filter` of an interval or the summary).
#[derive(Serialize, Debug, PartialEq)]
pub struct FilterRecord {
    /// The filter as given on the command line ("--comm fio --device nullb0").
    pub applied: String,
    /// Records the filter judged and kept, and dropped.
    pub records_matched: u64,
    pub records_dropped: u64,
    /// No record matched (not an error).
    pub matched_nothing: bool,
    /// Unpins of pins taken before the trace (owner unknown), left out.
    pub unattributed_unpins: u64,
    /// "machine-wide": pages_pinned, pages_unpinned, vmstat, entry_points and block are not
    /// filtered.
    pub kernel_totals: &'static str,
    /// "not applicable under a filter".
    pub vmstat_check: &'static str,
}

impl FilterRecord {
    pub fn of(f: &FilterStatus) -> FilterRecord {
        FilterRecord {
            applied: f.label.clone(),
            records_matched: f.matched,
            records_dropped: f.dropped,
            matched_nothing: f.matched == 0,
            unattributed_unpins: f.unattributed_unpins,
            kernel_totals: "machine-wide",
            vmstat_check: "not applicable under a filter",
        }
    }
}

impl FiguresRecord {
    pub fn of(f: &Figures) -> FiguresRecord {
        FiguresRecord {
            kind: match f.scope {
                Scope::Interval => "interval",
                Scope::Summary => "summary",
            },
            elapsed_s: f.elapsed_s,
            span_s: f.span_s,
            pages_pinned: f.pages_pinned,
            pages_unpinned: f.pages_unpinned,
            pin_accounting: match f.pin_accounting {
                PinAccounting::Measured => "measured",
                PinAccounting::Unverifiable => "unverifiable",
            },
            lost_events: f.lost_events,
            lost_by_reason: f.lost_by_reason.clone(),
            stacks_unread: f.stacks_unread,
            records_submitted: f.records_submitted,
            records_read: f.records_read,
            stack_paths: StackPaths::of(&f.stack_paths),
            vmstat: f.vmstat,
            entry_points: f
                .entry_points
                .iter()
                .map(|e| EntryPoint { function: e.function, role: role_name(e.role), calls: e.calls, pages: e.pages })
                .collect(),
            block: Block {
                requests_issued: f.block.requests_issued,
                requests_completed: f.block.requests_completed,
                bytes_completed: f.block.bytes_completed,
                requests_untimed: f.block.requests_untimed,
                starts_dropped: f.block.starts_dropped,
            },
            command_exit_status: f.command_exit_status,
            probes_missing: f.probes_missing.clone(),
            probes_skipped: f.probes_skipped.iter().map(|s| Skipped { target: s.target, runs: s.runs }).collect(),
            ledger: f.verdict.map(Verdict::name),
            filter: f.filter.as_ref().map(FilterRecord::of),
        }
    }
}

pub fn process_records(procs: &[Process]) -> Vec<ProcessRecord> {
    procs
        .iter()
        .map(|p| ProcessRecord {
            kind: "process",
            tgid: p.tgid,
            comm: p.comm.clone(),
            cgroup: p.cgroup,
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

pub fn latency_records(rows: &[(Key, Stats)], scope: &'static str, names: &NameTable) -> Vec<LatencyRecord> {
    rows.iter()
        .map(|(k, st)| LatencyRecord {
            kind: "latency",
            scope,
            figure: kind_name(k.kind),
            device: names.device(k.dev).to_string(),
            dev: Dev(k.dev).to_string(),
            op: names.op(k.op).to_string(),
            size: size_name(k.size_class),
            count: st.count,
            min_ns: st.min_ns,
            mean_ns: st.mean_ns.round() as u64,
            stddev_ns: st.stddev_ns.round() as u64,
            max_ns: st.max_ns,
            percentiles: st.percentiles.iter().map(|(p, v)| (format!("p{p}"), serde_json::Value::from(*v))).collect(),
        })
        .collect()
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
        TimingRecord { count: t.count, mean_ns: t.mean_ns(), max_ns: t.max() }
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

fn hex(addr: u64) -> String {
    format!("{addr:#x}")
}

pub fn ledger_record(b: &BioLedger, names: &NameTable) -> LedgerRecord {
    let (s, j) = (&b.ledger, &b.judgement);
    let t = &s.totals;
    LedgerRecord {
        kind: "ledger",
        verdict: j.verdict.name(),
        reasons: j.reasons.clone(),
        grace_s: b.grace_s,
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
                device: names.device(d.dev).to_string(),
                dev: Dev(d.dev).to_string(),
                op: names.op(d.op).to_string(),
                counts: GroupCounts::of(&d.counts),
            })
            .collect(),
        leaks: s.leaks.iter().map(|l| leak_record(l, names)).collect(),
        leaks_not_listed: s.leaks_not_listed,
        mismatches: s.mismatches.iter().map(|m| mismatch_record(m, names)).collect(),
        mismatches_not_listed: s.mismatches_not_listed,
    }
}

fn leak_record(l: &LeakReport, names: &NameTable) -> LeakRecord {
    LeakRecord {
        kind: l.kind.name(),
        bio: hex(l.bio),
        tgid: l.tgid,
        pid: l.pid,
        comm: l.comm.clone(),
        cgroup: l.cgroup,
        device: names.device(l.dev).to_string(),
        dev: Dev(l.dev).to_string(),
        op: names.op(l.op).to_string(),
        pinned: l.pinned,
        pages: l.pages,
        first_page: hex(l.first_page),
        acquired_age_ns: l.acquired_age_ns,
        ended_age_ns: l.ended_age_ns,
        status: l.status,
    }
}

fn mismatch_record(m: &MismatchReport, names: &NameTable) -> MismatchRecord {
    MismatchRecord {
        bio: hex(m.bio),
        tgid: m.tgid,
        pid: m.pid,
        comm: m.comm.clone(),
        device: names.device(m.dev).to_string(),
        dev: Dev(m.dev).to_string(),
        op: names.op(m.op).to_string(),
        acquired: PagesRecord::of(&m.acquired),
        released: PagesRecord::of(&m.released),
        differences: m.differences.clone(),
        first_vec: m.first_vec,
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

/// What a report says about its record file (`"type": "recording"`, first).
#[derive(Serialize)]
pub struct RecordingRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub file: String,
    pub tracer_version: String,
    pub kernel_release: String,
    pub start_unix_ns: u64,
    pub records: u64,
    pub command: Vec<String>,
}

impl RecordingRecord {
    pub fn of(r: &Recording) -> RecordingRecord {
        RecordingRecord {
            kind: "recording",
            file: r.file.clone(),
            tracer_version: r.tracer_version.clone(),
            kernel_release: r.kernel_release.clone(),
            start_unix_ns: r.start_unix_ns,
            records: r.records,
            command: r.command.clone(),
        }
    }
}

/// `stack_paths` of a summary or interval (tracer_common::counters::PathCount).
#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
pub struct StackPaths {
    pub reused: u64,
    pub rewalked: u64,
    pub wrong: u64,
    pub sampled: u64,
    pub walked: u64,
    pub stale: u64,
    pub relearned: u64,
}

impl StackPaths {
    fn of(c: &[u64; tracer_common::counters::PATH_COUNTS as usize]) -> Option<StackPaths> {
        use tracer_common::counters::PathCount as P;
        (c.iter().any(|&n| n > 0)).then(|| StackPaths {
            reused: c[P::Reused as usize],
            rewalked: c[P::Rewalked as usize],
            wrong: c[P::Wrong as usize],
            sampled: c[P::Sampled as usize],
            walked: c[P::Walked as usize],
            stale: c[P::Stale as usize],
            relearned: c[P::Relearned as usize],
        })
    }
}
