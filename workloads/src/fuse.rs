//! `pin-workload fuse MOUNTPOINT`: a FUSE file system served straight over /dev/fuse (no
//! libfuse, no fusermount: the VM runs as root) holding one regular file, `data`, kept in
//! memory and opened with FOPEN_DIRECT_IO. O_DIRECT or not, reads and writes of it then go
//! through the kernel's FUSE direct I/O path (fuse_direct_io -> fuse_get_user_pages), which
//! takes the user pages of the caller's buffer: the path the VM tests trace.
//!
//! Protocol: include/uapi/linux/fuse.h, version 7.31 (max_pages negotiation, so a 1 MiB request
//! goes out whole). Every message is a fuse_in_header (40 bytes) and an opcode-specific body;
//! every reply a fuse_out_header (16 bytes) and a body. Only what a file opened by path needs
//! is answered; anything else gets ENOSYS, which the kernel remembers where it can.

use std::{
    fs::{File, OpenOptions},
    io::{ErrorKind, Read, Write},
    os::fd::AsRawFd,
};

use anyhow::{bail, Context, Result};

const FUSE_LOOKUP: u32 = 1;
const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_SETATTR: u32 = 4;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_WRITE: u32 = 16;
const FUSE_STATFS: u32 = 17;
const FUSE_RELEASE: u32 = 18;
const FUSE_FSYNC: u32 = 20;
const FUSE_FLUSH: u32 = 25;
const FUSE_INIT: u32 = 26;
const FUSE_OPENDIR: u32 = 27;
const FUSE_READDIR: u32 = 28;
const FUSE_RELEASEDIR: u32 = 29;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_DESTROY: u32 = 38;
const FUSE_BATCH_FORGET: u32 = 42;

/// fuse_init_out.flags: FUSE_BIG_WRITES (more than a page per write) and FUSE_MAX_PAGES
/// (the max_pages field is valid).
const INIT_FLAGS: u32 = (1 << 5) | (1 << 22);
/// fuse_open_out.open_flags: FOPEN_DIRECT_IO.
const FOPEN_DIRECT_IO: u32 = 1;
/// Largest request the kernel may send: 256 pages of data.
const MAX_WRITE: u32 = 1 << 20;
const MAX_PAGES: u16 = 256;

const ROOT: u64 = 1;
const DATA: u64 = 2;
const NAME: &[u8] = b"data";

const IN_HEADER: usize = 40;

/// The served file: `data`, `size` bytes in memory.
struct Fs {
    data: Vec<u8>,
    reads: u64,
    writes: u64,
}

/// A reply body under construction (little-endian fields in struct order).
#[derive(Default)]
struct Body(Vec<u8>);

impl Body {
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn zeros(mut self, n: usize) -> Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

impl Fs {
    /// struct fuse_attr (88 bytes) of `node`.
    fn attr(&self, node: u64, body: Body) -> Body {
        let (mode, size, nlink) = if node == ROOT { (0o040755, 0, 2) } else { (0o100644, self.data.len() as u64, 1) };
        body.u64(node) // ino
            .u64(size)
            .u64(size.div_ceil(512)) // blocks
            .zeros(24 + 12) // atime, mtime, ctime and their nsec
            .u32(mode)
            .u32(nlink)
            .u32(0) // uid
            .u32(0) // gid
            .u32(0) // rdev
            .u32(4096) // blksize
            .u32(0) // flags
    }

    /// struct fuse_attr_out.
    fn attr_out(&self, node: u64) -> Body {
        self.attr(node, Body::default().u64(1).u32(0).u32(0))
    }

    /// The reply to one request: Ok(None) for requests that take none, Err(errno) for an error.
    fn handle(&mut self, opcode: u32, node: u64, arg: &[u8]) -> Result<Option<Body>, i32> {
        match opcode {
            FUSE_INIT => {
                let major = u32_at(arg, 0);
                if major != 7 {
                    return Err(libc::EPROTO);
                }
                Ok(Some(
                    Body::default()
                        .u32(7)
                        .u32(31)
                        .u32(u32_at(arg, 8)) // max_readahead: as offered
                        .u32(INIT_FLAGS & u32_at(arg, 12))
                        .u16(16) // max_background
                        .u16(12) // congestion_threshold
                        .u32(MAX_WRITE)
                        .u32(1) // time_gran
                        .u16(MAX_PAGES)
                        .u16(0) // map_alignment
                        .u32(0) // flags2
                        .u32(0) // max_stack_depth
                        .zeros(24),
                ))
            }
            FUSE_LOOKUP => {
                let name = arg.split(|&b| b == 0).next().unwrap_or_default();
                if node != ROOT || name != NAME {
                    return Err(libc::ENOENT);
                }
                let entry = Body::default().u64(DATA).u64(0).u64(1).u64(1).u32(0).u32(0);
                Ok(Some(self.attr(DATA, entry)))
            }
            FUSE_GETATTR => Ok(Some(self.attr_out(node))),
            // Truncation and the like are not supported: answer with the unchanged attributes
            // (the tests open the file without O_TRUNC).
            FUSE_SETATTR => Ok(Some(self.attr_out(node))),
            FUSE_OPEN if node == DATA => Ok(Some(Body::default().u64(0).u32(FOPEN_DIRECT_IO).u32(0))),
            FUSE_OPENDIR if node == ROOT => Ok(Some(Body::default().u64(0).u32(0).u32(0))),
            FUSE_OPEN | FUSE_OPENDIR => Err(libc::EISDIR),
            FUSE_READDIR => Ok(Some(Body::default())),
            FUSE_READ => {
                let (offset, size) = (u64_at(arg, 8) as usize, u32_at(arg, 16) as usize);
                let start = offset.min(self.data.len());
                let end = offset.saturating_add(size).min(self.data.len());
                self.reads += 1;
                Ok(Some(Body(self.data[start..end].to_vec())))
            }
            FUSE_WRITE => {
                let (offset, size) = (u64_at(arg, 8) as usize, u32_at(arg, 16) as usize);
                let payload = arg.get(40..40 + size).ok_or(libc::EINVAL)?;
                let end = offset.checked_add(size).filter(|&e| e <= self.data.len()).ok_or(libc::ENOSPC)?;
                self.data[offset..end].copy_from_slice(payload);
                self.writes += 1;
                Ok(Some(Body::default().u32(size as u32).u32(0)))
            }
            FUSE_STATFS => Ok(Some(
                Body::default()
                    .u64(self.data.len() as u64 / 4096) // blocks
                    .u64(0)
                    .u64(0)
                    .u64(2) // files
                    .u64(0)
                    .u32(4096) // bsize
                    .u32(255) // namelen
                    .u32(4096) // frsize
                    .zeros(4 + 24),
            )),
            FUSE_RELEASE | FUSE_RELEASEDIR | FUSE_FLUSH | FUSE_FSYNC => Ok(Some(Body::default())),
            FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => Ok(None),
            _ => Err(libc::ENOSYS),
        }
    }
}

fn mount(dev: &File, mountpoint: &str) -> Result<()> {
    let source = c"pin-workload";
    let fstype = c"fuse";
    let target = std::ffi::CString::new(mountpoint).context("mount point")?;
    let options =
        std::ffi::CString::new(format!("fd={},rootmode=40000,user_id=0,group_id=0,allow_other", dev.as_raw_fd()))
            .expect("no NUL");
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        bail!("mount -t fuse on {mountpoint}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts the file system on `mountpoint` with a `data` file of `size` bytes and serves it
/// until it is unmounted.
pub fn serve(mountpoint: &str, size: usize) -> Result<()> {
    let dev = OpenOptions::new().read(true).write(true).open("/dev/fuse").context("open /dev/fuse")?;
    mount(&dev, mountpoint)?;
    println!("fuse: serving {mountpoint}/data ({size} bytes, FOPEN_DIRECT_IO)");
    std::io::stdout().flush()?;
    let mut fs = Fs { data: vec![0; size], reads: 0, writes: 0 };
    let mut buf = vec![0u8; MAX_WRITE as usize + 4096];
    let mut dev = dev;
    loop {
        let n = match dev.read(&mut buf) {
            Ok(n) => n,
            // ENODEV: unmounted. ENOENT: the request was interrupted before we read it.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => break,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) || e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read /dev/fuse"),
        };
        if n < IN_HEADER {
            bail!("short FUSE request: {n} bytes");
        }
        let opcode = u32_at(&buf, 4);
        let unique = u64_at(&buf, 8);
        let node = u64_at(&buf, 16);
        if opcode == FUSE_DESTROY {
            break;
        }
        let (error, body) = match fs.handle(opcode, node, &buf[IN_HEADER..n]) {
            Ok(None) => continue,
            Ok(Some(body)) => (0, body.0),
            Err(errno) => (-errno, Vec::new()),
        };
        let mut reply = Vec::with_capacity(16 + body.len());
        reply.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
        reply.extend_from_slice(&error.to_le_bytes());
        reply.extend_from_slice(&unique.to_le_bytes());
        reply.extend_from_slice(&body);
        match dev.write(&reply) {
            Ok(_) => {}
            // ENOENT: the request was interrupted meanwhile; the kernel no longer waits.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("reply to FUSE opcode {opcode}")),
        }
    }
    println!("fuse: unmounted after {} reads and {} writes", fs.reads, fs.writes);
    Ok(())
}
