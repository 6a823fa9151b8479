//! The live dashboard (`tracer run` in a terminal, or `--format tui`): its state and update
//! over a [`Msg`] (app/: panels, tables, keys), its drawing (ui/, pure, with snapshot tests)
//! and the terminal it owns (terminal.rs: keys, resizes, ticks on a thread of its own). It is
//! fed the run's typed snapshots: the run so far and the last interval.

pub mod app;
pub mod logs;
pub mod terminal;
pub mod ui;

#[cfg(test)]
mod reducer_tests;
#[cfg(test)]
mod tests;

use std::sync::{atomic::AtomicBool, Arc};

use tokio::sync::mpsc::UnboundedSender;

pub use self::app::App;
use self::{
    app::Msg,
    terminal::{Requests, Screen},
};
use super::Sink;
use crate::snapshot::{Snapshot, Start};

/// The dashboard as a sink: it opens its screen when the run starts (after the start was
/// printed as text) and closes it before the end is; it shows every interval.
pub struct Dashboard {
    pending: Option<(App, Requests)>,
    screen: Option<Screen>,
}

impl Dashboard {
    /// A quit key sends on `quit`.
    pub fn new(app: App, quit: UnboundedSender<()>) -> Dashboard {
        Dashboard { pending: Some((app, Requests { quit, export: None })), screen: None }
    }

    /// The export key sets `asked` (the report sink writes at the next interval).
    pub fn export_to(mut self, asked: Arc<AtomicBool>) -> Dashboard {
        if let Some((_, requests)) = self.pending.as_mut() {
            requests.export = Some(asked);
        }
        self
    }
}

impl Sink for Dashboard {
    fn start(&mut self, _start: &Start) -> std::io::Result<()> {
        if let Some((app, requests)) = self.pending.take() {
            self.screen = Some(Screen::open(app, requests)?);
        }
        Ok(())
    }

    fn interval(&mut self, interval: &Snapshot, totals: Option<&Snapshot>) -> std::io::Result<()> {
        match (self.screen.as_mut(), totals) {
            (Some(screen), Some(totals)) => screen.show(Msg::tick(totals.clone(), interval.clone())),
            _ => Ok(()),
        }
    }

    fn end(&mut self, _summary: &Snapshot) -> std::io::Result<()> {
        Ok(())
    }

    fn wants_totals(&self) -> bool {
        true
    }

    /// The terminal back to normal before the end-of-run report.
    fn close(&mut self) {
        self.screen = None;
    }
}
