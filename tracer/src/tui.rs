//! The live dashboard (`tracer run --format tui`): state -> update -> render, pure. It is fed
//! the same records the text and NDJSON formats print (cumulative since the start, and the
//! last interval), and draws them with ratatui; run.rs owns the terminal and the keyboard.

use ratatui::{
    layout::{Constraint, Direction, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Table},
    Frame,
};

use crate::output::{Figures, LatencyRecord, LedgerRecord, PageLedgerRecord, ProbeRecord, ProcessRecord};

/// What the dashboard shows at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub elapsed_s: f64,
    /// FOLL_PIN pages from the kernel's own accounting, since the start; None when its probe is
    /// missing (unverifiable).
    pub pins: Option<(u64, u64)>,
    /// The same over the last interval, per second.
    pub rate: Option<(f64, f64)>,
    /// /proc/vmstat nr_foll_pin_acquired / released deltas since the start.
    pub vmstat: Option<(u64, u64)>,
    pub lost: u64,
    pub lost_why: Vec<(String, u64)>,
    /// Probes the kernel skipped, and how often (counted in `lost`).
    pub skipped: Vec<(String, u64)>,
    pub ledger_verdict: String,
    pub bios_in_flight: u64,
    pub bio_pages_in_flight: u64,
    pub bio_pages_leaked: u64,
    pub hold_mean_ns: Option<u64>,
    pub unpin_lag_mean_ns: Option<u64>,
    pub pinned: u64,
    pub pinned_longterm: u64,
    pub outstanding: u64,
    pub outstanding_owner_exited: u64,
    pub suspect: u64,
    pub referenced: u64,
    /// (tgid, comm, pages pinned, pages unpinned), most pinned first.
    pub procs: Vec<(u32, String, u64, u64)>,
    /// (function, role, calls, pages).
    pub entry_points: Vec<(String, String, u64, u64)>,
    /// Every size together, per figure, device and operation.
    pub latency: Vec<LatencyRow>,
    /// (comm, tgid, device, op, pages, seconds since acquired).
    pub leaks: Vec<(String, u32, String, String, u64, f64)>,
}

impl View {
    /// From the records of a run so far (`summary`: cumulative figures) and of its last
    /// interval.
    pub fn from_records(
        summary: &Figures,
        interval: Option<&Figures>,
        procs: &[ProcessRecord],
        latency: &[LatencyRecord],
        ledger: &LedgerRecord,
        pages: &PageLedgerRecord,
    ) -> View {
        let measured = summary.pin_accounting == "measured";
        let pct = |r: &LatencyRecord, key: &str| r.percentiles.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
        let mut procs: Vec<(u32, String, u64, u64)> =
            procs.iter().map(|p| (p.tgid, p.comm.clone(), p.pages_pinned, p.pages_unpinned)).collect();
        procs.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        View {
            elapsed_s: summary.elapsed_s,
            pins: measured.then_some((summary.pages_pinned, summary.pages_unpinned)),
            rate: interval.filter(|f| measured && f.span_s > 0.0).map(|f| {
                (f.pages_pinned as f64 / f.span_s, f.pages_unpinned as f64 / f.span_s)
            }),
            vmstat: summary.vmstat.map(|v| (v.nr_foll_pin_acquired, v.nr_foll_pin_released)),
            lost: summary.lost_events,
            lost_why: summary.lost_by_reason.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            skipped: summary.probes_skipped.iter().map(|s| (s.target.to_string(), s.runs)).collect(),
            ledger_verdict: ledger.verdict.to_string(),
            bios_in_flight: ledger.in_flight.bios,
            bio_pages_in_flight: ledger.in_flight.pages,
            bio_pages_leaked: ledger.leaked.pages,
            hold_mean_ns: ledger.hold.mean_ns,
            unpin_lag_mean_ns: ledger.unpin_lag.mean_ns,
            pinned: pages.totals.pinned,
            pinned_longterm: pages.totals.pinned_longterm,
            outstanding: pages.totals.outstanding,
            outstanding_owner_exited: pages.totals.outstanding_owner_exited,
            suspect: pages.totals.suspect,
            referenced: pages.totals.referenced,
            procs,
            entry_points: summary
                .entry_points
                .iter()
                .filter(|e| e.calls > 0)
                .map(|e| (e.function.to_string(), e.role.to_string(), e.calls, e.pages))
                .collect(),
            latency: latency
                .iter()
                .filter(|r| r.size == "all")
                .map(|r| LatencyRow {
                    figure: r.figure.to_string(),
                    device: r.device.clone(),
                    op: r.op.clone(),
                    count: r.count,
                    p50_ns: pct(r, "p50"),
                    p99_ns: pct(r, "p99"),
                    max_ns: r.max_ns,
                })
                .collect(),
            leaks: ledger
                .leaks
                .iter()
                .map(|l| (l.comm.clone(), l.tgid, l.device.clone(), l.op.clone(), l.pages, l.acquired_age_ns as f64 / 1e9))
                .collect(),
        }
    }
}

/// One latency row of the dashboard.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyRow {
    pub figure: String,
    pub device: String,
    pub op: String,
    pub count: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

/// What changes the dashboard.
pub enum Msg {
    /// New figures (every interval).
    View(Box<View>),
}

/// The dashboard's state.
pub struct Dashboard {
    kernel: String,
    attached: usize,
    missing: Vec<String>,
    command: Option<String>,
    view: Option<View>,
}

impl Dashboard {
    pub fn new(kernel: &str, probes: &[ProbeRecord], command: Option<String>) -> Dashboard {
        Dashboard {
            kernel: kernel.to_string(),
            attached: probes.iter().filter(|p| p.attached.is_some()).count(),
            missing: probes.iter().filter(|p| p.attached.is_none()).map(|p| p.target.to_string()).collect(),
            command,
            view: None,
        }
    }

    pub fn update(&mut self, msg: Msg) {
        match msg {
            Msg::View(v) => self.view = Some(*v),
        }
    }

    pub fn render(&self, frame: &mut Frame) {
        let Some(v) = &self.view else {
            let area = frame.area();
            frame.render_widget(Paragraph::new(vec![self.title(&View::default()), Line::from(""),
                Line::from("waiting for the first figures (one every interval)"), Line::from(""), self.footer()]), area);
            return;
        };
        let rows = Layout::default()
            .direction(Direction::Vertical)
            .constraints([
                Constraint::Length(1),
                Constraint::Length(8),
                Constraint::Min(6),
                Constraint::Length(7),
                Constraint::Length(1),
            ])
            .split(frame.area());
        frame.render_widget(Paragraph::new(self.title(v)), rows[0]);
        let top = halves(rows[1]);
        frame.render_widget(Paragraph::new(pins_lines(v)).block(boxed("FOLL_PIN pages (kernel accounting)")), top[0]);
        frame.render_widget(Paragraph::new(ledger_lines(v)).block(boxed("Ledgers")), top[1]);
        let middle = halves(rows[2]);
        frame.render_widget(procs_table(v).block(boxed("Processes (pages since start)")), middle[0]);
        frame.render_widget(entry_table(v).block(boxed("Entry points")), middle[1]);
        let bottom = halves(rows[3]);
        frame.render_widget(latency_table(v).block(boxed("DIO latency, cumulative (us)")), bottom[0]);
        frame.render_widget(Paragraph::new(leak_lines(v)).block(boxed("Leak suspects (bios)")), bottom[1]);
        frame.render_widget(Paragraph::new(self.footer()), rows[4]);
    }

    fn title(&self, v: &View) -> Line<'static> {
        let mut spans = vec![
            Span::styled("tracer", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!("  kernel {}  {:.1} s", self.kernel, v.elapsed_s)),
        ];
        if let Some(c) = &self.command {
            spans.push(Span::raw(format!("  command: {c}")));
        }
        Line::from(spans)
    }

    fn footer(&self) -> Line<'static> {
        let mut s = format!("probes: {} attached", self.attached);
        if !self.missing.is_empty() {
            s.push_str(&format!(", {} missing ({}): their figures are unverifiable", self.missing.len(), self.missing.join(", ")));
        }
        s.push_str("   q: quit");
        Line::from(s)
    }
}

fn halves(area: Rect) -> std::rc::Rc<[Rect]> {
    Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(area)
}

fn boxed(title: &str) -> Block<'_> {
    Block::default().borders(Borders::ALL).title(title)
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

fn pins_lines(v: &View) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    match v.pins {
        Some((p, u)) => {
            out.push(Line::from(format!("pinned {p}  unpinned {u}  net {:+}", p as i128 - u as i128)));
            if let Some((rp, ru)) = v.rate {
                out.push(Line::from(format!("last interval: {rp:.0}/s pinned, {ru:.0}/s unpinned")));
            }
        }
        None => out.push(Line::from("unverifiable (mod_node_page_state probe missing)")),
    }
    if let Some((a, r)) = v.vmstat {
        out.push(Line::from(format!("/proc/vmstat: acquired +{a}  released +{r}")));
    }
    let lost_style = if v.lost > 0 { Style::default().fg(Color::Red) } else { Style::default() };
    let mut lost = format!("lost events: {}", v.lost);
    if !v.lost_why.is_empty() {
        let why: Vec<String> = v.lost_why.iter().map(|(k, n)| format!("{k} {n}")).collect();
        lost.push_str(&format!(" ({})", why.join(", ")));
    }
    out.push(Line::styled(lost, lost_style));
    if !v.skipped.is_empty() {
        let runs: Vec<String> = v.skipped.iter().map(|(t, n)| format!("{t} {n}")).collect();
        out.push(Line::styled(format!("  runs the kernel skipped: {}", runs.join(", ")), lost_style));
    }
    out
}

fn ledger_lines(v: &View) -> Vec<Line<'static>> {
    let verdict_style = match v.ledger_verdict.as_str() {
        "clean" => Style::default().fg(Color::Green),
        "unverifiable" => Style::default().fg(Color::Yellow),
        _ => Style::default().fg(Color::Red),
    };
    let mean = |t: Option<u64>| t.map_or("-".to_string(), |ns| format!("{} us", us(ns)));
    vec![
        Line::from(vec![Span::raw("bio ledger: "), Span::styled(v.ledger_verdict.clone(), verdict_style)]),
        Line::from(format!(
            "  in flight {} bios / {} pages, leaked {} pages",
            v.bios_in_flight, v.bio_pages_in_flight, v.bio_pages_leaked
        )),
        Line::from(format!("  hold mean {}, completion->unpin mean {}", mean(v.hold_mean_ns), mean(v.unpin_lag_mean_ns))),
        Line::from(format!("pins: {} ({} long-term), referenced (FOLL_GET) {}", v.pinned, v.pinned_longterm, v.referenced)),
        Line::from(format!(
            "  outstanding {}, owner exited {}, suspects {}",
            v.outstanding, v.outstanding_owner_exited, v.suspect
        )),
    ]
}

fn header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.iter().map(|c| Cell::from(*c))).style(Style::default().add_modifier(Modifier::BOLD))
}

fn procs_table(v: &View) -> Table<'static> {
    let rows = v.procs.iter().map(|(tgid, comm, p, u)| Row::new([tgid.to_string(), comm.clone(), p.to_string(), u.to_string()]));
    Table::new(rows, [Constraint::Length(8), Constraint::Length(16), Constraint::Length(10), Constraint::Length(10)])
        .header(header(&["TGID", "COMM", "PINNED", "UNPINNED"]))
}

fn entry_table(v: &View) -> Table<'static> {
    let rows = v.entry_points.iter().map(|(f, role, calls, pages)| Row::new([f.clone(), role.clone(), calls.to_string(), pages.to_string()]));
    Table::new(rows, [Constraint::Min(20), Constraint::Length(6), Constraint::Length(9), Constraint::Length(9)])
        .header(header(&["FUNCTION", "ROLE", "CALLS", "PAGES"]))
}

fn latency_table(v: &View) -> Table<'static> {
    let rows = v.latency.iter().map(|r| {
        Row::new([r.figure.clone(), r.device.clone(), r.op.clone(), r.count.to_string(), us(r.p50_ns), us(r.p99_ns), us(r.max_ns)])
    });
    Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(9),
        ],
    )
    .header(header(&["FIG", "DEVICE", "OP", "COUNT", "P50", "P99", "MAX"]))
}

fn leak_lines(v: &View) -> Vec<Line<'static>> {
    if v.leaks.is_empty() {
        return vec![Line::from("none")];
    }
    v.leaks
        .iter()
        .map(|(comm, tgid, dev, op, pages, age)| {
            Line::styled(format!("{comm} ({tgid}) {dev} {op}: {pages} pages, acquired {age:.1} s ago"), Style::default().fg(Color::Red))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ratatui::{backend::TestBackend, Terminal};

    use super::*;

    fn probes() -> Vec<ProbeRecord> {
        let p = |target, attached| ProbeRecord { kind: "probe", target, role: "pin", attached, reasons: Vec::new() };
        vec![p("pin_user_pages_fast", Some("fexit")), p("unpin_user_pages", Some("fentry")), p("unpin_folio", None)]
    }

    fn view() -> View {
        View {
            elapsed_s: 12.5,
            pins: Some((2048, 2040)),
            rate: Some((1024.0, 1020.0)),
            vmstat: Some((2048, 2040)),
            lost: 3,
            lost_why: vec![("ring_full".into(), 2)],
            skipped: vec![("mod_node_page_state".into(), 1)],
            ledger_verdict: "leaks found".into(),
            bios_in_flight: 1,
            bio_pages_in_flight: 8,
            bio_pages_leaked: 1,
            hold_mean_ns: Some(172_400),
            unpin_lag_mean_ns: Some(19_500),
            pinned: 2048,
            pinned_longterm: 16,
            outstanding: 8,
            outstanding_owner_exited: 0,
            suspect: 1,
            referenced: 0,
            procs: vec![(412, "fio".into(), 2040, 2032), (415, "leaker".into(), 8, 0)],
            entry_points: vec![
                ("pin_user_pages_fast".into(), "pin".into(), 512, 2048),
                ("unpin_user_pages".into(), "unpin".into(), 510, 2040),
            ],
            latency: vec![LatencyRow {
                figure: "q2c".into(),
                device: "nvme0n1".into(),
                op: "read".into(),
                count: 512,
                p50_ns: 180_300,
                p99_ns: 410_900,
                max_ns: 1_250_000,
            }],
            leaks: vec![("leaker".into(), 415, "nvme0n1".into(), "read".into(), 1, 3.2)],
        }
    }

    fn drawn(d: &Dashboard) -> String {
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("a test terminal");
        terminal.draw(|f| d.render(f)).expect("drawing into memory");
        terminal.backend().to_string()
    }

    #[test]
    fn before_the_first_figures_the_dashboard_says_it_waits_and_names_the_missing_probes() {
        let d = Dashboard::new("7.2.13", &probes(), Some("fio job.fio".into()));
        insta::assert_snapshot!(drawn(&d));
    }

    #[test]
    fn figures_leaks_and_losses_are_shown() {
        let mut d = Dashboard::new("7.2.13", &probes(), Some("fio job.fio".into()));
        d.update(Msg::View(Box::new(view())));
        let screen = drawn(&d);
        assert!(screen.contains("pinned 2048  unpinned 2040  net +8"));
        assert!(screen.contains("lost events: 3 (ring_full 2)"));
        assert!(screen.contains("runs the kernel skipped: mod_node_page_state 1"));
        assert!(screen.contains("leaker (415) nvme0n1 read: 1 pages"));
        insta::assert_snapshot!(screen);
    }
}
