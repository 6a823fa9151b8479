//! Types shared by the eBPF programs (tracer-ebpf) and the userspace daemon (tracer).
//!
//! Everything here is `no_std` and `#[repr(C)]`; layouts are asserted at compile time so that
//! both sides agree on every byte. The `user` feature adds the `aya::Pod` impls.
#![no_std]

use core::mem::size_of;

pub mod bench_skip;
pub mod block;
mod catalogue;
pub mod chain;
mod comm;
pub mod counters;
mod folio;
mod offsets;
pub mod pt_regs;
pub mod stack_path;

pub use catalogue::*;
pub use comm::{comm_below_nul, comm_word_below_nul};
pub use folio::head_of;
pub use offsets::*;

/// A probe's counters (the `HITS` and `AMOUNT` slots of [`counters`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeStat {
    /// Times the probe ran and counted something.
    pub hits: u64,
    /// What the probe counts (see [`ProbeRole`]).
    pub amount: u64,
}

/// Length of a task's comm, as in the kernel.
pub const COMM_LEN: usize = 16;

/// Why an event was not counted (the `LOST` slots of [`counters`], indexed by this enum).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// Unused since the per-process figures come from the page ledger (kept: the index of the
    /// other reasons, which record files carry, must not move).
    ProcMapFull = 0,
    /// A probe ran with an index out of range (a bug; should stay 0).
    BadIndex,
    /// The event ring buffer was full: a latency record was dropped.
    RingFull,
    /// A start-time map (request, bio or iocb) was full: that I/O is not measured.
    StartMapFull,
    /// A pin or unpin call's kernel stack could not be read: its record names no call path
    /// (the record itself is not lost).
    StackLost,
    /// A pin or unpin call found every per-CPU buffer page records are built in busy (calls
    /// nested or preempted deeper than the buffers): its record was dropped.
    ScratchBusy,
}

/// Number of [`LostReason`]s.
pub const LOST_REASONS: u32 = LostReason::ScratchBusy as u32 + 1;

/// What a [`LatencyEvent`] measured.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LatencyKind {
    /// Request issued to the driver -> request completed (blktrace/btt D2C).
    D2c = 0,
    /// Bio queued (submit_bio) -> bio completed (btt Q2C).
    Q2c = 1,
    /// iomap Direct I/O: iomap_dio_rw_begin -> iomap_dio_complete (the filesystem's DIO call).
    Dio = 2,
    /// A read/write-family system call that did iomap Direct I/O: entry -> exit (what a
    /// synchronous fio engine reports as clat).
    Syscall = 3,
    /// A bio's user pages, from acquisition (bio_iov_iter_get_pages: pinned, or referenced on
    /// kernels whose DIO takes FOLL_GET references; 6.2+: the bio's queueing) to their release
    /// (__bio_release_pages).
    PinHold = 4,
    /// Bio completion (its request's or its own) -> release of its pages (__bio_release_pages).
    UnpinLag = 5,
}

/// What a ring buffer record is: the first 4 bytes of every record of `EVENTS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// A [`LatencyEvent`].
    Latency = 1,
    /// A [`BioRecord`].
    Bio = 2,
    /// A [`PagesWire`]: pages pinned, referenced or unpinned by one call.
    Pages = 3,
    /// Kernel symbols of return addresses: userspace writes one ahead of the first page record
    /// that names an address not described yet, so record files replay with call paths
    /// (see tracer/src/decode.rs).
    Stack = 4,
    /// An [`ExitRecord`].
    Exit = 5,
    /// A [`stack_path::StackSampleWire`]: a walk and the stack it was taken from, for userspace to
    /// learn the call path from (never passed on to the engine or recorded).
    StackSample = 6,
    /// A [`block::BlockHeader`] (a [`block::RqComplete`] for a request's completion): a
    /// block layer start or completion, paired in userspace.
    Block = 7,
}

/// The last thread of a process exited (`RecordType::Exit`, from sched_process_exit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    /// [`RecordType::Exit`].
    pub record: u32,
    pub tgid: u32,
    /// bpf_ktime_get_ns of the exit.
    pub ts_ns: u64,
}

/// What a [`PagesWire`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageEvent {
    /// A pin entry point (`pin_user_pages*`) returned these pages pinned (FOLL_PIN).
    Pin = 0,
    /// A FOLL_GET entry point returned these pages with a reference.
    Get = 1,
    /// An unpin variant releases these pins.
    Unpin = 2,
    /// These FOLL_GET references are dropped (a pipe buffer over vmspliced user pages).
    Put = 3,
    /// The returning function dropped every FOLL_GET reference the thread took inside it
    /// (NFS O_DIRECT's nfs_direct_{read,write}_schedule_iovec, FUSE's read_iter and write_iter
    /// of files and of /dev/fuse); the record lists no pages.
    PutScope = 4,
}

/// Entries one page record lists at most; a call with more is counted (`nr`) but lists only
/// these ([`PAGES_FLAG_TRUNCATED`]). 512 pages cover the largest bio (BIO_MAX_VECS, 256) and a
/// 2 MiB buffer (a PMD-sized huge page, or an io_uring registered buffer of 2 MiB).
pub const PAGES_MAX_ENTRIES: usize = 512;

/// `PagesHeader::flags`: the unpin marks the pages dirty (make_dirty = true).
pub const PAGES_FLAG_DIRTY: u32 = 1 << 0;
/// `PagesHeader::flags`: the call has more entries than the record lists.
pub const PAGES_FLAG_TRUNCATED: u32 = 1 << 1;
/// `PagesHeader::flags`: the entries are not listed at all (a kretprobe fallback cannot see the
/// array): only `nr` is known.
pub const PAGES_FLAG_UNLISTED: u32 = 1 << 2;
/// `PagesHeader::flags` of a `PutScope` record: the scope function returned -EIOCBQUEUED, the
/// I/O goes on after it and the references taken in it are dropped later (unseen).
pub const PAGES_FLAG_QUEUED: u32 = 1 << 3;

/// One pin, reference or unpin call's pages (`RecordType::Pages`): a [`PagesHeader`] followed
/// by `n` [`PageEntry`]s. The kernel builds it in a per-CPU [`PagesWire`] and streams only the
/// filled part, so the record is `size_of::<PagesHeader>() + n * size_of::<PageEntry>()` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagesHeader {
    /// [`RecordType::Pages`].
    pub record: u32,
    /// A [`PageEvent`].
    pub event: u32,
    /// bpf_ktime_get_ns of the call.
    pub ts_ns: u64,
    /// The [`ProbeId`] that saw the call.
    pub probe: u32,
    /// gup_flags the caller passed (pins and references; FOLL_* values of the running kernel).
    pub gup_flags: u32,
    /// Entries of the whole call (pages, or folios for the folio variants).
    pub nr: u32,
    /// Entries listed after the header.
    pub n: u32,
    /// References each entry holds or releases (1, or npages for unpin_user_folio).
    pub refs: u32,
    /// Frames of `frames` filled (0 when the stack could not be read).
    pub nr_frames: u32,
    /// `PAGES_FLAG_*`.
    pub flags: u32,
    pub _pad: u32,
    pub owner: Owner,
    /// The kernel stack of the call, innermost first (return addresses; the first ones are the
    /// tracer's own program and trampoline).
    pub frames: [u64; PAGES_STACK_FRAMES],
}

/// Kernel stack frames a page record carries.
pub const PAGES_STACK_FRAMES: usize = 14;

/// Kernel stack frames a release record (unpin, put) carries: the tracer's own frames (its
/// program, a subprogram and the trampoline), the release function and its caller, and one
/// more. A release is named by its caller only, and the kernel's unwinding is most of a
/// record's cost (about 70% of it, measured in `cargo xtask bench overhead`), so releases
/// are not unwound further; pins and references keep [`PAGES_STACK_FRAMES`] for their call
/// paths.
pub const RELEASE_STACK_FRAMES: usize = 6;

const _: () = assert!(RELEASE_STACK_FRAMES <= PAGES_STACK_FRAMES);

/// One page of a call: its struct page (0 when the call names only the folio) and its folio
/// (head page), on which the kernel counts pins.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageEntry {
    pub page: u64,
    pub folio: u64,
}

/// The largest page record: the per-CPU buffer the kernel builds records in.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagesWire {
    pub header: PagesHeader,
    pub entries: [PageEntry; PAGES_MAX_ENTRIES],
}

/// One measured I/O, streamed through the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyEvent {
    /// [`RecordType::Latency`].
    pub record: u32,
    /// A [`LatencyKind`].
    pub kind: u32,
    /// Kernel dev_t (major << 20 | minor); 0 when unknown.
    pub dev: u32,
    /// REQ_OP_* of the request or bio (low 8 bits of cmd_flags / bi_opf); for DIO 0 = read,
    /// 1 = write (the REQ_OP_READ / REQ_OP_WRITE values).
    pub op: u32,
    pub bytes: u64,
    /// bpf_ktime_get_ns at the start and the end.
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The task an event ran in, captured in the kernel (async completions run elsewhere, so the
/// owner of a pin is captured when the pin is taken).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub tgid: u32,
    pub pid: u32,
    pub cgroup: u64,
    pub comm: [u8; COMM_LEN],
}

/// What happened to a bio's user pages (`BioRecord::event`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BioEvent {
    /// bio_iov_iter_get_pages returned 0, or (6.2+) a bio marked pinned was first queued: the
    /// bio holds its user pages (pinned, or referenced with FOLL_GET on kernels whose DIO does
    /// that; see [`BIO_FLAG_PINNED`]).
    Acquire = 0,
    /// The I/O completed (`status` = bi_status): made in userspace from the block layer's
    /// completion records (tracer/src/engine/block.rs); record files of earlier tracers carry
    /// the kernel's own, from a bio_endio probe.
    End = 1,
    /// __bio_release_pages: the pages are unpinned (or put).
    Release = 2,
}

/// `BioRecord::flags`: the bio's pages are FOLL_PIN pins (BIO_PAGE_PINNED), not references.
pub const BIO_FLAG_PINNED: u32 = 1 << 0;
/// `BioRecord::flags`: the release marks the pages dirty (mark_dirty = true).
pub const BIO_FLAG_MARK_DIRTY: u32 = 1 << 1;
/// `BioRecord::flags`: ran in hard interrupt context.
pub const BIO_FLAG_HARDIRQ: u32 = 1 << 2;
/// `BioRecord::flags`: ran in soft interrupt context.
pub const BIO_FLAG_SOFTIRQ: u32 = 1 << 3;
/// `BioRecord::flags`: the bio had more vecs than [`BIO_MAX_VECS`]; `pages` is truncated.
pub const BIO_FLAG_TRUNCATED: u32 = 1 << 4;

/// `BioRecord::flags` of a Release: the folio unpins of this release are not streamed as page
/// records (the kernel skips the `unpin_user_folio` calls made from `__bio_release_pages`); the
/// pages of the release's records stand for them, one unpin per page each vec covers. Such a
/// release streams its whole vec array, [`BIO_WIRE_VEC_BYTES`] per record: the records after
/// the first carry [`BIO_CHUNK_SHIFT`]'s index and only their vecs.
pub const BIO_FLAG_UNPINS_LISTED: u32 = 1 << 5;
/// `BioRecord::flags` of an Acquire: streamed by the bio's queueing (`block_bio_queue`, see
/// `names::ACQUIRE_AT_QUEUE`), which then streams no block record of its own: the acquisition
/// is also the bio's queueing, the start of its `q2c`.
pub const BIO_FLAG_QUEUED: u32 = 1 << 6;
/// `BioWire::flags` bits 8..15: which slice of [`BIO_WIRE_VEC_BYTES`] of the bio's vec array the
/// record carries (0 for the first record of an event).
pub const BIO_CHUNK_SHIFT: u32 = 8;
/// Records one Release lists its vecs in at most (4 KiB of `struct bio_vec`: 256 vecs, the
/// kernel's BIO_MAX_VECS).
pub const BIO_MAX_CHUNKS: u32 = 16;

/// Vecs of a bio recorded page by page in one [`BioRecord`].
pub const BIO_MAX_VECS: usize = 16;

/// Bytes of raw `struct bio_vec` array a [`BioWire`] carries.
pub const BIO_WIRE_VEC_BYTES: usize = 256;

/// A bio-level ledger event as the kernel writes it into `EVENTS` (`RecordType::Bio`).
/// The bio's vec array is copied raw, with the `struct bio_vec` layout of the running kernel,
/// in one read (a page-by-page loop is too much for the 6.1 verifier); userspace turns it into a
/// [`BioRecord`] (tracer/src/decode.rs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BioWire {
    /// [`RecordType::Bio`].
    pub record: u32,
    /// A [`BioEvent`].
    pub event: u32,
    pub ts_ns: u64,
    pub bio: u64,
    pub dev: u32,
    pub op: u32,
    pub flags: u32,
    pub status: i32,
    pub bytes: u32,
    /// bio->bi_vcnt.
    pub nr_vecs: u32,
    pub owner: Owner,
    /// sizeof(struct bio_vec) and the offsets of bv_page, bv_len, bv_offset in it.
    pub bvec_size: u8,
    pub bvec_page: u8,
    pub bvec_len: u8,
    pub bvec_offset: u8,
    /// Bytes of `vecs` filled (0 for End, or when the layout is unknown).
    pub vec_bytes: u32,
    pub vecs: [u8; BIO_WIRE_VEC_BYTES],
}

/// A bio-level ledger event (`RecordType::Bio`), decoded from a [`BioWire`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BioRecord {
    /// [`RecordType::Bio`].
    pub record: u32,
    /// A [`BioEvent`].
    pub event: u32,
    /// bpf_ktime_get_ns.
    pub ts_ns: u64,
    /// The bio's address (identity while it lives; reused after bio_put).
    pub bio: u64,
    /// Kernel dev_t of bio->bi_bdev (major << 20 | minor); 0 when unknown.
    pub dev: u32,
    /// REQ_OP_* (bi_opf & 0xff).
    pub op: u32,
    /// `BIO_FLAG_*`.
    pub flags: u32,
    /// End: bi_status (0 = success).
    pub status: i32,
    /// Bytes of the bio (bi_iter.bi_size) when the event ran; at Release and End the iterator
    /// may have been advanced, so only Acquire's figure is the I/O size.
    pub bytes: u32,
    /// Index in the bio's vec array of this record's first vec (0 but for the later records of
    /// a release that lists its unpins, [`BIO_FLAG_UNPINS_LISTED`]).
    pub first_vec: u32,
    /// The task the event ran in.
    pub owner: Owner,
    /// bio->bi_vcnt.
    pub nr_vecs: u32,
    /// Pages across the recorded vecs (a vec covers DIV_ROUND_UP(offset + len, PAGE_SIZE)).
    pub nr_pages: u32,
    /// struct page address of the first page of each vec (Acquire and Release).
    pub pages: [u64; BIO_MAX_VECS],
    /// Pages covered by each vec.
    pub vec_pages: [u16; BIO_MAX_VECS],
}

/// Map and global names shared by both sides.
pub mod names {
    /// Every counter of the programs (layout: [`super::counters`]).
    pub const COUNTERS: &str = "COUNTERS";
    pub const CHAIN_STAGE: &str = "CHAIN_STAGE";
    /// The invocations' words of the chains' word rule ([`super::chain::word_decide`]).
    pub const CHAIN_WORDS: &str = "CHAIN_WORDS";
    /// Per CPU, by probe and position: where each chain program's recursion count lies on
    /// that CPU (0: not known), written by the loader ([`super::chain::ActiveRecord`]).
    pub const CHAIN_ACTIVE: &str = "CHAIN_ACTIVE";
    /// The iterator over the kernel's BPF programs that finds those counts.
    pub const CHAIN_ACTIVE_ITER: &str = "chain_active_counts";
    /// u64 globals of that iterator: the address of `__per_cpu_offset` (0: unknown) and how
    /// many CPUs are possible.
    pub const PER_CPU_OFFSET_AT: &str = "PER_CPU_OFFSET_AT";
    pub const POSSIBLE_CPUS: &str = "POSSIBLE_CPUS";
    /// A u64 global: 1 with TRACER_DEBUG_CHAINS (the programs then check the addresses of
    /// their own kernel counts: [`super::chain::ChainDebug::OwnCountSeen`]).
    pub const DEBUG_CHAINS: &str = "DEBUG_CHAINS";
    pub const EVENTS: &str = "EVENTS";
    /// Learned call paths ([`super::stack_path`]).
    pub const STACK_PATHS: &str = "STACK_PATHS";
    /// A u64 global: 1 when pin records take their stacks from learned call paths, 0 when
    /// they walk (see tracer/src/probes/kernel.rs, `Facts::learned_paths`).
    pub const LEARNED_PATHS: &str = "LEARNED_PATHS";
    /// A u64 global: the parts of a page record left out for a benchmark's ablation
    /// ([`super::bench_skip`]); 0 in every user's run.
    pub const BENCH_SKIP: &str = "BENCH_SKIP";
    /// 1 when the `sys` latency figure is on (tracer-ebpf/src/latency.rs).
    pub const SYSCALL_LATENCY: &str = "SYSCALL_LATENCY";
    /// The [`super::Offsets`] global.
    pub const OFFSETS: &str = "OFFSETS";
    /// A u64 global: 1 when threads can be preempted inside tracing programs (full, lazy or
    /// RT preemption, or not known), 0 when they cannot (none or voluntary); see [`super::chain`].
    pub const TASK_PREEMPTION: &str = "TASK_PREEMPTION";
    /// A u64 global: the backups attached to each chain that decides by the word rule
    /// (where threads are preempted inside programs; see [`super::chain`]).
    pub const WORD_CHAIN_BACKUPS: &str = "WORD_CHAIN_BACKUPS";
    /// A u64 global: bytes waiting in `EVENTS` above which a submit wakes the reader (the
    /// loader sets a quarter of the ring buffer's size).
    pub const EVENTS_WAKE_AT: &str = "EVENTS_WAKE_AT";
    /// u64 globals: where `__bio_release_pages` lies in kernel text, [start, end); 0 when not
    /// known (see [`super::BIO_FLAG_UNPINS_LISTED`]).
    pub const BIO_RELEASE_START: &str = "BIO_RELEASE_START";
    pub const BIO_RELEASE_END: &str = "BIO_RELEASE_END";
    /// A u64 global: 1 when the `block_bio_queue` program streams the bio's acquisition
    /// (the kernel marks bios that hold pinned pages: 6.2+), so that `bio_iov_iter_get_pages`
    /// needs no probe of its own while `block_bio_queue` is attached; 0 otherwise.
    pub const ACQUIRE_AT_QUEUE: &str = "ACQUIRE_AT_QUEUE";
    /// Array of one u64: 1 once the release probe and the unpin probe are both attached (from
    /// then on, releases list their unpins), 2 once every probe is (from then on, the unpin
    /// probe skips the unpins releases list). Never set when either cannot be attached.
    pub const BIO_COVER: &str = "BIO_COVER";
    /// A u64 global: the BTF id of `struct pt_regs` in the running kernel when the loader
    /// turned the object's direct-load placeholders into calls of the `bpf_rdonly_cast` kfunc
    /// ([`super::kload`]); 0 when it did not (the programs then use the read helper).
    pub const KLOAD_TYPE: &str = "KLOAD_TYPE";
}

/// Direct loads from kernel addresses held as numbers (tracer-ebpf/src/kload.rs): the object
/// calls a helper of this made-up number where it casts an address, and the loader turns each
/// such call into a call of the `bpf_rdonly_cast` kfunc (6.2+), after which the verifier lets
/// the program load from the address as from an untrusted BTF-typed pointer: one
/// fault-tolerant load instead of a call of the read helper. A kernel without the kfunc keeps
/// the placeholders, in code the verifier never walks (`KLOAD_TYPE` is 0 there).
pub mod kload {
    /// The placeholder's helper number: no helper has it ("kcas").
    pub const PLACEHOLDER: u32 = 0x6b63_6173;
    /// `BPF_JMP | BPF_CALL`: the opcode of a call instruction.
    pub const CALL_OPCODE: u8 = 0x85;
    /// `src_reg` of a call of a kernel function (`BPF_PSEUDO_KFUNC_CALL`), in the high half
    /// of an instruction's register byte.
    pub const PSEUDO_KFUNC_CALL: u8 = 2;
    /// The kfunc the placeholders become.
    pub const KFUNC: &str = "bpf_rdonly_cast";
    /// The struct the cast gives: x86-64's `struct pt_regs`, whose first
    /// [`CAST_WORDS`] members are 8-byte numbers in every kernel (`r15` to `orig_ax`), so a
    /// cast pointer reads any of the words at those offsets.
    pub const CAST_TYPE: &str = "pt_regs";
    /// Words from a cast pointer a load may read (at constant offsets).
    pub const CAST_WORDS: usize = 16;

    /// The instruction of a placeholder call, as it lies in the object (little-endian).
    pub const fn placeholder_insn() -> [u8; 8] {
        let imm = PLACEHOLDER.to_le_bytes();
        [CALL_OPCODE, 0, 0, 0, imm[0], imm[1], imm[2], imm[3]]
    }

    /// The call of the kfunc of BTF id `kfunc_id` (in the kernel's own BTF) that replaces it.
    pub const fn kfunc_insn(kfunc_id: u32) -> [u8; 8] {
        let imm = kfunc_id.to_le_bytes();
        [CALL_OPCODE, PSEUDO_KFUNC_CALL << 4, 0, 0, imm[0], imm[1], imm[2], imm[3]]
    }
}

/// Bytes of the `EVENTS` ring buffer unless `--ring-buffer` says otherwise.
pub const EVENTS_DEFAULT_BYTES: u32 = 8 << 20;

const _: () = assert!(size_of::<ProbeStat>() == 16);
const _: () = assert!(size_of::<Offsets>() == 188);
const _: () = assert!(size_of::<ExitRecord>() == 16);
const _: () = assert!(size_of::<PagesHeader>() == 48 + 32 + 8 * PAGES_STACK_FRAMES);
const _: () = assert!(size_of::<PagesWire>() == size_of::<PagesHeader>() + 16 * PAGES_MAX_ENTRIES);
const _: () = assert!(size_of::<LatencyEvent>() == 40);
const _: () = assert!(size_of::<chain::ActiveRecord>() == 16);
const _: () = assert!(size_of::<Owner>() == 32);
const _: () = assert!(size_of::<BioRecord>() == 248);
const _: () = assert!(size_of::<BioWire>() == 48 + 32 + 8 + BIO_WIRE_VEC_BYTES);
// The bio records read one vec, four, or the whole slice (tracer-ebpf/src/bio.rs).
const _: () = assert!(BIO_WIRE_VEC_BYTES >= 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] structs of integers and byte arrays, no padding (asserted above).
    unsafe impl aya::Pod for super::ProbeStat {}
    // SAFETY: as above.
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Offsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LatencyEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BioRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BioWire {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PagesHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExitRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::stack_path::StackPathKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::stack_path::StackPath {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::chain::ActiveRecord {}
}
