//! Log lines held back while the dashboard owns the terminal (a line on stderr would draw
//! over it): the Overview shows the latest, and main.rs prints them all to stderr when the
//! command ends.

use std::{io::Write, sync::Mutex};

static HELD: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<u8>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// The logger's target under the dashboard.
pub struct HeldLogs;

impl Write for HeldLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        held().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything held, emptying the store.
pub fn take() -> Vec<u8> {
    std::mem::take(&mut *held())
}

/// The whole lines held past the first `seen` bytes; `seen` moves past them.
pub fn lines_since(seen: &mut usize) -> Vec<String> {
    let held = held();
    let Some(new) = held.get(*seen..) else { return Vec::new() };
    let Some(end) = new.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
    *seen += end + 1;
    String::from_utf8_lossy(&new[..end]).lines().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_once_each() {
        let mut seen = held().len();
        HeldLogs.write_all(b"[WARN] one\n[WARN] tw").unwrap();
        assert_eq!(lines_since(&mut seen), vec!["[WARN] one"]);
        assert_eq!(lines_since(&mut seen), Vec::<String>::new(), "half a line waits");
        HeldLogs.write_all(b"o\n").unwrap();
        assert_eq!(lines_since(&mut seen), vec!["[WARN] two"]);
    }
}
