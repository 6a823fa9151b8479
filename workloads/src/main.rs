//! `pin-workload`: I/O on the pin paths of the seed series that fio and dd do not reach, each
//! with a buffer the test chooses, so that a VM test can tell the direct-map path (the kernel
//! pins the user pages) from the copy path (a bounce buffer, no pins):
//!
//! - `sgio DEV`: SCSI READ(10)/WRITE(10) through the SG_IO ioctl of a block device
//!   (blk_rq_map_user_iov -> bio_map_user_iov, or bio_copy_user_iov when unaligned);
//! - `nvme DEV`: NVMe Read/Write through NVME_IOCTL_IO_CMD (the same mapping);
//! - `vmsplice`: user pages spliced into a pipe (FOLL_GET references, iov_iter_get_pages2);
//! - `uring-orphan`: io_uring registered buffers (FOLL_PIN|FOLL_LONGTERM) whose ring outlives
//!   the process that registered them (a forked child keeps it): pins outliving their process;
//! - `fuse MOUNTPOINT`: a FUSE file system whose one file is opened with FOPEN_DIRECT_IO, for
//!   fio or dd to do I/O on (see fuse.rs);
//! - `thp-halves DEV`: two threads doing O_DIRECT into the two halves of one transparent huge
//!   page at once (see thp.rs).
//!
//! Every run prints one line: what it did, and the pages it expects the kernel to pin.

mod fuse;
mod thp;

use std::{fs::OpenOptions, os::fd::AsRawFd};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(about = "I/O on pin paths that fio and dd do not reach")]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// SCSI READ(10)/WRITE(10) through SG_IO on a SCSI block device (/dev/sda).
    Sgio(IoArgs),
    /// NVMe Read/Write through NVME_IOCTL_IO_CMD on a namespace (/dev/nvme0n1).
    Nvme(IoArgs),
    /// vmsplice user pages into a pipe and drain it.
    Vmsplice {
        /// Pages per vmsplice call.
        #[arg(long, default_value_t = 16)]
        pages: usize,
        #[arg(long, default_value_t = 64)]
        rounds: usize,
    },
    /// Register a buffer with io_uring (long-term pins), fork a child that keeps the ring open
    /// for a while, and exit at once: the pins outlive the process that took them.
    UringOrphan {
        #[arg(long, default_value_t = 16)]
        pages: usize,
        /// Seconds the child holds the ring after this process exits.
        #[arg(long, default_value_t = 3)]
        hold_secs: u32,
    },
    /// Mount a FUSE file system with one in-memory file, `data`, opened with FOPEN_DIRECT_IO,
    /// and serve it until unmounted.
    Fuse {
        mountpoint: String,
        /// Size of `data` in MiB.
        #[arg(long, default_value_t = 32)]
        size_mib: usize,
    },
    /// Two threads doing O_DIRECT I/O of 1 MiB at once into the two halves of one transparent
    /// huge page, round after round (two bios pinning pages of one large folio).
    ThpHalves {
        dev: String,
        #[arg(long, default_value_t = 8)]
        rounds: usize,
        #[arg(long, value_enum, default_value = "read")]
        op: Op,
    },
}

#[derive(clap::Args)]
struct IoArgs {
    dev: String,
    /// Page-aligned buffer (direct map: the pages are pinned), or one byte off (bounce copy).
    #[arg(long, value_enum)]
    buffer: Buffer,
    #[arg(long, value_enum, default_value = "read")]
    op: Op,
    /// Commands issued.
    #[arg(long, default_value_t = 64)]
    count: u32,
    /// Bytes per command (a multiple of 512).
    #[arg(long, default_value_t = 65536)]
    bytes: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Buffer {
    Aligned,
    Unaligned,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    Read,
    Write,
}

/// A page-aligned allocation, with the I/O buffer at `offset` into it.
struct IoBuffer {
    base: *mut u8,
    len: usize,
    offset: usize,
}

impl IoBuffer {
    fn new(bytes: usize, buffer: Buffer) -> Result<IoBuffer> {
        let page = 4096;
        let len = bytes + page;
        let mut base = std::ptr::null_mut();
        // SAFETY: posix_memalign writes a pointer to `len` bytes aligned to `page` into `base`.
        let rc = unsafe { libc::posix_memalign(&mut base, page, len) };
        if rc != 0 {
            bail!("cannot allocate {len} bytes");
        }
        let base = base as *mut u8;
        // SAFETY: `base` points to `len` writable bytes; touching them faults the pages in.
        unsafe { std::ptr::write_bytes(base, 0x5a, len) };
        Ok(IoBuffer { base, len, offset: if buffer == Buffer::Aligned { 0 } else { 1 } })
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: offset < page size < len.
        unsafe { self.base.add(self.offset) }
    }
}

impl Drop for IoBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by posix_memalign, freed once.
        unsafe { libc::free(self.base as *mut libc::c_void) };
        let _ = self.len;
    }
}

/// struct sg_io_hdr (include/scsi/sg.h).
#[repr(C)]
struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut libc::c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

const SG_IO: libc::c_ulong = 0x2285;
const SG_DXFER_TO_DEV: i32 = -2;
const SG_DXFER_FROM_DEV: i32 = -3;

fn sgio(a: &IoArgs) -> Result<()> {
    let dev =
        OpenOptions::new().read(true).write(true).open(&a.dev).with_context(|| format!("cannot open {}", a.dev))?;
    let buf = IoBuffer::new(a.bytes as usize, a.buffer)?;
    let blocks = a.bytes / 512;
    for i in 0..a.count {
        let lba = i * blocks;
        let opcode = if a.op == Op::Read { 0x28 } else { 0x2a };
        let l = lba.to_be_bytes();
        let n = (blocks as u16).to_be_bytes();
        let cdb = [opcode, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0];
        let mut sense = [0u8; 32];
        let mut hdr = SgIoHdr {
            interface_id: 'S' as i32,
            dxfer_direction: if a.op == Op::Read { SG_DXFER_FROM_DEV } else { SG_DXFER_TO_DEV },
            cmd_len: cdb.len() as u8,
            mx_sb_len: sense.len() as u8,
            iovec_count: 0,
            dxfer_len: a.bytes,
            dxferp: buf.ptr() as *mut libc::c_void,
            cmdp: cdb.as_ptr(),
            sbp: sense.as_mut_ptr(),
            timeout: 20_000,
            flags: 0,
            pack_id: i as i32,
            usr_ptr: std::ptr::null_mut(),
            status: 0,
            masked_status: 0,
            msg_status: 0,
            sb_len_wr: 0,
            host_status: 0,
            driver_status: 0,
            resid: 0,
            duration: 0,
            info: 0,
        };
        // SAFETY: SG_IO takes a struct sg_io_hdr whose pointers (cdb, sense, buffer) are valid
        // for the sizes it names during the call.
        let rc = unsafe { libc::ioctl(dev.as_raw_fd(), SG_IO as _, &mut hdr) };
        if rc != 0 {
            bail!("SG_IO on {}: {}", a.dev, std::io::Error::last_os_error());
        }
        if hdr.status != 0 || hdr.host_status != 0 || hdr.driver_status != 0 {
            bail!(
                "SG_IO on {}: SCSI status {:#x}, host {:#x}, driver {:#x}",
                a.dev,
                hdr.status,
                hdr.host_status,
                hdr.driver_status
            );
        }
    }
    report("sgio", a);
    Ok(())
}

/// struct nvme_passthru_cmd (include/uapi/linux/nvme_ioctl.h).
#[repr(C)]
#[derive(Default)]
struct NvmePassthruCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

/// _IOWR('N', 0x43, struct nvme_passthru_cmd) and _IO('N', 0x40).
const NVME_IOCTL_IO_CMD: libc::c_ulong = 0xC048_4E43;
const NVME_IOCTL_ID: libc::c_ulong = 0x4E40;

fn nvme(a: &IoArgs) -> Result<()> {
    let dev =
        OpenOptions::new().read(true).write(true).open(&a.dev).with_context(|| format!("cannot open {}", a.dev))?;
    // SAFETY: NVME_IOCTL_ID takes no argument and returns the namespace id.
    let nsid = unsafe { libc::ioctl(dev.as_raw_fd(), NVME_IOCTL_ID as _) };
    if nsid <= 0 {
        bail!("{} is not an NVMe namespace: {}", a.dev, std::io::Error::last_os_error());
    }
    let buf = IoBuffer::new(a.bytes as usize, a.buffer)?;
    let blocks = a.bytes / 512;
    for i in 0..a.count {
        let lba = (i * blocks) as u64;
        let mut cmd = NvmePassthruCmd {
            opcode: if a.op == Op::Read { 0x02 } else { 0x01 },
            nsid: nsid as u32,
            addr: buf.ptr() as u64,
            data_len: a.bytes,
            cdw10: lba as u32,
            cdw11: (lba >> 32) as u32,
            cdw12: blocks - 1,
            ..NvmePassthruCmd::default()
        };
        // SAFETY: NVME_IOCTL_IO_CMD takes a struct nvme_passthru_cmd; `addr` is valid for
        // `data_len` bytes during the call.
        let rc = unsafe { libc::ioctl(dev.as_raw_fd(), NVME_IOCTL_IO_CMD as _, &mut cmd) };
        if rc != 0 {
            bail!(
                "NVMe passthrough on {}: {}",
                a.dev,
                if rc < 0 { std::io::Error::last_os_error().to_string() } else { format!("status {rc:#x}") }
            );
        }
    }
    report("nvme", a);
    Ok(())
}

fn report(what: &str, a: &IoArgs) {
    let pages_per_cmd = (a.bytes as usize + (a.buffer == Buffer::Unaligned) as usize).div_ceil(4096);
    let expect = if a.buffer == Buffer::Aligned { pages_per_cmd * a.count as usize } else { 0 };
    println!(
        "pin-workload {what} {}: {} commands of {} bytes, {} buffer; pages the kernel should pin: {expect}",
        a.dev,
        a.count,
        a.bytes,
        if a.buffer == Buffer::Aligned { "page-aligned" } else { "unaligned" }
    );
}

fn vmsplice(pages: usize, rounds: usize) -> Result<()> {
    let buf = IoBuffer::new(pages * 4096, Buffer::Aligned)?;
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // A pipe big enough for one round.
    // SAFETY: F_SETPIPE_SZ on our pipe.
    unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, (pages * 4096) as libc::c_int) };
    let mut sink = vec![0u8; pages * 4096];
    for _ in 0..rounds {
        let iov = libc::iovec { iov_base: buf.ptr() as *mut libc::c_void, iov_len: pages * 4096 };
        // SAFETY: one iovec over our buffer.
        let n = unsafe { libc::vmsplice(fds[1], &iov, 1, 0) };
        if n < 0 {
            bail!("vmsplice: {}", std::io::Error::last_os_error());
        }
        let mut left = n as usize;
        while left > 0 {
            // SAFETY: reading into our sink buffer.
            let r = unsafe { libc::read(fds[0], sink.as_mut_ptr() as *mut libc::c_void, left.min(sink.len())) };
            if r <= 0 {
                bail!("reading the pipe: {}", std::io::Error::last_os_error());
            }
            left -= r as usize;
        }
    }
    println!("pin-workload vmsplice: {rounds} rounds of {pages} pages (FOLL_GET references, no pins)");
    Ok(())
}

fn uring_orphan(pages: usize, hold_secs: u32) -> Result<()> {
    const SYS_IO_URING_SETUP: libc::c_long = 425;
    const SYS_IO_URING_REGISTER: libc::c_long = 427;
    const IORING_REGISTER_BUFFERS: libc::c_long = 0;
    let len = pages * 4096;
    // SAFETY: an anonymous private mapping; checked below.
    let buf = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if buf == libc::MAP_FAILED {
        bail!("mmap: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `buf` is a fresh mapping of `len` bytes; touching it faults the pages in.
    unsafe { std::ptr::write_bytes(buf as *mut u8, 1, len) };
    // struct io_uring_params (120 bytes), all zero: default setup.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(entries, params) reads and writes the 120-byte struct.
    let ring = unsafe { libc::syscall(SYS_IO_URING_SETUP, 4 as libc::c_long, params.as_mut_ptr()) };
    if ring < 0 {
        bail!("io_uring_setup: {}", std::io::Error::last_os_error());
    }
    let iov = libc::iovec { iov_base: buf, iov_len: len };
    // SAFETY: one iovec naming our mapping.
    let rc = unsafe {
        libc::syscall(
            SYS_IO_URING_REGISTER,
            ring,
            IORING_REGISTER_BUFFERS,
            &iov as *const libc::iovec,
            1 as libc::c_long,
        )
    };
    if rc < 0 {
        bail!("io_uring_register(IORING_REGISTER_BUFFERS): {}", std::io::Error::last_os_error());
    }
    // SAFETY: plain fork; the child only sleeps and exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if child == 0 {
        std::thread::sleep(std::time::Duration::from_secs(hold_secs.into()));
        // SAFETY: ends the child without running the parent's exit handlers twice.
        unsafe { libc::_exit(0) };
    }
    println!(
        "pin-workload uring-orphan: {pages} pages registered (FOLL_PIN|FOLL_LONGTERM) by pid {}; child {child} holds the ring {hold_secs} s after it exits",
        std::process::id()
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.what {
        What::Sgio(a) => sgio(a),
        What::Nvme(a) => nvme(a),
        What::Vmsplice { pages, rounds } => vmsplice(*pages, *rounds),
        What::UringOrphan { pages, hold_secs } => uring_orphan(*pages, *hold_secs),
        What::Fuse { mountpoint, size_mib } => fuse::serve(mountpoint, size_mib << 20),
        What::ThpHalves { dev, rounds, op } => thp::halves(dev, *rounds, *op == Op::Write),
    };
    if let Err(e) = result {
        eprintln!("pin-workload: {e:#}");
        std::process::exit(1);
    }
}
