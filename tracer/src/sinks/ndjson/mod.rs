//! The NDJSON format: schema records (schema.rs, docs/output.md), one per line.

mod schema;

use std::io::Write;

pub use self::schema::*;
use super::Sink;
use crate::snapshot::{Snapshot, Start};

/// One NDJSON line.
pub fn json_line<T: serde::Serialize>(record: &T) -> String {
    serde_json::to_string(record).expect("records serialize: plain data, string keys")
}

/// NDJSON on a stream. In a span's records the summary or interval record is the last line.
pub struct NdjsonSink<W: Write> {
    pub out: W,
}

impl<W: Write> NdjsonSink<W> {
    fn json<T: serde::Serialize>(&mut self, record: &T) {
        // A closed stdout does not stop the trace.
        let line = json_line(record) + "\n";
        let _ = self.out.write_all(line.as_bytes()).and_then(|()| self.out.flush());
    }

    /// Processes first, then the figures.
    fn figures(&mut self, snap: &Snapshot) {
        process_records(&snap.procs).iter().for_each(|p| self.json(p));
        self.json(&FiguresRecord::of(&snap.figures));
    }
}

impl<W: Write> Sink for NdjsonSink<W> {
    fn start(&mut self, start: &Start) -> std::io::Result<()> {
        if let Some(r) = &start.recording {
            self.json(&RecordingRecord::of(r));
        }
        start.probes.iter().for_each(|o| self.json(&ProbeRecord::from_outcome(o)));
        Ok(())
    }

    fn interval(&mut self, snap: &Snapshot, _totals: Option<&Snapshot>) -> std::io::Result<()> {
        latency_records(&snap.latency, "interval", &snap.names).iter().for_each(|r| self.json(r));
        self.figures(snap);
        Ok(())
    }

    /// The end of a run: cumulative latency, the ledgers, processes, the summary (last).
    fn end(&mut self, snap: &Snapshot) -> std::io::Result<()> {
        latency_records(&snap.latency, "cumulative", &snap.names).iter().for_each(|r| self.json(r));
        if let Some(b) = &snap.bios {
            self.json(&ledger_record(b, &snap.names));
        }
        if let Some(p) = &snap.pages {
            self.json(&page_ledger_record(p));
        }
        self.figures(snap);
        Ok(())
    }
}
