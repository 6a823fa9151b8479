//! Bios and their user pages: bio_iov_iter_get_pages (the bio acquires its user pages) and
//! __bio_release_pages (the pages are unpinned or put). Each streams a [`BioRecord`] for the pin
//! ledger, with the owner, the flags and the pages of the bio's vecs. The I/O's completion
//! between them comes from the block layer's completion records (crate::latency), which list
//! the bios they complete; userspace times the bios' holds and unpin lags from these records.

// Program names follow the kernel functions they probe (`fentry___bio_release_pages`), as the
// catalogue in tracer-common expects.
#![allow(non_snake_case, reason = "program names are the kernel functions they probe: fentry___bio_release_pages")]

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated},
    macros::{fentry, fexit, kprobe, map},
    maps::Array,
    programs::{FEntryContext, FExitContext, ProbeContext},
};
use tracer_common::{
    BioEvent, BioWire, LostReason, Owner, ProbeId, RecordType, BIO_CHUNK_SHIFT, BIO_FLAG_MARK_DIRTY, BIO_FLAG_PINNED,
    BIO_FLAG_QUEUED, BIO_FLAG_TRUNCATED, BIO_FLAG_UNPINS_LISTED, BIO_HEAD_BYTES_MAX, BIO_MAX_CHUNKS,
    BIO_WIRE_VEC_BYTES, COMM_LEN, OFFSET_UNKNOWN,
};

use crate::{
    maps::{count, lost, read_at, submit_flags, submitted, EVENTS},
    typed::load,
};

/// Whether the bio's flags tell a bio holding user pages for I/O (6.2+: BIO_PAGE_PINNED).
#[inline(always)]
fn marked_by_kernel() -> bool {
    member!(bio_pinned_bit) != OFFSET_UNKNOWN
}

/// Whether `bi_flags` has BIO_PAGE_PINNED (on kernels that have it: [`marked_by_kernel`]).
#[inline(always)]
fn pinned_mark(bi_flags: u16) -> bool {
    (bi_flags as u32 >> (member!(bio_pinned_bit) & 15)) & 1 == 1
}

// Releases list their unpins. __bio_release_pages unpins its bio's pages folio by folio with
// unpin_user_folio(folio, npages): as many page records as folios (16 for a 64 KiB bio of small
// pages), each the dearest record there is. The release record has the bio's vecs already, so
// once both probes are attached (BIO_COVER), a pinned bio's release lists its whole vec array
// and says so (BIO_FLAG_UNPINS_LISTED), and the unpin probe counts the calls made from
// __bio_release_pages' text without a record (crate::unpin). Userspace turns the listed pages
// into those unpins (tracer/src/engine/pages/release.rs, `listed_unpins`).

/// Where __bio_release_pages lies in kernel text, [start, end); patched by the loader, 0 when
/// not known (then nothing is listed or skipped).
#[unsafe(no_mangle)]
static BIO_RELEASE_START: u64 = 0;
#[unsafe(no_mangle)]
static BIO_RELEASE_END: u64 = 0;

/// Index 0: 0 until the loader has both probes attached, 1 once it has (releases list their
/// unpins), 2 once every probe is (the unpin probe skips them: a release that began before it
/// lists them too, so one in progress at the switch is counted twice, never lost).
#[map(name = "BIO_COVER")]
static BIO_COVER: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
fn cover_stage() -> u64 {
    // SAFETY: a u64 of the map, written by the loader only.
    BIO_COVER.get_ptr(0).map_or(0, |p| unsafe { core::ptr::read_volatile(p) })
}

/// Whether an unpin whose return address is `caller` was made by __bio_release_pages of a bio
/// whose release record lists it (the unpin probe then streams nothing).
#[inline(always)]
pub fn listed_by_release(caller: u64) -> bool {
    // SAFETY: read-only globals patched by the loader; volatile keeps the compiler from folding them.
    let (start, end) =
        unsafe { (core::ptr::read_volatile(&BIO_RELEASE_START), core::ptr::read_volatile(&BIO_RELEASE_END)) };
    caller > start && caller < end && cover_stage() >= 2
}

// int bio_iov_iter_get_pages(struct bio *bio, struct iov_iter *iter, ...). No kretprobe fallback:
// a kretprobe cannot see the bio argument.
with_backups!(
    #[fexit(function = "bio_iov_iter_get_pages")]
    fexit_bio_iov_iter_get_pages,
    bio_iov_iter_get_pages,
    ProbeId::BioIovIterGetPages,
    |ctx: FExitContext| try_bio_got_pages(ctx.arg::<u64>(0), ctx.ret::<i64>().unwrap_or(-1))
);

/// Whether a bio holds its pages: pinned (BIO_PAGE_PINNED set, 6.2+) or referenced
/// (BIO_NO_PAGE_REF clear, before). A bio over a bvec iterator (io_uring fixed buffers, loop
/// with direct I/O) holds nothing and is never released page by page. `TYPED`: `bio` is a
/// BTF-typed pointer (crate::typed), not a kprobe's number.
#[inline(always)]
pub fn holds_pages<const TYPED: bool>(bio: u64) -> bool {
    let bi_flags = if TYPED { load::<u16>(bio, member!(bio_flags)) } else { read_at::<u16>(bio, member!(bio_flags)) };
    let bi_flags = bi_flags.unwrap_or(0);
    if marked_by_kernel() {
        pinned_mark(bi_flags)
    } else if member!(bio_no_page_ref_bit) != OFFSET_UNKNOWN {
        (bi_flags as u32 >> (member!(bio_no_page_ref_bit) & 15)) & 1 == 0
    } else {
        true
    }
}

#[inline(always)]
fn try_bio_got_pages(bio: u64, ret: i64) -> u32 {
    if ret != 0 || !holds_pages::<true>(bio) {
        return 0;
    }
    count(ProbeId::BioIovIterGetPages, 0);
    record::<true>(BioEvent::Acquire, bio, 0, 0);
    0
}

/// 1 when the block_bio_queue program streams acquisitions (patched by the loader:
/// tracer_common::names::ACQUIRE_AT_QUEUE): on kernels that mark the bios holding pinned
/// pages (BIO_PAGE_PINNED, 6.2+), a bio's first queueing (`block_bio_queue` fires once per bio:
/// BIO_TRACE_COMPLETION) sees the vecs bio_iov_iter_get_pages filled, in the same thread, and
/// one attach point per I/O fewer is run. The clones and splits the block layer makes carry no
/// pin mark. Where it is 0, bio_iov_iter_get_pages' own probe streams them.
#[unsafe(no_mangle)]
static ACQUIRE_AT_QUEUE: u64 = 0;

/// The acquisition of a bio at its queueing (see [`ACQUIRE_AT_QUEUE`]), from the block_bio_queue
/// program: whether it streamed one (flagged BIO_FLAG_QUEUED: it also starts the bio's `q2c`,
/// and the queue program streams no block record of its own).
#[inline(always)]
pub fn acquired_at_queue(bio: u64) -> bool {
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    if unsafe { core::ptr::read_volatile(&ACQUIRE_AT_QUEUE) } == 0 || !marked_by_kernel() || !holds_pages::<true>(bio) {
        return false;
    }
    count(ProbeId::BioIovIterGetPages, 0);
    record::<true>(BioEvent::Acquire, bio, BIO_FLAG_QUEUED, 0);
    true
}

// void __bio_release_pages(struct bio *bio, bool mark_dirty)
with_backups!(
    #[fentry(function = "__bio_release_pages")]
    fentry___bio_release_pages,
    __bio_release_pages,
    ProbeId::BioReleasePages,
    |ctx: FEntryContext| try_bio_release_pages::<true>(ctx.arg::<u64>(0), ctx.arg::<u64>(1) & 0xff != 0)
);

#[kprobe]
pub fn kprobe___bio_release_pages(ctx: ProbeContext) -> u32 {
    try_bio_release_pages::<false>(ctx.arg::<u64>(0).unwrap_or(0), ctx.arg::<u64>(1).unwrap_or(0) & 0xff != 0)
}

#[inline(always)]
fn try_bio_release_pages<const TYPED: bool>(bio: u64, mark_dirty: bool) -> u32 {
    count(ProbeId::BioReleasePages, 0);
    let dirty = if mark_dirty { BIO_FLAG_MARK_DIRTY } else { 0 };
    if cover_stage() >= 1 && holds_pages::<TYPED>(bio) && marked_by_kernel() {
        // Every slice of the vec array, each in a record of its own.
        let vcnt = if TYPED { load::<u16>(bio, member!(bio_vcnt)) } else { read_at::<u16>(bio, member!(bio_vcnt)) };
        let array_bytes = vcnt.unwrap_or(0) as u32 * member!(bvec_size);
        for chunk in 0..BIO_MAX_CHUNKS {
            if chunk > 0 && chunk * BIO_WIRE_VEC_BYTES as u32 >= array_bytes {
                break;
            }
            record::<TYPED>(BioEvent::Release, bio, dirty | BIO_FLAG_UNPINS_LISTED, chunk);
        }
    } else {
        record::<TYPED>(BioEvent::Release, bio, dirty, 0);
    }
    0
}

// The vec area takes words (crate::kload::copy_words) and the bio's head (fields).
const _: () = assert!(core::mem::offset_of!(BioWire, vecs) % 8 == 0);

/// The members of a bio a record needs.
struct BioFields {
    /// The device number (`bi_bdev->bd_dev`).
    dev: u32,
    /// None when unreadable (the record's op is then unknown).
    opf: Option<u32>,
    flags: u16,
    size: u32,
    vcnt: u16,
    io_vec: u64,
}

/// Reads the members of `bio` a record needs: `TYPED` (a BTF-typed `bio`), a load each
/// (crate::typed); else in one read of the bio's first `bio_head_bytes` into `buf` when this
/// kernel's layout has them there (every supported one does), else (or when that read fails)
/// one read each.
///
/// # Safety
/// `buf` is writable memory of BIO_WIRE_VEC_BYTES, 8-aligned.
#[inline(always)]
unsafe fn fields<const TYPED: bool>(bio: u64, buf: *mut [u8; BIO_WIRE_VEC_BYTES]) -> BioFields {
    if TYPED {
        let bdev: u64 = load(bio, member!(bio_bdev)).unwrap_or(0);
        return BioFields {
            dev: load(bdev, member!(bdev_dev)).unwrap_or(0),
            opf: load::<u32>(bio, member!(bio_opf)),
            flags: load(bio, member!(bio_flags)).unwrap_or(0),
            size: load(bio, member!(bio_size)).unwrap_or(0),
            vcnt: load(bio, member!(bio_vcnt)).unwrap_or(0),
            // Loaded typed, then made a number (the vec array is copied from a computed place,
            // a slice of it, and the verifier allows no computed offset on a typed pointer).
            // SAFETY: `buf` is writable, 8-aligned and free until the vecs are read (see above).
            io_vec: load::<u64>(bio, member!(bio_io_vec))
                .map_or(0, |p| unsafe { crate::typed::as_number(p, buf as *mut u64) }),
        };
    }
    let span = member!(bio_head_bytes);
    if span != OFFSET_UNKNOWN && bio != 0 {
        // Bounded for the verifier: a multiple of 8 up to BIO_HEAD_BYTES_MAX.
        let size = span & BIO_HEAD_BYTES_MAX;
        // SAFETY: `buf` holds BIO_WIRE_VEC_BYTES >= BIO_HEAD_BYTES_MAX bytes; the helper checks
        // the source.
        let rc = unsafe { generated::bpf_probe_read_kernel(buf as *mut c_void, size, bio as *const c_void) };
        if rc == 0 {
            let base = buf as *const u8;
            // SAFETY: each offset, masked to its member's alignment, ends within the buffer
            // (userspace checked that every member ends within `span`).
            return unsafe {
                BioFields {
                    dev: read_at(
                        core::ptr::read_volatile(base.add((member!(bio_bdev) & 0xf8) as usize) as *const u64),
                        member!(bdev_dev),
                    )
                    .unwrap_or(0),
                    opf: Some(core::ptr::read_volatile(base.add((member!(bio_opf) & 0xfc) as usize) as *const u32)),
                    flags: core::ptr::read_volatile(base.add((member!(bio_flags) & 0xfe) as usize) as *const u16),
                    size: core::ptr::read_volatile(base.add((member!(bio_size) & 0xfc) as usize) as *const u32),
                    vcnt: core::ptr::read_volatile(base.add((member!(bio_vcnt) & 0xfe) as usize) as *const u16),
                    io_vec: core::ptr::read_volatile(base.add((member!(bio_io_vec) & 0xf8) as usize) as *const u64),
                }
            };
        }
    }
    BioFields {
        dev: read_at(read_at::<u64>(bio, member!(bio_bdev)).unwrap_or(0), member!(bdev_dev)).unwrap_or(0),
        opf: read_at::<u32>(bio, member!(bio_opf)),
        flags: read_at(bio, member!(bio_flags)).unwrap_or(0),
        size: read_at(bio, member!(bio_size)).unwrap_or(0),
        vcnt: read_at(bio, member!(bio_vcnt)).unwrap_or(0),
        io_vec: read_at(bio, member!(bio_io_vec)).unwrap_or(0),
    }
}

/// Streams one [`BioWire`]: the owner, the bio's device, op and flags, and for Acquire and
/// Release the bio's vec array, copied raw in one read: slice `chunk` of it (of
/// BIO_WIRE_VEC_BYTES each). `TYPED`: as for [`holds_pages`].
#[inline(always)]
fn record<const TYPED: bool>(event: BioEvent, bio: u64, extra_flags: u32, chunk: u32) {
    let Some(mut entry) = EVENTS.reserve::<BioWire>(0) else {
        lost(LostReason::RingFull);
        return;
    };
    let w = entry.as_mut_ptr();
    // SAFETY: `w` is the reserved slot (see below); its vec area is free until the vecs are read.
    let bio_of = unsafe { fields::<TYPED>(bio, core::ptr::addr_of_mut!((*w).vecs)) };
    let chunk = chunk & 0xf;
    let mut flags = extra_flags | chunk << BIO_CHUNK_SHIFT;
    if marked_by_kernel() && pinned_mark(bio_of.flags) {
        flags |= BIO_FLAG_PINNED;
    }
    let nr_vecs = bio_of.vcnt as u32;
    let bvec_size = member!(bvec_size);
    let layout_known = bvec_size != OFFSET_UNKNOWN && bvec_size > 0 && bvec_size < 256;
    // SAFETY: `w` points at the reserved, exclusively owned ring buffer slot of a BioWire; every
    // field is written before submit, `vecs` partly, which userspace bounds with `vec_bytes`.
    unsafe {
        (*w).record = RecordType::Bio as u32;
        (*w).event = event as u32;
        (*w).ts_ns = bpf_ktime_get_ns();
        (*w).bio = bio;
        (*w).dev = bio_of.dev;
        (*w).op = bio_of.opf.map_or(u32::MAX, |f| f & 0xff);
        (*w).flags = flags;
        (*w).status = 0;
        (*w).bytes = bio_of.size;
        (*w).nr_vecs = nr_vecs;
        (*w).owner = crate::owner::current();
        (*w).bvec_size = bvec_size as u8;
        (*w).bvec_page = member!(bvec_page) as u8;
        (*w).bvec_len = member!(bvec_len) as u8;
        (*w).bvec_offset = member!(bvec_offset) as u8;
        (*w).vec_bytes = 0;
        if layout_known {
            let skip = chunk * BIO_WIRE_VEC_BYTES as u32;
            let vecs: u64 = bio_of.io_vec.wrapping_add(skip as u64);
            // One read of a fixed size (a variable size loses its bound in the verifier), the
            // smallest of one vec, four or the whole slice that holds it (the helper copies word
            // by word, and a 4 KiB Direct I/O has one vec): the slice plus whatever follows it;
            // userspace reads only `vec_bytes` of it.
            let mut size = (nr_vecs * bvec_size).saturating_sub(skip);
            if size > BIO_WIRE_VEC_BYTES as u32 {
                size = BIO_WIRE_VEC_BYTES as u32;
                if extra_flags & BIO_FLAG_UNPINS_LISTED == 0 || chunk + 1 == BIO_MAX_CHUNKS {
                    (*w).flags |= BIO_FLAG_TRUNCATED;
                }
            }
            if vecs != 0 && size > 0 {
                let dst = core::ptr::addr_of_mut!((*w).vecs) as *mut c_void;
                let src = vecs as *const c_void;
                let direct = crate::kload::direct() && size <= 64;
                let rc = if direct {
                    // Direct loads (crate::kload), a word each: one vec (two words) or four; a
                    // failed load reads 0, which no vec's page is.
                    let words = dst as *mut u64;
                    let copied = if size <= 16 {
                        crate::kload::copy_words::<2>(words, vecs)
                    } else {
                        crate::kload::copy_words::<8>(words, vecs)
                    };
                    if copied {
                        0
                    } else {
                        -1
                    }
                } else if size <= 16 {
                    generated::bpf_probe_read_kernel(dst, 16, src)
                } else if size <= 64 {
                    generated::bpf_probe_read_kernel(dst, 64, src)
                } else {
                    generated::bpf_probe_read_kernel(dst, BIO_WIRE_VEC_BYTES as u32, src)
                };
                if rc == 0 {
                    (*w).vec_bytes = size;
                }
            }
        }
    }
    entry.submit(submit_flags());
    submitted();
}
