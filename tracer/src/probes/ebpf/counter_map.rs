//! The programs' counters (`COUNTERS`, layout in tracer_common::counters), read through a
//! shared mapping of the map: no system call per slot, so no window in which the kernel skips
//! tracepoint programs of other threads because the tracer is reading (see that module).

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Map, MapData};
use tracer_common::counters::SLOTS;

/// `COUNTERS` mapped read-only into this process.
pub struct CounterMap {
    base: NonNull<AtomicU64>,
    cpus: usize,
    len: usize,
}

// SAFETY: the mapping is read-only here and read with atomic loads only.
unsafe impl Send for CounterMap {}

/// Why the counter map could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum CounterMapError {
    #[error("map {0} missing or not an array")]
    Missing(&'static str),
    #[error("map {name} holds {entries} slots, fewer than {cpus} CPUs need")]
    TooSmall { name: &'static str, entries: u32, cpus: usize },
    #[error("mmap of map {name}: {source}")]
    Mmap { name: &'static str, source: std::io::Error },
}

impl CounterMap {
    /// Maps `map` (an array created with BPF_F_MMAPABLE) for `cpus` possible CPUs.
    pub fn new(map: Option<&Map>, name: &'static str, cpus: usize) -> Result<CounterMap, CounterMapError> {
        let Some(Map::Array(data)) = map else { return Err(CounterMapError::Missing(name)) };
        let entries = max_entries(data);
        if (entries as usize) < cpus * SLOTS as usize {
            return Err(CounterMapError::TooSmall { name, entries, cpus });
        }
        let len = (entries as usize * 8).next_multiple_of(page_size());
        // SAFETY: a fresh shared read-only mapping of the map's fd; the kernel checks that the
        // map is mmapable and at least `len` long.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, data.fd().as_fd().as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(CounterMapError::Mmap { name, source: std::io::Error::last_os_error() });
        }
        let base = NonNull::new(ptr.cast::<AtomicU64>()).ok_or(CounterMapError::Missing(name))?;
        Ok(CounterMap { base, cpus, len })
    }

    /// Slot `at` summed over CPUs.
    pub fn sum(&self, at: u32) -> u64 {
        (0..self.cpus)
            .map(|cpu| {
                let i = cpu * SLOTS as usize + at as usize;
                // SAFETY: i < cpus * SLOTS <= entries (checked in new); the page stays mapped
                // until drop; u64 slots are 8-byte aligned.
                unsafe { self.base.as_ptr().add(i).as_ref() }.map_or(0, |slot| slot.load(Ordering::Relaxed))
            })
            .fold(0u64, u64::wrapping_add)
    }

    /// Slots `at..at + n`, each summed over CPUs.
    pub fn sums(&self, at: u32, n: u32) -> Vec<u64> {
        (at..at + n).map(|i| self.sum(i)).collect()
    }
}

impl Drop for CounterMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in new.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn max_entries(data: &MapData) -> u32 {
    data.info().map(|info| info.max_entries()).unwrap_or(0)
}

fn page_size() -> usize {
    // SAFETY: sysconf without preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}
