//! Teaches the programs the call paths of pin calls (tracer_common::stack_path): each stack
//! sample the programs send is learned here and the path written into `STACK_PATHS`; samples
//! never reach the engine or a record file.

use std::collections::HashMap as StdHashMap;

use aya::maps::{HashMap, MapData};

use crate::probes::symbols::KernelSymbols;
use tracer_common::{
    stack_path::{learn, StackPath, StackPathKey, StackSampleHeader, STACK_PATH_FRAMES, STACK_WINDOW_WORDS},
    RecordType,
};

/// What the learner did, for the debug log.
#[derive(Debug, Default)]
pub struct Learned {
    pub paths: u64,
    pub unlearnable: u64,
    /// How many words above the trampoline's context the checks of learned paths reach, the
    /// farthest of each path: up to 128, 256, 512 and more (a reuse reads that many words in one
    /// read, up to tracer-ebpf's `WINDOW_WORDS`, and one word per check beyond).
    pub reach: [u64; 4],
}

pub struct PathLearner {
    map: Option<HashMap<MapData, StackPathKey, StackPath>>,
    pub learned: Learned,
    /// The frames last learned per key: a key learned again (its path was dropped because a
    /// walk disagreed with it, or after a run of failed checks) with other frames is logged,
    /// so that two call chains at one key can be told apart afterwards.
    known: StdHashMap<StackPathKey, Vec<u64>>,
}

/// Keys remembered at most (the map holds 4096 paths): past it, the memory starts again.
const KNOWN_MAX: usize = 16384;

impl PathLearner {
    pub fn new(map: Option<HashMap<MapData, StackPathKey, StackPath>>) -> PathLearner {
        PathLearner { map, learned: Learned::default(), known: StdHashMap::new() }
    }

    /// Whether `record` is a stack sample (then it is consumed here); `symbols` name the frames
    /// of a path learned again (the stream's, /proc/kallsyms).
    pub fn take(&mut self, record: &[u8], symbols: &KernelSymbols) -> bool {
        let head = record.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes);
        if head != Some(RecordType::StackSample as u32) {
            return false;
        }
        match sample_path(record) {
            Some((key, path)) => {
                let _ = self.remember(&key, &path, symbols);
                let bucket = match path.reach {
                    0..=128 => 0,
                    129..=256 => 1,
                    257..=512 => 2,
                    _ => 3,
                };
                self.learned.reach[bucket] += 1;
                if let Some(map) = self.map.as_mut() {
                    match map.insert(key, path, 0) {
                        Ok(()) => self.learned.paths += 1,
                        Err(e) => log::debug!("storing a learned call path: {e}"),
                    }
                }
            }
            None => self.learned.unlearnable += 1,
        }
        true
    }
}

impl PathLearner {
    /// Notes the frames learned for `key`, and says so (debug level; returns true) when they
    /// differ from the ones learned for it before: two call chains that reach the traced
    /// function at one depth under one system call, taking turns (a path is learned again after
    /// a wrong walk or a run of failed checks, tracer_common::stack_path::STALE_RUN_MAX).
    fn remember(&mut self, key: &StackPathKey, path: &StackPath, symbols: &KernelSymbols) -> bool {
        let frames = path.frames[..(path.nr_frames as usize).min(STACK_PATH_FRAMES)].to_vec();
        if self.known.len() >= KNOWN_MAX && !self.known.contains_key(key) {
            self.known.clear();
        }
        let Some(before) = self.known.insert(*key, frames.clone()) else { return false };
        // Walks are cut off at STACK_PATH_FRAMES with the tracer's own frames counted, and
        // those are not always as many: a path that is the other's beginning is the same one.
        let common = before.len().min(frames.len());
        if before[..common] == frames[..common] {
            return false;
        }
        let name = |frames: &[u64]| frames.iter().map(|&ip| symbols.symbolize(ip)).collect::<Vec<_>>().join(" <- ");
        log::debug!(
            "call path of {} (probe {}, depth {}, system call {}) learned again with other frames: before {}; now {}",
            symbols.symbolize(key.function),
            key.probe,
            key.depth,
            key.syscall,
            name(&before),
            name(&frames)
        );
        true
    }
}

impl Drop for PathLearner {
    fn drop(&mut self) {
        if self.learned.paths + self.learned.unlearnable > 0 {
            log::debug!(
                "call paths: {} learned, {} samples taught nothing (their calls walk the stack); checks reach below 128, 256, 512 words and beyond: {:?}",
                self.learned.paths,
                self.learned.unlearnable,
                self.learned.reach
            );
        }
    }
}

/// The key and learned path of a sample's bytes; None when it teaches nothing (the placeholder
/// stays: calls of that key keep walking the stack).
fn sample_path(record: &[u8]) -> Option<(StackPathKey, StackPath)> {
    let header_len = std::mem::size_of::<StackSampleHeader>();
    let header_bytes = record.get(..header_len)?;
    // SAFETY: `header_bytes` holds size_of::<StackSampleHeader>() bytes of a plain repr(C)
    // struct of integers, read unaligned.
    let header: StackSampleHeader = unsafe { std::ptr::read_unaligned(header_bytes.as_ptr().cast()) };
    let window: Vec<u64> = record
        .get(header_len..header_len + 8 * STACK_WINDOW_WORDS)?
        .chunks_exact(8)
        .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or_default()))
        .collect();
    let n = (header.nr_frames as usize).min(STACK_PATH_FRAMES);
    if n == 0 || header.base < header.window_start || !(header.base - header.window_start).is_multiple_of(8) {
        return None;
    }
    let base_index = usize::try_from((header.base - header.window_start) / 8).ok()?;
    match learn(&header.frames[..n], &window, base_index) {
        Ok(path) => Some((header.key, path)),
        Err(why) => {
            if log::log_enabled!(log::Level::Trace) {
                let places: Vec<String> = header.frames[..n]
                    .iter()
                    .map(|f| {
                        let at: Vec<isize> = (0..window.len())
                            .filter(|&w| window[w] == *f)
                            .map(|w| w as isize - base_index as isize)
                            .collect();
                        format!("{f:#x}@{at:?}")
                    })
                    .collect();
                log::trace!(
                    "call path of {:#x} at depth {}: {}",
                    header.key.function,
                    header.key.depth,
                    places.join(" ")
                );
            }
            log::debug!("call path of {:#x} not learned: {why:?}", header.key.function);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(frames: &[u64], window: &[(usize, u64)], base_index: usize) -> Vec<u8> {
        let mut header = StackSampleHeader {
            record: RecordType::StackSample as u32,
            nr_frames: frames.len() as u32,
            key: StackPathKey { function: 0x9, depth: 8, syscall: 17, probe: 0 },
            base: 0x1000 + 8 * base_index as u64,
            window_start: 0x1000,
            frames: [0; STACK_PATH_FRAMES],
        };
        header.frames[..frames.len()].copy_from_slice(frames);
        // SAFETY: a plain repr(C) struct of integers viewed as bytes.
        let mut bytes = unsafe {
            std::slice::from_raw_parts(
                (&header as *const StackSampleHeader).cast::<u8>(),
                std::mem::size_of::<StackSampleHeader>(),
            )
        }
        .to_vec();
        let mut w = vec![0u64; STACK_WINDOW_WORDS];
        for &(i, v) in window {
            w[i] = v;
        }
        bytes.extend(w.iter().flat_map(|v| v.to_ne_bytes()));
        bytes
    }

    #[test]
    fn a_sample_teaches_its_path_and_is_consumed() {
        let bytes = sample(&[0x1, 0x2, 0xa, 0xb], &[(500, 0xa), (503, 0xb)], 500);
        let (key, path) = sample_path(&bytes).unwrap();
        assert_eq!(key.function, 0x9);
        assert_eq!(path.nr_frames, 2);
        assert_eq!((path.nr_checks, path.check_at[1], path.check_word[1]), (2, 3, 0xb));
        let mut learner = PathLearner::new(None);
        assert!(learner.take(&bytes, &KernelSymbols::default()));
        assert!(!learner.take(&(RecordType::Pages as u32).to_ne_bytes(), &KernelSymbols::default()));
    }

    #[test]
    fn a_truncated_or_unlearnable_sample_teaches_nothing() {
        let bytes = sample(&[0xa, 0xb], &[(500, 0xa)], 500);
        assert!(sample_path(&bytes).is_none(), "0xb is nowhere on the stack");
        assert!(sample_path(&bytes[..100]).is_none());
        let mut learner = PathLearner::new(None);
        assert!(learner.take(&bytes[..100], &KernelSymbols::default()));
        assert_eq!(learner.learned.unlearnable, 1);
    }
    #[test]
    fn a_key_learned_again_is_reported_only_when_its_frames_differ() {
        let key = StackPathKey { function: 0x9, depth: 8, syscall: 17, probe: 0 };
        let path = |frames: &[u64]| {
            let mut p = StackPath::PENDING;
            p.frames[..frames.len()].copy_from_slice(frames);
            p.nr_frames = frames.len() as u32;
            p
        };
        let mut learner = PathLearner::new(None);
        let none = KernelSymbols::default();
        assert!(!learner.remember(&key, &path(&[0xa, 0xb, 0xc]), &none));
        // Cut off one frame earlier (one more frame of the tracer's own in the walk): the same.
        assert!(!learner.remember(&key, &path(&[0xa, 0xb]), &none));
        assert!(!learner.remember(&key, &path(&[0xa, 0xb, 0xc]), &none));
        assert!(learner.remember(&key, &path(&[0xa, 0xd, 0xc]), &none));
    }
}
