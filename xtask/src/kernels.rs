//! The pinned stock kernels of xtask/kernels.toml: download, verify, extract.
//!
//! Cache layout (under target/vm/cache/, see docs/testing.md):
//! - `debs/<sha256>.deb`: downloaded packages, named by their content hash;
//! - `kernels/<name>/<version>-<hash>/root/`: the packages extracted with `dpkg -x`, with
//!   a `modules.dep` made by `depmod -b` (Debian ships none; postinst makes it);
//! - `apt/<suites>/`: private apt states for suites the machine does not carry.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::apt::{self, Apt};

/// Private apt lists younger than this are used as they are.
const LISTS_MAX_AGE: Duration = Duration::from_secs(6 * 3600);

/// xtask/kernels.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelsFile {
    pub kernel: Vec<KernelSpec>,
}

/// Where apt looks for a kernel's suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AptMode {
    /// The machine's apt sources when they carry every suite, else a private state.
    System,
    /// Always a private apt state (the suite must never enter the machine's sources).
    Private,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub suites: Vec<String>,
    pub apt: AptMode,
    pub metapackage: String,
    /// Package names with `{kver}` standing for the kernel release.
    pub packages: Vec<String>,
    pub version: String,
    pub kver: String,
    pub pin: Vec<Pin>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub package: String,
    pub sha256: String,
}

/// One .deb to fetch: name, version and the sha256 it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    package: String,
    version: String,
    sha256: String,
}

/// An extracted kernel, ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub name: String,
    /// The Debian package version.
    pub version: String,
    /// The kernel release (`uname -r`).
    pub kver: String,
    /// False when the pinned version was no longer served and the suite's current one
    /// is used instead.
    pub pinned: bool,
    pub root: PathBuf,
    pub vmlinuz: PathBuf,
    pub modules_dir: PathBuf,
}

fn expand(template: &str, kver: &str) -> String {
    template.replace("{kver}", kver)
}

impl KernelsFile {
    pub fn parse(text: &str) -> Result<Self> {
        let file: KernelsFile = toml::from_str(text)?;
        let mut names = std::collections::HashSet::new();
        for k in &file.kernel {
            let ctx = || format!("kernel {:?}", k.name);
            if k.name.is_empty() || !k.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                bail!("{}: name must be non-empty [A-Za-z0-9._-]", ctx());
            }
            if !names.insert(k.name.clone()) {
                bail!("{}: defined twice", ctx());
            }
            if k.suites.is_empty() || k.packages.is_empty() {
                bail!("{}: `suites` and `packages` must not be empty", ctx());
            }
            if k.version.is_empty() || k.kver.is_empty() {
                bail!("{}: `version` and `kver` must not be empty", ctx());
            }
            let expected: Vec<String> = k.packages.iter().map(|t| expand(t, &k.kver)).collect();
            let pinned: Vec<String> = k.pin.iter().map(|p| p.package.clone()).collect();
            if expected != pinned {
                bail!("{}: pins {pinned:?} do not match the packages for kver {}: {expected:?}", ctx(), k.kver);
            }
            for p in &k.pin {
                if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("{}: sha256 of {} is not 64 hex digits", ctx(), p.package);
                }
            }
        }
        Ok(file)
    }

    pub fn load() -> Result<Self> {
        let path = crate::workspace_root().join("xtask/kernels.toml");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn get(&self, name: &str) -> Result<&KernelSpec> {
        self.kernel.iter().find(|k| k.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.kernel.iter().map(|k| k.name.as_str()).collect();
            anyhow!("unknown kernel {name:?}; xtask/kernels.toml has: {}", known.join(", "))
        })
    }
}

impl KernelSpec {
    fn pinned(&self) -> Vec<Wanted> {
        self.pin
            .iter()
            .map(|p| Wanted {
                package: p.package.clone(),
                version: self.version.clone(),
                sha256: p.sha256.to_ascii_lowercase(),
            })
            .collect()
    }
}

/// The directory that holds all VM artefacts: `$CARGO_TARGET_DIR/vm`, by default
/// `<workspace>/target/vm`.
pub fn vm_dir() -> PathBuf {
    let root = crate::workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => root.join(t).join("vm"),
        _ => root.join("target/vm"),
    }
}

pub fn cache_dir() -> PathBuf {
    vm_dir().join("cache")
}

/// An exclusive lock on the cache, released on drop, so concurrent runs (parallel tests)
/// do not download or extract the same thing twice.
pub struct CacheLock(
    #[expect(dead_code, reason = "held only for its lock, which closing the file on drop releases")] fs::File,
);

pub fn lock_cache(what: &str) -> Result<CacheLock> {
    let dir = cache_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!(".{what}.lock"));
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            eprintln!("vm: waiting for another xtask using {}", path.display());
            f.lock().with_context(|| format!("locking {}", path.display()))?;
        }
        Err(fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    Ok(CacheLock(f))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// `cargo xtask kernels [NAME...]`.
pub fn fetch_all(names: &[String]) -> Result<()> {
    let file = KernelsFile::load()?;
    let specs: Vec<&KernelSpec> = if names.is_empty() {
        file.kernel.iter().collect()
    } else {
        names.iter().map(|n| file.get(n)).collect::<Result<_>>()?
    };
    for spec in specs {
        let k = ensure_spec(spec).with_context(|| format!("kernel {}", spec.name))?;
        println!(
            "{}: {} ({}){}: {}\n    extracted {}\n    vmlinuz   {}\n    modules   {}",
            k.name,
            k.version,
            k.kver,
            if k.pinned { "" } else { ", NOT THE PINNED VERSION" },
            spec.description,
            k.root.display(),
            k.vmlinuz.display(),
            k.modules_dir.display()
        );
    }
    Ok(())
}

/// Makes kernel `name` available (downloading and extracting what the cache lacks).
pub fn ensure(name: &str) -> Result<Kernel> {
    let file = KernelsFile::load()?;
    let spec = file.get(name)?;
    ensure_spec(spec).with_context(|| format!("kernel {name}"))
}

fn extract_dir(spec: &KernelSpec, version: &str, wanted: &[Wanted]) -> PathBuf {
    let mut h = Sha256::new();
    for w in wanted {
        h.update(w.sha256.as_bytes());
    }
    let key = &hex::encode(h.finalize())[..12];
    // '~' and ':' are legal in Debian versions but awkward in paths.
    let version = version.replace([':', '~'], "_");
    cache_dir().join("kernels").join(&spec.name).join(format!("{version}-{key}"))
}

fn ensure_spec(spec: &KernelSpec) -> Result<Kernel> {
    let _lock = lock_cache("kernels")?;
    let pinned = spec.pinned();

    // Fast path: the pinned kernel is already extracted; no apt, no network.
    let dir = extract_dir(spec, &spec.version, &pinned);
    if dir.join("root").is_dir() {
        return kernel_at(spec, &spec.version, &spec.kver, true, &dir);
    }
    let debs = cache_dir().join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let cached = |w: &Wanted| debs.join(format!("{}.deb", w.sha256));

    // Pinned and all downloaded already: verify and extract.
    if pinned.iter().all(|w| cached(w).is_file()) {
        let files = pinned.iter().map(|w| verified_cached(&cached(w), w)).collect::<Result<Vec<_>>>()?;
        extract(spec, &spec.kver, &files, &dir)?;
        return kernel_at(spec, &spec.version, &spec.kver, true, &dir);
    }

    // Find an apt view that serves the pinned version: the machine's (when allowed and
    // it carries every suite), else a private state (its lists refreshed if needed).
    let machine = apt::machine_sources()?;
    let mut serving = None;
    if spec.apt == AptMode::System && spec.suites.iter().all(|s| apt::has_suite(&machine, s)) {
        let system = Apt::system();
        if pinned_served(&system, &pinned)? {
            serving = Some(system);
        }
    }
    let private = || Apt::private(&cache_dir().join("apt").join(spec.suites.join("+")), &machine, &spec.suites);
    if serving.is_none() {
        let apt = private()?;
        if pinned_served(&apt, &pinned)? {
            serving = Some(apt);
        }
    }
    let (apt, wanted, version, kver, is_pinned) = match serving {
        Some(apt) => (apt, pinned, spec.version.clone(), spec.kver.clone(), true),
        None => {
            let apt = private()?;
            let (version, kver, wanted) = resolve_current(spec, &apt)?;
            warn_fallback(spec, &version, &kver, &wanted);
            (apt, wanted, version, kver, false)
        }
    };
    let dir = extract_dir(spec, &version, &wanted);
    if dir.join("root").is_dir() {
        return kernel_at(spec, &version, &kver, is_pinned, &dir);
    }
    let mut files = Vec::new();
    for w in &wanted {
        let path = cached(w);
        if path.is_file() {
            files.push(verified_cached(&path, w)?);
            continue;
        }
        download(&apt, w, &debs, &path)?;
        files.push(path);
    }
    extract(spec, &kver, &files, &dir)?;
    kernel_at(spec, &version, &kver, is_pinned, &dir)
}

fn warn_fallback(spec: &KernelSpec, version: &str, kver: &str, wanted: &[Wanted]) {
    eprintln!(
        "kernels: WARNING: {} {} (pinned in xtask/kernels.toml) is no longer served by {}; \
         falling back to the suite's current {} {version} ({kver}), verified only against the \
         archive index, NOT against a pin. Update xtask/kernels.toml to:",
        spec.name,
        spec.version,
        spec.suites.join("/"),
        spec.metapackage,
    );
    eprintln!("    version = \"{version}\"\n    kver = \"{kver}\"\n    pin = [");
    for w in wanted {
        eprintln!("      {{ package = \"{}\", sha256 = \"{}\" }},", w.package, w.sha256);
    }
    eprintln!("    ]");
}

/// Downloads one package into `dest` (under `debs`), checking its sha256 first.
fn download(apt: &Apt, w: &Wanted, debs: &Path, dest: &Path) -> Result<()> {
    let tmp = debs.join(format!(".download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = (|| -> Result<()> {
        let got = apt.download(&w.package, &w.version, &tmp)?;
        let sum = sha256_file(&got)?;
        if sum != w.sha256 {
            bail!("{} {}: downloaded sha256 {sum} does not match the expected {}", w.package, w.version, w.sha256);
        }
        fs::rename(&got, dest).with_context(|| format!("moving {} to {}", got.display(), dest.display()))
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

fn verified_cached(path: &Path, w: &Wanted) -> Result<PathBuf> {
    let sum = sha256_file(path)?;
    if sum != w.sha256 {
        let _ = fs::remove_file(path);
        bail!(
            "cached {} (for {} {}) has sha256 {sum}, expected {}; removed it, run again to \
             download it anew",
            path.display(),
            w.package,
            w.version,
            w.sha256
        );
    }
    Ok(path.to_path_buf())
}

/// Whether `apt` serves every pinned package at its version with the pinned sha256.
/// Private lists are refreshed when stale, or once when they lack the pin.
fn pinned_served(apt: &Apt, pinned: &[Wanted]) -> Result<bool> {
    let fresh = apt.updated_age().is_some_and(|a| a < LISTS_MAX_AGE);
    if apt.is_private() && !fresh {
        apt.update()?;
    }
    let check = |apt: &Apt| -> Result<bool> {
        for w in pinned {
            match apt.show(&w.package, &w.version)? {
                None => return Ok(false),
                Some(rec) => {
                    let sum = rec.get("sha256").map(|s| s.to_ascii_lowercase());
                    if sum.as_deref() != Some(w.sha256.as_str()) {
                        bail!(
                            "{} {} is served by {} with sha256 {}, but xtask/kernels.toml pins {}; \
                             refusing to use it",
                            w.package,
                            w.version,
                            apt.label(),
                            sum.as_deref().unwrap_or("(none)"),
                            w.sha256
                        );
                    }
                }
            }
        }
        Ok(true)
    };
    if check(apt)? {
        return Ok(true);
    }
    if apt.is_private() && fresh {
        apt.update()?;
        return check(apt);
    }
    Ok(false)
}

/// Finds the kernel release a metapackage `Depends` on: `linux-image-<kver> (= <version>)`.
pub fn kver_from_depends(depends: &str, metapackage: &str) -> Option<(String, String)> {
    depends
        .split(',')
        .flat_map(|alt| alt.split('|'))
        .filter_map(|dep| {
            let dep = dep.trim();
            let (name, rest) = dep.split_once(char::is_whitespace).unwrap_or((dep, ""));
            let kver = name.strip_prefix("linux-image-")?;
            if name == metapackage || kver.is_empty() {
                return None;
            }
            let version = rest.trim().strip_prefix("(=")?.trim().strip_suffix(')')?.trim().to_string();
            Some((kver.to_string(), version))
        })
        .next()
}

/// The suite's current kernel, through its metapackage.
fn resolve_current(spec: &KernelSpec, apt: &Apt) -> Result<(String, String, Vec<Wanted>)> {
    let versions = apt.policy(&spec.metapackage)?;
    let meta = versions.iter().find(|v| v.suites.iter().any(|s| spec.suites.contains(s))).ok_or_else(|| {
        anyhow!("{} has no version in {} according to {}", spec.metapackage, spec.suites.join("/"), apt.label())
    })?;
    let rec = apt
        .show(&spec.metapackage, &meta.version)?
        .ok_or_else(|| anyhow!("apt-cache show {}={} found nothing", spec.metapackage, meta.version))?;
    let depends = rec.get("depends").map(String::as_str).unwrap_or("");
    let (kver, version) = kver_from_depends(depends, &spec.metapackage).ok_or_else(|| {
        anyhow!("{} {} depends on no linux-image-<kver> (= version): {depends:?}", spec.metapackage, meta.version)
    })?;
    let mut wanted = Vec::new();
    for template in &spec.packages {
        let package = expand(template, &kver);
        let rec = apt
            .show(&package, &version)?
            .ok_or_else(|| anyhow!("{} {version} is not served by {}", package, apt.label()))?;
        let sha256 = rec
            .get("sha256")
            .ok_or_else(|| anyhow!("the index record of {package} {version} has no SHA256"))?
            .to_ascii_lowercase();
        wanted.push(Wanted { package, version: version.clone(), sha256 });
    }
    Ok((version, kver, wanted))
}

/// `dpkg -x` every package into `<dir>/root`, then `depmod -b`; atomically (a temp
/// directory renamed at the end).
fn extract(spec: &KernelSpec, kver: &str, debs: &[PathBuf], dir: &Path) -> Result<()> {
    let parent = dir.parent().ok_or_else(|| anyhow!("bad cache path {}", dir.display()))?;
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".extract-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let root = tmp.join("root");
    fs::create_dir_all(&root)?;
    eprintln!("kernels: extracting {} ({kver})", spec.name);
    let result = (|| -> Result<()> {
        for deb in debs {
            run(Command::new("dpkg").arg("-x").arg(deb).arg(&root), "dpkg -x")?;
        }
        // depmod -b looks under <root>/lib/modules; newer packages use usr/lib/modules.
        if !root.join("lib").exists() && root.join("usr/lib/modules").is_dir() {
            std::os::unix::fs::symlink("usr/lib", root.join("lib"))?;
        }
        if !root.join("lib/modules").join(kver).is_dir() {
            bail!("the packages hold no lib/modules/{kver}");
        }
        let depmod = find_program("depmod")
            .ok_or_else(|| anyhow!("depmod not found (install the kmod package: scripts/setup.sh)"))?;
        run(Command::new(depmod).arg("-b").arg(&root).arg(kver), "depmod")?;
        find_vmlinuz(&root, kver)?;
        fs::rename(&tmp, dir).with_context(|| format!("renaming into {}", dir.display()))?;
        // Earlier extractions of this kernel (older pins) are of no more use.
        for e in fs::read_dir(parent)?.flatten() {
            if e.path() != dir && !e.file_name().to_string_lossy().starts_with('.') {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Looks for a program in PATH and in the sbin directories a non-root PATH lacks.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn find_vmlinuz(root: &Path, kver: &str) -> Result<PathBuf> {
    [
        root.join(format!("boot/vmlinuz-{kver}")),
        root.join(format!("usr/lib/modules/{kver}/vmlinuz")),
        root.join(format!("lib/modules/{kver}/vmlinuz")),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| anyhow!("no vmlinuz for {kver} in the packages (boot/ or lib/modules/)"))
}

fn kernel_at(spec: &KernelSpec, version: &str, kver: &str, pinned: bool, dir: &Path) -> Result<Kernel> {
    let root = dir.join("root");
    let modules_dir = root.join("lib/modules").join(kver);
    if !modules_dir.join("modules.dep").is_file() {
        bail!("{} has no modules.dep; remove {} and run again", modules_dir.display(), dir.display());
    }
    Ok(Kernel {
        name: spec.name.clone(),
        version: version.to_string(),
        kver: kver.to_string(),
        pinned,
        vmlinuz: find_vmlinuz(&root, kver)?,
        modules_dir,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[kernel]]
name = "6.12"
suites = ["bookworm-backports"]
apt = "system"
metapackage = "linux-image-cloud-amd64"
packages = ["linux-image-{kver}-unsigned"]
version = "6.12.95-1~bpo12+1"
kver = "6.12.95+deb12-cloud-amd64"
pin = [
  { package = "linux-image-6.12.95+deb12-cloud-amd64-unsigned", sha256 = "6ed2b95055a96af9f543a427cc1bc56f67e5e72ec16b227ec965a9325aeb3480" },
]
"#;

    #[test]
    fn parses_a_good_file() {
        let f = KernelsFile::parse(GOOD).unwrap();
        let k = f.get("6.12").unwrap();
        assert_eq!(k.apt, AptMode::System);
        assert_eq!(k.pinned()[0].version, "6.12.95-1~bpo12+1");
        assert!(f.get("7.0").unwrap_err().to_string().contains("6.12"));
    }

    #[test]
    fn rejects_bad_files() {
        let bad_sha = GOOD.replace("6ed2b950", "zz");
        assert!(KernelsFile::parse(&bad_sha).unwrap_err().to_string().contains("sha256"));
        let bad_pkg = GOOD.replace("{kver}-unsigned", "{kver}");
        assert!(KernelsFile::parse(&bad_pkg).unwrap_err().to_string().contains("do not match"));
        let twice = format!("{GOOD}{GOOD}");
        assert!(KernelsFile::parse(&twice).unwrap_err().to_string().contains("twice"));
        let unknown = GOOD.replace("apt = \"system\"", "apt = \"system\"\nmirror = \"x\"");
        assert!(KernelsFile::parse(&unknown).is_err());
        let mode = GOOD.replace("apt = \"system\"", "apt = \"sid\"");
        assert!(KernelsFile::parse(&mode).is_err());
    }

    #[test]
    fn the_checked_in_file_parses() {
        let f = KernelsFile::load().unwrap();
        for name in ["6.1", "6.12", "sid"] {
            f.get(name).unwrap();
        }
        assert_eq!(f.get("sid").unwrap().apt, AptMode::Private);
    }

    #[test]
    fn metapackage_depends() {
        assert_eq!(
            kver_from_depends(
                "linux-base-cloud-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)",
                "linux-image-cloud-amd64"
            ),
            Some(("7.2.13+deb14-cloud-amd64".into(), "7.2.13-1".into()))
        );
        assert_eq!(
            kver_from_depends("linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)", "linux-image-cloud-amd64"),
            Some(("6.1.0-56-cloud-amd64".into(), "6.1.192-2".into()))
        );
        assert_eq!(kver_from_depends("linux-image-x (>= 1)", "m"), None);
        assert_eq!(kver_from_depends("", "m"), None);
    }
}
