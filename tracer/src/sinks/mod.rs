//! Sinks: what a run shows. Each formats the typed [`Snapshot`]s of the run and computes
//! nothing: text and NDJSON on a stream, the live dashboard, and the recorder (the record file).

pub mod ndjson;
pub mod prometheus;
pub mod recorder;
pub mod report;
pub mod text;
pub mod tui;

#[cfg(test)]
mod tests;

/// A sink shown the start and the ends of a run but no interval: text or NDJSON on stdout when
/// intervals tick for another sink (the dashboard, the metrics endpoint) but are not to be printed.
pub struct EndsOnly(pub Box<dyn Sink>);

impl Sink for EndsOnly {
    fn start(&mut self, start: &Start) -> std::io::Result<()> {
        self.0.start(start)
    }

    fn interval(&mut self, _interval: &Snapshot, _totals: Option<&Snapshot>) -> std::io::Result<()> {
        Ok(())
    }

    fn end(&mut self, summary: &Snapshot) -> std::io::Result<()> {
        self.0.end(summary)
    }

    fn close(&mut self) {
        self.0.close()
    }

    fn recorded(&mut self, file: &str, records: u64) {
        self.0.recorded(file, records)
    }
}

use crate::snapshot::{Snapshot, Start};

/// Where a run's snapshots go.
pub trait Sink {
    /// Before the first records: the probes, and the record file of a report.
    fn start(&mut self, start: &Start) -> std::io::Result<()>;

    /// An interval ended. `totals`: the run so far, given to sinks that want it
    /// ([`Sink::wants_totals`]).
    fn interval(&mut self, interval: &Snapshot, totals: Option<&Snapshot>) -> std::io::Result<()>;

    /// A run or a segment ended.
    fn end(&mut self, summary: &Snapshot) -> std::io::Result<()>;

    /// Whether [`Sink::interval`] needs the run so far (the engine's full figures, dearer than
    /// an interval's).
    fn wants_totals(&self) -> bool {
        false
    }

    /// The run ended: give back what the sink holds (the terminal) before the end is shown.
    fn close(&mut self) {}

    /// A record file of `records` records was written.
    fn recorded(&mut self, _file: &str, _records: u64) {}
}
