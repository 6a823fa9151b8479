//! The dashboard drawn into memory (insta snapshots): every panel with figures, empty, and on
//! a narrow terminal. The reducer's keys are in reducer_tests.rs.

use std::{collections::BTreeMap, sync::Arc};

use ratatui::{backend::TestBackend, Terminal};
use tracer_common::{LatencyKind, ProbeRole, PROBES};

use super::{app::*, ui};
use crate::{
    engine::{
        bio::{Count, LeakKind, LeakReport, LedgerSnapshot, MismatchReport, PagesSeen, Timing, Totals},
        detect::{Judgement, Verdict},
        latency::{Key as LatencyKey, Stats, BUCKETS_NS},
        pages::{Class, PageSnapshot, PageTotals, PathRow},
    },
    probes::{
        counters::Counters,
        plan::{Method, ProbeOutcome},
        vmstat::FollPin,
    },
    snapshot::{
        BioLedger, Block, Clock, EntryPoint, Figures, NameTable, PinAccounting, Process, Scope, Skipped, Snapshot,
    },
};

const NVME: u32 = 259 << 20;

pub fn probes() -> Vec<ProbeOutcome> {
    let p = |target: &str, attached, failures: Vec<(Method, String)>| {
        let def = *PROBES.iter().find(|d| d.target == target).expect("a probe of the catalogue");
        ProbeOutcome { def, off: false, attached, failures }
    };
    vec![
        p("pin_user_pages_fast", Some(Method::Fexit), vec![]),
        p("unpin_user_pages", Some(Method::Fentry), vec![]),
        p(
            "unpin_folio",
            None,
            vec![
                (Method::Fentry, "not in this kernel's BTF".into()),
                (Method::Kprobe, "no such symbol in kallsyms".into()),
            ],
        ),
    ]
}

fn figures(scope: Scope, elapsed_s: f64, span_s: f64, (pinned, unpinned): (u64, u64)) -> Figures {
    let entry = |function, role, calls, pages| EntryPoint { function, role, calls, pages };
    Figures {
        scope,
        elapsed_s,
        span_s,
        pages_pinned: pinned,
        pages_unpinned: unpinned,
        pin_accounting: PinAccounting::Measured,
        lost_events: 3,
        lost_by_reason: [("ring_full", 2)].into(),
        stacks_unread: 0,
        records_submitted: 0,
        records_read: 0,
        stack_paths: Default::default(),
        vmstat: Some(FollPin { nr_foll_pin_acquired: 2048, nr_foll_pin_released: 2040 }),
        entry_points: vec![
            entry("pin_user_pages_fast", ProbeRole::Pin, 512, 2048),
            entry("unpin_user_pages", ProbeRole::Unpin, 510, 2040),
            entry("unpin_folio", ProbeRole::Unpin, 0, 0),
        ],
        block: Block::NONE,
        command_exit_status: None,
        probes_missing: vec!["unpin_folio"],
        probes_skipped: vec![Skipped { target: "unpin_user_pages", runs: 1 }],
        verdict: Some(Verdict::LeaksFound),
        filter: None,
    }
}

fn ledger() -> BioLedger {
    let leak = LeakReport {
        kind: LeakKind::NotReleased,
        bio: 0xb000,
        tgid: 415,
        pid: 415,
        comm: "leaker".into(),
        cgroup: 1,
        dev: NVME,
        op: 0,
        pinned: true,
        pages: 1,
        first_page: 0x1000,
        acquired_age_ns: 3_200_000_000,
        ended_age_ns: Some(3_100_000_000),
        status: Some(0),
    };
    let seen = |pages| PagesSeen { vecs: 1, pages, pinned: true, first_page: 0x2000 };
    let mismatch = MismatchReport {
        bio: 0xc000,
        tgid: 412,
        pid: 413,
        comm: "fio".into(),
        dev: NVME,
        op: 1,
        acquired: seen(4),
        released: seen(3),
        differences: vec!["pages"],
        first_vec: Some(0),
    };
    let totals = Totals {
        in_flight: Count { bios: 1, pages: 8 },
        leaked: Count { bios: 1, pages: 1 },
        hold: Timing { count: 1, total_ns: 172_400, max_ns: 172_400 },
        unpin_lag: Timing { count: 1, total_ns: 19_500, max_ns: 19_500 },
        ..Totals::default()
    };
    let ledger = LedgerSnapshot {
        at_ns: 0,
        grace_ns: 1_000_000_000,
        totals,
        owners: vec![],
        devices: vec![],
        leaks: vec![leak],
        leaks_not_listed: 2,
        mismatches: vec![mismatch],
        mismatches_not_listed: 0,
        pages_held: 9,
        pages_shared: 0,
    };
    let reasons = vec!["1 bio completed more than 1 s ago still holds its pages".to_string()];
    BioLedger { ledger, judgement: Judgement { verdict: Verdict::LeaksFound, reasons }, grace_s: 1.0 }
}

fn paths() -> Vec<PathRow> {
    let path = |class, entry: &str, callers: &[&str], pages, outstanding, suspect| PathRow {
        class: Some(class),
        entry: entry.into(),
        callers: callers.iter().map(|c| c.to_string()).collect(),
        calls: pages / 4,
        pages,
        with_bio: pages - outstanding,
        released_by: BTreeMap::from([("unpin_user_pages <- __bio_release_pages".to_string(), pages - outstanding)]),
        released_dirty: 0,
        outstanding,
        suspect,
    };
    vec![
        path(
            Class::Pin,
            "pin_user_pages_fast",
            &["iov_iter_extract_pages", "bio_iov_iter_get_pages", "iomap_dio_bio_iter", "__iomap_dio_rw"],
            2032,
            0,
            0,
        ),
        path(Class::PinLongterm, "pin_user_pages", &["io_pin_pages", "io_sqe_buffer_register"], 16, 16, 0),
        path(Class::Pin, "pin_user_pages_fast", &["leaky_ioctl"], 8, 8, 1),
    ]
}

fn stats(count: u64, buckets: Vec<u64>) -> Stats {
    Stats {
        count,
        min_ns: 90_000,
        max_ns: 1_250_000,
        mean_ns: 200_000.0,
        stddev_ns: 1.0,
        percentiles: vec![(50.0, 180_300), (99.0, 410_900)],
        buckets,
    }
}

/// Latency buckets: a hump around 250 us.
fn buckets(scale: u64) -> Vec<u64> {
    let mut b = vec![0; BUCKETS_NS.len() + 1];
    b[3..8].copy_from_slice(&[10 * scale, 100 * scale, 300 * scale, 90 * scale, 12 * scale]);
    b
}

fn names() -> Arc<NameTable> {
    Arc::new(NameTable::of(&[(NVME, "nvme0n1")], &[(0, "read"), (1, "write")]))
}

fn proc(tgid: u32, comm: &str, pinned: u64, unpinned: u64) -> Process {
    Process { tgid, comm: comm.into(), cgroup: 1, pages_pinned: pinned, pages_unpinned: unpinned }
}

pub fn totals() -> Snapshot {
    let pages = PageTotals {
        pinned: 2048,
        pinned_longterm: 16,
        unpinned: 2024,
        unpinned_matched: 2024,
        outstanding: 24,
        suspect: 1,
        ..PageTotals::default()
    };
    let read = LatencyKey { kind: LatencyKind::Q2c, dev: NVME, op: 0, size_class: None };
    let write = LatencyKey { op: 1, ..read };
    let sized = LatencyKey { size_class: Some(12), ..read };
    Snapshot {
        figures: figures(Scope::Summary, 12.5, 12.5, (2048, 2040)),
        procs: vec![proc(412, "fio", 2040, 2032), proc(415, "leaker", 8, 0), proc(420, "qemu-system-x86", 16, 0)]
            .into(),
        latency: vec![(read, stats(512, buckets(1))), (sized, stats(512, buckets(1))), (write, stats(40, vec![]))]
            .into(),
        bios: Some(Arc::new(ledger())),
        pages: Some(Arc::new(PageSnapshot { totals: pages, paths: paths(), ages: vec![] })),
        names: names(),
        counters: Arc::new(Counters::default()),
        clock: Clock::default(),
    }
}

pub fn interval() -> Snapshot {
    let read = LatencyKey { kind: LatencyKind::Q2c, dev: NVME, op: 0, size_class: None };
    Snapshot {
        figures: figures(Scope::Interval, 12.5, 1.0, (1024, 1020)),
        procs: vec![proc(412, "fio", 1016, 1020), proc(415, "leaker", 8, 0)].into(),
        latency: vec![(read, stats(64, buckets(1).iter().map(|n| n / 8).collect()))].into(),
        bios: None,
        pages: None,
        names: names(),
        counters: Arc::new(Counters::default()),
        clock: Clock::default(),
    }
}

/// Figures of a run that pinned nothing.
fn quiet_figures(scope: Scope, span_s: f64) -> Figures {
    let mut f = figures(scope, 2.0, span_s, (0, 0));
    (f.lost_events, f.lost_by_reason, f.probes_skipped, f.verdict) = (0, BTreeMap::new(), vec![], Some(Verdict::Clean));
    f.vmstat = Some(FollPin { nr_foll_pin_acquired: 0, nr_foll_pin_released: 0 });
    f.entry_points.iter_mut().for_each(|e| (e.calls, e.pages) = (0, 0));
    f
}

/// A run that pinned nothing and found nothing.
fn quiet() -> Snapshot {
    let mut s = totals();
    s.figures = quiet_figures(Scope::Summary, 2.0);
    s.procs = vec![].into();
    s.latency = vec![].into();
    let mut bios = ledger();
    (bios.ledger.leaks, bios.ledger.mismatches, bios.ledger.leaks_not_listed) = (vec![], vec![], 0);
    bios.ledger.totals = Totals::default();
    bios.judgement = Judgement { verdict: Verdict::Clean, reasons: vec![] };
    s.bios = Some(Arc::new(bios));
    s.pages = Some(Arc::new(PageSnapshot::default()));
    s
}

/// The quiet run's last interval.
fn quiet_interval() -> Snapshot {
    let mut s = interval();
    s.figures = quiet_figures(Scope::Interval, 1.0);
    (s.procs, s.latency) = (vec![].into(), vec![].into());
    s
}

pub fn app() -> App {
    App::new("7.2.13", &probes(), Some("fio job.fio".into()))
}

/// The app with the test figures, on a terminal of this size.
pub fn ticked(size: (u16, u16)) -> App {
    let mut app = app();
    app.update(Msg::Resize(size.0, size.1));
    app.update(Msg::tick(totals(), interval()));
    app
}

pub fn keys(app: &mut App, keys: &[Key]) -> Vec<Option<Action>> {
    keys.iter().map(|&k| app.update(Msg::Key(k))).collect()
}

pub fn drawn_at(app: &App, (w, h): (u16, u16)) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
    terminal.draw(|f| ui::render(app, f)).expect("drawing into memory");
    terminal.backend().to_string()
}

fn drawn(app: &App) -> String {
    drawn_at(app, (120, 30))
}

fn on(mut app: App, panel: Panel) -> App {
    app.update(Msg::Key(Key::Char(char::from(b'1' + panel.index() as u8))));
    app
}

#[test]
fn before_the_first_figures_the_dashboard_says_it_waits_and_names_the_missing_probes() {
    insta::assert_snapshot!(drawn(&app()));
}

#[test]
fn overview_shows_rates_totals_losses_and_verdicts() {
    let mut app = ticked((120, 30));
    app.update(Msg::Log(vec!["[WARN] probe unpin_folio missing".into()]));
    let screen = drawn(&app);
    assert!(screen.contains("per second (last 1.0 s): 1024 pinned, 1020 unpinned"));
    assert!(screen.contains("since the start: pinned 2048  unpinned 2040  net +8"));
    assert!(screen.contains("lost records: 3 (last interval 3): ring_full 2"));
    assert!(screen.contains("runs the kernel skipped: unpin_user_pages 1"));
    assert!(screen.contains("[WARN] probe unpin_folio missing"));
    insta::assert_snapshot!(screen);
}

/// Requests completed without their issue seen are said on the overview, and nothing when none.
#[test]
fn overview_says_requests_completed_untimed() {
    assert!(!drawn(&ticked((120, 30))).contains("untimed"));
    let mut app = app();
    app.update(Msg::Resize(120, 30));
    let mut t = totals();
    (t.figures.block.requests_untimed, t.figures.block.starts_dropped) = (Some(3), Some(0));
    app.update(Msg::tick(t, interval()));
    let screen = drawn(&app);
    assert!(screen.contains("│  untimed: 3 requests (no issue seen), 0 starts dropped   │"), "{screen}");
}

#[test]
fn each_panel_with_figures() {
    for panel in &Panel::ALL[1..] {
        let screen = drawn(&on(ticked((120, 30)), *panel));
        insta::assert_snapshot!(format!("panel_{}", panel.title().replace(' ', "_").to_lowercase()), screen);
    }
}

#[test]
fn each_panel_empty() {
    for panel in Panel::ALL {
        let mut app = App::new("7.2.13", &[], None);
        app.update(Msg::tick(quiet(), quiet_interval()));
        let screen = drawn(&on(app, panel));
        insta::assert_snapshot!(format!("empty_{}", panel.title().replace(' ', "_").to_lowercase()), screen);
    }
}

#[test]
fn findings_say_no_findings_when_there_are_none() {
    let mut app = on(app(), Panel::Findings);
    app.update(Msg::tick(quiet(), interval()));
    assert!(drawn(&app).contains("no findings"));
}

#[test]
fn each_panel_on_a_narrow_terminal() {
    for panel in Panel::ALL {
        let screen = drawn_at(&on(ticked((60, 20)), panel), (60, 20));
        insta::assert_snapshot!(format!("narrow_{}", panel.title().replace(' ', "_").to_lowercase()), screen);
    }
}

#[test]
fn tiny_terminals_do_not_panic() {
    for size in [(1, 1), (10, 3), (20, 5), (40, 8), (60, 12)] {
        for panel in Panel::ALL {
            let mut app = on(ticked(size), panel);
            drawn_at(&app, size);
            keys(&mut app, &[Key::Enter, Key::Char('?')]);
            drawn_at(&app, size);
        }
    }
}

#[test]
fn a_call_path_drills_down_to_its_callers() {
    let mut app = on(ticked((120, 30)), Panel::CallPaths);
    keys(&mut app, &[Key::Enter]);
    let screen = drawn(&app);
    assert!(screen.contains("<- io_sqe_buffer_register"), "the selected row: most outstanding first");
    insta::assert_snapshot!(screen);
}

#[test]
fn the_filter_the_frozen_header_and_the_help() {
    let mut app = on(ticked((120, 30)), Panel::Processes);
    keys(&mut app, &[Key::Char(' '), Key::Char('/'), Key::Char('f'), Key::Char('i')]);
    app.update(Msg::tick(totals(), interval()));
    let screen = drawn(&app);
    assert!(screen.contains("FROZEN (1 new)"));
    assert!(screen.contains("/fi_"));
    insta::assert_snapshot!("filtering_frozen", screen);
    keys(&mut app, &[Key::Enter, Key::Char('?')]);
    let screen = drawn(&app);
    assert!(screen.contains("figures: the run so far"), "{screen}");
    insta::assert_snapshot!("help", screen);
}
