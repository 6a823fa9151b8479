//! FOLL_GET references dropped where a probe can see it: vmsplice hands user pages to a pipe
//! (iov_iter_get_pages2 -> get_user_pages_fast, one reference per page) in buffers whose
//! release drops the reference (page_cache_pipe_buf_release -> put_page). Only anonymous pages
//! are streamed: the same release serves page cache buffers (splice of a file), which are not.
//! Most other references are dropped by put_page itself, an inline function no probe sees.

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use tracer_common::{PageEvent, ProbeId, PAGES_FLAG_QUEUED};

use crate::{
    maps::{count, func_arg, read_at},
    pages::{emit, Call, Source},
};

/// `page->mapping` bit 0 (PAGE_MAPPING_ANON): an anonymous page.
const MAPPING_ANON: u64 = 1;

#[inline(always)]
fn try_pipe_buf_release<C: EbpfContext>(ctx: &C, buf: u64) -> u32 {
    // The caller (pipe_buf_release) clears buf->ops before the call, so the buffer's kind
    // cannot be told from it: an anonymous page is a user page (vmsplice of anonymous memory);
    // page cache pages (splice of a file) are not.
    let page: u64 = read_at(buf, member!(pipe_buffer_page)).unwrap_or(0);
    let mapping: u64 = read_at(page, member!(page_mapping)).unwrap_or(0);
    if mapping & MAPPING_ANON == 0 {
        return 0;
    }
    count(ProbeId::PipeBufRelease, 1);
    emit(
        ctx,
        Call {
            event: PageEvent::Put,
            probe: ProbeId::PipeBufRelease,
            source: Source::Range(page),
            n: 1,
            refs: 1,
            gup_flags: 0,
            flags: 0,
            trampoline: false,
        },
    );
    0
}

// void page_cache_pipe_buf_release(struct pipe_inode_info *pipe, struct pipe_buffer *buf)
with_backups!(
    #[fentry(function = "page_cache_pipe_buf_release")]
    fentry_page_cache_pipe_buf_release,
    page_cache_pipe_buf_release,
    ProbeId::PipeBufRelease,
    |ctx: FEntryContext| try_pipe_buf_release(&ctx, func_arg(&ctx, 1))
);

#[kprobe]
pub fn kprobe_page_cache_pipe_buf_release(ctx: ProbeContext) -> u32 {
    try_pipe_buf_release(&ctx, ctx.arg::<u64>(1).unwrap_or(0))
}

/// -EIOCBQUEUED: the I/O was queued and goes on after the call returns.
const EIOCBQUEUED: i64 = -529;

/// A function that drops, before it returns, every FOLL_GET reference its thread took inside
/// it (unless it returns -EIOCBQUEUED): one record naming no pages; the ledger releases the
/// references it followed, or forgets the scope when it was queued.
#[inline(always)]
fn try_scope_end<C: EbpfContext>(ctx: &C, probe: ProbeId, ret: i64) -> u32 {
    count(probe, 0);
    let flags = if ret == EIOCBQUEUED { PAGES_FLAG_QUEUED } else { 0 };
    emit(
        ctx,
        Call {
            event: PageEvent::PutScope,
            probe,
            source: Source::Unlisted,
            n: 1,
            refs: 1,
            gup_flags: 0,
            flags,
            trampoline: false,
        },
    );
    0
}

macro_rules! scope_probe {
    ($fexit:ident, $base:ident, $kretprobe:ident, $target:literal, $id:ident) => {
        with_backups!(
            #[fexit(function = $target)]
            $fexit,
            $base,
            ProbeId::$id,
            |ctx: FExitContext| try_scope_end(&ctx, ProbeId::$id, ctx.ret::<i64>().unwrap_or(0))
        );

        #[kretprobe]
        pub fn $kretprobe(ctx: RetProbeContext) -> u32 {
            try_scope_end(&ctx, ProbeId::$id, ctx.ret::<i64>())
        }
    };
}

scope_probe!(
    fexit_nfs_direct_read_schedule_iovec,
    nfs_direct_read_schedule_iovec,
    kretprobe_nfs_direct_read_schedule_iovec,
    "nfs_direct_read_schedule_iovec",
    NfsDirectReadScheduleIovec
);
scope_probe!(
    fexit_nfs_direct_write_schedule_iovec,
    nfs_direct_write_schedule_iovec,
    kretprobe_nfs_direct_write_schedule_iovec,
    "nfs_direct_write_schedule_iovec",
    NfsDirectWriteScheduleIovec
);
// ssize_t fuse_file_read_iter(struct kiocb *iocb, struct iov_iter *to), and write_iter
scope_probe!(
    fexit_fuse_file_read_iter,
    fuse_file_read_iter,
    kretprobe_fuse_file_read_iter,
    "fuse_file_read_iter",
    FuseFileReadIter
);
scope_probe!(
    fexit_fuse_file_write_iter,
    fuse_file_write_iter,
    kretprobe_fuse_file_write_iter,
    "fuse_file_write_iter",
    FuseFileWriteIter
);
// ssize_t fuse_dev_read(struct kiocb *iocb, struct iov_iter *to), and fuse_dev_write
scope_probe!(fexit_fuse_dev_read, fuse_dev_read, kretprobe_fuse_dev_read, "fuse_dev_read", FuseDevRead);
scope_probe!(fexit_fuse_dev_write, fuse_dev_write, kretprobe_fuse_dev_write, "fuse_dev_write", FuseDevWrite);
