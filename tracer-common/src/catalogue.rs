//! The probe catalogue: every kernel function and tracepoint the tracer knows, what each
//! observes, how it attaches and which programs implement it. Both sides index their counters
//! and programs by [`ProbeId`].

/// Every probe the tracer knows, in the order of [`PROBES`]. The value indexes the probes' counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeId {
    PinUserPagesFast = 0,
    PinUserPages,
    PinUserPagesRemote,
    PinUserPagesUnlocked,
    UnpinUserPage,
    UnpinUserPages,
    UnpinUserPagesDirtyLock,
    UnpinUserPageRangeDirtyLock,
    UnpinFolio,
    UnpinUserFolio,
    UnpinFolios,
    BlockRqIssue,
    BlockRqComplete,
    BlockBioQueue,
    BlockBioComplete,
    IomapDioBegin,
    IomapDioComplete,
    SysEnter,
    SysExit,
    BioIovIterGetPages,
    BioReleasePages,
    GetUserPagesFast,
    FolioAddPin,
    ProcessExit,
    PipeBufRelease,
    NfsDirectReadScheduleIovec,
    NfsDirectWriteScheduleIovec,
    FuseFileReadIter,
    FuseFileWriteIter,
    FuseDevRead,
    FuseDevWrite,
}

/// Number of [`ProbeId`]s.
pub const PROBE_COUNT: u32 = ProbeId::FuseDevWrite as u32 + 1;

/// What a probe observes; decides what its [`crate::ProbeStat::amount`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeRole {
    /// A pin entry point (`pin_user_pages*`): amount = pages the call returned as pinned.
    Pin,
    /// An unpin variant: amount = pages (or folio references) the call was asked to release.
    Unpin,
    /// A FOLL_GET entry point used for I/O (`get_user_pages_fast`, behind iov_iter_get_pages2
    /// and iov_iter_get_pages_alloc2): amount = pages the call returned with a reference.
    Get,
    /// Block request issued to the driver: amount = 0 (hits are requests).
    BlockIssue,
    /// Block request completed: amount = bytes completed.
    BlockComplete,
    /// Other start or end points of the latency figures (bio queue/complete, iomap DIO).
    Latency,
    /// A FOLL_GET reference dropped where a probe can see it: the release of a pipe buffer over
    /// user pages that vmsplice took (most references are dropped by put_page, an inline function
    /// no probe sees): amount = pages.
    Put,
    /// A process (thread group) exited: amount = 0. Pins that outlive their process are
    /// judged from it.
    Exit,
}

/// How a probe attaches when the kernel allows its preferred form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// fentry (BTF trampoline on function entry); kprobe fallback.
    Fentry,
    /// fexit (BTF trampoline on function return); kretprobe fallback.
    Fexit,
    /// BTF-typed tracepoint (tp_btf); no fallback needed, it needs neither kprobes nor ftrace.
    TpBtf,
    /// The system calls that can do Direct I/O on a file ([`RW_SYSCALLS`]), observed one of
    /// two ways:
    /// - the perf tracepoints `syscalls:<target>_<name>` (target `sys_enter` or `sys_exit`),
    ///   one program attached to all of them: the kernel runs it for those calls only. Needs
    ///   CONFIG_FTRACE_SYSCALLS and tracefs. The kernel runs perf tracepoint programs only
    ///   while no other such program runs on the CPU (`bpf_prog_active`), and some kernels
    ///   (Debian's 7.2, lazy preemption) run these with preemption on: a thread preempted in
    ///   one makes every other thread's calls on that CPU skip it (two syscall loops on one CPU
    ///   under 7.2: a third of the calls skipped).
    /// - the raw tracepoints `sys_enter`/`sys_exit` ([`ProbeDef::raw_syscall_program`], no BTF),
    ///   which run for every system call of the machine (the programs check the call number
    ///   first) and have a recursion guard per program, so a chain of them rescues what one
    ///   program misses (7.2 runs them preemptible too).
    ///
    /// The first is cheaper where threads cannot be preempted inside programs; the second is
    /// preferred where they can.
    Syscalls,
}

/// The x86_64 system calls that can do Direct I/O on a file (the `sys` latency figure's).
pub const RW_SYSCALLS: [&str; 10] =
    ["read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2"];

/// One probe: the kernel function or tracepoint and the programs that can observe it.
#[derive(Clone, Copy, Debug)]
pub struct ProbeDef {
    pub id: ProbeId,
    pub target: &'static str,
    pub role: ProbeRole,
    pub attach: Attach,
    /// Name of the preferred program (fentry, fexit, tp_btf or syscall tracepoint) in the eBPF
    /// object.
    pub btf_program: &'static str,
    /// Name of the kprobe/kretprobe fallback program, if there is one.
    pub kprobe_program: Option<&'static str>,
    /// More BTF programs on the same target, run after the first, that record the calls the
    /// programs before them missed: the kernel skips a program that is already running on that
    /// CPU, which happens when an interrupt arrives while it runs, or when it is preempted and
    /// another task on that CPU hits the target. A backup acts only for invocations no program
    /// before it took care of (tracer-ebpf/src/chain.rs). For [`Attach::Syscalls`], those of
    /// the raw tracepoint program (the perf tracepoint programs cannot have any).
    pub backups: &'static [&'static str],
}

impl ProbeDef {
    /// Whether the kernel can preempt the probe's chained programs in thread context, on a
    /// kernel that preempts threads in kernel code at all (full, lazy or RT preemption):
    /// trampolines (fentry/fexit) disable migration, not preemption; tracepoints (tp_btf and
    /// the system call ones) did disable it, but Debian's 7.2 runs their programs
    /// preemptible too (seen: a thread-only tp_btf probe skipped, a third of the system call
    /// tracepoint runs skipped with two syscall loops on one CPU). So all of them.
    pub const fn preemptible(&self) -> bool {
        matches!(self.attach, Attach::Fentry | Attach::Fexit | Attach::TpBtf | Attach::Syscalls)
    }

    /// Whether the chain's programs test each invocation before the chain's bookkeeping (the
    /// raw system call tracepoints, run for every call of the machine: tracer-ebpf/src/chain.rs
    /// says how the skips stay exact). Such a chain runs in attach order (a tracepoint's), so
    /// its backups act from the moment they attach.
    pub const fn filters_first(&self) -> bool {
        matches!(self.attach, Attach::Syscalls)
    }

    /// Whether the target can be reached in interrupt context (hardirq or softirq), where an
    /// invocation can nest on another one of the same target on its CPU. The others are reached
    /// only by a thread (system calls, page pinning, bio submission, process exit): where no
    /// thread is preempted inside the programs, nothing can be inside their chain beneath an
    /// invocation, so they need no backup. Were one reached in an interrupt after all, the
    /// kernel counts the skip and the tracer reports it as lost: never silent.
    ///
    /// The block layer's starts count as thread-only: a request is dispatched (`block_rq_issue`)
    /// by the submitting thread or a kblockd worker (blk-mq runs a queue from a completion
    /// asynchronously, and warns when asked to run one synchronously in an interrupt), and
    /// bios are queued (`block_bio_queue`) by threads and workqueues. The exceptions found in
    /// 6.1, 6.12 and 7.0 are rare configurations (the aoe driver starts requests in its
    /// network softirq; dm-crypt with `no_write_workqueue` submits from its crypto driver's
    /// completion): a skip there loses a latency start, counted. Two backups on each would
    /// cost every I/O two more dispatches per place.
    pub const fn in_interrupts(&self) -> bool {
        !matches!(
            self.id,
            ProbeId::BlockRqIssue
                | ProbeId::BlockBioQueue
                | ProbeId::PinUserPagesFast
                | ProbeId::PinUserPages
                | ProbeId::PinUserPagesRemote
                | ProbeId::PinUserPagesUnlocked
                | ProbeId::GetUserPagesFast
                | ProbeId::FolioAddPin
                | ProbeId::BioIovIterGetPages
                | ProbeId::IomapDioBegin
                | ProbeId::SysEnter
                | ProbeId::SysExit
                | ProbeId::ProcessExit
                | ProbeId::PipeBufRelease
                | ProbeId::NfsDirectReadScheduleIovec
                | ProbeId::NfsDirectWriteScheduleIovec
                | ProbeId::FuseFileReadIter
                | ProbeId::FuseFileWriteIter
                | ProbeId::FuseDevRead
                | ProbeId::FuseDevWrite
        )
    }

    /// For [`Attach::Syscalls`]: the program on the raw tracepoint of the same name,
    /// the other way to observe the calls (see there).
    pub const fn raw_syscall_program(&self) -> Option<&'static str> {
        match self.id {
            ProbeId::SysEnter => Some("raw_tp_sys_enter"),
            ProbeId::SysExit => Some("raw_tp_sys_exit"),
            _ => None,
        }
    }

    /// Programs in the probe's chain: the BTF program and its backups on the same target (a
    /// kprobe fallback replaces the chain and has none).
    pub const fn chain_len(&self) -> usize {
        self.backups.len() + 1
    }
}

/// Backups of a probe's BTF program at most (see [`ProbeDef::backups`]).
pub const MAX_BACKUPS: usize = 3;

macro_rules! probe {
    ($id:ident, $target:literal, $role:ident, Fentry) => {
        probe!(@def $id, $target, $role, Fentry, "fentry_", Some(concat!("kprobe_", $target)))
    };
    // The backups are the raw tracepoint program's (the perf tracepoints cannot have any).
    ($id:ident, $target:literal, $role:ident, Syscalls) => {
        probe!(@def $id, $target, $role, Syscalls, "tp_", None)
    };
    ($id:ident, $target:literal, $role:ident, Fexit) => {
        probe!(@def $id, $target, $role, Fexit, "fexit_", Some(concat!("kretprobe_", $target)))
    };
    // fexit with no kretprobe fallback: the program needs the entry arguments too.
    ($id:ident, $target:literal, $role:ident, FexitOnly) => {
        probe!(@def $id, $target, $role, Fexit, "fexit_", None)
    };
    ($id:ident, $target:literal, $role:ident, TpBtf) => {
        probe!(@def $id, $target, $role, TpBtf, "tp_btf_", None)
    };
    (@def $id:ident, $target:literal, $role:ident, $attach:ident, $prefix:literal, $kprobe:expr) => {
        ProbeDef {
            id: ProbeId::$id,
            target: $target,
            role: ProbeRole::$role,
            attach: Attach::$attach,
            btf_program: concat!($prefix, $target),
            kprobe_program: $kprobe,
            backups: &[concat!("backup_", $target), concat!("backup2_", $target), concat!("backup3_", $target)],
        }
    };
}

/// The probe catalogue. Index i holds the probe whose id is i.
pub const PROBES: [ProbeDef; PROBE_COUNT as usize] = [
    probe!(PinUserPagesFast, "pin_user_pages_fast", Pin, Fexit),
    probe!(PinUserPages, "pin_user_pages", Pin, Fexit),
    probe!(PinUserPagesRemote, "pin_user_pages_remote", Pin, Fexit),
    probe!(PinUserPagesUnlocked, "pin_user_pages_unlocked", Pin, Fexit),
    probe!(UnpinUserPage, "unpin_user_page", Unpin, Fentry),
    probe!(UnpinUserPages, "unpin_user_pages", Unpin, Fentry),
    probe!(UnpinUserPagesDirtyLock, "unpin_user_pages_dirty_lock", Unpin, Fentry),
    probe!(UnpinUserPageRangeDirtyLock, "unpin_user_page_range_dirty_lock", Unpin, Fentry),
    probe!(UnpinFolio, "unpin_folio", Unpin, Fentry),
    probe!(UnpinUserFolio, "unpin_user_folio", Unpin, Fentry),
    probe!(UnpinFolios, "unpin_folios", Unpin, Fentry),
    probe!(BlockRqIssue, "block_rq_issue", BlockIssue, TpBtf),
    probe!(BlockRqComplete, "block_rq_complete", BlockComplete, TpBtf),
    probe!(BlockBioQueue, "block_bio_queue", Latency, TpBtf),
    probe!(BlockBioComplete, "block_bio_complete", Latency, TpBtf),
    probe!(IomapDioBegin, "iomap_dio_rw_begin", Latency, TpBtf),
    probe!(IomapDioComplete, "iomap_dio_complete", Latency, TpBtf),
    probe!(SysEnter, "sys_enter", Latency, Syscalls),
    probe!(SysExit, "sys_exit", Latency, Syscalls),
    probe!(BioIovIterGetPages, "bio_iov_iter_get_pages", Latency, FexitOnly),
    probe!(BioReleasePages, "__bio_release_pages", Latency, Fentry),
    probe!(GetUserPagesFast, "get_user_pages_fast", Get, Fexit),
    // Legacy fs/direct-io.c (6.2+) adds pins to pinned folios without counting them in
    // nr_foll_pin_acquired; their unpins are counted.
    probe!(FolioAddPin, "folio_add_pin", Pin, Fentry),
    probe!(ProcessExit, "sched_process_exit", Exit, TpBtf),
    // page_cache_pipe_buf_release(struct pipe_inode_info *, struct pipe_buffer *): the release of
    // every pipe buffer over a page; only anonymous pages (vmsplice's user pages) count.
    probe!(PipeBufRelease, "page_cache_pipe_buf_release", Put, Fentry),
    // NFS O_DIRECT (nfs.ko): each takes FOLL_GET references of the user pages
    // (iov_iter_get_pages_alloc2) and drops them all (nfs_direct_release_pages, inlined) before
    // it returns; the I/O holds references of its own (nfs_page).
    probe!(NfsDirectReadScheduleIovec, "nfs_direct_read_schedule_iovec", Put, Fexit),
    probe!(NfsDirectWriteScheduleIovec, "nfs_direct_write_schedule_iovec", Put, Fexit),
    // FUSE (fuse.ko on 6.1, built in later). Direct I/O takes FOLL_GET references of the
    // caller's pages on 6.1 (fuse_get_user_pages, inlined) and drops them with put_page when
    // each request ends: a synchronous call has ended them all when it returns; one that
    // returns -EIOCBQUEUED (async I/O) goes on without it.
    probe!(FuseFileReadIter, "fuse_file_read_iter", Put, Fexit),
    probe!(FuseFileWriteIter, "fuse_file_write_iter", Put, Fexit),
    // The server's read and write of /dev/fuse copy through FOLL_GET references of its buffer
    // (fuse_copy_fill) and drop them (fuse_copy_finish) before they return, on every kernel.
    probe!(FuseDevRead, "fuse_dev_read", Put, Fexit),
    probe!(FuseDevWrite, "fuse_dev_write", Put, Fexit),
];

const _: () = {
    let mut i = 0;
    while i < PROBES.len() {
        assert!(PROBES[i].id as usize == i, "PROBES must be indexed by ProbeId");
        i += 1;
    }
};
