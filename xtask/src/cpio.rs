//! A file tree for an initramfs and a writer for the cpio "newc" format the kernel unpacks.
//!
//! The tree uses a merged-/usr layout (`/bin`, `/sbin`, `/lib`, `/lib64` are symlinks into
//! `/usr`), as Debian 12 does, so host paths such as `/lib/x86_64-linux-gnu/libc.so.6` and
//! `/usr/lib/x86_64-linux-gnu/libc.so.6` land on the same guest file.
//!
//! File contents are read from the host only when the archive is written, so a tree is
//! cheap to build and its [`Tree::fingerprint`] keys a cache of the written archive.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Top-level directories that are symlinks into /usr in the guest.
const MERGED_USR: [&str; 4] = ["bin", "sbin", "lib", "lib64"];

/// Where a regular file's bytes come from.
#[derive(Debug, Clone)]
pub enum Data {
    Bytes(Vec<u8>),
    /// A host file, read (following symlinks) when the archive is written.
    Host(PathBuf),
    /// A host file compressed with xz, zstd or gzip (by its suffix), decompressed when written.
    Decompress(PathBuf),
}

#[derive(Debug, Clone)]
enum Node {
    Dir { mode: u32 },
    File { data: Data, mode: u32 },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

/// A guest file tree. Keys are normalized guest paths without the leading `/`.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

/// Normalizes a guest path: absolute or relative to `/`, no `..`, merged /usr applied.
pub fn guest_path(path: &str) -> Result<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => match s.to_str() {
                Some(s) => parts.push(s),
                None => bail!("guest path {path:?} is not UTF-8"),
            },
            Component::ParentDir => bail!("guest path {path:?} must not contain `..`"),
            Component::Prefix(_) => bail!("guest path {path:?} is not a Unix path"),
        }
    }
    if parts.is_empty() {
        bail!("guest path {path:?} names the root directory");
    }
    let mut out = String::new();
    if MERGED_USR.contains(&parts[0]) {
        out.push_str("usr/");
    }
    out.push_str(&parts.join("/"));
    Ok(out)
}

impl Tree {
    /// An empty tree; with `base`, it also holds the merged-/usr symlinks and the skeleton
    /// directories every guest needs.
    pub fn new(base: bool) -> Self {
        let mut tree = Tree { nodes: BTreeMap::new() };
        if base {
            for top in MERGED_USR {
                tree.nodes.insert(top.to_string(), Node::Symlink { target: format!("usr/{top}") });
                tree.nodes.insert(format!("usr/{top}"), Node::Dir { mode: 0o755 });
            }
            tree.nodes.insert("usr".into(), Node::Dir { mode: 0o755 });
            for dir in ["dev", "proc", "sys", "run", "mnt", "etc", "root", "var"] {
                tree.nodes.insert(dir.into(), Node::Dir { mode: 0o755 });
            }
            tree.nodes.insert("tmp".into(), Node::Dir { mode: 0o1777 });
            // The kernel opens /dev/console for init before anything is mounted.
            tree.nodes.insert("dev/console".into(), Node::CharDev { mode: 0o600, major: 5, minor: 1 });
        }
        tree
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<()> {
        let key = guest_path(path)?;
        // Every ancestor must be a directory (an existing symlink is only allowed for the
        // merged-/usr tops, which guest_path already routed around).
        let mut prefix = String::new();
        let parents: Vec<&str> = key.split('/').collect();
        for part in &parents[..parents.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            match self.nodes.get(&prefix) {
                None => {
                    self.nodes.insert(prefix.clone(), Node::Dir { mode: 0o755 });
                }
                Some(Node::Dir { .. }) => {}
                Some(_) => bail!("cannot add /{key}: /{prefix} is not a directory"),
            }
        }
        match (self.nodes.get(&key), &node) {
            (Some(Node::Dir { .. }), Node::Dir { .. }) | (None, _) => {}
            (Some(Node::Dir { .. }), _) => bail!("cannot replace directory /{key} with a file"),
            (Some(_), Node::Dir { .. }) => bail!("cannot replace file /{key} with a directory"),
            (Some(_), _) => {} // a later file replaces an earlier one (tools over applets)
        }
        self.nodes.insert(key, node);
        Ok(())
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.insert(path, Node::Dir { mode })
    }

    pub fn file(&mut self, path: &str, data: Data, mode: u32) -> Result<()> {
        self.insert(path, Node::File { data, mode })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.insert(path, Node::Symlink { target: target.to_string() })
    }

    /// Whether the guest path exists in the tree (as anything).
    pub fn contains(&self, path: &str) -> bool {
        guest_path(path).is_ok_and(|k| self.nodes.contains_key(&k))
    }

    /// Adds a host file or directory (recursively) at `dest`, keeping permission bits.
    /// Symlinks inside a directory are copied as symlinks; a symlink given as `src` is
    /// followed.
    pub fn add_host_path(&mut self, src: &Path, dest: &str) -> Result<()> {
        let meta = fs::metadata(src).with_context(|| format!("{}", src.display()))?;
        if meta.is_dir() {
            self.dir(dest, meta.mode() & 0o7777)?;
            let mut children: Vec<_> = fs::read_dir(src)
                .with_context(|| format!("reading directory {}", src.display()))?
                .collect::<io::Result<_>>()
                .with_context(|| format!("reading directory {}", src.display()))?;
            children.sort_by_key(|e| e.file_name());
            for child in children {
                let name = child.file_name();
                let Some(name) = name.to_str() else {
                    bail!("{}: file name is not UTF-8", child.path().display());
                };
                let child_dest = format!("{}/{name}", dest.trim_end_matches('/'));
                let lmeta = fs::symlink_metadata(child.path())?;
                if lmeta.file_type().is_symlink() {
                    let target = fs::read_link(child.path())?;
                    let Some(target) = target.to_str() else {
                        bail!("{}: link target is not UTF-8", child.path().display());
                    };
                    self.symlink(&child_dest, target)?;
                } else {
                    self.add_host_path(&child.path(), &child_dest)?;
                }
            }
            Ok(())
        } else if meta.is_file() {
            self.file(dest, Data::Host(src.to_path_buf()), meta.mode() & 0o7777)
        } else {
            bail!("{}: only regular files and directories can be copied into the guest", src.display())
        }
    }

    /// A digest of everything that decides the archive's bytes: paths, modes, link
    /// targets, in-memory contents, and the identity (path, size, mtime) of host files.
    pub fn fingerprint(&self) -> Result<String> {
        let mut h = Sha256::new();
        for (path, node) in &self.nodes {
            h.update(path.as_bytes());
            h.update([0]);
            match node {
                Node::Dir { mode } => h.update(format!("d{mode:o}")),
                Node::Symlink { target } => h.update(format!("l{target}")),
                Node::CharDev { mode, major, minor } => h.update(format!("c{mode:o}:{major}:{minor}")),
                Node::File { data, mode } => {
                    h.update(format!("f{mode:o}"));
                    match data {
                        Data::Bytes(b) => h.update(Sha256::digest(b)),
                        Data::Host(p) | Data::Decompress(p) => {
                            let m = fs::metadata(p).with_context(|| format!("{}", p.display()))?;
                            h.update(format!("{}:{}:{}.{}", p.display(), m.len(), m.mtime(), m.mtime_nsec()));
                        }
                    }
                }
            }
            h.update([0xff]);
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Writes the tree as one cpio newc archive (with its trailer).
    pub fn write_cpio<W: Write>(&self, out: &mut W) -> Result<()> {
        let mut w = CpioWriter::new(out);
        for (path, node) in &self.nodes {
            match node {
                Node::Dir { mode } => w.entry(path, S_IFDIR | mode, 2, (0, 0), &[])?,
                Node::Symlink { target } => w.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())?,
                Node::CharDev { mode, major, minor } => w.entry(path, S_IFCHR | mode, 1, (*major, *minor), &[])?,
                Node::File { data, mode } => {
                    let bytes = match data {
                        Data::Bytes(b) => std::borrow::Cow::Borrowed(b.as_slice()),
                        Data::Host(p) => {
                            std::borrow::Cow::Owned(fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                        }
                        Data::Decompress(p) => std::borrow::Cow::Owned(decompress(p)?),
                    };
                    w.entry(path, S_IFREG | mode, 1, (0, 0), &bytes)
                        .with_context(|| format!("writing /{path} into the archive"))?
                }
            }
        }
        w.trailer()?;
        Ok(())
    }
}

/// Decompresses a `.xz`, `.zst` or `.gz` file with the host's tools (xz-utils, zstd,
/// gzip); any other file is read as is.
pub fn decompress(path: &Path) -> Result<Vec<u8>> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return fs::read(path).with_context(|| format!("reading {}", path.display())),
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("running `{tool} -dc` (is {tool} installed?)"))?;
    if !out.status.success() {
        bail!("`{tool} -dc {}` failed: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

/// Streams cpio newc entries.
struct CpioWriter<'a, W: Write> {
    out: &'a mut W,
    ino: u32,
    offset: u64,
}

impl<'a, W: Write> CpioWriter<'a, W> {
    fn new(out: &'a mut W) -> Self {
        CpioWriter { out, ino: 1, offset: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.offset % 4) as usize) % 4;
        self.put(&[0u8; 3][..pad])
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> Result<()> {
        let size =
            u32::try_from(data.len()).map_err(|_| anyhow::anyhow!("{name}: larger than the 4 GiB cpio newc limit"))?;
        let namesize = u32::try_from(name.len() + 1)?;
        let ino = self.ino;
        self.ino += 1;
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {dmaj:08x}{dmin:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
            uid = 0,
            gid = 0,
            mtime = 0,
            dmaj = 0,
            dmin = 0,
            rmaj = rdev.0,
            rmin = rdev.1,
            check = 0,
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad4()?;
        self.put(data)?;
        self.pad4()?;
        Ok(())
    }

    fn trailer(&mut self) -> Result<()> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        // Pad the archive to 512 bytes so that another one can be appended cleanly.
        let pad = ((512 - (self.offset % 512)) % 512) as usize;
        self.put(&vec![0u8; pad])?;
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_normalized_to_merged_usr() {
        assert_eq!(guest_path("/bin/sh").unwrap(), "usr/bin/sh");
        assert_eq!(guest_path("lib64/ld.so").unwrap(), "usr/lib64/ld.so");
        assert_eq!(guest_path("/usr//bin/./fio").unwrap(), "usr/bin/fio");
        assert_eq!(guest_path("/root/x").unwrap(), "root/x");
        assert_eq!(guest_path("/binary").unwrap(), "binary");
        assert!(guest_path("/").is_err());
        assert!(guest_path("/root/../etc").is_err());
    }

    #[test]
    fn parents_are_created_and_conflicts_rejected() {
        let mut t = Tree::new(true);
        t.file("/opt/a/b", Data::Bytes(b"x".to_vec()), 0o644).unwrap();
        assert!(t.contains("/opt/a"));
        assert!(t.contains("/opt"));
        assert!(t.file("/opt/a", Data::Bytes(vec![]), 0o644).is_err());
        assert!(t.dir("/opt/a/b", 0o755).is_err());
        assert!(t.file("/opt/a/b/c", Data::Bytes(vec![]), 0o644).is_err());
        // A later file replaces an earlier one.
        t.symlink("/bin/dd", "/usr/bin/busybox").unwrap();
        t.file("/usr/bin/dd", Data::Bytes(b"elf".to_vec()), 0o755).unwrap();
        assert!(matches!(t.nodes.get("usr/bin/dd"), Some(Node::File { .. })));
    }

    #[test]
    fn newc_layout_is_what_the_kernel_expects() {
        let mut t = Tree::new(false);
        t.file("/a", Data::Bytes(b"hello".to_vec()), 0o644).unwrap();
        let mut out = Vec::new();
        t.write_cpio(&mut out).unwrap();
        assert_eq!(out.len() % 512, 0);
        let header = std::str::from_utf8(&out[..110]).unwrap();
        assert!(header.starts_with("070701"));
        assert_eq!(&header[14..22], "000081a4"); // regular file, 0644
        assert_eq!(&header[54..62], "00000005"); // size
        assert_eq!(&header[94..102], "00000002"); // "a\0"
        assert_eq!(&out[110..112], b"a\0");
        // 110 + 2 = 112 is aligned; the data follows directly.
        assert_eq!(&out[112..117], b"hello");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("TRAILER!!!"));
    }

    #[test]
    fn fingerprint_follows_content() {
        let mut a = Tree::new(true);
        a.file("/x", Data::Bytes(b"1".to_vec()), 0o644).unwrap();
        let mut b = Tree::new(true);
        b.file("/x", Data::Bytes(b"2".to_vec()), 0o644).unwrap();
        assert_ne!(a.fingerprint().unwrap(), b.fingerprint().unwrap());
        assert_eq!(a.fingerprint().unwrap(), a.clone().fingerprint().unwrap());
    }
}
