//! The report file (`--report FILE`): one document of the whole run (or its last segment) to
//! hand to a colleague or attach to a kernel bug, in JSON (versioned schema, docs/report.md) or
//! Markdown. Written at the end of the run, atomically (a temporary file renamed over the
//! target), mode 0600, and given to $SUDO_USER when the tracer runs under sudo.

mod charts;
mod html;
mod json;
mod markdown;
mod write;

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use super::{ndjson::ProbeRecord, Sink};
use crate::snapshot::{Snapshot, Start};

pub use self::write::write_private;

/// Formats a report can be written in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// One JSON document (schema `tracer-report`, version in `schema_version`).
    Json,
    /// Markdown: tables of the figures, the ledgers as the text report shows them.
    Md,
    /// HTML: one self-contained page, the Markdown's tables and charts (latency histograms,
    /// ages of outstanding pins, outstanding pins over the run).
    Html,
}

/// A report file's name or format that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error(
        "{0}: cannot tell the report format from the name; end it in .json, .md or .html, or give --report-format"
    )]
    Unknown(String),
}

impl ReportFormat {
    /// The format asked for, else the one the file name ends in.
    pub fn for_path(path: &Path, asked: Option<ReportFormat>) -> Result<ReportFormat, ReportError> {
        if let Some(f) = asked {
            return Ok(f);
        }
        let name = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("json") => Ok(ReportFormat::Json),
            Some("md" | "markdown") => Ok(ReportFormat::Md),
            Some("html" | "htm") => Ok(ReportFormat::Html),
            _ => Err(ReportError::Unknown(name)),
        }
    }
}

/// What a report states about how it was made.
#[derive(Clone, Debug)]
pub struct Settings {
    pub leak_grace_s: f64,
    pub percentiles: Vec<f64>,
    /// The traced command, if any.
    pub command: Vec<String>,
}

/// What the run showed first, kept for the report.
struct Opening {
    kernel: String,
    probes: Vec<ProbeRecord>,
    recording: Option<crate::snapshot::Recording>,
}

/// Writes the report at every end of the run (a segment's end overwrites the previous one).
pub struct ReportSink {
    path: PathBuf,
    format: ReportFormat,
    settings: Settings,
    opening: Option<Opening>,
    started_unix_s: f64,
    /// Pages outstanding in the page ledger at the start, every interval and the end (for the
    /// HTML report's chart), seconds since the start.
    outstanding: Vec<html::Point>,
    /// Set by the dashboard's export key: the report of the run so far is written at the next
    /// interval (the end of the run writes it again).
    export: Option<Arc<AtomicBool>>,
}

impl ReportSink {
    pub fn new(path: PathBuf, format: ReportFormat, settings: Settings) -> ReportSink {
        ReportSink {
            path,
            format,
            settings,
            opening: None,
            started_unix_s: unix_now(),
            outstanding: vec![(0.0, 0)],
            export: None,
        }
    }

    /// Also writes the report of the run so far at the first interval after `asked` is set.
    pub fn export_on(mut self, asked: Arc<AtomicBool>) -> ReportSink {
        self.export = Some(asked);
        self
    }

    fn write(&self, summary: &Snapshot) -> std::io::Result<()> {
        write_private(&self.path, self.render(summary).as_bytes())
            .map_err(|e| std::io::Error::new(e.kind(), format!("writing the report {}: {e}", self.path.display())))
    }

    /// The report of `summary` in this sink's format.
    fn render(&self, summary: &Snapshot) -> String {
        let empty = Opening { kernel: String::new(), probes: Vec::new(), recording: None };
        let o = self.opening.as_ref().unwrap_or(&empty);
        let doc = json::Report::new(
            json::Context {
                kernel: &o.kernel,
                probes: &o.probes,
                recording: o.recording.as_ref(),
                settings: &self.settings,
                started_unix_s: self.started_unix_s,
                written_unix_s: unix_now(),
            },
            summary,
        );
        match self.format {
            ReportFormat::Json => json::to_string(&doc),
            ReportFormat::Md => markdown::render(&doc, summary),
            ReportFormat::Html => {
                let mut points = self.outstanding.clone();
                points.extend(point(summary));
                html::render(&doc, summary, &points)
            }
        }
    }
}

impl Sink for ReportSink {
    fn start(&mut self, start: &Start) -> std::io::Result<()> {
        self.opening = Some(Opening {
            kernel: start.kernel.clone(),
            probes: start.probes.iter().map(ProbeRecord::from_outcome).collect(),
            recording: start.recording.clone(),
        });
        Ok(())
    }

    fn interval(&mut self, _interval: &Snapshot, totals: Option<&Snapshot>) -> std::io::Result<()> {
        self.outstanding.extend(totals.and_then(point));
        let asked = self.export.as_ref().is_some_and(|a| a.swap(false, Ordering::Relaxed));
        if let (true, Some(totals)) = (asked, totals) {
            // Asked for mid-run: a failure is said, the run goes on (the end tries again).
            match self.write(totals) {
                Ok(()) => log::info!("report of the run so far written to {}", self.path.display()),
                Err(e) => log::warn!("{e}"),
            }
        }
        Ok(())
    }

    fn end(&mut self, summary: &Snapshot) -> std::io::Result<()> {
        self.write(summary)
    }

    fn wants_totals(&self) -> bool {
        self.export.is_some()
    }
}

/// Where the page ledger stands in `snap`: seconds since the start, pages outstanding.
fn point(snap: &Snapshot) -> Option<html::Point> {
    snap.pages.as_ref().map(|p| (snap.figures.elapsed_s, p.totals.outstanding))
}

/// The filter of a report, in words: what it matched, and that the kernel's totals are not
/// filtered.
fn filter_line(f: &super::ndjson::FilterRecord) -> String {
    let matched = match f.matched_nothing {
        true => "matched no records".to_string(),
        false => format!("{} records matched, {} dropped", f.records_matched, f.records_dropped),
    };
    format!(
        "{}: {matched}; kernel totals and /proc/vmstat are {} (check {})",
        f.applied, f.kernel_totals, f.vmstat_check
    )
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests;
