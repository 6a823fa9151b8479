//! I/O latency. The block layer's points (bio queued, request issued, request or bio
//! completed) and the iomap Direct I/O calls' begin and completion are stamped and streamed as
//! [`BlockHeader`] records, and userspace pairs them into the D2C, Q2C and DIO figures
//! (tracer/src/engine/block.rs). A request's issue and an unpinned bio's queueing wait in the
//! stamp table instead where their slot is free (crate::stamps), and their completion carries
//! them: one record an I/O. The system calls
//! (`--syscall-latency` only) keep their start times in a hash map keyed by the thread, which
//! the DIO probe marks, and stream one [`LatencyEvent`] per call. All tp_btf (or tracepoints),
//! so they run on hosts that allow only tracepoints.
//!
//! The start map is an LRU map: a call whose end the probes never see leaves a stale entry,
//! and LRU eviction reclaims the stalest entries first instead of refusing new calls once the
//! map has filled up with them over a long run.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::LruHashMap,
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use tracer_common::{
    block::{BlockEvent, BlockHeader, RqComplete, RQ_MAX_BIOS},
    pt_regs, LatencyEvent, LatencyKind, LostReason, ProbeId, RecordType, OFFSET_UNKNOWN,
};

use crate::{
    maps::{count, current_tid, lost, read_at, submit_flags, submitted, EVENTS, NO_COMMON_LRU},
    stamps,
    typed::load,
};

/// System calls in flight that can be timed at once.
const IN_FLIGHT: u32 = 65536;

/// What a DIO call looked like when it began (kept in the system call it runs in).
#[repr(C)]
#[derive(Clone, Copy)]
struct DioStart {
    bytes: u64,
    dev: u32,
    op: u32,
}

/// 1 when the `sys` figure is asked for (its probes attached: the DIO probe then marks the
/// system call it runs in), 0 when not (patched by the loader: tracer_common::names::SYSCALL_LATENCY).
#[unsafe(no_mangle)]
static SYSCALL_LATENCY: u64 = 0;

#[inline(always)]
fn emit(kind: LatencyKind, dev: u32, op: u32, bytes: u64, start_ns: u64, end_ns: u64) {
    match EVENTS.reserve::<LatencyEvent>(0) {
        Some(mut entry) => {
            entry.write(LatencyEvent {
                record: RecordType::Latency as u32,
                kind: kind as u32,
                dev,
                op,
                bytes,
                start_ns,
                end_ns,
            });
            entry.submit(submit_flags());
            submitted();
        }
        None => lost(LostReason::RingFull),
    }
}

/// Streams a block record of one header stamped now: a start (`dev`, `op` 0: userspace takes
/// them from the completion) or a bio's completion.
#[inline(always)]
fn block(event: BlockEvent, addr: u64, dev: u32, op: u32, bytes: u32, status: i32) {
    // SAFETY: helper without preconditions.
    block_at(unsafe { bpf_ktime_get_ns() }, event, addr, dev, op, bytes, status, 0)
}

/// [`block`] stamped `ts_ns`, with the start the stamp table kept for a completion.
#[inline(always)]
#[allow(clippy::too_many_arguments, reason = "the header's fields, in its order")]
fn block_at(ts_ns: u64, event: BlockEvent, addr: u64, dev: u32, op: u32, bytes: u32, status: i32, start_ns: u64) {
    match EVENTS.reserve::<BlockHeader>(0) {
        Some(mut entry) => {
            entry.write(BlockHeader {
                record: RecordType::Block as u32,
                event: event as u32,
                ts_ns,
                addr,
                dev,
                op,
                bytes,
                status,
                nr_bios: 0,
                _pad: 0,
                start_ns,
            });
            entry.submit(submit_flags());
            submitted();
        }
        None => lost(LostReason::RingFull),
    }
}

// block_rq_issue(struct request *rq)
with_backups!(
    #[btf_tracepoint(function = "block_rq_issue")]
    tp_btf_block_rq_issue,
    block_rq_issue,
    ProbeId::BlockRqIssue,
    |ctx: BtfTracePointContext, scratch| try_rq_issue(ctx.arg::<u64>(0), scratch)
);

#[inline(always)]
fn try_rq_issue(rq: u64, scratch: *mut u64) -> u32 {
    count(ProbeId::BlockRqIssue, 0);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if !stamps::keep(stamps::number(rq, scratch), now) {
        block_at(now, BlockEvent::RqIssue, rq, 0, 0, 0, 0, 0);
    }
    0
}

// block_rq_complete(struct request *rq, blk_status_t error, unsigned int nr_bytes)
with_backups!(
    #[btf_tracepoint(function = "block_rq_complete")]
    tp_btf_block_rq_complete,
    block_rq_complete,
    ProbeId::BlockRqComplete,
    |ctx: BtfTracePointContext| try_rq_complete(
        ctx.arg::<u64>(0),
        ctx.arg::<u64>(1) as u8,
        ctx.arg::<u64>(2) & 0xffff_ffff
    )
);

/// The request's completion, with the bios it completes: the leading bios whose sizes still
/// to complete fit in `nr_bytes` (a partial completion ends only the bios it covers whole).
/// Their own completions are not traced (blk_update_request clears BIO_TRACE_COMPLETION). A
/// request of one bio (its first bio has no next) streams a record with room for one.
#[inline(always)]
fn try_rq_complete(rq: u64, error: u8, nr_bytes: u64) -> u32 {
    count(ProbeId::BlockRqComplete, nr_bytes);
    // The request is the tracepoint's BTF-typed argument: its members are loaded, not read
    // with the helper (crate::typed); a load through a NULL bio reads 0.
    let first: u64 = load(rq, member!(rq_bio)).unwrap_or(0);
    let next: u64 = load(first, member!(bio_next)).unwrap_or(0);
    if next == 0 {
        rq_complete::<1>(rq, first, next, error, nr_bytes);
    } else {
        rq_complete::<RQ_MAX_BIOS>(rq, first, next, error, nr_bytes);
    }
    0
}

/// [`try_rq_complete`]'s record, with room for `N` bios from `first` on (`next`: the one after
/// it, already loaded).
#[inline(always)]
fn rq_complete<const N: usize>(rq: u64, first: u64, next: u64, error: u8, nr_bytes: u64) {
    let Some(mut entry) = EVENTS.reserve::<RqComplete<N>>(0) else {
        lost(LostReason::RingFull);
        return;
    };
    let part: u64 = load(rq, member!(rq_part)).unwrap_or(0);
    let w = entry.as_mut_ptr();
    // SAFETY: `w` points at the reserved, exclusively owned ring buffer slot of an
    // RqComplete<N>; the header is written whole, the bios up to `nr_bios`, which userspace
    // bounds its reads with.
    unsafe {
        (*w).head = BlockHeader {
            record: RecordType::Block as u32,
            event: BlockEvent::RqComplete as u32,
            ts_ns: bpf_ktime_get_ns(),
            addr: rq,
            dev: load(part, member!(bdev_dev)).unwrap_or(0),
            op: load::<u32>(rq, member!(rq_cmd_flags)).map_or(u32::MAX, |f| f & 0xff),
            bytes: nr_bytes as u32,
            status: error as i32,
            nr_bios: 0,
            _pad: 0,
            start_ns: 0,
        };
        // The addresses as numbers for the stamp table: loaded back from the record they are
        // written to (crate::typed::as_number).
        (*w).head.start_ns = stamps::take(crate::typed::as_number(rq, &raw mut (*w).head.addr));
        let mut bio = first;
        let mut done: u64 = 0;
        let mut n: u32 = 0;
        for i in 0..N {
            if bio == 0 {
                break;
            }
            let size: u32 = load(bio, member!(bio_size)).unwrap_or(0);
            done += size as u64;
            if done > nr_bytes {
                break;
            }
            let listed = &raw mut (*w).bios[i];
            (*listed).size = size;
            (*listed)._pad = 0;
            (*listed).queued_ns = stamps::take(crate::typed::as_number(bio, &raw mut (*listed).bio));
            n += 1;
            // No load for a bio past the record's room, and none again for the second.
            if i + 1 == N {
                break;
            }
            bio = if i == 0 { next } else { load(bio, member!(bio_next)).unwrap_or(0) };
        }
        (*w).head.nr_bios = n;
    }
    entry.submit(submit_flags());
    submitted();
}

// block_bio_queue(struct bio *bio)
with_backups!(
    #[btf_tracepoint(function = "block_bio_queue")]
    tp_btf_block_bio_queue,
    block_bio_queue,
    ProbeId::BlockBioQueue,
    |ctx: BtfTracePointContext, scratch| try_bio_queue(ctx.arg::<u64>(0), scratch)
);

#[inline(always)]
fn try_bio_queue(bio: u64, scratch: *mut u64) -> u32 {
    count(ProbeId::BlockBioQueue, 0);
    if crate::bio::acquired_at_queue(bio) {
        // Its start is the acquisition's record: a slot an earlier bio at this address left
        // owned must not give its completion a stale one.
        stamps::take(stamps::number(bio, scratch));
        return 0;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if !stamps::keep(stamps::number(bio, scratch), now) {
        block_at(now, BlockEvent::BioQueue, bio, 0, 0, 0, 0, 0);
    }
    0
}

// block_bio_complete(struct request_queue *q, struct bio *bio): bios of bio-based devices
// (device mapper, ...), which never become requests.
with_backups!(
    #[btf_tracepoint(function = "block_bio_complete")]
    tp_btf_block_bio_complete,
    block_bio_complete,
    ProbeId::BlockBioComplete,
    |ctx: BtfTracePointContext, scratch| try_bio_complete(ctx.arg::<u64>(1), scratch)
);

#[inline(always)]
fn try_bio_complete(bio: u64, scratch: *mut u64) -> u32 {
    count(ProbeId::BlockBioComplete, 0);
    // The tracepoint's BTF-typed argument (crate::typed).
    let bdev: u64 = load(bio, member!(bio_bdev)).unwrap_or(0);
    let dev: u32 = load(bdev, member!(bdev_dev)).unwrap_or(0);
    let op = load::<u32>(bio, member!(bio_opf)).map_or(u32::MAX, |f| f & 0xff);
    let bytes: u32 = load(bio, member!(bio_size)).unwrap_or(0);
    let status: u8 = load(bio, member!(bio_status)).unwrap_or(0);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let kept = stamps::take(stamps::number(bio, scratch));
    block_at(now, BlockEvent::BioComplete, bio, dev, op, bytes, status as i32, kept);
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
static SYS_START: LruHashMap<u32, SysStart> = LruHashMap::with_max_entries(IN_FLIGHT, NO_COMMON_LRU);

// The perf tracepoints `syscalls:sys_enter_<name>` of tracer_common::RW_SYSCALLS, one program
// for all of them. The context is the kernel's argument block of a syscall event: the regs
// pointer, the system call number, then its six arguments.
#[tracepoint]
pub fn tp_sys_enter(ctx: TracePointContext) -> u32 {
    // SAFETY: reads the block's args[0] (the fd of every call of RW_SYSCALLS).
    try_sys_enter(unsafe { ctx.read_at::<u64>(SYSCALL_ARGS) }.unwrap_or(u64::MAX))
}

/// Where a syscall event's arguments begin in its context (after the regs pointer and the
/// system call number, padded to 8).
const SYSCALL_ARGS: usize = 16;

/// O_DIRECT in the x86_64 UAPI (like tracer_common::RW_SYSCALLS: the sys figure is x86_64's).
const O_DIRECT: u32 = 0o40000;

/// Whether file descriptor `fd` of the current task is open with O_DIRECT: only calls on
/// those can do Direct I/O. Unknown offsets keep every call (the figure stays exact, only
/// dearer).
#[inline(always)]
fn fd_is_direct(fd: u64) -> bool {
    if member!(task_files) == OFFSET_UNKNOWN || member!(file_f_flags) == OFFSET_UNKNOWN {
        return true;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read_at(task, member!(task_files)).unwrap_or(0);
    let fdt: u64 = read_at(files, member!(files_fdt)).unwrap_or(0);
    let fds: u64 = read_at(fdt, member!(fdt_fd)).unwrap_or(0);
    if fds == 0 || fd > 1 << 20 {
        return true;
    }
    let file: u64 = read_at(fds + 8 * fd, 0).unwrap_or(0);
    match read_at::<u32>(file, member!(file_f_flags)) {
        Some(flags) => flags & O_DIRECT != 0,
        None => true,
    }
}

#[inline(always)]
fn try_sys_enter(fd: u64) -> u32 {
    // Only calls on files open with O_DIRECT can do Direct I/O: the others leave no start time
    // (no map update, and nothing for sys_exit to find).
    if !fd_is_direct(fd) {
        return 0;
    }
    count(ProbeId::SysEnter, 0);
    let start = SysStart {
        // SAFETY: helper without preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        dio: DioStart { bytes: 0, dev: 0, op: 0 },
        did_dio: 0,
        _pad: 0,
    };
    if SYS_START.insert(&current_tid(), &start, 0).is_err() {
        lost(LostReason::StartMapFull);
    }
    0
}

// The raw tracepoints `sys_enter(struct pt_regs *regs, long id)` and `sys_exit(struct pt_regs
// *regs, long ret)`, used instead of the perf tracepoints where those can be skipped
// (tracer_common::Attach::Syscalls). The kernel runs them for every system call, so the chain's
// filter is the call number (for sys_exit, the registers' orig_ax); and it can preempt a thread
// inside them there, hence the chain.
with_backups!(
    #[raw_tracepoint(tracepoint = "sys_enter")]
    raw_tp_sys_enter,
    sys_enter,
    ProbeId::SysEnter,
    filter |ctx: RawTracePointContext| is_rw_syscall(ctx.arg::<u64>(1)),
    try_sys_enter(read_at::<u64>(ctx.arg::<u64>(0), pt_regs::DI).unwrap_or(u64::MAX))
);

with_backups!(
    #[raw_tracepoint(tracepoint = "sys_exit")]
    raw_tp_sys_exit,
    sys_exit,
    ProbeId::SysExit,
    filter |ctx: RawTracePointContext| is_rw_syscall(read_at::<u64>(ctx.arg::<u64>(0), pt_regs::ORIG_AX).unwrap_or(u64::MAX)),
    try_sys_exit()
);

/// Whether `nr` is one of tracer_common::RW_SYSCALLS (x86_64 numbers).
#[inline(always)]
fn is_rw_syscall(nr: u64) -> bool {
    // read 0, write 1, pread64 17, pwrite64 18, readv 19, writev 20.
    const LOW: u64 = 1 << 0 | 1 << 1 | 1 << 17 | 1 << 18 | 1 << 19 | 1 << 20;
    // preadv 295, pwritev 296, preadv2 327, pwritev2 328.
    (nr < 64 && LOW & (1 << nr) != 0) || matches!(nr, 295 | 296 | 327 | 328)
}

// The perf tracepoints `syscalls:sys_exit_<name>` of tracer_common::RW_SYSCALLS.
#[tracepoint]
pub fn tp_sys_exit(_ctx: TracePointContext) -> u32 {
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

// iomap_dio_rw_begin(struct kiocb *iocb, struct iov_iter *iter, unsigned int dio_flags,
// size_t done_before)
with_backups!(
    #[btf_tracepoint(function = "iomap_dio_rw_begin")]
    tp_btf_iomap_dio_rw_begin,
    iomap_dio_rw_begin,
    ProbeId::IomapDioBegin,
    |ctx: BtfTracePointContext| try_dio_begin(ctx.arg::<u64>(0), ctx.arg::<u64>(1))
);

#[inline(always)]
fn try_dio_begin(iocb: u64, iter: u64) -> u32 {
    count(ProbeId::IomapDioBegin, 0);
    // The tracepoint's BTF-typed arguments (crate::typed).
    let file: u64 = load(iocb, member!(kiocb_filp)).unwrap_or(0);
    let inode: u64 = load(file, member!(file_inode)).unwrap_or(0);
    let sb: u64 = load(inode, member!(inode_sb)).unwrap_or(0);
    let start = DioStart {
        bytes: load(iter, member!(iter_count)).unwrap_or(0),
        dev: load(sb, member!(sb_dev)).unwrap_or(0),
        op: load::<u8>(iter, member!(iter_data_source)).map_or(u32::MAX, |w| (w != 0) as u32),
    };
    block(BlockEvent::DioBegin, iocb, start.dev, start.op, start.bytes.min(u32::MAX as u64) as u32, 0);
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    if unsafe { core::ptr::read_volatile(&SYSCALL_LATENCY) } == 0 {
        return 0;
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

// iomap_dio_complete(struct kiocb *iocb, int error, ssize_t ret)
with_backups!(
    #[btf_tracepoint(function = "iomap_dio_complete")]
    tp_btf_iomap_dio_complete,
    iomap_dio_complete,
    ProbeId::IomapDioComplete,
    |ctx: BtfTracePointContext| try_dio_complete(ctx.arg::<u64>(0), ctx.arg::<i64>(2))
);

#[inline(always)]
fn try_dio_complete(iocb: u64, ret: i64) -> u32 {
    count(ProbeId::IomapDioComplete, 0);
    let (bytes, status) = if ret >= 0 { (ret.min(u32::MAX as i64) as u32, 0) } else { (0, ret as i32) };
    block(BlockEvent::DioComplete, iocb, 0, 0, bytes, status);
    0
}
