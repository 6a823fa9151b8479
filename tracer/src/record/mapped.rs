//! Record files replayed from a memory map: the reader lends records straight from the page
//! cache (reading copied every byte into its buffer first: 17 % of a replay's time,
//! `cargo xtask bench ledger`).
//!
//! A mapped file that shrinks while it is read would raise SIGBUS: the handler installed here
//! turns that into a one-line cause and exit status 1, as any other bad input.

use std::{fs::File, sync::Once};

use memmap2::{Advice, Mmap};

/// The file mapped for reading from start to end; None when it cannot be (not a regular file,
/// empty, or the kernel refused): the caller reads it instead.
pub fn map(file: &File) -> Option<Mmap> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    static GUARD: Once = Once::new();
    GUARD.call_once(install_sigbus_handler);
    // SAFETY: the map is only read. A file changed while mapped could show other bytes, which
    // the reader treats as any corrupt input (it never trusts a length); one that shrinks
    // raises SIGBUS, which the handler above turns into an error exit.
    let map = unsafe { Mmap::map(file) }.ok()?;
    let _ = map.advise(Advice::Sequential);
    Some(map)
}

extern "C" fn on_sigbus(_: libc::c_int) {
    const MSG: &[u8] = b"tracer: the record file shrank while it was being read\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a static buffer.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(1);
    }
}

fn install_sigbus_handler() {
    // SAFETY: a zeroed sigaction with a handler that only calls async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}
