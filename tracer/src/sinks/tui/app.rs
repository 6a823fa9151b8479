//! The dashboard's state and its update over [`Msg`].

use crate::{
    probes::plan::ProbeOutcome,
    snapshot::{Figures, Snapshot},
};

/// What changes the dashboard.
pub enum Msg {
    /// New figures (every interval): the run so far, and the last interval.
    Tick { totals: Snapshot, interval: Figures },
}

/// The figures on screen.
pub struct Shown {
    pub totals: Snapshot,
    pub interval: Figures,
}

/// The dashboard's state.
pub struct App {
    pub kernel: String,
    pub attached: usize,
    pub missing: Vec<String>,
    pub command: Option<String>,
    /// None until the first interval.
    pub shown: Option<Shown>,
}

impl App {
    pub fn new(kernel: &str, probes: &[ProbeOutcome], command: Option<String>) -> App {
        App {
            kernel: kernel.to_string(),
            attached: probes.iter().filter(|p| p.attached.is_some()).count(),
            missing: probes.iter().filter(|p| p.attached.is_none()).map(|p| p.def.target.to_string()).collect(),
            command,
            shown: None,
        }
    }

    pub fn update(&mut self, msg: Msg) {
        match msg {
            Msg::Tick { totals, interval } => self.shown = Some(Shown { totals, interval }),
        }
    }
}
