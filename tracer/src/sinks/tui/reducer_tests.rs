//! The reducer: every key, and the selection across ticks.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    app::{
        table::{SortBy, TableView},
        Action, Key, Msg, Panel,
    },
    terminal,
    tests::{app, drawn_at, interval, keys, ticked, totals},
};

fn selected(view: &TableView) -> Option<&str> {
    view.selected.as_deref()
}

#[test]
fn q_and_ctrl_c_quit_everywhere_but_q_is_text_in_the_filter() {
    let mut app = ticked((120, 30));
    assert_eq!(keys(&mut app, &[Key::Char('q')]), [Some(Action::Quit)]);
    assert_eq!(keys(&mut app, &[Key::Ctrl('c')]), [Some(Action::Quit)]);
    keys(&mut app, &[Key::Char('2'), Key::Char('/')]);
    assert_eq!(keys(&mut app, &[Key::Char('q')]), [None]);
    assert_eq!(app.view().filter, "q");
    assert_eq!(keys(&mut app, &[Key::Ctrl('c')]), [Some(Action::Quit)]);
    keys(&mut app, &[Key::Esc, Key::Char('?')]);
    assert_eq!(keys(&mut app, &[Key::Char('q')]), [Some(Action::Quit)], "q quits from the help too");
}

#[test]
fn tab_shift_tab_and_digits_move_between_panels() {
    let mut app = app();
    assert_eq!(app.panel, Panel::Overview);
    keys(&mut app, &[Key::Tab]);
    assert_eq!(app.panel, Panel::Processes);
    keys(&mut app, &[Key::BackTab, Key::BackTab]);
    assert_eq!(app.panel, Panel::Probes, "shift-tab wraps around");
    keys(&mut app, &[Key::Tab]);
    assert_eq!(app.panel, Panel::Overview, "tab wraps around");
    for (d, panel) in ('1'..='6').zip(Panel::ALL) {
        keys(&mut app, &[Key::Char(d)]);
        assert_eq!(app.panel, panel);
    }
    keys(&mut app, &[Key::Char('7'), Key::Char('0')]);
    assert_eq!(app.panel, Panel::Probes, "no such panel: nothing changes");
}

#[test]
fn arrows_and_j_k_move_the_selection_within_the_rows() {
    let mut app = ticked((120, 30));
    keys(&mut app, &[Key::Char('2')]);
    assert_eq!(selected(app.view()), Some("412"), "most pages pinned first");
    keys(&mut app, &[Key::Char('j')]);
    assert_eq!(selected(app.view()), Some("420"));
    keys(&mut app, &[Key::Down, Key::Down, Key::Down]);
    assert_eq!(selected(app.view()), Some("415"), "stops at the last row");
    keys(&mut app, &[Key::Char('k')]);
    assert_eq!(selected(app.view()), Some("420"));
    keys(&mut app, &[Key::Up, Key::Up]);
    assert_eq!(selected(app.view()), Some("412"), "stops at the first row");
    keys(&mut app, &[Key::End]);
    assert_eq!(selected(app.view()), Some("415"));
    keys(&mut app, &[Key::Home]);
    assert_eq!(selected(app.view()), Some("412"));
    keys(&mut app, &[Key::PageDown]);
    assert_eq!(selected(app.view()), Some("415"));
    keys(&mut app, &[Key::PageUp]);
    assert_eq!(selected(app.view()), Some("412"));
}

#[test]
fn each_panel_keeps_its_own_selection() {
    let mut app = ticked((120, 30));
    keys(&mut app, &[Key::Char('2'), Key::Char('j'), Key::Char('6'), Key::Char('j'), Key::Char('j')]);
    assert!(selected(app.view()).is_some_and(|k| k.ends_with(":unpin_folio")), "{:?}", app.view().selected);
    keys(&mut app, &[Key::Char('2')]);
    assert_eq!(selected(app.view()), Some("420"));
}

#[test]
fn the_selection_follows_its_row_across_ticks() {
    let mut app = ticked((120, 30));
    keys(&mut app, &[Key::Char('2'), Key::Char('j')]);
    assert_eq!((selected(app.view()), app.view().index), (Some("420"), 1));
    // The next tick: qemu pinned more than fio, its row moves up.
    let mut more = totals();
    let mut procs = more.procs.to_vec();
    procs[2].pages_pinned = 5000;
    more.procs = procs.into();
    app.update(Msg::tick(more.clone(), interval()));
    assert_eq!((selected(app.view()), app.view().index), (Some("420"), 0));
    // Its row gone: the selection stays at its place.
    keys(&mut app, &[Key::Char('j')]);
    let mut fewer = more;
    fewer.procs = fewer.procs.iter().filter(|p| p.tgid != 412).cloned().collect();
    app.update(Msg::tick(fewer, interval()));
    assert_eq!((selected(app.view()), app.view().index), (Some("415"), 1));
}

#[test]
fn enter_drills_down_and_esc_goes_back() {
    let mut app = ticked((120, 30));
    keys(&mut app, &[Key::Enter]);
    assert_eq!(app.views[0].detail, None, "the Overview has no rows");
    keys(&mut app, &[Key::Char('3'), Key::Enter]);
    assert_eq!(app.view().detail, Some(0));
    keys(&mut app, &[Key::Char('j'), Key::Down]);
    assert_eq!(app.view().detail, Some(2), "j/k scroll the details");
    let before = app.view().selected.clone();
    app.update(Msg::tick(totals(), interval()));
    assert_eq!((app.view().detail, &app.view().selected), (Some(2), &before), "a tick keeps the details open");
    keys(&mut app, &[Key::Esc]);
    assert_eq!(app.view().detail, None);
    assert_eq!(keys(&mut app, &[Key::Esc]), [None], "esc with nothing to close does nothing");
}

#[test]
fn slash_filters_the_rows_of_the_current_table() {
    let mut app = ticked((120, 30));
    keys(&mut app, &[Key::Char('2'), Key::Char('/')]);
    assert!(app.filtering);
    keys(&mut app, &[Key::Char('L'), Key::Char('E'), Key::Char('x')]);
    assert_eq!(app.view().shown(app.table()).len(), 0, "no comm has 'lex'");
    keys(&mut app, &[Key::Backspace]);
    let rows: Vec<&str> = app.view().shown(app.table()).iter().map(|r| r.key.as_str()).collect();
    assert_eq!(rows, ["415"], "case-insensitive: 'le' matches leaker");
    assert_eq!(selected(app.view()), Some("415"), "the selection moves into the rows shown");
    keys(&mut app, &[Key::Enter]);
    assert!(!app.filtering);
    assert_eq!(app.view().filter, "LE", "enter keeps the filter");
    keys(&mut app, &[Key::Char('j')]);
    assert_eq!(selected(app.view()), Some("415"), "keys move again once the filter is typed");
    keys(&mut app, &[Key::Char('/'), Key::Backspace, Key::Backspace, Key::Up]);
    assert_eq!((app.filtering, selected(app.view())), (true, Some("420")), "arrows move while typing");
    keys(&mut app, &[Key::Char('z'), Key::Esc]);
    assert_eq!((app.filtering, app.view().filter.as_str()), (false, ""), "esc clears it");
    keys(&mut app, &[Key::Char('/'), Key::Char('f'), Key::Enter, Key::Esc]);
    assert_eq!(app.view().filter, "", "esc outside the filter clears it too");
    keys(&mut app, &[Key::Char('1'), Key::Char('/')]);
    assert!(!app.filtering, "the Overview has no rows to filter");
}

#[test]
fn s_cycles_the_sort_column() {
    let mut app = ticked((120, 30));
    keys(&mut app, &[Key::Char('2')]);
    assert_eq!(app.view().sort_by(app.table()), SortBy::Given);
    keys(&mut app, &[Key::Char('s')]);
    assert_eq!(app.view().sort_by(app.table()), SortBy::Column(0));
    let tgids: Vec<&str> = app.view().shown(app.table()).iter().map(|r| r.key.as_str()).collect();
    assert_eq!(tgids, ["420", "415", "412"], "numbers largest first");
    keys(&mut app, &[Key::Char('s')]);
    let comms: Vec<&str> = app.view().shown(app.table()).iter().map(|r| r.key.as_str()).collect();
    assert_eq!(comms, ["412", "415", "420"], "text alphabetically: fio, leaker, qemu");
    for _ in 2..app.table().columns.len() {
        keys(&mut app, &[Key::Char('s')]);
    }
    assert_eq!(app.view().sort_by(app.table()), SortBy::Column(app.table().columns.len() - 1));
    keys(&mut app, &[Key::Char('s')]);
    assert_eq!(app.view().sort_by(app.table()), SortBy::Given, "then back to the order given");
    keys(&mut app, &[Key::Char('3')]);
    assert_eq!(app.view().sort_by(app.table()), SortBy::Column(6), "call paths: most outstanding first");
}

#[test]
fn space_freezes_the_display_and_keeps_the_ticks() {
    let mut app = app();
    keys(&mut app, &[Key::Char(' ')]);
    assert!(app.frozen);
    app.update(Msg::tick(totals(), interval()));
    assert!(app.shown.is_none(), "not shown while frozen");
    assert_eq!(app.held_ticks, 1);
    keys(&mut app, &[Key::Char(' ')]);
    assert!(!app.frozen);
    assert!(app.shown.is_some(), "the latest figures once unfrozen");
    assert_eq!((app.held_ticks, app.held.is_none()), (0, true));
}

#[test]
fn e_asks_for_an_export() {
    let mut app = app();
    assert_eq!(keys(&mut app, &[Key::Char('e')]), [Some(Action::Export)]);
    assert_eq!(app.status.as_deref(), Some("export requested: no --report FILE was given"));
    let mut app = app.with_report(Some("run.html".into()));
    assert_eq!(keys(&mut app, &[Key::Char('e')]), [Some(Action::Export)]);
    assert_eq!(
        app.status.as_deref(),
        Some("export requested: run.html is written at the next interval (and at the end)")
    );
    keys(&mut app, &[Key::Tab]);
    assert_eq!(app.status, None, "until the next key");
}

#[test]
fn question_mark_toggles_the_help() {
    let mut app = app();
    keys(&mut app, &[Key::Char('?')]);
    assert!(app.help);
    keys(&mut app, &[Key::Tab]);
    assert_eq!((app.help, app.panel), (true, Panel::Overview), "the help takes the keys");
    keys(&mut app, &[Key::Char('?')]);
    assert!(!app.help);
    keys(&mut app, &[Key::Char('?'), Key::Esc]);
    assert!(!app.help, "esc closes it too");
}

#[test]
fn resize_and_logs_update_the_state() {
    let mut app = app();
    assert_eq!(app.update(Msg::Resize(60, 20)), None);
    assert_eq!(app.size, (60, 20));
    for i in 0..60 {
        app.update(Msg::Log(vec![format!("line {i}")]));
    }
    assert_eq!((app.logs.len(), app.logs[0].as_str()), (50, "line 10"), "the latest 50 lines");
}

#[test]
fn terminal_keys_become_app_keys() {
    let press = |code, modifiers| Event::Key(KeyEvent::new(code, modifiers));
    let key = |code| terminal::message(&press(code, KeyModifiers::NONE));
    let is = |m: Option<Msg>, k: Key| matches!(m, Some(Msg::Key(x)) if x == k);
    assert!(is(key(KeyCode::Char('q')), Key::Char('q')));
    assert!(is(terminal::message(&press(KeyCode::Char('c'), KeyModifiers::CONTROL)), Key::Ctrl('c')));
    assert!(is(terminal::message(&press(KeyCode::Tab, KeyModifiers::SHIFT)), Key::BackTab));
    assert!(is(key(KeyCode::BackTab), Key::BackTab));
    assert!(is(key(KeyCode::Enter), Key::Enter));
    assert!(is(key(KeyCode::Esc), Key::Esc));
    assert!(matches!(terminal::message(&Event::Resize(60, 20)), Some(Msg::Resize(60, 20))));
    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    assert!(terminal::message(&Event::Key(release)).is_none(), "a release is not a key");
    assert!(key(KeyCode::F(1)).is_none());
}

/// The real terminal: opened, fed a tick, a quit key from stdin, closed and restored. Needs a
/// terminal, so not run by default: `script -qec "cargo test -p tracer dashboard_on_a_terminal
/// -- --ignored" /dev/null` with `q` typed (or piped) into it.
#[test]
#[ignore = "needs a terminal on stdin and stdout"]
fn dashboard_on_a_terminal() {
    use std::time::{Duration, Instant};

    terminal::need_terminal().expect("a terminal");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let requests = terminal::Requests { quit: tx, export: None };
    let mut screen = terminal::Screen::open(app(), requests).expect("the screen opens");
    screen.show(Msg::tick(totals(), interval())).expect("a tick");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.try_recv().is_err() {
        assert!(Instant::now() < deadline, "no quit key within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(screen);
    assert!(!terminal::is_open(), "the terminal is restored");
}

/// A panic while the dashboard is open gives the terminal back first (the panic hook). Needs a
/// terminal, as above.
#[test]
#[ignore = "needs a terminal on stdin and stdout"]
fn a_panic_restores_the_terminal() {
    terminal::need_terminal().expect("a terminal");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let screen =
        terminal::Screen::open(app(), terminal::Requests { quit: tx, export: None }).expect("the screen opens");
    assert!(terminal::is_open());
    let panicked = std::panic::catch_unwind(|| panic!("a bug while the dashboard is open"));
    assert!(panicked.is_err());
    assert!(!terminal::is_open(), "the hook restored the terminal before the panic was reported");
    drop(screen);
}

/// `e` sets the flag the report sink reads: at the next interval it writes the run so far; a
/// write that fails does not end the run.
#[test]
fn export_makes_the_report_sink_write_the_run_so_far() {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };

    use crate::sinks::{
        report::{ReportFormat, ReportSink, Settings},
        Sink,
    };

    let dir = std::env::temp_dir().join(format!("tracer-export-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = || Settings { leak_grace_s: 1.0, percentiles: vec![50.0, 99.0], command: vec![] };
    let asked = Arc::new(AtomicBool::new(false));
    let path = dir.join("r.json");
    let mut sink = ReportSink::new(path.clone(), ReportFormat::Json, settings()).export_on(asked.clone());
    assert!(sink.wants_totals());
    sink.interval(&interval(), Some(&totals())).unwrap();
    assert!(!path.exists(), "not asked yet");
    asked.store(true, Ordering::Relaxed);
    sink.interval(&interval(), Some(&totals())).unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains("tracer-report"), "the report's JSON document: {written}");
    assert!(!asked.load(Ordering::Relaxed), "once per request");
    let mut bad = ReportSink::new(dir.join("no/such/r.json"), ReportFormat::Json, settings()).export_on(asked.clone());
    asked.store(true, Ordering::Relaxed);
    assert!(bad.interval(&interval(), Some(&totals())).is_ok(), "the run goes on");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn g_and_shift_g_go_to_the_ends_and_a_long_table_scrolls() {
    let mut app = ticked((120, 12));
    let mut many = totals();
    many.procs = (1..=40)
        .map(|t| crate::snapshot::Process {
            tgid: t,
            comm: format!("p{t}"),
            cgroup: 1,
            pages_pinned: u64::from(t),
            pages_unpinned: 0,
        })
        .collect();
    app.update(Msg::tick(many, interval()));
    keys(&mut app, &[Key::Char('2'), Key::Char('G')]);
    assert_eq!(selected(app.view()), Some("1"), "the last row: fewest pinned");
    let page = app.page();
    assert_eq!(page, 12 - 3 - 3, "the terminal less header, tabs, status, borders, titles");
    assert_eq!(app.view().offset, 40 - page, "scrolled to show the last row");
    let screen = drawn_at(&app, (120, 12));
    assert!(
        screen.contains("> 1 ") && screen.contains(&format!(" p{} ", page)) && !screen.contains(" p7 "),
        "{screen}"
    );
    keys(&mut app, &[Key::Char('g')]);
    assert_eq!((selected(app.view()), app.view().offset), (Some("40"), 0));
    keys(&mut app, &[Key::PageDown, Key::PageDown]);
    assert_eq!(app.view().index, 2 * page);
    assert!(app.view().offset <= app.view().index && app.view().index < app.view().offset + page);
}
