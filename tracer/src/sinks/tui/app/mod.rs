//! The dashboard's state and its update over [`Msg`]: a pure reducer. The terminal feeds it
//! ticks, keys and resizes; ui.rs draws it; what it asks of the outside is an [`Action`].

pub mod rows;
pub mod table;

use self::table::{TableData, TableView};
use crate::{probes::plan::ProbeOutcome, snapshot::Snapshot};

/// A key, as the dashboard knows them (terminal.rs translates the terminal's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Char(char),
    /// A letter with Ctrl held.
    Ctrl(char),
    Tab,
    BackTab,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Backspace,
}

/// What changes the dashboard.
#[derive(Clone, Debug)]
pub enum Msg {
    /// New figures (every interval): the run so far, and the last interval.
    Tick(Box<Shown>),
    Key(Key),
    /// The terminal's new size (columns, rows).
    Resize(u16, u16),
    /// Log lines held back while the dashboard owns the terminal.
    Log(Vec<String>),
}

impl Msg {
    pub fn tick(totals: Snapshot, interval: Snapshot) -> Msg {
        Msg::Tick(Box::new(Shown { totals, interval }))
    }
}

/// What the dashboard asks the sink to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// End the run (q, Ctrl-C).
    Quit,
    /// Write the report now (e).
    Export,
}

/// The panels, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    Overview,
    Processes,
    CallPaths,
    Findings,
    Latency,
    Probes,
}

impl Panel {
    pub const ALL: [Panel; 6] =
        [Panel::Overview, Panel::Processes, Panel::CallPaths, Panel::Findings, Panel::Latency, Panel::Probes];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn title(self) -> &'static str {
        match self {
            Panel::Overview => "Overview",
            Panel::Processes => "Processes",
            Panel::CallPaths => "Call paths",
            Panel::Findings => "Findings",
            Panel::Latency => "Latency",
            Panel::Probes => "Probes",
        }
    }

    /// The title on a narrow terminal.
    pub fn short(self) -> &'static str {
        match self {
            Panel::Processes => "Procs",
            Panel::CallPaths => "Paths",
            p => p.title(),
        }
    }

    /// Whether the panel is a table (selection, filter, sort, drill-down).
    pub fn is_table(self) -> bool {
        self != Panel::Overview
    }

    fn step(self, by: isize) -> Panel {
        let n = Panel::ALL.len() as isize;
        Panel::ALL[(self as isize + by).rem_euclid(n) as usize]
    }
}

/// The figures on screen.
#[derive(Clone, Debug)]
pub struct Shown {
    pub totals: Snapshot,
    pub interval: Snapshot,
}

/// Log lines kept for the Overview.
const LOG_LINES: usize = 50;

/// Rows around the panels: the header, the tabs and the status line.
const CHROME_ROWS: usize = 3;

/// The dashboard's state.
pub struct App {
    pub kernel: String,
    pub command: Option<String>,
    pub probes: Vec<ProbeOutcome>,
    /// The --report file `e` asks for, if any.
    pub report: Option<String>,
    /// None until the first interval.
    pub shown: Option<Shown>,
    /// Display frozen (space): the latest figures wait in `held`.
    pub frozen: bool,
    pub held: Option<Shown>,
    /// Ticks that came while frozen.
    pub held_ticks: u64,
    pub panel: Panel,
    /// Each panel's table rows (Overview: none) and view state, by [`Panel::index`].
    pub tables: [TableData; 6],
    pub views: [TableView; 6],
    /// Typing a filter (`/`).
    pub filtering: bool,
    pub help: bool,
    /// A message for the status line, until the next key.
    pub status: Option<String>,
    pub size: (u16, u16),
    pub logs: Vec<String>,
}

impl App {
    pub fn new(kernel: &str, probes: &[ProbeOutcome], command: Option<String>) -> App {
        let mut app = App {
            kernel: kernel.to_string(),
            command,
            probes: probes.to_vec(),
            report: None,
            shown: None,
            frozen: false,
            held: None,
            held_ticks: 0,
            panel: Panel::Overview,
            tables: Default::default(),
            views: Default::default(),
            filtering: false,
            help: false,
            status: None,
            size: (80, 24),
            logs: Vec::new(),
        };
        app.rebuild();
        app
    }

    /// `e` asks for a report into `path` (the --report file).
    pub fn with_report(mut self, path: Option<String>) -> App {
        self.report = path;
        self
    }

    pub fn table(&self) -> &TableData {
        &self.tables[self.panel.index()]
    }

    pub fn view(&self) -> &TableView {
        &self.views[self.panel.index()]
    }

    /// Rows of the current table that fit on screen.
    pub fn page(&self) -> usize {
        self.page_of(self.panel)
    }

    /// Rows of a panel's table that fit on screen, as ui/ lays it out (about: the terminal
    /// scrolls to the selection anyway).
    fn page_of(&self, panel: Panel) -> usize {
        let body = (self.size.1 as usize).saturating_sub(CHROME_ROWS);
        // The latency histograms take half the panel when it has room for them.
        let area = if panel == Panel::Latency && body >= 12 { body / 2 } else { body };
        // Borders, column titles, notes.
        area.saturating_sub(3 + self.tables[panel.index()].notes.len()).max(1)
    }

    pub fn update(&mut self, msg: Msg) -> Option<Action> {
        match msg {
            Msg::Tick(shown) => {
                let shown = *shown;
                if self.frozen {
                    self.held = Some(shown);
                    self.held_ticks += 1;
                } else {
                    self.shown = Some(shown);
                    self.rebuild();
                }
                None
            }
            Msg::Key(key) => self.key(key),
            Msg::Resize(w, h) => {
                self.size = (w, h);
                self.reselect_all();
                None
            }
            Msg::Log(lines) => {
                self.logs.extend(lines);
                let extra = self.logs.len().saturating_sub(LOG_LINES);
                self.logs.drain(..extra);
                None
            }
        }
    }

    /// The tables from the figures shown, each selection following its row.
    fn rebuild(&mut self) {
        let shown = self.shown.as_ref();
        self.tables = [
            TableData::default(),
            rows::processes(shown),
            rows::call_paths(shown),
            rows::findings(shown),
            rows::latency(shown),
            rows::probes(&self.probes, shown),
        ];
        self.reselect_all();
    }

    fn reselect_all(&mut self) {
        for panel in Panel::ALL {
            let page = self.page_of(panel);
            self.views[panel.index()].reselect(&self.tables[panel.index()], page);
        }
    }

    fn key(&mut self, key: Key) -> Option<Action> {
        self.status = None;
        if key == Key::Ctrl('c') {
            return Some(self.quit());
        }
        if self.filtering {
            self.filter_key(key);
            return None;
        }
        if self.help {
            match key {
                Key::Char('q') => return Some(self.quit()),
                Key::Char('?') | Key::Esc => self.help = false,
                _ => {}
            }
            return None;
        }
        match key {
            Key::Char('q') => return Some(self.quit()),
            Key::Char('e') => return Some(self.export()),
            Key::Char('?') => self.help = true,
            Key::Char(' ') => self.freeze(),
            Key::Tab => self.panel = self.panel.step(1),
            Key::BackTab => self.panel = self.panel.step(-1),
            Key::Char(d @ '1'..='6') => self.panel = Panel::ALL[d as usize - '1' as usize],
            Key::Char('/') if self.panel.is_table() => {
                self.filtering = true;
                self.views[self.panel.index()].detail = None;
            }
            Key::Char('s') if self.panel.is_table() => self.cycle_sort(),
            Key::Enter => self.drill_down(),
            Key::Esc => self.back(),
            _ => self.motion(key),
        }
        None
    }

    /// A key while typing the filter: it narrows the rows as it is typed; the arrows still
    /// move the selection.
    fn filter_key(&mut self, key: Key) {
        let view = &mut self.views[self.panel.index()];
        match key {
            Key::Up | Key::Down | Key::PageUp | Key::PageDown => return self.motion(key),
            Key::Char(c) => view.filter.push(c),
            Key::Backspace => {
                view.filter.pop();
            }
            Key::Enter => self.filtering = false,
            Key::Esc => {
                view.filter.clear();
                self.filtering = false;
            }
            _ => return,
        }
        let page = self.page();
        let i = self.panel.index();
        self.views[i].reselect(&self.tables[i], page);
    }

    /// Arrows, j/k, page and home/end: the selection, or the drill-down's scroll.
    fn motion(&mut self, key: Key) {
        let page = self.page();
        let by = match key {
            Key::Down | Key::Char('j') => 1,
            Key::Up | Key::Char('k') => -1,
            Key::PageDown => page as isize,
            Key::PageUp => -(page as isize),
            Key::End | Key::Char('G') => isize::MAX / 2,
            Key::Home | Key::Char('g') => isize::MIN / 2,
            _ => return,
        };
        let i = self.panel.index();
        let (view, data) = (&mut self.views[i], &self.tables[i]);
        match view.detail {
            Some(scroll) => view.detail = Some(scroll.saturating_add_signed(by).min(detail_len(view, data))),
            None => view.step(data, by, page),
        }
    }

    fn drill_down(&mut self) {
        let i = self.panel.index();
        if self.panel.is_table() && self.views[i].selected.is_some() {
            self.views[i].detail.get_or_insert(0);
        }
    }

    /// Esc: out of the drill-down, else the filter cleared.
    fn back(&mut self) {
        let i = self.panel.index();
        let view = &mut self.views[i];
        if view.detail.take().is_none() && !view.filter.is_empty() {
            view.filter.clear();
            let page = self.page();
            self.views[i].reselect(&self.tables[i], page);
        }
    }

    fn cycle_sort(&mut self) {
        let (i, page) = (self.panel.index(), self.page());
        self.views[i].cycle_sort(&self.tables[i]);
        self.views[i].reselect(&self.tables[i], page);
    }

    /// Space: freeze the display, or show the latest figures again.
    fn freeze(&mut self) {
        self.frozen = !self.frozen;
        if !self.frozen {
            self.held_ticks = 0;
            if let Some(latest) = self.held.take() {
                self.shown = Some(latest);
                self.rebuild();
            }
        }
    }

    /// The run ends once the tracer takes the key: the summary follows.
    fn quit(&mut self) -> Action {
        self.status = Some("quitting: the summary follows".into());
        Action::Quit
    }

    fn export(&mut self) -> Action {
        self.status = Some(match &self.report {
            Some(path) => format!("export requested: {path} is written at the next interval (and at the end)"),
            None => "export requested: no --report FILE was given".into(),
        });
        Action::Export
    }
}

/// The last line a drill-down can scroll to.
fn detail_len(view: &TableView, data: &TableData) -> usize {
    let row = view.selected.as_ref().and_then(|k| data.rows.iter().find(|r| &r.key == k));
    row.map_or(0, |r| r.detail.len().saturating_sub(1))
}
