//! The JSON report: one document built from the same records as the NDJSON output
//! (docs/output.md), under a versioned envelope (docs/report.md).

use serde::Serialize;

use super::Settings;
use crate::{
    sinks::ndjson::{
        latency_records, ledger_record, page_ledger_record, process_records, FiguresRecord, LatencyRecord,
        LedgerRecord, PageLedgerRecord, ProbeRecord, ProcessRecord, RecordingRecord,
    },
    snapshot::{round3, Recording, Snapshot},
};

/// The schema's name and version: a consumer checks both. The version changes when a field
/// changes meaning or goes away; fields may be added within a version.
pub const SCHEMA: &str = "tracer-report";
pub const SCHEMA_VERSION: u32 = 1;

/// Where the report's run came from and how it was judged.
pub struct Context<'a> {
    pub kernel: &'a str,
    pub probes: &'a [ProbeRecord],
    pub recording: Option<&'a Recording>,
    pub settings: &'a Settings,
    pub started_unix_s: f64,
    pub written_unix_s: f64,
}

#[derive(Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Serialize)]
pub struct Thresholds {
    /// A bio completed this long before the end and still holding pages is a leak suspect.
    pub leak_grace_s: f64,
    pub percentiles: Vec<f64>,
}

#[derive(Serialize)]
pub struct Window {
    /// When the tracer (or the replay) started and when the report was written (Unix seconds).
    pub started_unix_s: f64,
    pub written_unix_s: f64,
    /// Seconds of tracing the report covers (the run, or its last segment).
    pub traced_s: f64,
}

/// The report.
#[derive(Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub schema_version: u32,
    pub tool: Tool,
    /// The traced kernel's release.
    pub kernel: String,
    /// The traced command, if any.
    pub command: Vec<String>,
    /// Set when the report replays a record file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingRecord>,
    pub thresholds: Thresholds,
    pub window: Window,
    /// Every probe of the catalogue: attached or not, and why.
    pub probes: Vec<ProbeRecord>,
    /// The run's figures: FOLL_PIN totals, the /proc/vmstat cross-check, lost events, skipped
    /// probe runs, missing probes and the verdict (the NDJSON summary record).
    pub summary: FiguresRecord,
    pub processes: Vec<ProcessRecord>,
    /// The bio ledger, with its leak suspects and mismatches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bio_ledger: Option<LedgerRecord>,
    /// The page ledger, with outstanding pins by call path (symbolized stacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_ledger: Option<PageLedgerRecord>,
    /// Cumulative latency per figure, device, op and size class.
    pub latency: Vec<LatencyRecord>,
}

impl Report {
    pub fn new(cx: Context<'_>, snap: &Snapshot) -> Report {
        Report {
            schema: SCHEMA,
            schema_version: SCHEMA_VERSION,
            tool: Tool { name: "tracer", version: env!("CARGO_PKG_VERSION") },
            kernel: cx.recording.map_or(cx.kernel, |r| r.kernel_release.as_str()).to_string(),
            command: match cx.recording {
                Some(r) => r.command.clone(),
                None => cx.settings.command.clone(),
            },
            recording: cx.recording.map(RecordingRecord::of),
            thresholds: Thresholds {
                leak_grace_s: cx.settings.leak_grace_s,
                percentiles: cx.settings.percentiles.clone(),
            },
            window: Window {
                started_unix_s: round3(cx.started_unix_s),
                written_unix_s: round3(cx.written_unix_s),
                traced_s: snap.figures.elapsed_s,
            },
            probes: cx.probes.to_vec(),
            summary: FiguresRecord::of(&snap.figures),
            processes: process_records(&snap.procs),
            bio_ledger: snap.bios.as_ref().map(|b| ledger_record(b, &snap.names)),
            page_ledger: snap.pages.as_ref().map(|p| page_ledger_record(p)),
            latency: latency_records(&snap.latency, "cumulative", &snap.names),
        }
    }
}

/// The report as pretty-printed JSON, with a final newline.
pub fn to_string(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("the report serializes: plain data, string keys") + "\n"
}
