use std::sync::Arc;

use ratatui::{backend::TestBackend, Terminal};
use tracer_common::{LatencyKind, ProbeRole, PROBES};

use super::{app::*, ui};
use crate::{
    engine::{
        bio::{Count, LeakKind, LeakReport, LedgerSnapshot, Timing, Totals},
        detect::{Judgement, Verdict},
        latency::{Key, Stats},
        pages::{PageSnapshot, PageTotals},
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

fn probes() -> Vec<ProbeOutcome> {
    let p = |target: &str, attached| {
        let def = *PROBES.iter().find(|d| d.target == target).expect("a probe of the catalogue");
        ProbeOutcome { def, attached, failures: Vec::new() }
    };
    vec![
        p("pin_user_pages_fast", Some(Method::Fexit)),
        p("unpin_user_pages", Some(Method::Fentry)),
        p("unpin_folio", None),
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
        vmstat: Some(FollPin { nr_foll_pin_acquired: 2048, nr_foll_pin_released: 2040 }),
        entry_points: vec![
            entry("pin_user_pages_fast", ProbeRole::Pin, 512, 2048),
            entry("unpin_user_pages", ProbeRole::Unpin, 510, 2040),
            entry("unpin_folio", ProbeRole::Unpin, 0, 0),
        ],
        block: Block { requests_issued: None, requests_completed: None, bytes_completed: None },
        command_exit_status: None,
        probes_missing: vec!["unpin_folio"],
        probes_skipped: vec![Skipped { target: "unpin_user_folio", runs: 1 }],
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
        leaks_not_listed: 0,
        mismatches: vec![],
        mismatches_not_listed: 0,
        pages_held: 9,
        pages_shared: 0,
    };
    BioLedger { ledger, judgement: Judgement { verdict: Verdict::LeaksFound, reasons: vec![] }, grace_s: 1.0 }
}

fn totals() -> Snapshot {
    let pages = PageTotals { pinned: 2048, pinned_longterm: 16, outstanding: 8, suspect: 1, ..PageTotals::default() };
    let proc = |tgid, comm: &str, pinned, unpinned| Process {
        tgid,
        comm: comm.into(),
        pages_pinned: pinned,
        pages_unpinned: unpinned,
    };
    let stats = Stats {
        count: 512,
        min_ns: 90_000,
        max_ns: 1_250_000,
        mean_ns: 200_000.0,
        stddev_ns: 1.0,
        percentiles: vec![(50.0, 180_300), (99.0, 410_900)],
        buckets: Vec::new(),
    };
    let all = Key { kind: LatencyKind::Q2c, dev: NVME, op: 0, size_class: None };
    let sized = Key { size_class: Some(12), ..all };
    Snapshot {
        figures: figures(Scope::Summary, 12.5, 12.5, (2048, 2040)),
        procs: vec![proc(412, "fio", 2040, 2032), proc(415, "leaker", 8, 0)].into(),
        latency: vec![(all, stats.clone()), (sized, stats)].into(),
        bios: Some(Arc::new(ledger())),
        pages: Some(Arc::new(PageSnapshot { totals: pages, paths: vec![], ages: vec![] })),
        names: Arc::new(NameTable::of(&[(NVME, "nvme0n1")], &[(0, "read")])),
        counters: Arc::new(Counters::default()),
        clock: Clock::default(),
    }
}

fn drawn(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("a test terminal");
    terminal.draw(|f| ui::render(app, f)).expect("drawing into memory");
    terminal.backend().to_string()
}

#[test]
fn before_the_first_figures_the_dashboard_says_it_waits_and_names_the_missing_probes() {
    let app = App::new("7.2.13", &probes(), Some("fio job.fio".into()));
    insta::assert_snapshot!(drawn(&app));
}

#[test]
fn figures_leaks_and_losses_are_shown() {
    let mut app = App::new("7.2.13", &probes(), Some("fio job.fio".into()));
    app.update(Msg::Tick { totals: totals(), interval: figures(Scope::Interval, 12.5, 1.0, (1024, 1020)) });
    let screen = drawn(&app);
    assert!(screen.contains("pinned 2048  unpinned 2040  net +8"));
    assert!(screen.contains("lost events: 3 (ring_full 2)"));
    assert!(screen.contains("runs the kernel skipped: unpin_user_folio 1"));
    assert!(screen.contains("leaker (415) nvme0n1 read: 1 pages"));
    insta::assert_snapshot!(screen);
}
