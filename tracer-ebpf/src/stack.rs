//! Pin records' kernel stacks from learned call paths (tracer_common::stack_path has the rule
//! and why it gives what a walk would): a path seen before costs a map lookup and one read per
//! frame instead of the unwinder's walk; a new one is walked and sampled for userspace to learn.

use core::ffi::c_void;

use aya_ebpf::{helpers::generated, macros::map, maps::HashMap, EbpfContext};
use tracer_common::{
    counters::{PathCount, PATHS as PATH_COUNTERS},
    pt_regs,
    stack_path::{
        below, walk_agrees, StackPath, StackPathKey, StackSampleWire, REWALK_EVERY, STACK_PATH_CHECKS,
        STACK_PATH_FRAMES, STACK_WINDOW_BYTES, STALE_RUN_MAX, TASK_STACK_SIZE,
    },
    ProbeId, RecordType,
};

use crate::maps::{bump, counted_here, submit_flags, submitted, EVENTS};

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

/// Walks the stack into `frames` (the kernel's unwinder); returns the bytes written, or a
/// negative error.
#[inline(always)]
pub fn walk<C: EbpfContext>(ctx: &C, frames: *mut [u64; STACK_PATH_FRAMES]) -> i64 {
    // SAFETY: `frames` has room for STACK_PATH_FRAMES u64s.
    unsafe { generated::bpf_get_stack(ctx.as_ptr(), frames as *mut c_void, (8 * STACK_PATH_FRAMES) as u32, 0) }
}

/// The kernel stack of a pin call run by an fentry or fexit program, into `frames`: from its
/// learned path when the stack still holds it, else walked (and sampled when the path is new).
/// Returns the bytes written, or a negative error, as `bpf_get_stack` does. `number` is a word
/// of this call's own, free for the moment; `scratch` a buffer of this CPU for this call (the
/// record's page array buffer, not yet in use), read only where loads are not direct
/// (crate::kload): null elsewhere is allowed.
#[inline(always)]
pub fn pin_stack<C: EbpfContext>(
    ctx: &C,
    probe: ProbeId,
    frames: *mut [u64; STACK_PATH_FRAMES],
    number: *mut u64,
    scratch: *mut [u64; WINDOW_WORDS],
) -> i64 {
    let slot = context_number(ctx, number);
    // SAFETY: helper for tracing programs.
    let function = unsafe { generated::bpf_get_func_ip(ctx.as_ptr()) };
    // SAFETY: helpers for tracing programs; the task pointer is the current task's, and the
    // regs pointer a BTF-typed `struct pt_regs *` (never null): the load of `orig_ax`, at a
    // constant offset, is checked against the kernel's BTF and made fault-tolerant by the
    // verifier, without the read helper's call.
    let syscall = unsafe {
        let regs = generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) as *const u8;
        core::ptr::read_volatile(regs.add(pt_regs::ORIG_AX as usize) as *const u64)
    };
    let key = StackPathKey {
        function,
        depth: (slot & (TASK_STACK_SIZE - 1)) as u16,
        syscall: syscall as u16,
        probe: probe as u32,
    };
    let Some(path) = PATHS.get_ptr_mut(&key) else {
        return sample(ctx, &key, slot, frames);
    };
    // SAFETY: a value of the map, alive for the program's run (RCU).
    let n = unsafe { (*path).nr_frames } as usize;
    if n == 0 || n > STACK_PATH_FRAMES {
        counted(PathCount::Walked);
        return walk(ctx, frames);
    }
    if !crate::pages::skipped(tracer_common::bench_skip::CHECKS) && !still_there(slot, path, scratch) {
        counted(PathCount::Walked);
        counted(PathCount::Stale);
        stale(&key, path);
        return walk(ctx, frames);
    }
    reuse(ctx, &key, path, n, frames)
}

/// The context pointer as a number ([`crate::typed::as_number`]), kept for the moment in the
/// call's own word `number` (see pin_stack).
#[inline(always)]
fn context_number<C: EbpfContext>(ctx: &C, number: *mut u64) -> u64 {
    // SAFETY: `number` is this call's own word, free meanwhile (see pin_stack).
    unsafe { crate::typed::as_number(ctx.as_ptr() as u64, number) }
}

/// A call whose path's checks failed: the path is dropped after [`STALE_RUN_MAX`] of them in a
/// row, so that the next call of the key learns it again.
#[inline(always)]
fn stale(key: &StackPathKey, path: *mut StackPath) {
    // SAFETY: a value of the map (see pin_stack); the add is atomic, and a count read back
    // with other CPUs' failures in it only drops the path a little sooner.
    let run = unsafe {
        let p = core::ptr::addr_of_mut!((*path).stale_run);
        crate::maps::add(p, 1);
        core::ptr::read_volatile(p)
    };
    if run >= STALE_RUN_MAX && PATHS.remove(key).is_ok() {
        counted(PathCount::Relearned);
    }
}

/// The stack of a call from a path whose checks hold. A path's first reuse walks and compares,
/// and so does one reuse in [`REWALK_EVERY`] on each CPU (this CPU's reuses and rewalks so far,
/// from its own counters: no write to the shared path per reuse); a walk that disagrees drops
/// the path.
#[inline(always)]
fn reuse<C: EbpfContext>(
    ctx: &C,
    key: &StackPathKey,
    path: *mut StackPath,
    n: usize,
    frames: *mut [u64; STACK_PATH_FRAMES],
) -> i64 {
    // SAFETY: a value of the map (see pin_stack); the flag and the run are only stored when
    // they change (a reuse otherwise only reads the path).
    let first = unsafe {
        let checked = core::ptr::addr_of_mut!((*path).checked);
        let first = core::ptr::read_volatile(checked) == 0;
        if first {
            core::ptr::write_volatile(checked, 1);
        }
        let run = core::ptr::addr_of_mut!((*path).stale_run);
        if core::ptr::read_volatile(run) != 0 {
            core::ptr::write_volatile(run, 0);
        }
        first
    };
    let done_here = counted_here(PATH_COUNTERS + PathCount::Reused as u32)
        .wrapping_add(counted_here(PATH_COUNTERS + PathCount::Rewalked as u32));
    if first || done_here & (REWALK_EVERY - 1) == REWALK_EVERY - 1 {
        counted(PathCount::Rewalked);
        let bytes = walk(ctx, frames);
        // SAFETY: `frames` is the record's, `path` a value of the map.
        if !unsafe { walk_agrees(&*frames, &(*path).frames, n as u64) } {
            counted(PathCount::Wrong);
            let _ = PATHS.remove(key);
        }
        return bytes;
    }
    counted(PathCount::Reused);
    if !crate::pages::skipped(tracer_common::bench_skip::FRAMES) {
        // SAFETY: both hold STACK_PATH_FRAMES u64s.
        unsafe { *frames = (*path).frames };
    }
    (8 * n) as i64
}

/// Words of the stack above the context one read brings in for the checks, at most: the size
/// of the buffer the record's page array is later copied into, which is free until then (4
/// KiB: it holds the checks of every Direct I/O path seen; a path's checks beyond it are read
/// one by one).
pub const WINDOW_WORDS: usize = tracer_common::PAGES_MAX_ENTRIES;
const _: () = assert!(WINDOW_WORDS.is_power_of_two());

/// Whether every check of the path still finds its return address above `slot`: the words up
/// to the path's farthest check (its `reach`) come in with one read into `scratch` and are
/// compared there, which is the case of the Direct I/O paths; a path that reaches farther, or
/// past the stack's top, or whose read fails, is checked a read per check. Branch-free but for
/// the answer: every exit of a loop would be verified on its own through the rest of the
/// program (the 6.1 verifier took minutes for that), so mismatches are or-ed together.
#[inline(always)]
fn still_there(slot: u64, path: *const StackPath, scratch: *mut [u64; WINDOW_WORDS]) -> bool {
    // SAFETY: a value of the map (see pin_stack).
    let (n, reach) = unsafe { ((*path).nr_checks as u64, (*path).reach as u64) };
    if crate::kload::direct() {
        // A load per check is cheaper than the copy of the words up to the farthest.
        return direct_checks(slot, path, n);
    }
    let room = (slot & !(TASK_STACK_SIZE - 1)) + TASK_STACK_SIZE - slot;
    if reach > WINDOW_WORDS as u64 || 8 * reach > room {
        return one_by_one(slot, path, n);
    }
    // A size the verifier can bound: at most the buffer's, a multiple of 8.
    let size = ((reach as u32) & (2 * WINDOW_WORDS as u32 - 1)).min(WINDOW_WORDS as u32) * 8;
    // SAFETY: `scratch` holds WINDOW_WORDS u64s and `size` is at most their bytes; the helper
    // checks the source.
    let rc = unsafe { generated::bpf_probe_read_kernel(scratch as *mut c_void, size, slot as *const c_void) };
    if rc != 0 {
        return one_by_one(slot, path, n);
    }
    let mut diff = 0u64;
    for i in 0..STACK_PATH_CHECKS {
        // SAFETY: a value of the map (see pin_stack); the index is masked into the buffer, and
        // every check lies below `reach`, which the read brought in.
        let (at, want) = unsafe { ((*path).check_at[i] as usize, (*path).check_word[i]) };
        // SAFETY: as above.
        let word = unsafe { (*scratch)[at & (WINDOW_WORDS - 1)] };
        diff |= below(i, n) & (word ^ want);
    }
    diff == 0
}

/// The checks of [`still_there`] where loads are direct (crate::kload): a load each, the path's
/// `n` only (a Direct I/O path has about half of [`STACK_PATH_CHECKS`]). The loop ends at `n`:
/// the verifiers that allow direct loads (6.2+) prune its exits as one (the code after it
/// does not depend on where it stopped); the 6.1 one never walks it.
#[inline(always)]
fn direct_checks(slot: u64, path: *const StackPath, n: u64) -> bool {
    let mut diff = 0u64;
    for i in 0..STACK_PATH_CHECKS {
        if i as u64 >= n {
            break;
        }
        // SAFETY: a value of the map (see pin_stack).
        let (at, want) = unsafe { ((*path).check_at[i] as u64, (*path).check_word[i]) };
        diff |= crate::kload::word(slot + 8 * (at & 0x7ff)) ^ want;
    }
    diff == 0
}

/// The checks of [`still_there`], a load each (crate::kload: a direct load where the kernel
/// allows it, else a call of the read helper; a failed read gives 0, which is no return
/// address: a mismatch).
#[inline(always)]
fn one_by_one(slot: u64, path: *const StackPath, n: u64) -> bool {
    let mut diff = 0u64;
    for i in 0..STACK_PATH_CHECKS {
        // SAFETY: a value of the map (see pin_stack).
        let (at, want) = unsafe { ((*path).check_at[i] as u64, (*path).check_word[i]) };
        let word = crate::kload::word(slot + 8 * (at & 0x7ff));
        diff |= below(i, n) & (word ^ want);
    }
    diff == 0
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
