//! The tracer's own CPU priority (`--nice`). Its reader must keep up with the probes: on a
//! machine whose CPUs are all busy with the workload it traces, a reader at the workload's
//! priority falls behind and records are lost to a full ring buffer (counted, `ring_full`).
//! A lower nice value lets it keep up. The nice value is a per-thread attribute on Linux:
//! set on the thread that builds the runtime, before any other thread exists, every thread
//! of the tracer has it; the traced COMMAND gets the nice value the tracer was started with.

use std::io;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PriorityError {
    #[error("--nice {wanted}: cannot read the current nice value: {source}")]
    Read { wanted: i32, source: io::Error },
    #[error("--nice {wanted}: cannot set it: {}", why(.source))]
    Set { wanted: i32, source: io::Error },
}

fn why(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "permission denied (a value below the current one needs CAP_SYS_NICE or root)".to_owned()
        }
        _ => e.to_string(),
    }
}

/// The calling thread's nice value.
fn current() -> io::Result<i32> {
    // getpriority returns -1 both as a value and as an error: errno tells them apart.
    // SAFETY: errno location of this thread; getpriority has no memory arguments.
    unsafe {
        *libc::__errno_location() = 0;
        let value = libc::getpriority(libc::PRIO_PROCESS, 0);
        match *libc::__errno_location() {
            0 => Ok(value),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Sets the calling thread's nice value (threads it starts afterwards inherit it).
pub fn set(value: i32) -> io::Result<()> {
    // SAFETY: no memory arguments; who = 0 is the calling thread.
    match unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, value) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Applies `--nice` to the calling thread; returns the nice value it had, for the traced
/// command to start with. Nothing to do (None) without the option or when it asks for the
/// value already in effect.
pub fn apply(wanted: Option<i32>) -> Result<Option<i32>, PriorityError> {
    let Some(wanted) = wanted else { return Ok(None) };
    let before = current().map_err(|source| PriorityError::Read { wanted, source })?;
    if before == wanted {
        return Ok(None);
    }
    set(wanted).map_err(|source| PriorityError::Set { wanted, source })?;
    log::info!("tracer running at nice {wanted} (was {before})");
    Ok(Some(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a thread of its own: the nice value is per thread, and a test must not change the
    /// test harness's. Raising it (a lower priority) is allowed to anyone.
    #[test]
    fn apply_sets_this_thread_and_returns_the_value_before() {
        std::thread::spawn(|| {
            let before = current().unwrap();
            let target = (before + 3).min(19);
            assert_eq!(apply(Some(target)).unwrap(), (target != before).then_some(before));
            assert_eq!(current().unwrap(), target);
            // A thread started now inherits it.
            let child = std::thread::spawn(|| current().unwrap()).join().unwrap();
            assert_eq!(child, target);
            assert_eq!(apply(Some(target)).unwrap(), None, "already in effect");
            assert_eq!(apply(None).unwrap(), None);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_refusal_says_what_is_needed() {
        let e = PriorityError::Set { wanted: -10, source: io::Error::from_raw_os_error(libc::EACCES) };
        assert_eq!(
            e.to_string(),
            "--nice -10: cannot set it: permission denied (a value below the current one needs CAP_SYS_NICE or root)"
        );
    }
}
