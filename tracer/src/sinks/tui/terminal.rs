//! The terminal of the live dashboard (`--format tui`): the alternate screen in raw mode while
//! it is open, restored when it is dropped (also on an error or a panic), and the keys that
//! ask to quit. What is drawn is ui.rs's.

use std::{
    io::IsTerminal,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    DefaultTerminal,
};
use tokio::sync::mpsc::UnboundedSender;

use super::{
    app::{App, Msg},
    ui,
};

pub struct Screen {
    terminal: DefaultTerminal,
    app: App,
    stop_keys: Arc<AtomicBool>,
}

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

impl Screen {
    /// The caller has checked [`need_terminal`] (before loading the probes).
    /// A quit key sends on `quit`.
    pub fn open(app: App, quit: UnboundedSender<()>) -> std::io::Result<Screen> {
        // Sets a panic hook that restores the terminal first.
        let mut terminal = ratatui::try_init().map_err(failed("setting up the terminal for the dashboard"))?;
        let tx = quit;
        let stop_keys = Arc::new(AtomicBool::new(false));
        let stop = stop_keys.clone();
        // Raw mode: Ctrl-C is a key, not SIGINT.
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => break,
                }
                let Ok(Event::Key(key)) = event::read() else { continue };
                let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if key.kind == KeyEventKind::Press
                    && (ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc))
                {
                    let _ = tx.send(());
                    break;
                }
            }
        });
        terminal.draw(|f| ui::render(&app, f)).map_err(failed("drawing the dashboard"))?;
        Ok(Screen { terminal, app, stop_keys })
    }

    /// Updates the dashboard and draws it.
    pub fn show(&mut self, msg: Msg) -> std::io::Result<()> {
        self.app.update(msg);
        let app = &self.app;
        self.terminal.draw(|f| ui::render(app, f)).map_err(failed("drawing the dashboard"))?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.stop_keys.store(true, Ordering::Relaxed);
        ratatui::restore();
    }
}
