//! The terminal of the live dashboard (`--format tui`): the alternate screen in raw mode while
//! it is open, restored when it is dropped (also on an error or a panic), and the keys that
//! ask to quit. What is drawn is tui.rs's.

use std::{
    io::IsTerminal,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    DefaultTerminal,
};
use tokio::sync::mpsc;

use crate::tui::{Dashboard, Msg};

pub struct Screen {
    terminal: DefaultTerminal,
    dashboard: Dashboard,
    quit: mpsc::UnboundedReceiver<()>,
    stop_keys: Arc<AtomicBool>,
}

/// The dashboard draws on stdout and reads its keys from stdin: both must be a terminal.
pub fn need_terminal() -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("--format tui needs a terminal (stdin and stdout); use --format text or json otherwise");
    }
    Ok(())
}

impl Screen {
    /// The caller has checked [`need_terminal`] (before loading the probes).
    pub fn open(dashboard: Dashboard) -> Result<Screen> {
        // Sets a panic hook that restores the terminal first.
        let mut terminal = ratatui::try_init().context("setting up the terminal for the dashboard")?;
        let (tx, quit) = mpsc::unbounded_channel();
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
        terminal.draw(|f| dashboard.render(f)).context("drawing the dashboard")?;
        Ok(Screen { terminal, dashboard, quit, stop_keys })
    }

    /// Updates the dashboard and draws it.
    pub fn show(&mut self, msg: Msg) -> Result<()> {
        self.dashboard.update(msg);
        let dashboard = &self.dashboard;
        self.terminal.draw(|f| dashboard.render(f)).context("drawing the dashboard")?;
        Ok(())
    }

    /// Resolves when a quit key was pressed.
    pub async fn quit_requested(&mut self) {
        if self.quit.recv().await.is_none() {
            // The key reader ended (no more input): never resolves.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.stop_keys.store(true, Ordering::Relaxed);
        ratatui::restore();
    }
}
