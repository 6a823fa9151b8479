//! `thp-halves DEV`: two threads do O_DIRECT I/O at the same time into the two halves of one
//! transparent huge page. Every round the halves are in flight together, so two bios (of two
//! threads) pin pages of the same large folio, and the kernel releases each bio's pages with
//! `unpin_user_folio(folio, npages)`, which names only the folio and a count: the case where a
//! ledger that matches releases by folio alone can charge one holder's release to the other.

use std::{
    fs::OpenOptions,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    sync::{Arc, Barrier},
};

use anyhow::{bail, Context, Result};

const HUGE: usize = 2 << 20;

/// A 2 MiB-aligned anonymous region of one huge page (if the kernel gives one).
struct Huge {
    map: *mut libc::c_void,
    map_len: usize,
    start: usize,
}

// SAFETY: the region is plain memory; each thread touches its own half.
unsafe impl Send for Huge {}
unsafe impl Sync for Huge {}

impl Huge {
    fn new() -> Result<Huge> {
        let map_len = 2 * HUGE;
        // SAFETY: an anonymous private mapping; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            bail!("mmap: {}", std::io::Error::last_os_error());
        }
        let start = (map as usize).next_multiple_of(HUGE);
        // Asks for a huge page even when THP is `madvise`; `never` refuses it (then the halves
        // are small pages, which the VM test runs as its control case).
        // SAFETY: advice on our own mapping.
        unsafe { libc::madvise(start as *mut libc::c_void, HUGE, libc::MADV_HUGEPAGE) };
        // SAFETY: `start..start + HUGE` lies inside the mapping; touching it faults it in.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0x5a, HUGE) };
        Ok(Huge { map, map_len, start })
    }

    /// Whether the region is backed by a huge page: smaps' AnonHugePages of its mapping.
    fn is_huge(&self) -> bool {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return false };
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) {
                        inside = lo <= self.start && self.start < hi;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(kb) = line.strip_prefix("AnonHugePages:") {
                    return kb.trim().trim_end_matches("kB").trim().parse::<u64>().is_ok_and(|kb| kb >= 2048);
                }
            }
        }
        false
    }
}

impl Drop for Huge {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

pub fn halves(dev: &str, rounds: usize, write: bool) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .with_context(|| format!("cannot open {dev} with O_DIRECT"))?;
    let huge = Arc::new(Huge::new()?);
    let is_huge = huge.is_huge();
    let file = Arc::new(file);
    let barrier = Arc::new(Barrier::new(2));
    let half = HUGE / 2;
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (huge, file, barrier) = (Arc::clone(&huge), Arc::clone(&file), Arc::clone(&barrier));
            std::thread::spawn(move || -> Result<()> {
                let buf = (huge.start + t * half) as *mut libc::c_void;
                for r in 0..rounds {
                    // Both halves go in flight together, round after round.
                    barrier.wait();
                    let off = ((2 * r + t) * half) as libc::off_t;
                    // SAFETY: `buf` is this thread's half: `half` bytes of the mapping.
                    let n = unsafe {
                        if write {
                            libc::pwrite(file.as_raw_fd(), buf, half, off)
                        } else {
                            libc::pread(file.as_raw_fd(), buf, half, off)
                        }
                    };
                    if n != half as isize {
                        bail!(
                            "O_DIRECT {} of {half} bytes at {off}: {n} ({})",
                            if write { "write" } else { "read" },
                            std::io::Error::last_os_error()
                        );
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("an I/O thread panicked"))??;
    }
    println!(
        "pin-workload thp-halves {dev}: 2 threads x {rounds} O_DIRECT {}s of 1 MiB into the halves of one 2 MiB region; huge={}; pages the kernel should pin: {}",
        if write { "write" } else { "read" },
        if is_huge { "yes" } else { "no" },
        2 * rounds * half / 4096
    );
    Ok(())
}
