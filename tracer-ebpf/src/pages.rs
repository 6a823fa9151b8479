//! Page records: the pages one pin, reference or unpin call names, each with its folio (head
//! page), the owner and the kernel stack of the call, streamed as [`PagesWire`] records.

use core::{
    ffi::c_void,
    intrinsics::{atomic_and, atomic_or, AtomicOrdering},
};

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated},
    macros::map,
    maps::PerCpuArray,
    EbpfContext,
};
use tracer_common::{
    bench_skip, head_of, LostReason, Owner, PageEntry, PageEvent, PagesHeader, PagesWire, ProbeId, RecordType,
    COMM_LEN, OFFSET_UNKNOWN, PAGES_FLAG_TRUNCATED, PAGES_FLAG_UNLISTED, PAGES_MAX_ENTRIES, PAGES_STACK_FRAMES,
    RELEASE_STACK_FRAMES,
};

use crate::maps::{lost, submit_flags, submitted, EVENTS};

/// Records [`emit`] can build at once on one CPU: interrupts nest in a program, and in process
/// context a thread can be preempted inside one (tracing programs run with migration, not
/// preemption, disabled) and another thread run the same program on the CPU. Each build claims
/// a buffer of its own in [`BUSY`].
const SCRATCH_LEVELS: u32 = 8;

/// Per-CPU buffers the records are built in.
#[map(name = "PAGES_SCRATCH")]
static SCRATCH: PerCpuArray<PagesWire> = PerCpuArray::with_max_entries(SCRATCH_LEVELS, 0);

/// Per-CPU, per buffer: a call's `struct page *` or `struct folio *` array, copied in one read.
#[map(name = "PAGES_RAW")]
static RAW: PerCpuArray<[u64; PAGES_MAX_ENTRIES]> = PerCpuArray::with_max_entries(SCRATCH_LEVELS, 0);

/// Per-CPU: bit i set while buffer i is in use. Claimed and released with atomic operations:
/// builds on one CPU are not nested last-in first-out once preemption interleaves them.
#[map(name = "PAGES_BUSY")]
static BUSY: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The parts of a record left out for a benchmark's ablation ([`bench_skip`]; patched by the
/// loader: tracer_common::names::BENCH_SKIP). 0 in every user's run: a known value to the
/// verifier, which then leaves out the skipping code.
#[unsafe(no_mangle)]
static BENCH_SKIP: u64 = 0;

#[inline(always)]
pub fn skipped(part: u64) -> bool {
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    unsafe { core::ptr::read_volatile(&BENCH_SKIP) & part != 0 }
}

/// Where a call's entries are.
#[derive(Clone, Copy)]
pub enum Source {
    /// `struct page **pages`, `n` of them.
    PageArray(u64),
    /// `n` contiguous pages starting at this struct page.
    Range(u64),
    /// `struct folio **folios`, `n` of them.
    FolioArray(u64),
    /// One folio (`n` = 1).
    Folio(u64),
    /// The entries cannot be seen (a kretprobe sees only the count).
    Unlisted,
}

/// One call.
#[derive(Clone, Copy)]
pub struct Call {
    pub event: PageEvent,
    pub probe: ProbeId,
    pub source: Source,
    /// Entries.
    pub n: u32,
    /// References per entry.
    pub refs: u32,
    pub gup_flags: u32,
    pub flags: u32,
    /// Run by an fentry or fexit program: a release's caller is read from the trampoline's
    /// frame ([`crate::maps::fentry_caller`]), a pin's stack comes from its learned path
    /// ([`crate::stack::pin_stack`]); both walk the stack when that fails.
    pub trampoline: bool,
}

/// Where a page's compound_head is: `offset` into struct page, and a `mask` that is all ones,
/// or 0 when the offset is unknown (the read of address 0 fails: every page is its own folio).
#[derive(Clone, Copy)]
struct HeadAt {
    offset: u64,
    mask: u64,
}

/// The folio of `page`: its head page. A tail page's compound_head (compound_info from 7.0) has
/// bit 0 set and holds either its head page's address + 1, or, on 7.0+ kernels with HugeTLB
/// vmemmap optimization and a 64-byte struct page, a mask + 1 that gives the head page from the
/// tail page's own address (`page & mask`: all tail pages of one order hold the same word).
/// The two are told apart by value: a mask is ones down to bit `order + 6` and zeros below,
/// which no struct page address is (vmemmap lies far below the top of the address space).
/// [`head_of`] is that rule; it is pure, so the host tests it too (tracer-common).
/// Branch-free (the verifier walks every branch of every loop iteration): a failed read leaves
/// 0, whose bit 0 is clear, so the page counts as its own folio (crate::kload: a direct load
/// where the kernel allows it).
#[inline(always)]
fn folio_of(page: u64, at: HeadAt) -> u64 {
    head_of(page, crate::kload::word(page.wrapping_add(at.offset) & at.mask))
}

/// `v`, with everything the compiler knows about it forgotten: a mask applied to the result
/// stays in the program, where the 6.1 verifier needs it to bound a size or an index that
/// LLVM knows to be in range (and would otherwise emit unmasked).
#[inline(always)]
fn opaque<T: Copy>(v: T) -> T {
    // SAFETY: reading a local through a valid reference.
    unsafe { core::ptr::read_volatile(&v) }
}

/// The call's array could not be read: the record goes out with its count only (unlisted).
#[inline(always)]
fn unreadable(w: *mut PagesWire) {
    // SAFETY: `w` is this CPU's buffer for this nesting level.
    unsafe {
        (*w).header.n = 0;
        (*w).header.flags |= PAGES_FLAG_UNLISTED;
    }
    output(w, core::mem::size_of::<PagesHeader>() as u64);
}

/// Copies the first `size` bytes of the record in `w` into the ring buffer.
#[inline(always)]
fn output(w: *mut PagesWire, size: u64) {
    if skipped(bench_skip::OUTPUT) {
        return;
    }
    // SAFETY: callers pass size <= size_of::<PagesWire>(), the size of `w`'s buffer.
    let rc = unsafe {
        generated::bpf_ringbuf_output(
            core::ptr::addr_of!(EVENTS) as *mut c_void,
            w as *mut c_void,
            size,
            submit_flags(),
        )
    };
    if rc == 0 {
        submitted();
    } else {
        lost(LostReason::RingFull);
    }
}

/// Whether the call's record lists its entries (they can be seen, and no benchmark's ablation
/// leaves them out).
#[inline(always)]
fn listed(call: Call) -> bool {
    !matches!(call.source, Source::Unlisted) && !skipped(bench_skip::PAGES)
}

/// Where this kernel's `struct page` keeps compound_head ([`HeadAt`]).
#[inline(always)]
fn head_at() -> HeadAt {
    match member!(page_compound_head) {
        OFFSET_UNKNOWN => HeadAt { offset: 0, mask: 0 },
        known => HeadAt { offset: known as u64, mask: u64::MAX },
    }
}

/// Writes the record's header at `h` for `n` listed entries with `flags`, the call's stack
/// included (`number` and `window`: as [`crate::stack::pin_stack`] wants them).
///
/// # Safety
/// `h` is this call's record, exclusively its own; `number` a word of it free meanwhile;
/// `window` this call's page array buffer, or null where loads are direct (crate::kload).
#[inline(always)]
unsafe fn fill_header<C: EbpfContext>(
    ctx: &C,
    call: Call,
    h: *mut PagesHeader,
    n: u32,
    flags: u32,
    number: *mut u64,
    window: *mut [u64; PAGES_MAX_ENTRIES],
) {
    // SAFETY: the caller's promises.
    unsafe {
        *h = PagesHeader {
            record: RecordType::Pages as u32,
            event: call.event as u32,
            // SAFETY: helper without preconditions.
            ts_ns: bpf_ktime_get_ns(),
            probe: call.probe as u32,
            gup_flags: call.gup_flags,
            nr: call.n,
            n,
            refs: call.refs,
            nr_frames: 0,
            flags,
            _pad: 0,
            owner: owner(),
            frames: [0; PAGES_STACK_FRAMES],
        };
        // The kernel stack, straight into the record (a stack map would lose stacks to hash
        // collisions); releases only down to their caller (RELEASE_STACK_FRAMES). Two calls
        // with constant sizes: the 6.1 verifier wants the size bounded exactly.
        let frames = core::ptr::addr_of_mut!((*h).frames) as *mut c_void;
        // A release is named by its caller only: the one frame it needs, without a walk. The
        // caller's value is only stored (never tested afterwards), so the verifier's paths
        // meet again right after (6.1 verified the rest once per path: minutes under TCG).
        let pin = matches!(call.event, PageEvent::Pin | PageEvent::Get);
        let caller = if call.trampoline && !pin { crate::maps::fentry_caller(ctx) } else { None };
        let bytes = if skipped(bench_skip::STACK) {
            8
        } else if let Some(caller) = caller {
            (*h).frames[0] = caller;
            8
        } else if pin && call.trampoline && crate::stack::learned_paths() {
            crate::stack::pin_stack(ctx, call.probe, frames as *mut [u64; PAGES_STACK_FRAMES], number, window)
        } else if pin {
            crate::stack::walk(ctx, frames as *mut [u64; PAGES_STACK_FRAMES])
        } else {
            generated::bpf_get_stack(ctx.as_ptr(), frames, (8 * RELEASE_STACK_FRAMES) as u32, 0)
        };
        if bytes > 0 {
            (*h).nr_frames = (bytes as u32) / 8;
        } else {
            lost(LostReason::StackLost);
        }
    }
}

/// A record of one entry, as [`emit_one`] reserves it.
#[repr(C)]
struct PagesOne {
    header: PagesHeader,
    entry: PageEntry,
}

/// [`emit`] for a call of one listed entry where loads are direct (crate::kload), which is
/// every 4 KiB Direct I/O's pin and most unpins: the record is built in place in the ring
/// buffer (no buffer to claim, no copy), its entry read with a direct load; the learned
/// path's checks need no window there. A page array whose entry reads 0 (unreadable) goes out
/// unlisted, as [`emit`]'s does.
#[inline(always)]
fn emit_one<C: EbpfContext>(ctx: &C, call: Call) {
    let Some(mut slot) = EVENTS.reserve::<PagesOne>(0) else {
        lost(LostReason::RingFull);
        return;
    };
    let w = slot.as_mut_ptr();
    let head_off = head_at();
    let (page, folio) = match call.source {
        Source::PageArray(array) => {
            let page = crate::kload::word(array);
            (page, folio_of(page, head_off))
        }
        Source::Range(page) => (page, folio_of(page, head_off)),
        Source::FolioArray(array) => (0, crate::kload::word(array)),
        Source::Folio(folio) => (0, folio),
        Source::Unlisted => (0, 0),
    };
    let (n, flags) = if page == 0 && folio == 0 { (0, call.flags | PAGES_FLAG_UNLISTED) } else { (1, call.flags) };
    // SAFETY: `w` is the reserved, exclusively owned ring buffer slot of a PagesOne; the
    // header and the entry are written in full before submit (the entry's page word serves
    // as the stack's number first, then is overwritten); no window: loads are direct here.
    unsafe {
        fill_header(ctx, call, &raw mut (*w).header, n, flags, &raw mut (*w).entry.page, core::ptr::null_mut());
        (*w).entry = PageEntry { page, folio };
    }
    if skipped(bench_skip::OUTPUT) {
        slot.discard(0);
        return;
    }
    slot.submit(submit_flags());
    submitted();
}

/// Streams the call as one record: the header and up to [`PAGES_MAX_ENTRIES`] entries, built
/// in a buffer of this CPU claimed for the call and copied into the ring buffer.
#[inline(always)]
pub fn emit<C: EbpfContext>(ctx: &C, call: Call) {
    if call.n == 0 || skipped(bench_skip::RECORD) {
        return;
    }
    if call.n == 1 && crate::kload::direct() && listed(call) {
        return emit_one(ctx, call);
    }
    let Some(busy) = BUSY.get_ptr_mut(0) else { return };
    let mut level = SCRATCH_LEVELS;
    for i in 0..SCRATCH_LEVELS {
        let bit = 1u64 << i;
        // SAFETY: this CPU's slot, only ever changed atomically.
        if unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(busy, bit) } & bit == 0 {
            level = i;
            break;
        }
    }
    if level >= SCRATCH_LEVELS {
        lost(LostReason::ScratchBusy);
        return;
    }
    if let (Some(w), Some(raw)) = (SCRATCH.get_ptr_mut(level), RAW.get_ptr_mut(level)) {
        fill(ctx, call, w, raw);
    }
    // SAFETY: as above.
    unsafe { atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(busy, !(1u64 << level)) };
}

/// The task the call runs in (zeros when a benchmark's ablation leaves it out).
#[inline(always)]
fn owner() -> Owner {
    if skipped(bench_skip::OWNER) {
        return Owner { tgid: 0, pid: 0, cgroup: 0, comm: [0; COMM_LEN] };
    }
    crate::owner::current()
}

#[inline(always)]
fn fill<C: EbpfContext>(ctx: &C, call: Call, w: *mut PagesWire, raw: *mut [u64; PAGES_MAX_ENTRIES]) {
    let head_off = head_at();
    let listed = listed(call);
    let mut flags = call.flags;
    if !listed {
        flags |= PAGES_FLAG_UNLISTED;
    } else if call.n > PAGES_MAX_ENTRIES as u32 {
        flags |= PAGES_FLAG_TRUNCATED;
    }
    let n = if !listed {
        0
    } else if call.n > PAGES_MAX_ENTRIES as u32 {
        PAGES_MAX_ENTRIES as u32
    } else {
        call.n
    };
    // SAFETY: `w` is this CPU's buffer for this nesting level, exclusively ours meanwhile; its
    // page array buffer `raw` is free until the array is copied into it.
    unsafe { fill_header(ctx, call, &raw mut (*w).header, n, flags, &raw mut (*raw)[0], raw) };
    // The record size, computed before the loops: the loops narrow what the verifier knows of
    // `n` differently at each exit, and a size derived from `n` after them would make it
    // verify the rest of the program once per exit.
    let size = (core::mem::size_of::<PagesHeader>() + core::mem::size_of::<PageEntry>() * n as usize) as u64;
    let size = opaque(size) & 0x3fff;
    if size > core::mem::size_of::<PagesWire>() as u64 {
        return;
    }
    // One loop per source, each with a straight body: cheap for the verifier.
    let entries = w as u64 + core::mem::size_of::<PagesHeader>() as u64;
    let put = |i: usize, page: u64, folio: u64| {
        // SAFETY: i < PAGES_MAX_ENTRIES, inside the buffer.
        unsafe { *(entries as *mut PageEntry).add(i) = PageEntry { page, folio } };
    };
    // The array of a call is copied in one read of a fixed size (the 6.1 verifier loses the
    // bounds of a computed size): the smallest of 8, 64, 256, 512, 1024, 2048 or 4096 bytes that
    // holds it (the helper copies word by word: a 4 KiB read's single page costs 8 bytes).
    // Reading past the array's end is harmless unless that crosses into unmapped memory; then
    // the record goes out unlisted (counted, not followed).
    let copy_array = |array: u64| -> bool {
        if crate::kload::direct() && n <= 8 {
            // Direct loads (crate::kload): one word for a single page, eight as the 64-byte
            // read would; a failed load reads 0, which no entry of a call's array is.
            // SAFETY: direct loads are on; `raw` holds PAGES_MAX_ENTRIES >= 8 u64s.
            return unsafe {
                if n <= 1 {
                    crate::kload::copy_words::<1>(raw as *mut u64, array)
                } else {
                    crate::kload::copy_words::<8>(raw as *mut u64, array)
                }
            };
        }
        let dst = raw as *mut c_void;
        let src = array as *const c_void;
        // SAFETY: `raw` holds PAGES_MAX_ENTRIES u64s (4096 bytes), as many as the largest size below;
        // the helper checks the source.
        let rc = unsafe {
            if n <= 1 {
                generated::bpf_probe_read_kernel(dst, 8, src)
            } else if n <= 8 {
                generated::bpf_probe_read_kernel(dst, 64, src)
            } else if n <= 32 {
                generated::bpf_probe_read_kernel(dst, 256, src)
            } else if n <= 64 {
                generated::bpf_probe_read_kernel(dst, 512, src)
            } else if n <= 128 {
                generated::bpf_probe_read_kernel(dst, 1024, src)
            } else if n <= 256 {
                generated::bpf_probe_read_kernel(dst, 2048, src)
            } else {
                generated::bpf_probe_read_kernel(dst, 4096, src)
            }
        };
        rc == 0
    };
    match call.source {
        Source::PageArray(array) => {
            if !copy_array(array) {
                return unreadable(w);
            }
            for i in 0..PAGES_MAX_ENTRIES {
                if i as u32 >= n {
                    break;
                }
                // SAFETY: i < PAGES_MAX_ENTRIES.
                let page = unsafe { (*raw)[i] };
                put(i, page, folio_of(page, head_off));
            }
        }
        Source::Range(start) => {
            let size = match member!(struct_page_size) {
                OFFSET_UNKNOWN => 0,
                known => known as u64,
            };
            for i in 0..PAGES_MAX_ENTRIES {
                if i as u32 >= n {
                    break;
                }
                let page = start + i as u64 * size;
                put(i, page, folio_of(page, head_off));
            }
        }
        Source::FolioArray(array) => {
            if !copy_array(array) {
                return unreadable(w);
            }
            for i in 0..PAGES_MAX_ENTRIES {
                if i as u32 >= n {
                    break;
                }
                // SAFETY: i < PAGES_MAX_ENTRIES.
                put(i, 0, unsafe { (*raw)[i] });
            }
        }
        Source::Folio(folio) => put(0, 0, folio),
        Source::Unlisted => {}
    }
    output(w, size);
}
