//! I/O latency: request issue -> completion (D2C), bio queue -> completion (Q2C), and iomap
//! Direct I/O begin -> complete. All tp_btf, so they run on hosts that allow only tracepoints.
//! Start times wait in hash maps keyed by the request, bio or kiocb address; each completion
//! streams one [`LatencyEvent`] through the `EVENTS` ring buffer.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map},
    maps::{HashMap, RingBuf},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use tracer_common::{LatencyEvent, LatencyKind, LostReason, Offsets, ProbeId, OFFSET_UNKNOWN};

use crate::maps::{count, lost};

/// Kernel struct offsets from BTF, patched by the loader.
#[unsafe(no_mangle)]
static OFFSETS: Offsets = Offsets::UNKNOWN;

/// Bytes of the event ring buffer (a power of two multiple of the page size).
const EVENTS_BYTES: u32 = 8 << 20;
/// Requests, bios and DIO calls in flight that can be timed at once.
const IN_FLIGHT: u32 = 65536;
/// Bios of one request followed at completion (merged bios beyond this are not timed).
const MAX_BIOS_PER_RQ: usize = 16;

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// request address -> issue time.
#[map(name = "RQ_START")]
static RQ_START: HashMap<u64, u64> = HashMap::with_max_entries(IN_FLIGHT, 0);

/// bio address -> queue time.
#[map(name = "BIO_START")]
static BIO_START: HashMap<u64, u64> = HashMap::with_max_entries(IN_FLIGHT, 0);

/// What a DIO call looked like when it began.
#[repr(C)]
#[derive(Clone, Copy)]
struct DioStart {
    start_ns: u64,
    bytes: u64,
    dev: u32,
    op: u32,
}

/// kiocb address -> DIO start.
#[map(name = "DIO_START")]
static DIO_START: HashMap<u64, DioStart> = HashMap::with_max_entries(IN_FLIGHT, 0);

#[inline(always)]
fn offsets() -> Offsets {
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// Reads a `T` at `base + off`; None when the offset is unknown or the read faults.
#[inline(always)]
fn read_at<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == OFFSET_UNKNOWN {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address and reports faults.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

#[inline(always)]
fn emit(kind: LatencyKind, dev: u32, op: u32, bytes: u64, start_ns: u64, end_ns: u64) {
    match EVENTS.reserve::<LatencyEvent>(0) {
        Some(mut entry) => {
            entry.write(LatencyEvent { kind: kind as u32, dev, op, _pad: 0, bytes, start_ns, end_ns });
            entry.submit(0);
        }
        None => lost(LostReason::RingFull),
    }
}

#[inline(always)]
fn remember(map: &HashMap<u64, u64>, key: u64, ts: u64) {
    if map.insert(&key, &ts, 0).is_err() {
        lost(LostReason::StartMapFull);
    }
}

/// block_rq_issue(struct request *rq)
#[btf_tracepoint(function = "block_rq_issue")]
pub fn tp_btf_block_rq_issue(ctx: BtfTracePointContext) -> u32 {
    try_rq_issue(ctx.arg::<u64>(0))
}

#[inline(always)]
fn try_rq_issue(rq: u64) -> u32 {
    count(ProbeId::BlockRqIssue, 0);
    // SAFETY: helper without preconditions.
    remember(&RQ_START, rq, unsafe { bpf_ktime_get_ns() });
    0
}

/// block_rq_complete(struct request *rq, blk_status_t error, unsigned int nr_bytes)
#[btf_tracepoint(function = "block_rq_complete")]
pub fn tp_btf_block_rq_complete(ctx: BtfTracePointContext) -> u32 {
    try_rq_complete(ctx.arg::<u64>(0), ctx.arg::<u64>(2) & 0xffff_ffff)
}

#[inline(always)]
fn try_rq_complete(rq: u64, nr_bytes: u64) -> u32 {
    count(ProbeId::BlockRqComplete, nr_bytes);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let off = offsets();
    let part: u64 = read_at(rq, off.rq_part).unwrap_or(0);
    let dev: u32 = read_at(part, off.bdev_dev).unwrap_or(0);
    let op = read_at::<u32>(rq, off.rq_cmd_flags).map_or(u32::MAX, |f| f & 0xff);
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(start) = unsafe { RQ_START.get(&rq) }.copied() {
        let _ = RQ_START.remove(&rq);
        emit(LatencyKind::D2c, dev, op, nr_bytes, start, now);
    }
    // The request's bios complete with it: time each one that was seen queued.
    let mut bio: u64 = read_at(rq, off.rq_bio).unwrap_or(0);
    for _ in 0..MAX_BIOS_PER_RQ {
        if bio == 0 {
            break;
        }
        bio_done(bio, dev, op, now);
        bio = read_at(bio, off.bio_next).unwrap_or(0);
    }
    0
}

#[inline(always)]
fn bio_done(bio: u64, dev: u32, op: u32, now: u64) {
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(start) = unsafe { BIO_START.get(&bio) }.copied() {
        let _ = BIO_START.remove(&bio);
        let bytes: u32 = read_at(bio, offsets().bio_size).unwrap_or(0);
        emit(LatencyKind::Q2c, dev, op, bytes as u64, start, now);
    }
}

/// block_bio_queue(struct bio *bio)
#[btf_tracepoint(function = "block_bio_queue")]
pub fn tp_btf_block_bio_queue(ctx: BtfTracePointContext) -> u32 {
    try_bio_queue(ctx.arg::<u64>(0))
}

#[inline(always)]
fn try_bio_queue(bio: u64) -> u32 {
    count(ProbeId::BlockBioQueue, 0);
    // SAFETY: helper without preconditions.
    remember(&BIO_START, bio, unsafe { bpf_ktime_get_ns() });
    0
}

/// block_bio_complete(struct request_queue *q, struct bio *bio): bios of bio-based devices
/// (device mapper, ...), which never become requests.
#[btf_tracepoint(function = "block_bio_complete")]
pub fn tp_btf_block_bio_complete(ctx: BtfTracePointContext) -> u32 {
    try_bio_complete(ctx.arg::<u64>(1))
}

#[inline(always)]
fn try_bio_complete(bio: u64) -> u32 {
    count(ProbeId::BlockBioComplete, 0);
    let off = offsets();
    let bdev: u64 = read_at(bio, off.bio_bdev).unwrap_or(0);
    let dev: u32 = read_at(bdev, off.bdev_dev).unwrap_or(0);
    let op = read_at::<u32>(bio, off.bio_opf).map_or(u32::MAX, |f| f & 0xff);
    // SAFETY: helper without preconditions.
    bio_done(bio, dev, op, unsafe { bpf_ktime_get_ns() });
    0
}

/// A read/write-family system call in progress on a thread.
#[repr(C)]
#[derive(Clone, Copy)]
struct SysStart {
    start_ns: u64,
    /// Set by iomap_dio_rw_begin when the call does Direct I/O.
    dio: DioStart,
    did_dio: u32,
    _pad: u32,
}

/// thread id -> read/write system call in progress.
#[map(name = "SYS_START")]
static SYS_START: HashMap<u32, SysStart> = HashMap::with_max_entries(IN_FLIGHT, 0);

/// x86_64 system calls that can do Direct I/O on a file: read, write, pread64, pwrite64,
/// readv, writev, preadv, pwritev, preadv2, pwritev2 (the x86_64 syscall ABI is fixed).
#[inline(always)]
fn is_rw_syscall(id: i64) -> bool {
    matches!(id, 0 | 1 | 17 | 18 | 19 | 20 | 295 | 296 | 327 | 328)
}

#[inline(always)]
fn current_tid() -> u32 {
    aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32
}

/// sys_enter(struct pt_regs *regs, long id)
#[btf_tracepoint(function = "sys_enter")]
pub fn tp_btf_sys_enter(ctx: BtfTracePointContext) -> u32 {
    try_sys_enter(ctx.arg::<i64>(1))
}

#[inline(always)]
fn try_sys_enter(id: i64) -> u32 {
    if !is_rw_syscall(id) {
        return 0;
    }
    count(ProbeId::SysEnter, 0);
    let start = SysStart {
        // SAFETY: helper without preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        dio: DioStart { start_ns: 0, bytes: 0, dev: 0, op: 0 },
        did_dio: 0,
        _pad: 0,
    };
    if SYS_START.insert(&current_tid(), &start, 0).is_err() {
        lost(LostReason::StartMapFull);
    }
    0
}

/// sys_exit(struct pt_regs *regs, long ret)
#[btf_tracepoint(function = "sys_exit")]
pub fn tp_btf_sys_exit(_ctx: BtfTracePointContext) -> u32 {
    try_sys_exit()
}

#[inline(always)]
fn try_sys_exit() -> u32 {
    let tid = current_tid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(start) = (unsafe { SYS_START.get(&tid) }).copied() else { return 0 };
    count(ProbeId::SysExit, 0);
    let _ = SYS_START.remove(&tid);
    if start.did_dio != 0 {
        // SAFETY: helper without preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        emit(LatencyKind::Syscall, start.dio.dev, start.dio.op, start.dio.bytes, start.start_ns, now);
    }
    0
}

/// iomap_dio_rw_begin(struct kiocb *iocb, struct iov_iter *iter, unsigned int dio_flags,
/// size_t done_before)
#[btf_tracepoint(function = "iomap_dio_rw_begin")]
pub fn tp_btf_iomap_dio_rw_begin(ctx: BtfTracePointContext) -> u32 {
    try_dio_begin(ctx.arg::<u64>(0), ctx.arg::<u64>(1))
}

#[inline(always)]
fn try_dio_begin(iocb: u64, iter: u64) -> u32 {
    count(ProbeId::IomapDioBegin, 0);
    let off = offsets();
    let file: u64 = read_at(iocb, off.kiocb_filp).unwrap_or(0);
    let inode: u64 = read_at(file, off.file_inode).unwrap_or(0);
    let sb: u64 = read_at(inode, off.inode_sb).unwrap_or(0);
    let start = DioStart {
        // SAFETY: helper without preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        bytes: read_at(iter, off.iter_count).unwrap_or(0),
        dev: read_at(sb, off.sb_dev).unwrap_or(0),
        op: read_at::<u8>(iter, off.iter_data_source).map_or(u32::MAX, |w| (w != 0) as u32),
    };
    if DIO_START.insert(&iocb, &start, 0).is_err() {
        lost(LostReason::StartMapFull);
    }
    // Mark the system call this runs in (if any) as one that did Direct I/O.
    if let Some(sys) = SYS_START.get_ptr_mut(&current_tid()) {
        // SAFETY: this thread's own entry; only this thread writes it.
        unsafe {
            if (*sys).did_dio == 0 {
                (*sys).dio = start;
                (*sys).did_dio = 1;
            } else {
                (*sys).dio.bytes += start.bytes;
            }
        }
    }
    0
}

/// iomap_dio_complete(struct kiocb *iocb, int error, ssize_t ret)
#[btf_tracepoint(function = "iomap_dio_complete")]
pub fn tp_btf_iomap_dio_complete(ctx: BtfTracePointContext) -> u32 {
    try_dio_complete(ctx.arg::<u64>(0), ctx.arg::<i64>(2))
}

#[inline(always)]
fn try_dio_complete(iocb: u64, ret: i64) -> u32 {
    count(ProbeId::IomapDioComplete, 0);
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(start) = unsafe { DIO_START.get(&iocb) }.copied() {
        let _ = DIO_START.remove(&iocb);
        let bytes = if ret > 0 { ret as u64 } else { start.bytes };
        // SAFETY: helper without preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        emit(LatencyKind::Dio, start.dev, start.op, bytes, start.start_ns, now);
    }
    0
}

/// A bio whose user pages were acquired for I/O.
#[repr(C)]
#[derive(Clone, Copy)]
struct BioPages {
    acquired_ns: u64,
    /// bio_endio time; 0 until the bio completes.
    ended_ns: u64,
    bytes: u64,
    dev: u32,
    op: u32,
}

/// bio address -> its pages' acquisition (from bio_iov_iter_get_pages to __bio_release_pages).
#[map(name = "BIO_PAGES")]
static BIO_PAGES: HashMap<u64, BioPages> = HashMap::with_max_entries(IN_FLIGHT, 0);

/// Entry arguments of bio_iov_iter_get_pages for the kretprobe fallback, by thread.
#[map(name = "GET_PAGES_ARG")]
static GET_PAGES_ARG: HashMap<u32, u64> = HashMap::with_max_entries(IN_FLIGHT, 0);

/// int bio_iov_iter_get_pages(struct bio *bio, struct iov_iter *iter, ...)
#[fexit(function = "bio_iov_iter_get_pages")]
pub fn fexit_bio_iov_iter_get_pages(ctx: FExitContext) -> u32 {
    try_bio_got_pages(ctx.arg::<u64>(0), ctx.ret::<i64>().unwrap_or(-1))
}

#[kprobe]
pub fn kprobe_bio_iov_iter_get_pages(ctx: ProbeContext) -> u32 {
    let _ = GET_PAGES_ARG.insert(&current_tid(), &ctx.arg::<u64>(0).unwrap_or(0), 0);
    0
}

#[kretprobe]
pub fn kretprobe_bio_iov_iter_get_pages(ctx: RetProbeContext) -> u32 {
    let tid = current_tid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(bio) = (unsafe { GET_PAGES_ARG.get(&tid) }).copied() else { return 0 };
    let _ = GET_PAGES_ARG.remove(&tid);
    try_bio_got_pages(bio, ctx.ret::<i64>())
}

#[inline(always)]
fn try_bio_got_pages(bio: u64, ret: i64) -> u32 {
    if ret != 0 {
        return 0;
    }
    count(ProbeId::BioIovIterGetPages, 0);
    let off = offsets();
    // A bio can be filled in several calls: keep the first acquisition time.
    // SAFETY: read-only copy.
    if unsafe { BIO_PAGES.get(&bio) }.is_some() {
        return 0;
    }
    let bdev: u64 = read_at(bio, off.bio_bdev).unwrap_or(0);
    let pages = BioPages {
        // SAFETY: helper without preconditions.
        acquired_ns: unsafe { bpf_ktime_get_ns() },
        ended_ns: 0,
        bytes: read_at::<u32>(bio, off.bio_size).unwrap_or(0) as u64,
        dev: read_at(bdev, off.bdev_dev).unwrap_or(0),
        op: read_at::<u32>(bio, off.bio_opf).map_or(u32::MAX, |f| f & 0xff),
    };
    if BIO_PAGES.insert(&bio, &pages, 0).is_err() {
        lost(LostReason::StartMapFull);
    }
    0
}

/// void bio_endio(struct bio *bio)
#[fentry(function = "bio_endio")]
pub fn fentry_bio_endio(ctx: FEntryContext) -> u32 {
    try_bio_endio(ctx.arg::<u64>(0))
}

#[kprobe]
pub fn kprobe_bio_endio(ctx: ProbeContext) -> u32 {
    try_bio_endio(ctx.arg::<u64>(0).unwrap_or(0))
}

#[inline(always)]
fn try_bio_endio(bio: u64) -> u32 {
    if let Some(pages) = BIO_PAGES.get_ptr_mut(&bio) {
        count(ProbeId::BioEndio, 0);
        // SAFETY: the entry of a bio being completed; only its completion writes ended_ns.
        unsafe {
            if (*pages).ended_ns == 0 {
                (*pages).ended_ns = bpf_ktime_get_ns();
            }
        }
    }
    0
}

/// void __bio_release_pages(struct bio *bio, bool mark_dirty)
#[fentry(function = "__bio_release_pages")]
#[allow(non_snake_case)] // named after the kernel function, as the catalogue expects
pub fn fentry___bio_release_pages(ctx: FEntryContext) -> u32 {
    try_bio_release_pages(ctx.arg::<u64>(0))
}

#[kprobe]
#[allow(non_snake_case)]
pub fn kprobe___bio_release_pages(ctx: ProbeContext) -> u32 {
    try_bio_release_pages(ctx.arg::<u64>(0).unwrap_or(0))
}

#[inline(always)]
fn try_bio_release_pages(bio: u64) -> u32 {
    count(ProbeId::BioReleasePages, 0);
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pages) = (unsafe { BIO_PAGES.get(&bio) }).copied() else { return 0 };
    let _ = BIO_PAGES.remove(&bio);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    emit(LatencyKind::PinHold, pages.dev, pages.op, pages.bytes, pages.acquired_ns, now);
    if pages.ended_ns != 0 {
        emit(LatencyKind::UnpinLag, pages.dev, pages.op, pages.bytes, pages.ended_ns, now);
    }
    0
}
