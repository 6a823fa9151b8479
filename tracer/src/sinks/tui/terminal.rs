//! The terminal of the live dashboard: the alternate screen in raw mode while it is open,
//! restored when it is closed or dropped, and on a panic. A thread of its own owns the screen
//! and the [`App`]: it reads every key, takes the ticks the sink sends it, updates the app and
//! redraws; the tracer's loop only sends (never waits on the terminal). What is drawn is ui's.

use std::{
    io::IsTerminal,
    panic,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, Sender, TryRecvError},
        Arc, Once,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use ratatui::{
    backend::CrosstermBackend,
    crossterm::{
        event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
        execute,
        terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen},
    },
    DefaultTerminal, Terminal,
};
use tokio::sync::mpsc::UnboundedSender;

use super::{
    app::{Action, App, Key, Msg},
    logs, ui,
};

/// How long the screen's thread waits for a key before it looks for ticks.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
#[error("--format tui needs a terminal (stdin and stdout); use --format text or json otherwise")]
pub struct NoTerminal;

/// The dashboard draws on stdout and reads its keys from stdin: both must be a terminal.
pub fn need_terminal() -> Result<(), NoTerminal> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(NoTerminal);
    }
    Ok(())
}

/// An I/O error with what it stopped.
fn failed(what: &str) -> impl Fn(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Whether the screen is in raw mode on the alternate screen (what the panic hook undoes).
static OPEN: AtomicBool = AtomicBool::new(false);

/// Whether the dashboard holds the terminal (raw mode, alternate screen).
#[cfg(test)]
pub fn is_open() -> bool {
    OPEN.load(Ordering::SeqCst)
}

/// Leaves the alternate screen and raw mode, if the dashboard had them.
fn restore() {
    if OPEN.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
    }
}

/// Once: a panic (on any thread) first gives the terminal back, then reports as before.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

fn open_terminal() -> std::io::Result<DefaultTerminal> {
    install_panic_hook();
    enable_raw_mode()?;
    OPEN.store(true, Ordering::SeqCst);
    execute!(std::io::stdout(), EnterAlternateScreen).inspect_err(|_| restore())?;
    Terminal::new(CrosstermBackend::new(std::io::stdout())).inspect_err(|_| restore())
}

/// Where the dashboard's [`Action`]s go.
pub struct Requests {
    /// Quit: the run ends.
    pub quit: UnboundedSender<()>,
    /// Export: set for the report sink (None: no --report file).
    pub export: Option<Arc<AtomicBool>>,
}

/// The open dashboard: its thread, and the way to send it messages.
pub struct Screen {
    msgs: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl Screen {
    /// The caller has checked [`need_terminal`] (before loading the probes).
    pub fn open(mut app: App, requests: Requests) -> std::io::Result<Screen> {
        let mut terminal = open_terminal().map_err(failed("setting up the terminal for the dashboard"))?;
        let size = terminal.size().inspect_err(|_| restore()).map_err(failed("reading the terminal's size"))?;
        app.update(Msg::Resize(size.width, size.height));
        terminal.draw(|f| ui::render(&app, f)).inspect_err(|_| restore()).map_err(failed("drawing the dashboard"))?;
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || run(terminal, app, &rx, &requests))
            .inspect_err(|_| restore())
            .map_err(failed("starting the dashboard"))?;
        Ok(Screen { msgs: Some(tx), thread: Some(thread) })
    }

    /// Hands `msg` to the dashboard's thread (it redraws).
    pub fn show(&mut self, msg: Msg) -> std::io::Result<()> {
        // A thread that ended (its terminal failed) takes no more: the run goes on headless.
        if let Some(tx) = &self.msgs {
            let _ = tx.send(msg);
        }
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // The thread ends when its channel closes.
        self.msgs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        restore();
    }
}

/// The dashboard's thread: keys and ticks into the app, the app onto the screen, until the
/// sink closes the channel.
fn run(mut terminal: DefaultTerminal, mut app: App, msgs: &Receiver<Msg>, requests: &Requests) {
    let mut logged = 0;
    loop {
        let mut changed = false;
        let lines = logs::lines_since(&mut logged);
        if !lines.is_empty() {
            app.update(Msg::Log(lines));
            changed = true;
        }
        loop {
            match msgs.try_recv() {
                Ok(msg) => {
                    act(app.update(msg), requests);
                    changed = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        match event::poll(POLL) {
            Ok(true) => match event::read() {
                Ok(ev) => {
                    if let Some(msg) = message(&ev) {
                        act(app.update(msg), requests);
                        changed = true;
                    }
                }
                Err(e) => log::warn!("dashboard: reading the terminal: {e}"),
            },
            Ok(false) => {}
            Err(e) => {
                log::warn!("dashboard: reading the terminal: {e}");
                thread::sleep(POLL);
            }
        }
        if changed {
            if let Err(e) = terminal.draw(|f| ui::render(&app, f)) {
                log::warn!("dashboard: drawing: {e}; the run goes on without it");
                return;
            }
        }
    }
}

/// Does what the app asked.
fn act(action: Option<Action>, requests: &Requests) {
    match action {
        Some(Action::Quit) => {
            let _ = requests.quit.send(());
        }
        Some(Action::Export) => {
            if let Some(asked) = &requests.export {
                asked.store(true, Ordering::Relaxed);
            }
        }
        None => {}
    }
}

/// The app's message for a terminal event, if it has one.
pub fn message(ev: &Event) -> Option<Msg> {
    match *ev {
        Event::Key(k) => key(k).map(Msg::Key),
        Event::Resize(w, h) => Some(Msg::Resize(w, h)),
        _ => None,
    }
}

/// The app's key for a terminal key press (repeats too; releases are not keys).
pub fn key(ev: KeyEvent) -> Option<Key> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    Some(match ev.code {
        KeyCode::Char(c) if ev.modifiers.contains(KeyModifiers::CONTROL) => Key::Ctrl(c.to_ascii_lowercase()),
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Tab if ev.modifiers.contains(KeyModifiers::SHIFT) => Key::BackTab,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}
