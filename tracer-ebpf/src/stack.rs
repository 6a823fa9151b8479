//! Pin records' kernel stacks from learned call paths (tracer_common::stack_path has the rule
//! and why it gives what a walk would): a path seen before costs a map lookup and one read per
//! frame instead of the unwinder's walk; a new one is walked and sampled for userspace to learn.

use core::ffi::c_void;

use aya_ebpf::{helpers::generated, macros::map, maps::HashMap, EbpfContext};
use tracer_common::{
    counters::{PathCount, PATHS as PATH_COUNTERS},
    stack_path::{
        StackPath, StackPathKey, StackSampleWire, MAX_OWN_FRAMES, REWALK_EVERY, STACK_PATH_CHECKS, STACK_PATH_FRAMES,
        STACK_WINDOW_BYTES, TASK_STACK_SIZE,
    },
    ProbeId, RecordType,
};

use crate::maps::{bump, submit_flags, submitted, EVENTS};

/// 1 when pin records take their stacks from learned paths, 0 when they walk (patched by the
/// loader: tracer_common::names::LEARNED_PATHS). A known value to the verifier, which then
/// leaves out the code of the other way.
#[unsafe(no_mangle)]
static LEARNED_PATHS: u64 = 1;

#[inline(always)]
pub fn learned_paths() -> bool {
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    unsafe { core::ptr::read_volatile(&LEARNED_PATHS) != 0 }
}

/// Learned paths (and placeholders of paths being learned) at once.
const PATHS_MAX: u32 = 4096;

/// `BPF_NOEXIST`: insert only when the key is new.
const NOEXIST: u64 = 1;

#[map(name = "STACK_PATHS")]
static PATHS: HashMap<StackPathKey, StackPath> = HashMap::with_max_entries(PATHS_MAX, 0);

#[inline(always)]
fn counted(what: PathCount) {
    bump(PATH_COUNTERS + what as u32, 1);
}

/// Walks the stack into `frames`; returns the bytes written, or a negative error.
#[inline(always)]
fn walk<C: EbpfContext>(ctx: &C, frames: *mut [u64; STACK_PATH_FRAMES]) -> i64 {
    // SAFETY: `frames` has room for STACK_PATH_FRAMES u64s.
    unsafe { generated::bpf_get_stack(ctx.as_ptr(), frames as *mut c_void, (8 * STACK_PATH_FRAMES) as u32, 0) }
}

/// The kernel stack of a pin call run by an fentry or fexit program, into `frames`: from its
/// learned path when the stack still holds it, else walked (and sampled when the path is new).
/// Returns the bytes written, or a negative error, as `bpf_get_stack` does.
#[inline(always)]
pub fn pin_stack<C: EbpfContext>(ctx: &C, probe: ProbeId, frames: *mut [u64; STACK_PATH_FRAMES]) -> i64 {
    let Some(slot) = context_address(ctx) else {
        counted(PathCount::Walked);
        return walk(ctx, frames);
    };
    // SAFETY: helper for tracing programs.
    let function = unsafe { generated::bpf_get_func_ip(ctx.as_ptr()) };
    let key = StackPathKey { function, depth: (slot & (TASK_STACK_SIZE - 1)) as u32, probe: probe as u32 };
    let Some(path) = PATHS.get_ptr_mut(&key) else {
        return sample(ctx, &key, slot, frames);
    };
    // SAFETY: a value of the map, alive for the program's run (RCU).
    let n = unsafe { (*path).nr_frames } as usize;
    if n == 0 || n > STACK_PATH_FRAMES || !still_there(slot, path) {
        counted(PathCount::Walked);
        return walk(ctx, frames);
    }
    // SAFETY: as above. The add is atomic (other CPUs reuse the path at the same time); the
    // count read back may include theirs, which only moves which reuse walks again.
    let hits = unsafe {
        let p = core::ptr::addr_of_mut!((*path).hits);
        crate::maps::add(p, 1);
        core::ptr::read_volatile(p)
    };
    if hits == 1 || hits & (REWALK_EVERY - 1) == 0 {
        counted(PathCount::Rewalked);
        let bytes = walk(ctx, frames);
        if !walk_agrees(frames, path, n as u64) {
            counted(PathCount::Wrong);
            let _ = PATHS.remove(&key);
        }
        return bytes;
    }
    counted(PathCount::Reused);
    // SAFETY: both hold STACK_PATH_FRAMES u64s.
    unsafe { *frames = (*path).frames };
    (8 * n) as i64
}

/// The address of the trampoline's context (the traced function's saved arguments, on the
/// stack) as a plain number: the verifier allows no arithmetic on a context pointer, and a
/// copy through the read helper is a scalar to it.
#[inline(always)]
fn context_address<C: EbpfContext>(ctx: &C) -> Option<u64> {
    let at = ctx.as_ptr() as u64;
    // SAFETY: reads a local of this frame.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(&at as *const u64) }.ok()
}

/// 1 in every bit when `i < n`, else 0, without a branch (n < 2^63).
#[inline(always)]
fn below(i: usize, n: u64) -> u64 {
    0u64.wrapping_sub((i as u64).wrapping_sub(n) >> 63)
}

/// Whether every check of the path still finds its return address above `slot`. Branch-free
/// but for the answer: every exit of a loop would be verified on its own through the rest of
/// the program (the 6.1 verifier took minutes for that), so mismatches are or-ed together.
#[inline(always)]
fn still_there(slot: u64, path: *const StackPath) -> bool {
    // SAFETY: a value of the map (see pin_stack).
    let n = unsafe { (*path).nr_checks } as u64;
    let mut diff = 0u64;
    for i in 0..STACK_PATH_CHECKS {
        // SAFETY: as above.
        let (at, want) = unsafe { ((*path).check_at[i] as u64, (*path).check_word[i]) };
        let mut word = 0u64;
        // SAFETY: the helper writes 8 bytes into `word` and checks the source (a failed read
        // leaves 0, which is no return address: a mismatch).
        unsafe {
            generated::bpf_probe_read_kernel(
                core::ptr::addr_of_mut!(word) as *mut c_void,
                8,
                (slot + 8 * (at & 0x7ff)) as *const c_void,
            )
        };
        diff |= below(i, n) & (word ^ want);
    }
    diff == 0
}

/// Whether a walk in `frames` gives the path's `n` frames after the tracer's own (whose number
/// is not known: each possible count is tried), branch-free as [`still_there`].
#[inline(always)]
fn walk_agrees(frames: *const [u64; STACK_PATH_FRAMES], path: *const StackPath, n: u64) -> bool {
    // SAFETY: `frames` is the record's, `path` a value of the map.
    let (walked, learned) = unsafe { (&*frames, &(*path).frames) };
    let mut agrees = 0u64;
    for own in 0..=MAX_OWN_FRAMES {
        let mut diff = 0u64;
        for i in 0..STACK_PATH_FRAMES {
            let mask = below(i, n);
            diff |= match walked.get(i + own) {
                Some(&frame) => mask & (frame ^ learned[i]),
                // The walk ends before the path does.
                None => mask,
            };
        }
        // 1 when diff is 0, without a branch (the verifier would follow both outcomes of each).
        agrees |= ((diff | diff.wrapping_neg()) >> 63) ^ 1;
    }
    agrees != 0
}

/// A path not seen before: walk, and send the walk with the stack's last bytes for userspace to
/// learn the path from. The placeholder keeps other calls of the same key from sampling again
/// while it learns (or for good when it cannot).
#[inline(always)]
fn sample<C: EbpfContext>(ctx: &C, key: &StackPathKey, slot: u64, frames: *mut [u64; STACK_PATH_FRAMES]) -> i64 {
    counted(PathCount::Walked);
    let top = (slot & !(TASK_STACK_SIZE - 1)) + TASK_STACK_SIZE;
    let window_start = top - STACK_WINDOW_BYTES as u64;
    if slot < window_start || PATHS.insert(key, &StackPath::PENDING, NOEXIST).is_err() {
        return walk(ctx, frames);
    }
    let Some(mut entry) = EVENTS.reserve::<StackSampleWire>(0) else {
        // Not an event lost: the record still goes out, walked. Learn another time.
        let _ = PATHS.remove(key);
        return walk(ctx, frames);
    };
    let w = entry.as_mut_ptr();
    // SAFETY: `w` is the reserved, exclusively owned ring buffer slot of a StackSampleWire;
    // every header field is written before submit, the window by the read (zeroed if it fails).
    let bytes = unsafe {
        (*w).header.record = RecordType::StackSample as u32;
        (*w).header.key = *key;
        (*w).header.base = slot;
        (*w).header.window_start = window_start;
        let bytes = generated::bpf_get_stack(
            ctx.as_ptr(),
            core::ptr::addr_of_mut!((*w).header.frames) as *mut c_void,
            (8 * STACK_PATH_FRAMES) as u32,
            0,
        );
        (*w).header.nr_frames = if bytes > 0 { (bytes as u32) / 8 } else { 0 };
        let rc = generated::bpf_probe_read_kernel(
            core::ptr::addr_of_mut!((*w).window) as *mut c_void,
            STACK_WINDOW_BYTES as u32,
            window_start as *const c_void,
        );
        if rc != 0 {
            (*w).header.nr_frames = 0;
        }
        *frames = (*w).header.frames;
        bytes
    };
    counted(PathCount::Sampled);
    entry.submit(submit_flags());
    submitted();
    bytes
}
