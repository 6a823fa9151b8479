//! `--prometheus ADDR`: the run so far as Prometheus metrics on `http://ADDR/metrics`.
//!
//! The sink keeps the last snapshot of the run so far (every interval and every end); each
//! scrape encodes it (metrics.rs). Labels are bounded: device, op, figure, probe, entry point,
//! reason, ledger state; never a pid, an address or a page. The server (server.rs) is a task on
//! the run's runtime.

mod metrics;
mod server;

use std::sync::{Arc, Mutex};

use super::Sink;
use crate::snapshot::{Snapshot, Start};

pub use self::server::{bind, parse_addr, serve};

/// What the scrapes read: the last snapshot of the run so far, and the probes.
#[derive(Debug, Default)]
pub struct Shared {
    pub latest: Option<Snapshot>,
    pub probes_attached: usize,
    pub probes_missing: usize,
}

/// Keeps the run so far for the scrapes.
pub struct PrometheusSink {
    shared: Arc<Mutex<Shared>>,
}

impl PrometheusSink {
    pub fn new(shared: Arc<Mutex<Shared>>) -> PrometheusSink {
        PrometheusSink { shared }
    }

    fn keep(&self, snap: &Snapshot) {
        if let Ok(mut s) = self.shared.lock() {
            s.latest = Some(snap.clone());
        }
    }
}

impl Sink for PrometheusSink {
    fn start(&mut self, start: &Start) -> std::io::Result<()> {
        if let Ok(mut s) = self.shared.lock() {
            s.probes_attached = start.probes.iter().filter(|p| p.attached.is_some()).count();
            s.probes_missing = start.probes.iter().filter(|p| p.missing()).count();
        }
        Ok(())
    }

    fn interval(&mut self, _interval: &Snapshot, totals: Option<&Snapshot>) -> std::io::Result<()> {
        if let Some(t) = totals {
            self.keep(t);
        }
        Ok(())
    }

    fn end(&mut self, summary: &Snapshot) -> std::io::Result<()> {
        self.keep(summary);
        Ok(())
    }

    fn wants_totals(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
