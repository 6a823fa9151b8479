//! Block layer and Direct I/O timing records: when a bio is queued, a request issued, a
//! request or a bio completed, an iomap Direct I/O call begun or completed. The kernel side
//! only stamps and streams them (no start maps, no matching): userspace pairs starts with
//! completions (tracer/src/engine/block.rs) into the D2C, Q2C and DIO figures, and ends the bios
//! of the pin ledger with the completions that list them.

use core::mem::size_of;

/// What a [`BlockHeader`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockEvent {
    /// block_bio_queue: `addr` is the bio (submit_bio).
    BioQueue = 0,
    /// block_rq_issue: `addr` is the request, handed to the driver.
    RqIssue = 1,
    /// block_rq_complete: `addr` is the request; `bytes` the bytes this completion covers,
    /// `status` its blk_status_t; a [`RqCompleteWire`] lists the bios it completes.
    RqComplete = 2,
    /// block_bio_complete: `addr` is a bio of a bio-based device (device mapper, ...), whose
    /// bios never become requests; `bytes` its size, `status` its bi_status.
    BioComplete = 3,
    /// iomap_dio_rw_begin: `addr` is the kiocb; `dev` the file system's device, `op` 0 (read)
    /// or 1 (write), `bytes` the bytes asked for.
    DioBegin = 4,
    /// iomap_dio_complete: `addr` is the kiocb; `status` the call's return value when it is an
    /// error, `bytes` the bytes done otherwise.
    DioComplete = 5,
}

/// Bios of one request listed at its completion (a request merged from more bios lists these
/// only; the others get no Q2C and no end).
pub const RQ_MAX_BIOS: usize = 16;

/// Every block timing record begins with this; alone, it is the whole record of every event
/// but [`BlockEvent::RqComplete`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockHeader {
    /// [`crate::RecordType::Block`].
    pub record: u32,
    /// A [`BlockEvent`].
    pub event: u32,
    /// bpf_ktime_get_ns.
    pub ts_ns: u64,
    /// The bio or request address.
    pub addr: u64,
    /// Kernel dev_t (major << 20 | minor) at completions; 0 when unknown or at starts.
    pub dev: u32,
    /// REQ_OP_* (low 8 bits of cmd_flags / bi_opf) at completions; u32::MAX when unknown.
    pub op: u32,
    pub bytes: u32,
    pub status: i32,
    /// Bios listed after the header ([`RqCompleteWire`]).
    pub nr_bios: u32,
    pub _pad: u32,
}

/// A request's completion and the bios it completes, in request order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RqCompleteWire {
    pub head: BlockHeader,
    /// Bio addresses; the first `head.nr_bios` are valid.
    pub bios: [u64; RQ_MAX_BIOS],
    /// Each bio's size (bytes still to complete when the request completed).
    pub sizes: [u32; RQ_MAX_BIOS],
}

const _: () = assert!(size_of::<BlockHeader>() == 48);
const _: () = assert!(size_of::<RqCompleteWire>() == 48 + 12 * RQ_MAX_BIOS);
