//! The guest's initramfs, in two cpio archives the kernel unpacks one after the other:
//!
//! - the base (cached per kernel, keyed on a fingerprint of everything in it): busybox and
//!   its applet links, the guest init (test/vm/init), the kernel modules the tests need
//!   with their dependencies (decompressed, for busybox's insmod/modprobe), and the
//!   workload tools (and nfs-kernel-server's, unpacked by scripts/setup.sh) with the shared
//!   libraries `ldd` lists;
//! - the per-run part: the nonce, the COMMAND script, the expected devices, the tracer
//!   binary and the files given with `--add`.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::cpio::{guest_path, Data, Tree};
use crate::kernels::{self, Kernel};

/// Kernel modules put into the guest and loaded at boot, when the kernel has them as
/// modules (built-in ones need nothing). Dependencies come from modules.dep.
pub const BOOT_MODULES: &[&str] = &[
    "configfs",
    "virtio_pci",
    "virtio_blk",
    "nvme_core",
    "nvme",
    "null_blk",
    "loop",
    "dm_mod",
    "scsi_debug",
    "sd_mod",
    "sg",
];

/// Kernel modules put into the guest but loaded only when used: the kernel asks
/// /sbin/modprobe (busybox) for them by alias (`mount -t xfs` wants `fs-xfs`, a `delay`
/// table wants `dm-delay`), or a test runs `modprobe NAME`. Loading them at boot would cost
/// seconds under TCG (xfs relocation, the raid6 benchmark of btrfs).
pub const ON_DEMAND_MODULES: &[&str] = &[
    "ext4",
    "xfs",
    "btrfs",
    "dm_delay",
    "vfat",
    "fuse",
    // NFS over loopback (pin-paths.sh): the server and the NFSv4 client, with sunrpc,
    // lockd, auth_rpcgss, nfs... as their dependencies.
    "nfsd",
    "nfsv4",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_ascii",
    "nls_utf8",
    "crc32c_intel",
    "crc32c_generic",
    "xxhash_generic",
];

/// Host programs copied into the guest (with their libraries) when the host has them;
/// they take the place of busybox applets of the same path. util-linux `mount` tells the
/// file system type from the device (busybox's only tries the types already loaded).
pub const TOOLS: &[&str] = &[
    "fio",
    "dd",
    "mke2fs",
    "mkfs.ext4",
    "mkfs.xfs",
    "xfs_io",
    "mkfs.btrfs",
    "mkfs.vfat",
    "sg_dd",
    "sg_raw",
    "sg_inq",
    "sg_readcap",
    "nvme",
    "blockdev",
    "losetup",
    "mount",
    "umount",
    "dmsetup",
    "taskset",
    // The dashboard test runs `tracer run` in a real terminal.
    "tmux",
];

/// Programs of nfs-kernel-server for the NFS case of pin-paths.sh (the guest runs the kernel
/// nfsd; mountd answers its export upcalls, nfsdcld its client tracking ones, which lets nfsd
/// skip the NFSv4 grace period), put at /usr/sbin in the guest. The package is never
/// installed on the host (its postinst starts the NFS services): scripts/setup.sh unpacks its
/// .deb into [`nfs_utils_root`] and installs the libraries, which `ldd` then finds on the host.
pub const NFS_TOOLS: &[&str] = &["exportfs", "rpc.mountd", "nfsdcld"];

/// Where scripts/setup.sh unpacks nfs-kernel-server (`dpkg -x`).
pub fn nfs_utils_root() -> PathBuf {
    kernels::cache_dir().join("nfs-utils/root")
}

/// Host configuration files the tools read, copied when present.
const CONFIG_FILES: &[&str] = &[
    "/etc/mke2fs.conf",
    // The C.UTF-8 locale (libc-bin), which tmux needs (the dashboard test).
    "/usr/lib/locale/C.utf8/LC_CTYPE",
    "/usr/lib/locale/C.utf8/LC_COLLATE",
    "/usr/lib/locale/C.utf8/LC_NUMERIC",
    "/usr/lib/locale/C.utf8/LC_TIME",
    "/usr/lib/locale/C.utf8/LC_MONETARY",
    "/usr/lib/locale/C.utf8/LC_MESSAGES/SYS_LC_MESSAGES",
    "/usr/lib/locale/C.utf8/LC_PAPER",
    "/usr/lib/locale/C.utf8/LC_NAME",
    "/usr/lib/locale/C.utf8/LC_ADDRESS",
    "/usr/lib/locale/C.utf8/LC_TELEPHONE",
    "/usr/lib/locale/C.utf8/LC_MEASUREMENT",
    "/usr/lib/locale/C.utf8/LC_IDENTIFICATION",
];

/// Bump when the layout of the base changes in a way its fingerprint cannot see.
const BASE_FORMAT: &str = "tracer-vm-base-1";

/// The guest-side configuration directory.
pub const GUEST_ETC: &str = "/etc/tracer-vm";

/// A module's name as the kernel knows it: file name without `.ko[.xz|.zst|.gz]`, with
/// `-` folded to `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// `path` without a compression suffix (`x.ko.xz` -> `x.ko`).
fn uncompressed(path: &str) -> &str {
    for suffix in [".xz", ".zst", ".gz"] {
        if let Some(p) = path.strip_suffix(suffix) {
            return p;
        }
    }
    path
}

/// modules.dep: module path -> dependency paths (relative to the modules directory).
#[derive(Debug, Default)]
pub struct ModulesDep {
    by_name: HashMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

/// The modules to put into the guest, dependencies first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Module paths (as in modules.dep), in load order.
    pub paths: Vec<String>,
    /// Requested names that are modules, in the requested order.
    pub modular: Vec<String>,
    pub builtin: Vec<String>,
    pub missing: Vec<String>,
}

impl ModulesDep {
    pub fn parse(dep: &str, builtin: &str) -> Result<Self> {
        let mut by_name = HashMap::new();
        for (n, line) in dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, deps) =
                line.split_once(':').ok_or_else(|| anyhow!("modules.dep line {}: no ':' in {line:?}", n + 1))?;
            let module = module.trim().to_string();
            let deps = deps.split_whitespace().map(str::to_string).collect();
            by_name.insert(module_name(&module), (module, deps));
        }
        let builtin = builtin.lines().filter(|l| !l.trim().is_empty()).map(module_name).collect();
        Ok(ModulesDep { by_name, builtin })
    }

    pub fn load(modules_dir: &Path) -> Result<Self> {
        let read = |f: &str| {
            let p = modules_dir.join(f);
            fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
        };
        Self::parse(&read("modules.dep")?, &read("modules.builtin").unwrap_or_default())
    }

    /// Resolves names (`-` or `_` alike) to module paths with their dependencies, each
    /// dependency before its users.
    pub fn resolve(&self, names: &[&str]) -> Result<Resolved> {
        let mut out = Resolved::default();
        let mut done = BTreeSet::new();
        let path_to_name: HashMap<&str, &str> =
            self.by_name.iter().map(|(n, (p, _))| (p.as_str(), n.as_str())).collect();
        for name in names {
            let name = name.replace('-', "_");
            if self.by_name.contains_key(&name) {
                self.visit(&name, &path_to_name, &mut done, &mut Vec::new(), &mut out.paths)?;
                out.modular.push(name);
            } else if self.builtin.contains(&name) {
                out.builtin.push(name);
            } else {
                out.missing.push(name);
            }
        }
        Ok(out)
    }

    fn visit(
        &self,
        name: &str,
        path_to_name: &HashMap<&str, &str>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            bail!("modules.dep has a dependency cycle through {name}");
        }
        let (path, deps) = self
            .by_name
            .get(name)
            .ok_or_else(|| anyhow!("modules.dep names {name} as a dependency but has no entry for it"))?;
        stack.push(name.to_string());
        for dep in deps {
            let dep_name = path_to_name.get(dep.as_str()).map(|s| s.to_string()).unwrap_or_else(|| module_name(dep));
            self.visit(&dep_name, path_to_name, done, stack, order)?;
        }
        stack.pop();
        done.insert(name.to_string());
        order.push(path.clone());
        Ok(())
    }

    /// A modules.dep for the guest, naming only `paths`, uncompressed.
    fn guest_dep(&self, paths: &[String]) -> String {
        let wanted: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
        let mut out = String::new();
        for p in paths {
            let (_, deps) = &self.by_name[&module_name(p)];
            out.push_str(uncompressed(p));
            out.push(':');
            for d in deps.iter().filter(|d| wanted.contains(d.as_str())) {
                out.push(' ');
                out.push_str(uncompressed(d));
            }
            out.push('\n');
        }
        out
    }
}

/// The lines of modules.alias (`alias PATTERN MODULE`) whose module is in `names`.
pub fn filter_aliases(text: &str, names: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["alias", _, module] = words.as_slice() {
            if names.contains(&module.replace('-', "_")) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The library paths `ldd` prints for a program: `name => /path (addr)` and the
/// interpreter's `/path (addr)`. Errors on libraries that are "not found".
pub fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some((name, rest)) = line.split_once("=>") {
            let target = rest.trim();
            if target.starts_with("not found") {
                bail!("library {} not found", name.trim());
            }
            if let Some(p) = target.split_whitespace().next().filter(|p| p.starts_with('/')) {
                out.push(PathBuf::from(p));
            }
        } else if line.starts_with('/') {
            if let Some(p) = line.split_whitespace().next() {
                out.push(PathBuf::from(p));
            }
        }
    }
    Ok(out)
}

/// Shared libraries of a host program (empty for static programs).
pub fn libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(program).env("LC_ALL", "C").output().context("running ldd (libc-bin)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stdout.contains("not a dynamic executable") || stderr.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", program.display(), stderr.trim());
    }
    parse_ldd(&stdout).with_context(|| format!("ldd {}", program.display()))
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok_and(|()| magic == *b"\x7fELF")
}

/// Adds a host program at its own path (merged /usr) and its libraries.
pub fn add_program(tree: &mut Tree, host: &Path, guest: &str) -> Result<()> {
    tree.file(guest, Data::Host(host.to_path_buf()), 0o755)?;
    add_libraries(tree, host)
}

fn add_libraries(tree: &mut Tree, host: &Path) -> Result<()> {
    for lib in libraries(host)? {
        let Some(g) = lib.to_str() else {
            bail!("{}: library path is not UTF-8", lib.display());
        };
        if !tree.contains(g) {
            tree.file(g, Data::Host(lib.clone()), 0o755)?;
        }
    }
    Ok(())
}

/// Finds a host tool the way the guest's PATH would: sbin before bin.
fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// Adds [`NFS_TOOLS`] from the unpacked package under `root`. Only the NFS case needs them, so
/// a missing program or library leaves them all out with a warning (that case then fails
/// in the guest) instead of failing every VM run.
fn add_nfs_tools(tree: &mut Tree, root: &Path) {
    let mut found = Vec::new();
    for tool in NFS_TOOLS {
        let host = root.join("usr/sbin").join(tool);
        let libs = if host.is_file() {
            libraries(&host).map_err(|e| format!("{e:#}"))
        } else {
            Err(format!("{} is missing", host.display()))
        };
        match libs {
            Ok(libs) => found.push((host, format!("/usr/sbin/{tool}"), libs)),
            Err(e) => {
                eprintln!(
                    "vm: warning: {e}: no {} in the guest, so its NFS case fails \
                     (run scripts/setup.sh)",
                    NFS_TOOLS.join(" or ")
                );
                return;
            }
        }
    }
    let add = |tree: &mut Tree| -> Result<()> {
        for (host, guest, libs) in found {
            tree.file(&guest, Data::Host(host), 0o755)?;
            for lib in libs {
                let g = lib.to_str().ok_or_else(|| anyhow!("{}: library path is not UTF-8", lib.display()))?;
                if !tree.contains(g) {
                    tree.file(g, Data::Host(lib.clone()), 0o755)?;
                }
            }
        }
        Ok(())
    };
    if let Err(e) = add(tree) {
        eprintln!("vm: warning: adding nfs-kernel-server's programs: {e:#}");
    }
}

/// The built base: its archive, and what the per-run part needs to know about it.
#[derive(Debug)]
pub struct Base {
    pub cpio: PathBuf,
    /// Modules the guest loads at boot (names).
    pub modules: Vec<String>,
}

/// Builds (or reuses) the base archive for `kernel`, with `extra_modules` on top of
/// [`BOOT_MODULES`].
pub fn base(kernel: &Kernel, extra_modules: &[String]) -> Result<Base> {
    let root = crate::workspace_root();
    let mut tree = Tree::new(true);
    tree.file("/etc/tracer-vm/format", Data::Bytes(format!("{BASE_FORMAT}\n").into_bytes()), 0o644)?;

    // busybox and its applets.
    let busybox = find_tool("busybox")
        .ok_or_else(|| anyhow!("busybox not found on the host (install busybox-static: scripts/setup.sh)"))?;
    add_program(&mut tree, &busybox, "/usr/bin/busybox")?;
    let list = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    if !list.status.success() {
        bail!("{} --list-full failed", busybox.display());
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && !tree.contains(applet) {
            tree.symlink(applet, "/usr/bin/busybox")?;
        }
    }

    // /bin/sh is dash where the host has it: Debian's static busybox shell runs its own
    // applets before anything in PATH, which would hide coreutils dd, util-linux mount
    // and the other real tools below from every shell script (COMMAND's `sh -c` too).
    if let Some(dash) = find_tool("dash") {
        add_program(&mut tree, &dash, "/usr/bin/dash")?;
        tree.symlink("/usr/bin/sh", "dash")?;
    } else {
        eprintln!("vm: warning: no dash on the host; /bin/sh is busybox's, which prefers its applets");
    }

    // The guest init.
    let init = root.join("test/vm/init");
    if !init.is_file() {
        bail!("{} is missing", init.display());
    }
    tree.file("/init", Data::Host(init), 0o755)?;
    tree.file("/etc/passwd", Data::Bytes(b"root:x:0:0:root:/root:/bin/sh\n".to_vec()), 0o644)?;
    tree.file("/etc/group", Data::Bytes(b"root:x:0:\n".to_vec()), 0o644)?;
    for conf in CONFIG_FILES {
        if Path::new(conf).is_file() {
            tree.file(conf, Data::Host(PathBuf::from(conf)), 0o644)?;
        }
    }

    // Workload tools.
    let mut missing_tools = Vec::new();
    for tool in TOOLS {
        match find_tool(tool) {
            Some(host) => {
                let guest = host.to_str().ok_or_else(|| anyhow!("{}: path is not UTF-8", host.display()))?.to_string();
                add_program(&mut tree, &host, &guest)
                    .with_context(|| format!("adding {} to the guest", host.display()))?;
            }
            None => missing_tools.push(*tool),
        }
    }
    if !missing_tools.is_empty() {
        eprintln!(
            "vm: warning: not on the host, so not in the guest (busybox applets stand in where \
             they exist): {}",
            missing_tools.join(", ")
        );
    }
    add_nfs_tools(&mut tree, &nfs_utils_root());

    // Kernel modules.
    let deps = ModulesDep::load(&kernel.modules_dir)?;
    let mut wanted: Vec<&str> = BOOT_MODULES.to_vec();
    wanted.extend(extra_modules.iter().map(String::as_str));
    let resolved = deps.resolve(&wanted)?;
    let on_demand = deps.resolve(ON_DEMAND_MODULES)?;
    let mut paths = resolved.paths.clone();
    for p in on_demand.paths {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    let unknown_extra: Vec<&String> =
        extra_modules.iter().filter(|m| resolved.missing.contains(&m.replace('-', "_"))).collect();
    if !unknown_extra.is_empty() {
        bail!(
            "kernel {} ({}) has no module {}",
            kernel.name,
            kernel.kver,
            unknown_extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let guest_modules = format!("/usr/lib/modules/{}", kernel.kver);
    for p in &paths {
        tree.file(
            &format!("{guest_modules}/{}", uncompressed(p)),
            Data::Decompress(kernel.modules_dir.join(p)),
            0o644,
        )?;
    }
    tree.file(&format!("{guest_modules}/modules.dep"), Data::Bytes(deps.guest_dep(&paths).into_bytes()), 0o644)?;
    let aliases = fs::read_to_string(kernel.modules_dir.join("modules.alias")).unwrap_or_default();
    let names: BTreeSet<String> = paths.iter().map(|p| module_name(p)).collect();
    tree.file(
        &format!("{guest_modules}/modules.alias"),
        Data::Bytes(filter_aliases(&aliases, &names).into_bytes()),
        0o644,
    )?;
    for f in ["modules.builtin", "modules.order"] {
        let p = kernel.modules_dir.join(f);
        if p.is_file() {
            tree.file(&format!("{guest_modules}/{f}"), Data::Host(p), 0o644)?;
        }
    }
    let mut load = String::new();
    for m in &resolved.modular {
        load.push_str(m);
        load.push('\n');
    }
    tree.file("/etc/tracer-vm/modules", Data::Bytes(load.into_bytes()), 0o644)?;

    // Build or reuse.
    let fingerprint = tree.fingerprint()?;
    let dir = kernels::cache_dir().join("initramfs");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = format!("base-{}-{}.cpio", kernel.name, &fingerprint[..16]);
    let path = dir.join(&name);
    let base = Base { cpio: path.clone(), modules: resolved.modular.clone() };
    if path.is_file() {
        return Ok(base);
    }
    let _lock = kernels::lock_cache("initramfs")?;
    if path.is_file() {
        return Ok(base);
    }
    eprintln!(
        "vm: building the base initramfs for {} ({} modules, {} built in{})",
        kernel.name,
        paths.len(),
        resolved.builtin.len(),
        if resolved.missing.is_empty() { String::new() } else { format!(", absent: {}", resolved.missing.join(" ")) }
    );
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut w = BufWriter::new(fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
        tree.write_cpio(&mut w)?;
        drop(w);
        // Older bases of this kernel are of no more use.
        let prefix = format!("base-{}-", kernel.name);
        for e in fs::read_dir(&dir)?.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
        fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| base)
}

/// A file to copy into the guest: `--add SRC[:DEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddSpec {
    pub src: PathBuf,
    pub dest: String,
}

impl std::str::FromStr for AddSpec {
    type Err = String;

    /// `SRC` goes to `/root/<basename of SRC>`; `SRC:DEST` to DEST (relative DESTs are
    /// under /root, a DEST ending in `/` is a directory to put the basename in). SRC
    /// cannot contain `:`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (src, dest) = match s.split_once(':') {
            Some((src, dest)) => (src, Some(dest)),
            None => (s, None),
        };
        if src.is_empty() {
            return Err(format!("{s:?}: SRC is empty"));
        }
        let src = PathBuf::from(src);
        let base = || {
            src.file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .ok_or_else(|| format!("{s:?}: cannot tell the file name of SRC; give a DEST"))
        };
        let dest = match dest {
            None => format!("/root/{}", base()?),
            Some("") => return Err(format!("{s:?}: DEST after ':' is empty")),
            Some(d) => {
                let mut d = if d.starts_with('/') { d.to_string() } else { format!("/root/{d}") };
                if d.ends_with('/') {
                    d.push_str(&base()?);
                }
                d
            }
        };
        guest_path(&dest).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(AddSpec { src, dest })
    }
}

/// What goes into the per-run archive.
pub struct RunPart<'a> {
    pub nonce: &'a str,
    pub command: &'a [String],
    pub expect_devices: &'a [String],
    pub tracer: Option<&'a Path>,
    pub adds: &'a [AddSpec],
}

/// Writes the per-run archive.
pub fn run_part(part: &RunPart<'_>) -> Result<Vec<u8>> {
    let mut tree = Tree::new(false);
    tree.file(&format!("{GUEST_ETC}/nonce"), Data::Bytes(format!("{}\n", part.nonce).into_bytes()), 0o600)?;
    tree.file(
        &format!("{GUEST_ETC}/command"),
        Data::Bytes(crate::console::command_script(part.command).into_bytes()),
        0o755,
    )?;
    tree.file(
        &format!("{GUEST_ETC}/expect-devices"),
        Data::Bytes(format!("{}\n", part.expect_devices.join(" ")).into_bytes()),
        0o644,
    )?;
    if let Some(tracer) = part.tracer {
        add_program(&mut tree, tracer, "/usr/bin/tracer")
            .with_context(|| format!("adding {} to the guest", tracer.display()))?;
    }
    for add in part.adds {
        if !add.src.exists() {
            bail!("--add {}: no such file or directory", add.src.display());
        }
        tree.add_host_path(&add.src, &add.dest).with_context(|| format!("--add {}", add.src.display()))?;
        if add.src.is_file() && is_elf(&add.src) {
            add_libraries(&mut tree, &add.src).with_context(|| format!("libraries of --add {}", add.src.display()))?;
        }
    }
    let mut out = Vec::new();
    tree.write_cpio(&mut out)?;
    Ok(out)
}

/// A minimal archive for probing an accelerator: busybox and an init that prints
/// `marker` and powers off.
pub fn probe_initramfs(marker: &str) -> Result<Vec<u8>> {
    let busybox =
        find_tool("busybox").ok_or_else(|| anyhow!("busybox not found on the host (install busybox-static)"))?;
    let mut tree = Tree::new(true);
    add_program(&mut tree, &busybox, "/usr/bin/busybox")?;
    tree.symlink("/usr/bin/sh", "/usr/bin/busybox")?;
    tree.file(
        "/init",
        Data::Bytes(format!("#!/bin/sh\necho {marker}\n/usr/bin/busybox poweroff -f\n").into_bytes()),
        0o755,
    )?;
    let mut out = Vec::new();
    tree.write_cpio(&mut out)?;
    Ok(out)
}

/// Devices the guest should see, given the modules it loads (built-in drivers count).
pub fn expected_devices(loaded: &[String], kernel_modules_dir: &Path) -> Vec<String> {
    let deps = ModulesDep::load(kernel_modules_dir).unwrap_or_default();
    let has = |m: &str| loaded.iter().any(|l| l == m) || deps.builtin.contains(m);
    let mut out = Vec::new();
    for (module, dev) in [("virtio_blk", "vda"), ("nvme", "nvme0n1"), ("null_blk", "nullb0"), ("scsi_debug", "sda")] {
        if has(module) {
            out.push(dev.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/xfs/xfs.ko.xz: kernel/lib/libcrc32c.ko.xz
kernel/lib/libcrc32c.ko.xz:
kernel/fs/btrfs/btrfs.ko.xz: kernel/crypto/xor.ko.xz kernel/lib/raid6/raid6_pq.ko.xz kernel/lib/libcrc32c.ko.xz
kernel/crypto/xor.ko.xz:
kernel/lib/raid6/raid6_pq.ko.xz:
kernel/drivers/md/dm-delay.ko.zst: kernel/drivers/md/dm-mod.ko.zst
kernel/drivers/md/dm-mod.ko.zst:
";
    const BUILTIN: &str = "kernel/fs/ext4/ext4.ko\nkernel/drivers/nvme/host/nvme-core.ko\n";

    #[test]
    fn module_names() {
        assert_eq!(module_name("kernel/drivers/md/dm-mod.ko.xz"), "dm_mod");
        assert_eq!(module_name("kernel/fs/xfs/xfs.ko"), "xfs");
        assert_eq!(module_name("null_blk.ko.zst"), "null_blk");
    }

    #[test]
    fn resolution_orders_dependencies_first() {
        let d = ModulesDep::parse(DEP, BUILTIN).unwrap();
        let r = d.resolve(&["btrfs", "xfs", "dm-delay", "ext4", "nvme_core", "nope"]).unwrap();
        assert_eq!(
            r.paths,
            [
                "kernel/crypto/xor.ko.xz",
                "kernel/lib/raid6/raid6_pq.ko.xz",
                "kernel/lib/libcrc32c.ko.xz",
                "kernel/fs/btrfs/btrfs.ko.xz",
                "kernel/fs/xfs/xfs.ko.xz",
                "kernel/drivers/md/dm-mod.ko.zst",
                "kernel/drivers/md/dm-delay.ko.zst",
            ]
        );
        assert_eq!(r.modular, ["btrfs", "xfs", "dm_delay"]);
        assert_eq!(r.builtin, ["ext4", "nvme_core"]);
        assert_eq!(r.missing, ["nope"]);
        let guest = d.guest_dep(&r.paths);
        assert!(guest.contains("kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\n"));
        assert!(guest.contains("kernel/drivers/md/dm-mod.ko:\n"));
    }

    #[test]
    fn aliases_of_included_modules() {
        let names: BTreeSet<String> = ["xfs".to_string(), "dm_delay".to_string()].into();
        let text = "# Aliases extracted from modules themselves.\n\
                    alias fs-xfs xfs\n\
                    alias fs-btrfs btrfs\n\
                    alias dm-delay dm_delay\n\
                    alias devname:loop-control loop\n";
        assert_eq!(filter_aliases(text, &names), "alias fs-xfs xfs\nalias dm-delay dm_delay\n");
    }

    #[test]
    fn broken_modules_dep() {
        assert!(ModulesDep::parse("no colon here\n", "").is_err());
        let d = ModulesDep::parse("a.ko: b.ko\n", "").unwrap();
        assert!(d.resolve(&["a"]).unwrap_err().to_string().contains("no entry"));
        let d = ModulesDep::parse("a.ko: b.ko\nb.ko: a.ko\n", "").unwrap();
        assert!(d.resolve(&["a"]).unwrap_err().to_string().contains("cycle"));
    }

    #[test]
    fn ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f81)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f81)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
    }

    #[test]
    fn add_specs() {
        let p = |s: &str| s.parse::<AddSpec>();
        assert_eq!(p("target/x/prog").unwrap(), AddSpec { src: "target/x/prog".into(), dest: "/root/prog".into() });
        assert_eq!(p("a.sh:/usr/bin/b").unwrap().dest, "/usr/bin/b");
        assert_eq!(p("a.sh:sub/b").unwrap().dest, "/root/sub/b");
        assert_eq!(p("dir/a.sh:/opt/").unwrap().dest, "/opt/a.sh");
        assert!(p("").is_err());
        assert!(p(":/x").is_err());
        assert!(p("a:").is_err());
        assert!(p("a:/../etc").is_err());
        assert!(p("/").is_err());
        assert_eq!(p("a:/").unwrap().dest, "/a");
    }

    #[test]
    fn run_part_has_the_command_and_rejects_missing_files() {
        let cmd = vec!["exit 3".to_string()];
        let part = RunPart { nonce: "n0nce", command: &cmd, expect_devices: &["vda".into()], tracer: None, adds: &[] };
        let bytes = run_part(&part).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("etc/tracer-vm/command"));
        assert!(text.contains("\nexit 3\n"));
        assert!(text.contains("n0nce"));
        let adds = ["/nonexistent/x".parse::<AddSpec>().unwrap()];
        let part = RunPart { adds: &adds, ..part };
        assert!(run_part(&part).unwrap_err().to_string().contains("no such file"));
    }

    #[test]
    fn nfs_tools_come_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let sbin = dir.path().join("usr/sbin");
        fs::create_dir_all(&sbin).unwrap();
        let program = find_tool("true").unwrap();
        // One missing: none is added.
        for tool in &NFS_TOOLS[1..] {
            fs::copy(&program, sbin.join(tool)).unwrap();
        }
        let mut t = Tree::new(true);
        add_nfs_tools(&mut t, dir.path());
        assert!(NFS_TOOLS.iter().all(|tool| !t.contains(&format!("/usr/sbin/{tool}"))));
        // All there: each at /usr/sbin, with its libraries.
        fs::copy(&program, sbin.join(NFS_TOOLS[0])).unwrap();
        add_nfs_tools(&mut t, dir.path());
        assert!(NFS_TOOLS.iter().all(|tool| t.contains(&format!("/usr/sbin/{tool}"))));
        for lib in libraries(&program).unwrap() {
            assert!(t.contains(lib.to_str().unwrap()), "{}", lib.display());
        }
    }

    #[test]
    fn added_directories_are_copied() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/f"), "data").unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("sub/l")).unwrap();
        let mut t = Tree::new(false);
        t.add_host_path(dir.path(), "/root/d").unwrap();
        assert!(t.contains("/root/d/sub/f"));
        assert!(t.contains("/root/d/sub/l"));
    }
}
