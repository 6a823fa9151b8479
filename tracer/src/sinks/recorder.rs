//! The recorder: every ring buffer record into a record file, as the kernel wrote it, and at the
//! end a trailer made from the run's last snapshot.

use std::io::{self, Write};

use super::ndjson::FiguresRecord;
use crate::{
    model::Dev,
    record::{SavedCounters, Trailer, Writer},
    snapshot::Snapshot,
};

pub struct Recorder<W: Write> {
    writer: Writer<W>,
    /// The first write error; recording stops there, tracing goes on.
    error: Option<io::Error>,
}

impl<W: Write> Recorder<W> {
    pub fn new(writer: Writer<W>) -> Recorder<W> {
        Recorder { writer, error: None }
    }

    /// One ring buffer record.
    pub fn record(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.writer.record(bytes) {
                log::warn!("recording stopped: {e}");
                self.error = Some(e);
            }
        }
    }

    /// Writes the trailer of the run `summary` describes; the records written, or the first
    /// write error.
    pub fn finish(self, summary: &Snapshot) -> io::Result<u64> {
        let trailer = Trailer {
            records: 0,
            end_monotonic_ns: summary.clock.end_ns,
            elapsed_s: Some(summary.clock.span_s),
            counters: SavedCounters::from_counters(&summary.counters),
            vmstat: summary.figures.vmstat.map(Into::into),
            command_exit_status: summary.figures.command_exit_status,
            devices: summary.names.devices().map(|(dev, name)| (Dev(dev).to_string(), name.to_string())).collect(),
            summary: serde_json::to_value(FiguresRecord::of(&summary.figures)).unwrap_or_default(),
        };
        if let Some(e) = self.error {
            return Err(e);
        }
        let records = self.writer.records();
        self.writer.finish(trailer)?;
        Ok(records)
    }
}
