//! Learned call paths: a pin record's kernel stack without a walk of the kernel's unwinder.
//!
//! The walk (`bpf_get_stack`) is most of a pin record's cost. A pin call's stack is, above the
//! trampoline of the traced function, a chain of return addresses, each at a place fixed by the
//! return address below it: the unwinder finds the caller's frame from the stack pointer and
//! the size of the frame at that return address (the kernel's ORC data; x86-64 kernels are
//! built without frame pointers). So once the places of one walk's return addresses are known,
//! a later call of the same function whose trampoline frame lies at the same depth of its stack,
//! and whose words at those places are the same return addresses, has the same stack, frame by
//! frame, as a walk would give: the trampoline's frame is laid out the same for every call, so
//! the caller's return address is at a fixed place above the key's, and each return address
//! found in place fixes where the next one is.
//!
//! How a path is learned: the first time a (probe, function, depth) is seen, the program walks the
//! stack as before and sends a [`StackSampleHeader`] with the walk and the last
//! [`STACK_WINDOW_BYTES`] of the task's stack (all of it above the call, or no path is learned).
//! A return address can lie at several places of the window: the kernel moves each system
//! call's stack by a random offset (earlier calls' frames stay in the gap), and functions keep
//! copies of return addresses in their frames. Which of them the unwinder used is not known,
//! but it lies between the first place after the previous frame's first possible place and the
//! last place before the next frame's last possible one. [`learn`] (userspace) narrows each
//! frame to the places in that range and keeps all of them as checks: the real one is among
//! them, so when every check matches, the argument above holds. The learned [`StackPath`] goes
//! into the `STACK_PATHS` map; later calls read the words of its checks (one 8-byte read each)
//! and, when all match, copy its frames instead of walking.
//!
//! One kind of function breaks the rule that a frame's size is fixed by its return address: one
//! that realigns its stack (a local aligned beyond 8 bytes), whose frame grows by the alignment
//! slack. No function on the kernel's pin paths was seen doing that, and the first reuse of
//! every path and one reuse in [`REWALK_EVERY`] on each CPU walk the stack anyway and compare (a
//! disagreement is counted, the path dropped and learned again), so the claim is measured in
//! every run, not assumed.

/// Bytes of the task's stack a sample carries: its last (outermost) ones, up to the top.
pub const STACK_WINDOW_BYTES: usize = 8192;
/// Words of the window.
pub const STACK_WINDOW_WORDS: usize = STACK_WINDOW_BYTES / 8;
/// Frames a learned path holds at most (as many as a pin record carries).
pub const STACK_PATH_FRAMES: usize = crate::PAGES_STACK_FRAMES;
/// A learned path is walked again and compared on its first reuse, and one reuse in this many
/// on each CPU (whichever path it reuses) walks and compares too. A walk costs about as much as
/// 60 reuses under TCG (15-20 µs): at one in 64 the checking walks were 1.6 % of the pins and
/// about 0.25 µs of each pin's cost; at one in 256, a few thousand checks per minute of
/// Direct I/O still compare every path in use (none has ever disagreed: `stack_paths.wrong`).
pub const REWALK_EVERY: u64 = 256;
const _: () = assert!(REWALK_EVERY.is_power_of_two());
/// A learned path whose checks fail this many calls in a row is dropped, and the next call of
/// its key learns it again: after a change of workload, the words a path checks (stale copies
/// of return addresses included) can differ for good, and every call would walk. A success
/// resets the run, so two ways that alternate at one key do not make it learn over and over.
pub const STALE_RUN_MAX: u64 = 16;
/// Kernel task stacks are this size and aligned to it (x86-64 without KASAN).
pub const TASK_STACK_SIZE: u64 = 16 << 10;
/// Walked frames a sample may start with that are not on the task's stack above the call (the
/// tracer's own program and the traced function's trampoline).
pub const MAX_OWN_FRAMES: usize = 6;

/// Key of a learned path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StackPathKey {
    /// The traced function (`bpf_get_func_ip`).
    pub function: u64,
    /// Where the trampoline's context (the function's saved arguments, on the stack) lies in
    /// the task's stack: its offset from the stack's base (the address modulo
    /// [`TASK_STACK_SIZE`]). The trampoline's frame is laid out the same for every call, so the
    /// caller's return address lies at the same place above it each time.
    pub depth: u16,
    /// The system call the task is in (`orig_ax` of its pt_regs, low 16 bits): calls that come
    /// by different ways (a `pread` and an `io_submit` reaching `pin_user_pages_fast`) can
    /// start at the same depth, and each needs a path of its own. Kernel threads have a
    /// constant word there.
    pub syscall: u16,
    /// The `ProbeId` of the program (its own frames are not part of the path).
    pub probe: u32,
}

/// Words a learned path checks at most.
pub const STACK_PATH_CHECKS: usize = 24;

/// A learned path. `nr_frames == 0`: a sample was sent and no path learned (yet): walk.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackPath {
    /// 0 until the path's first reuse, which walks to check it; then 1. Written once, by a
    /// plain store (two CPUs racing on the first reuse both walk: harmless), so that reuses on
    /// many CPUs do not write one shared cache line (they used to add to a count here).
    pub checked: u64,
    /// Calls in a row whose checks failed (the kernel adds one per failure, atomically, and
    /// clears it on a reuse); see [`STALE_RUN_MAX`].
    pub stale_run: u64,
    pub nr_frames: u32,
    pub nr_checks: u32,
    /// Words above the trampoline's context the checks reach (the highest `check_at` + 1):
    /// what a reuse reads of the stack, in one read.
    pub reach: u32,
    pub _pad: u32,
    /// Where each check reads: words above the trampoline's context.
    pub check_at: [u16; STACK_PATH_CHECKS],
    /// What each check must find there.
    pub check_word: [u64; STACK_PATH_CHECKS],
    /// The frames, innermost first: the caller, its caller, ...
    pub frames: [u64; STACK_PATH_FRAMES],
}

impl StackPath {
    /// The placeholder for a path being learned, or that cannot be.
    pub const PENDING: StackPath = StackPath {
        checked: 0,
        stale_run: 0,
        nr_frames: 0,
        nr_checks: 0,
        reach: 0,
        _pad: 0,
        check_at: [0; STACK_PATH_CHECKS],
        check_word: [0; STACK_PATH_CHECKS],
        frames: [0; STACK_PATH_FRAMES],
    };
}

/// A sample (`RecordType::StackSample`): this header, then [`STACK_WINDOW_BYTES`] of stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackSampleHeader {
    /// `RecordType::StackSample`.
    pub record: u32,
    pub nr_frames: u32,
    pub key: StackPathKey,
    /// Address of the trampoline's context (the key's place).
    pub base: u64,
    /// Address of the window's first byte: the stack's top minus [`STACK_WINDOW_BYTES`].
    pub window_start: u64,
    /// The walk, innermost first (the first ones the tracer's own).
    pub frames: [u64; STACK_PATH_FRAMES],
}

/// A whole sample as the kernel builds it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackSampleWire {
    pub header: StackSampleHeader,
    pub window: [u64; STACK_WINDOW_WORDS],
}

const _: () = assert!(core::mem::size_of::<StackPathKey>() == 16);
const _: () = assert!(core::mem::size_of::<StackPath>() == 32 + 10 * STACK_PATH_CHECKS + 8 * STACK_PATH_FRAMES);
const _: () = assert!(core::mem::size_of::<StackSampleHeader>() == 40 + 8 * STACK_PATH_FRAMES);

/// 1 in every bit when `i < n`, else 0, without a branch (n < 2^63): the programs' checks are
/// branch-free, since the verifier follows both outcomes of every branch through the rest of
/// the program.
#[inline(always)]
pub fn below(i: usize, n: u64) -> u64 {
    0u64.wrapping_sub((i as u64).wrapping_sub(n) >> 63)
}

/// Whether a walk (`walked`, as `bpf_get_stack` left it: the frames, then zeros up to the
/// buffer's end, all zeros when it failed) gives a path's first `n` frames (`learned`) after the
/// tracer's own, whose number is not known: each possible count up to [`MAX_OWN_FRAMES`] is
/// tried. A walk that filled the buffer was cut off, not ended: the path's frames past the
/// buffer are no disagreement (the tracer's own frames are not always as many, as the programs
/// of a chain differ, so a path learned from a walk with fewer of them holds more frames than a
/// later walk has room for). A walk that ended before the path does disagrees: its zeros are no
/// return address. Branch-free but for the answer, and nothing in the loops depends on the
/// walk's length (with it, LLVM made selects of the masks: branches the verifier followed
/// both ways, 2^14 paths a turn).
#[inline(always)]
#[allow(
    clippy::needless_range_loop,
    reason = "the index also reads `walked`, shifted: the form whose code the verifier loads fast"
)]
pub fn walk_agrees(walked: &[u64; STACK_PATH_FRAMES], learned: &[u64; STACK_PATH_FRAMES], n: u64) -> bool {
    let mut agrees = 0u64;
    for own in 0..=MAX_OWN_FRAMES {
        let mut diff = 0u64;
        for i in 0..STACK_PATH_FRAMES {
            if let Some(&frame) = walked.get(i + own) {
                diff |= below(i, n) & (frame ^ learned[i]);
            }
        }
        // 1 when diff is 0.
        agrees |= ((diff | diff.wrapping_neg()) >> 63) ^ 1;
    }
    agrees != 0
}

/// Why a sample teaches no path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlearnable {
    /// The call is deeper than the window: its caller's return address is not in it.
    TooDeep,
    /// The walk does not contain the caller (within its first [`MAX_OWN_FRAMES`] frames).
    CallerNotWalked,
    /// A walked return address is not in the window above the previous one.
    NotOnStack,
    /// The return addresses' possible places need more checks than a path holds.
    TooManyChecks,
}

/// The path a sample teaches: `frames` is the walk, `window` the stack's last
/// [`STACK_WINDOW_WORDS`] words, `base_index` the word of the window where the trampoline's
/// context begins. The walk's first frames are the tracer's own program and trampoline, below
/// the context; the path starts at the first walked return address found above it (the
/// traced function's caller).
pub fn learn(frames: &[u64], window: &[u64], base_index: usize) -> Result<StackPath, Unlearnable> {
    if base_index >= window.len() {
        return Err(Unlearnable::TooDeep);
    }
    let above = &window[base_index..];
    let first =
        frames.iter().take(MAX_OWN_FRAMES + 1).position(|f| above.contains(f)).ok_or(Unlearnable::CallerNotWalked)?;
    let walked = &frames[first..];
    if walked.is_empty() || walked.len() > STACK_PATH_FRAMES {
        return Err(Unlearnable::CallerNotWalked);
    }
    let n = walked.len();
    // lo[i]: the first place frame i can be (past frame i-1's first possible place);
    // hi[i]: the last (before frame i+1's last possible place).
    let mut lo = [base_index; STACK_PATH_FRAMES];
    let mut from = base_index;
    for i in 0..n {
        lo[i] = (from..window.len()).find(|&w| window[w] == walked[i]).ok_or(Unlearnable::NotOnStack)?;
        from = lo[i] + 1;
    }
    let mut hi = [base_index; STACK_PATH_FRAMES];
    let mut bound = window.len();
    for i in (0..n).rev() {
        hi[i] = (lo[i]..bound).rev().find(|&w| window[w] == walked[i]).ok_or(Unlearnable::NotOnStack)?;
        bound = hi[i];
    }
    let mut path = StackPath::PENDING;
    let mut checks = 0;
    for (i, &frame) in walked.iter().enumerate() {
        for (w, _) in window.iter().enumerate().take(hi[i] + 1).skip(lo[i]).filter(|&(_, &word)| word == frame) {
            if checks == STACK_PATH_CHECKS {
                return Err(Unlearnable::TooManyChecks);
            }
            path.check_at[checks] = u16::try_from(w - base_index).map_err(|_| Unlearnable::TooDeep)?;
            path.check_word[checks] = frame;
            checks += 1;
        }
    }
    path.frames[..n].copy_from_slice(walked);
    path.nr_frames = n as u32;
    path.nr_checks = checks as u32;
    path.reach = path.check_at[..checks].iter().max().map_or(0, |&at| u32::from(at) + 1);
    Ok(path)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    fn window_with(places: &[(usize, u64)]) -> [u64; 64] {
        let mut w = [0u64; 64];
        for (i, v) in places.iter().copied() {
            w[i] = v;
        }
        w
    }

    fn checks(p: &StackPath) -> Vec<(u16, u64)> {
        (0..p.nr_checks as usize).map(|i| (p.check_at[i], p.check_word[i])).collect()
    }

    #[test]
    fn learns_the_places_of_the_walked_return_addresses() {
        // The tracer's own frames (0x1, 0x2) lie below the context (word 8): not on the path.
        let w = window_with(&[(3, 0x2), (10, 0xa), (14, 0xb), (30, 0xc), (31, 0xd)]);
        let p = learn(&[0x1, 0x2, 0xa, 0xb, 0xc, 0xd], &w, 8).unwrap();
        assert_eq!(p.nr_frames, 4);
        assert_eq!(&p.frames[..4], &[0xa, 0xb, 0xc, 0xd]);
        assert_eq!(checks(&p), vec![(2, 0xa), (6, 0xb), (22, 0xc), (23, 0xd)]);
        assert_eq!(p.reach, 24);
    }

    #[test]
    fn recursion_takes_each_place_in_order() {
        let w = window_with(&[(0, 0xa), (3, 0xb), (6, 0xb), (9, 0xc)]);
        let p = learn(&[0xa, 0xb, 0xb, 0xc], &w, 0).unwrap();
        assert_eq!(checks(&p), vec![(0, 0xa), (3, 0xb), (6, 0xb), (9, 0xc)]);
    }

    #[test]
    fn every_possible_place_of_a_frame_is_checked_and_no_other() {
        // 0xb at 12 and 14 (a copy in the caller's frame): both possible, both checked. Copies
        // below the call, and past the next frame's last place (the gap of a moved stack) are not
        // places the unwinder can have used.
        let w = window_with(&[(2, 0xc), (10, 0xa), (12, 0xb), (14, 0xb), (30, 0xc), (40, 0xb)]);
        let p = learn(&[0xa, 0xb, 0xc], &w, 10).unwrap();
        assert_eq!(checks(&p), vec![(0, 0xa), (2, 0xb), (4, 0xb), (20, 0xc)]);
        assert_eq!(p.reach, 21);
    }

    #[test]
    fn what_cannot_be_placed_is_not_learned() {
        let w = window_with(&[(10, 0xa), (14, 0xb)]);
        assert_eq!(learn(&[0xa, 0xb, 0xc], &w, 10), Err(Unlearnable::NotOnStack));
        assert_eq!(learn(&[0x1, 0x2], &w, 10), Err(Unlearnable::CallerNotWalked));
        assert_eq!(learn(&[0xa], &w, 64), Err(Unlearnable::TooDeep));
        // An address found only below the previous one is not on the path's stack.
        let w = window_with(&[(10, 0xa), (14, 0xc), (20, 0xb)]);
        assert_eq!(learn(&[0xa, 0xb, 0xc], &w, 10), Err(Unlearnable::NotOnStack));
    }

    fn frames(list: &[u64]) -> [u64; STACK_PATH_FRAMES] {
        let mut f = [0u64; STACK_PATH_FRAMES];
        f[..list.len()].copy_from_slice(list);
        f
    }

    #[test]
    fn a_walk_agrees_after_any_number_of_own_frames() {
        let path = frames(&[0xa, 0xb, 0xc]);
        for own in 0..=MAX_OWN_FRAMES {
            let mut walk = vec![0x1u64; own];
            walk.extend([0xa, 0xb, 0xc, 0xd]);
            assert!(walk_agrees(&frames(&walk), &path, 3), "{own} own frames");
        }
        assert!(!walk_agrees(&frames(&[0x1, 0x2, 0xa, 0xe, 0xc]), &path, 3), "a frame differs");
    }

    #[test]
    fn a_walk_cut_off_by_the_buffer_agrees_but_one_that_ended_does_not() {
        // The path was learned from a walk with 2 own frames: 12 frames. A walk with 3 own
        // frames holds 11 of them and fills the buffer (seen on Debian's 7.2 kernel).
        let path: Vec<u64> = (0..12).map(|i| 0x100 + i).collect();
        let learned = frames(&path);
        let mut walk = vec![0x1, 0x2, 0x3];
        walk.extend(&path[..11]);
        assert!(walk_agrees(&frames(&walk), &learned, 12));
        // The walk ended one frame earlier (bpf_get_stack zeroes the rest): not the path's stack.
        assert!(!walk_agrees(&frames(&walk[..13]), &learned, 12));
        // A failed walk (all zeros) agrees with nothing.
        assert!(!walk_agrees(&frames(&[]), &learned, 12));
    }
}
