//! The typed snapshot: everything a sink may show about one span of a run (an interval, or the
//! run or segment so far), as plain data with names resolved. Sinks only format it; cloning it
//! costs a few reference counts.

use std::{collections::BTreeMap, sync::Arc};

use tracer_common::{LostReason, ProbeId, ProbeRole, LOST_REASONS};

use crate::{
    engine::{
        bio::LedgerSnapshot,
        detect::{Judgement, Verdict},
        filter::FilterStatus,
        latency::{Key, Stats},
        pages::PageSnapshot,
        Ending, Final,
    },
    model::Names,
    probes::{
        counters::{Counters, ProcCounts},
        plan::ProbeOutcome,
        vmstat::FollPin,
    },
};

/// Names of the `LostReason`s, in their order.
const LOST_REASON_NAMES: [&str; LOST_REASONS as usize] =
    ["process_map_full", "bad_index", "ring_full", "start_map_full", "stack_lost", "scratch_busy"];

/// What span a snapshot covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The last interval.
    Interval,
    /// The run (or segment) from its start.
    Summary,
}

/// Whether the FOLL_PIN totals are the kernel's own counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinAccounting {
    /// From /proc/vmstat nr_foll_pin_acquired / nr_foll_pin_released.
    Measured,
    /// This kernel has no such counters.
    Unverifiable,
}

/// A probe whose program the kernel skipped (recursion_misses).
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub target: &'static str,
    pub runs: u64,
}

/// Calls and pages seen at one pin or unpin entry point.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryPoint {
    pub function: &'static str,
    pub role: ProbeRole,
    pub calls: u64,
    pub pages: u64,
}

/// Block requests; None where the block probes are missing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Block {
    pub requests_issued: Option<u64>,
    pub requests_completed: Option<u64>,
    pub bytes_completed: Option<u64>,
    /// Requests completed with no D2C figure: no issue seen (engine::Untimed). Summaries only
    /// (None in an interval's figures).
    pub requests_untimed: Option<u64>,
    /// Starts dropped uncompleted (engine::Untimed). Summaries only.
    pub starts_dropped: Option<u64>,
}

impl Block {
    /// The requests completed untimed and the starts dropped, when either is not 0 (what the
    /// sinks say of them).
    pub fn untimed(&self) -> Option<(u64, u64)> {
        let both = (self.requests_untimed.unwrap_or(0), self.starts_dropped.unwrap_or(0));
        (both != (0, 0)).then_some(both)
    }
}

#[cfg(test)]
impl Block {
    /// No figures (the block probes missing).
    pub const NONE: Block = Block {
        requests_issued: None,
        requests_completed: None,
        bytes_completed: None,
        requests_untimed: None,
        starts_dropped: None,
    };
}

/// The counted figures of a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub scope: Scope,
    /// Seconds since tracing started (end of the span), to the millisecond.
    pub elapsed_s: f64,
    /// Length of the span in seconds, to the millisecond.
    pub span_s: f64,
    /// Exact FOLL_PIN pages acquired / released in the span (0 when unverifiable).
    pub pages_pinned: u64,
    pub pages_unpinned: u64,
    pub pin_accounting: PinAccounting,
    pub lost_events: u64,
    /// Why events were lost, by reason (only reasons with losses; not unread stacks).
    pub lost_by_reason: BTreeMap<&'static str, u64>,
    /// Page records whose kernel stack could not be read.
    pub stacks_unread: u64,
    /// Records the programs submitted and the reader read, since the programs were loaded
    /// (see [`Counters::records_submitted`]; 0 in replays of files without them).
    pub records_submitted: u64,
    pub records_read: u64,
    /// How pin records got their kernel stacks (tracer_common::stack_path), indexed by
    /// tracer_common::counters::PathCount.
    pub stack_paths: [u64; tracer_common::counters::PATH_COUNTS as usize],
    pub vmstat: Option<FollPin>,
    pub entry_points: Vec<EntryPoint>,
    pub block: Block,
    /// Summary only: the traced command's exit status.
    pub command_exit_status: Option<i32>,
    /// Probes that could not attach.
    pub probes_missing: Vec<&'static str>,
    /// Probes the kernel skipped runs of.
    pub probes_skipped: Vec<Skipped>,
    /// Summary only: the run's verdict.
    pub verdict: Option<Verdict>,
    /// The filter and what it let through (None without one). Under a filter the kernel's
    /// totals above (pages_pinned, vmstat, entry points, block) stay machine-wide; the ledgers,
    /// processes and latency rows are filtered.
    pub filter: Option<FilterStatus>,
}

impl Figures {
    /// The figures of the counters `span` over `span_s` seconds ending `elapsed_s` after the
    /// start.
    pub fn new(
        scope: Scope,
        outcomes: &[ProbeOutcome],
        span: &Counters,
        (elapsed_s, span_s): (f64, f64),
        vmstat: Option<FollPin>,
    ) -> Figures {
        let attached = |id: ProbeId| outcomes[id as usize].attached.is_some();
        let stat = |id: ProbeId| attached(id).then(|| span.probes[id as usize]);
        let entry_points = outcomes
            .iter()
            .filter(|o| {
                matches!(o.def.role, ProbeRole::Pin | ProbeRole::Unpin | ProbeRole::Get | ProbeRole::Put)
                    && o.attached.is_some()
            })
            .map(|o| EntryPoint {
                function: o.def.target,
                role: o.def.role,
                calls: span.probes[o.def.id as usize].hits,
                pages: span.probes[o.def.id as usize].amount,
            })
            .collect();
        Figures {
            scope,
            elapsed_s: round3(elapsed_s),
            span_s: round3(span_s),
            pages_pinned: span.pages_pinned,
            pages_unpinned: span.pages_unpinned,
            pin_accounting: if vmstat.is_some() { PinAccounting::Measured } else { PinAccounting::Unverifiable },
            lost_events: span.lost_events(),
            lost_by_reason: LOST_REASON_NAMES
                .iter()
                .zip(span.lost.iter())
                .enumerate()
                .filter(|&(i, (_, &n))| n > 0 && i != LostReason::StackLost as usize)
                .map(|(_, (&name, &n))| (name, n))
                .collect(),
            stacks_unread: span.lost[LostReason::StackLost as usize],
            records_submitted: span.records_submitted,
            records_read: span.records_read,
            stack_paths: span.stack_paths,
            vmstat,
            entry_points,
            block: Block {
                requests_issued: stat(ProbeId::BlockRqIssue).map(|s| s.hits),
                requests_completed: stat(ProbeId::BlockRqComplete).map(|s| s.hits),
                bytes_completed: stat(ProbeId::BlockRqComplete).map(|s| s.amount),
                requests_untimed: None,
                starts_dropped: None,
            },
            command_exit_status: None,
            probes_missing: outcomes.iter().filter(|o| o.missing()).map(|o| o.def.target).collect(),
            probes_skipped: outcomes
                .iter()
                .filter(|o| span.missed[o.def.id as usize] > 0)
                .map(|o| Skipped { target: o.def.target, runs: span.missed[o.def.id as usize] })
                .collect(),
            verdict: None,
            filter: None,
        }
    }

    /// FOLL_PIN pages pinned less unpinned over the span.
    pub fn net_pinned(&self) -> i128 {
        self.pages_pinned as i128 - self.pages_unpinned as i128
    }

    /// Entry points that were called in the span.
    pub fn active_entry_points(&self) -> impl Iterator<Item = &EntryPoint> {
        self.entry_points.iter().filter(|e| e.calls > 0)
    }

    /// FOLL_PIN pages pinned and unpinned per second over the span, where measured.
    pub fn rate(&self) -> Option<(f64, f64)> {
        (self.pin_accounting == PinAccounting::Measured && self.span_s > 0.0)
            .then(|| (self.pages_pinned as f64 / self.span_s, self.pages_unpinned as f64 / self.span_s))
    }
}

/// `x` to the millisecond (three decimals), as the outputs give seconds.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One process's FOLL_PIN pages over the span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub tgid: u32,
    pub comm: String,
    /// Its cgroup id (v2: the inode number of the cgroup's directory).
    pub cgroup: u64,
    pub pages_pinned: u64,
    pub pages_unpinned: u64,
}

/// The bio ledger at the snapshot and its judgement.
#[derive(Clone, Debug, PartialEq)]
pub struct BioLedger {
    pub ledger: LedgerSnapshot,
    pub judgement: Judgement,
    /// The grace period in seconds, to the millisecond.
    pub grace_s: f64,
}

/// Device and operation names of everything a snapshot mentions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameTable {
    devices: BTreeMap<u32, String>,
    ops: BTreeMap<u32, String>,
}

impl NameTable {
    fn new(names: &dyn Names, devs: impl IntoIterator<Item = u32>, ops: impl IntoIterator<Item = u32>) -> NameTable {
        NameTable {
            devices: devs.into_iter().map(|d| (d, names.device(d))).collect(),
            ops: ops.into_iter().map(|o| (o, names.op(o))).collect(),
        }
    }

    /// Test tables: these names and no others.
    #[cfg(test)]
    pub fn of(devices: &[(u32, &str)], ops: &[(u32, &str)]) -> NameTable {
        let map = |v: &[(u32, &str)]| v.iter().map(|&(k, n)| (k, n.to_string())).collect();
        NameTable { devices: map(devices), ops: map(ops) }
    }

    pub fn device(&self, dev: u32) -> &str {
        self.devices.get(&dev).map_or("?", String::as_str)
    }

    pub fn op(&self, op: u32) -> &str {
        self.ops.get(&op).map_or("?", String::as_str)
    }

    /// The devices named (dev_t 0, no device, left out) and their names.
    pub fn devices(&self) -> impl Iterator<Item = (u32, &str)> {
        self.devices.iter().filter(|(&d, _)| d != 0).map(|(&d, n)| (d, n.as_str()))
    }
}

/// Everything a sink may show about one span.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub figures: Figures,
    /// By tgid.
    pub procs: Arc<[Process]>,
    /// Latency rows in key order (the interval's, or cumulative for a summary).
    pub latency: Arc<[(Key, Stats)]>,
    /// Summary only: the ledgers.
    pub bios: Option<Arc<BioLedger>>,
    pub pages: Option<Arc<PageSnapshot>>,
    pub names: Arc<NameTable>,
    /// The counters over the span as the kernel gave them (for the record file's trailer).
    pub counters: Arc<Counters>,
    /// Unrounded seconds of the span and the records' clock at its end.
    pub clock: Clock,
}

/// When a snapshot's span ended.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Clock {
    pub span_s: f64,
    pub end_ns: u64,
}

fn processes(procs: &BTreeMap<u32, ProcCounts>) -> Arc<[Process]> {
    procs
        .iter()
        .map(|(&tgid, p)| Process {
            tgid,
            comm: p.comm.clone(),
            cgroup: p.cgroup,
            pages_pinned: p.pages_pinned,
            pages_unpinned: p.pages_unpinned,
        })
        .collect()
}

impl Snapshot {
    /// The last interval: its counters (processes by pin owner), latency rows and clock.
    pub fn interval(
        figures: Figures,
        span: Counters,
        latency: Vec<(Key, Stats)>,
        names: &dyn Names,
        end_ns: u64,
    ) -> Snapshot {
        let names = NameTable::new(names, latency.iter().map(|(k, _)| k.dev), latency.iter().map(|(k, _)| k.op));
        Snapshot {
            clock: Clock { span_s: figures.span_s, end_ns },
            figures,
            procs: processes(&span.procs),
            latency: latency.into(),
            bios: None,
            pages: None,
            names: Arc::new(names),
            counters: Arc::new(span),
        }
    }

    /// The run or segment so far, from the engine's final figures and how the span ended.
    pub fn summary(fin: Final, end: &Ending, names: &dyn Names) -> Snapshot {
        let mut figures =
            Figures::new(Scope::Summary, &end.outcomes, &end.span, (end.elapsed_s, end.elapsed_s), end.vmstat);
        figures.command_exit_status = end.command_exit_status;
        // Records the probes produced but that could not be used are lost events too.
        figures.lost_events += fin.invalid;
        figures.verdict = Some(fin.judgement.verdict);
        figures.filter = fin.filter.clone();
        if figures.block.requests_completed.is_some() {
            figures.block.requests_untimed = Some(fin.untimed.requests);
            figures.block.starts_dropped = Some(fin.untimed.starts_dropped);
        }
        let l = &fin.ledger;
        let devs = fin.latency.iter().map(|(k, _)| k.dev).chain(l.devices.iter().map(|d| d.dev));
        let devs = devs.chain(l.leaks.iter().map(|x| x.dev)).chain(l.mismatches.iter().map(|m| m.dev));
        let ops = fin.latency.iter().map(|(k, _)| k.op).chain(l.devices.iter().map(|d| d.op));
        let ops = ops.chain(l.leaks.iter().map(|x| x.op)).chain(l.mismatches.iter().map(|m| m.op));
        let names = NameTable::new(names, devs.collect::<Vec<_>>(), ops.collect::<Vec<_>>());
        Snapshot {
            figures,
            procs: processes(&fin.procs),
            latency: fin.latency.into(),
            bios: Some(Arc::new(BioLedger {
                grace_s: round3(fin.ledger.grace_ns as f64 / 1e9),
                ledger: fin.ledger,
                judgement: fin.judgement,
            })),
            pages: Some(Arc::new(fin.pages)),
            names: Arc::new(names),
            counters: Arc::new(end.span.clone()),
            clock: Clock { span_s: end.elapsed_s, end_ns: end.end_ns },
        }
    }

    /// Processes, most pages pinned first.
    pub fn procs_most_pinned_first(&self) -> Vec<&Process> {
        let mut procs: Vec<&Process> = self.procs.iter().collect();
        procs.sort_by(|a, b| b.pages_pinned.cmp(&a.pages_pinned).then(a.tgid.cmp(&b.tgid)));
        procs
    }

    /// Latency rows of every size together.
    pub fn latency_all_sizes(&self) -> impl Iterator<Item = &(Key, Stats)> {
        self.latency.iter().filter(|(k, _)| k.size_class.is_none())
    }
}

/// The record file a report replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    pub file: String,
    pub tracer_version: String,
    pub kernel_release: String,
    pub start_unix_ns: u64,
    pub records: u64,
    pub command: Vec<String>,
}

/// What a run shows before its first figures.
#[derive(Clone, Debug)]
pub struct Start {
    /// A report's record file.
    pub recording: Option<Recording>,
    /// The traced kernel's release.
    pub kernel: String,
    /// Every probe of the catalogue, attached or not.
    pub probes: Vec<ProbeOutcome>,
}
