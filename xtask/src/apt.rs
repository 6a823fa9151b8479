//! Talking to apt: the machine's Debian sources, and private apt states for suites the
//! machine does not carry (Debian unstable above all), which are never added to the
//! machine's own apt configuration.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};

/// The keyring Debian's own source entries name.
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// One apt source entry (deb822 stanza or one-line `deb` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// A keyring path; inline keys are not carried over.
    pub signed_by: Option<String>,
}

/// Parses deb822 `.sources` text. Disabled stanzas (`Enabled: no`) are skipped.
pub fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    parse_stanzas(text)
        .into_iter()
        .filter(|f| !f.get("enabled").is_some_and(|v| v.trim().eq_ignore_ascii_case("no")))
        .filter_map(|f| {
            let words = |k: &str| -> Vec<String> {
                f.get(k).map(|v| v.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
            };
            let entry = SourceEntry {
                types: words("types"),
                uris: words("uris"),
                suites: words("suites"),
                components: words("components"),
                signed_by: f
                    .get("signed-by")
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty() && !v.contains('\n')),
            };
            (!entry.uris.is_empty() && !entry.suites.is_empty()).then_some(entry)
        })
        .collect()
}

/// Parses one-line style `sources.list` text (`deb [opts] URI SUITE COMPONENT...`).
pub fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = line;
        let Some((kind, after)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        if kind != "deb" && kind != "deb-src" {
            continue;
        }
        rest = after.trim_start();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = after.trim_start();
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() < 2 {
            continue;
        }
        out.push(SourceEntry {
            types: vec![kind.to_string()],
            uris: vec![words[0].to_string()],
            suites: vec![words[1].to_string()],
            components: words[2..].iter().map(|s| s.to_string()).collect(),
            signed_by,
        });
    }
    out
}

/// Reads the machine's apt sources: /etc/apt/sources.list, sources.list.d/*.list and
/// *.sources.
pub fn machine_sources() -> Result<Vec<SourceEntry>> {
    let mut entries = Vec::new();
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        entries.extend(parse_one_line(&text));
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let Ok(text) = fs::read_to_string(&p) else {
                continue;
            };
            match p.extension().and_then(|e| e.to_str()) {
                Some("sources") => entries.extend(parse_deb822(&text)),
                Some("list") => entries.extend(parse_one_line(&text)),
                _ => {}
            }
        }
    }
    entries.retain(|e| e.types.iter().any(|t| t == "deb"));
    Ok(entries)
}

/// Whether the machine's sources carry this suite.
pub fn has_suite(entries: &[SourceEntry], suite: &str) -> bool {
    entries.iter().any(|e| e.suites.iter().any(|s| s == suite))
}

/// The mirror URI (and keyring) to use for `suite`, taken from the machine's own entries:
/// an entry carrying the suite itself; else, for `*-security`, the entry of another
/// security suite; else the machine's main Debian mirror (an entry that is not a
/// security one). No mirror host is ever made up.
pub fn mirror_for(entries: &[SourceEntry], suite: &str) -> Result<(String, Option<String>)> {
    let is_security = |e: &SourceEntry| e.suites.iter().any(|s| s.ends_with("-security"));
    let pick = |e: &SourceEntry| (e.uris[0].trim_end_matches('/').to_string(), e.signed_by.clone());
    if let Some(e) = entries.iter().find(|e| e.suites.iter().any(|s| s == suite)) {
        return Ok(pick(e));
    }
    let found = if suite.ends_with("-security") {
        entries.iter().find(|e| is_security(e))
    } else {
        entries.iter().find(|e| !is_security(e) && !e.uris[0].contains("security"))
    };
    found.map(pick).ok_or_else(|| {
        anyhow!(
            "cannot find a Debian mirror for suite {suite} in /etc/apt/sources.list(.d); \
             add the machine's Debian source entry and retry"
        )
    })
}

/// Parses deb822 stanzas (apt records, .sources files) into lower-cased field maps.
pub fn parse_stanzas(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = last.as_ref().and_then(|k| cur.get_mut(k)) {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            cur.insert(k.clone(), v.trim().to_string());
            last = Some(k);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A version row of `apt-cache policy`, with the suites that serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: String,
    pub suites: Vec<String>,
}

/// Parses `apt-cache policy PKG` output (one package). Versions come highest first.
pub fn parse_policy(text: &str) -> Vec<PolicyVersion> {
    let mut out: Vec<PolicyVersion> = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.trim_start().starts_with("Version table:") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let trimmed = line.trim_start().trim_start_matches("***").trim();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let indent = line.len() - line.trim_start().len();
        match words.as_slice() {
            // "     6.1.192-2 500" (or " *** 6.1.192-2 500")
            [version, prio] if indent <= 5 && prio.parse::<i64>().is_ok() => {
                out.push(PolicyVersion { version: version.to_string(), suites: Vec::new() });
            }
            // "        500 http://mirror/debian bookworm/main amd64 Packages"
            [prio, _uri, dist, ..] if prio.parse::<i64>().is_ok() => {
                if let (Some(v), Some(suite)) = (out.last_mut(), dist.split('/').next()) {
                    v.suites.push(suite.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// How to run apt: the machine's configuration, or a private state under a directory.
#[derive(Debug, Clone)]
pub struct Apt {
    opts: Vec<String>,
    private: Option<PathBuf>,
    label: String,
}

impl Apt {
    /// The machine's own apt configuration, read only (never updated here).
    pub fn system() -> Self {
        Apt {
            opts: vec!["-o".into(), "APT::Sandbox::User=root".into()],
            private: None,
            label: "the machine's apt sources".into(),
        }
    }

    /// A private apt state in `dir` for `suites`, each from the machine's own mirror for
    /// it. The machine's sources, lists, package cache and dpkg status are not touched.
    pub fn private(dir: &Path, machine: &[SourceEntry], suites: &[String]) -> Result<Self> {
        let mut list = String::from("# written by cargo xtask kernels; private to this directory\n");
        for suite in suites {
            let (uri, signed_by) = mirror_for(machine, suite)?;
            let keyring = signed_by.or_else(|| Path::new(DEBIAN_KEYRING).exists().then(|| DEBIAN_KEYRING.to_string()));
            match keyring {
                Some(k) => list.push_str(&format!("deb [signed-by={k}] {uri} {suite} main\n")),
                None => list.push_str(&format!("deb {uri} {suite} main\n")),
            }
        }
        for sub in ["lists/partial", "cache/archives/partial", "etc/preferences.d"] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let sources = dir.join("sources.list");
        if fs::read_to_string(&sources).ok().as_deref() != Some(list.as_str()) {
            fs::write(&sources, &list).with_context(|| format!("writing {}", sources.display()))?;
            // New sources: the old lists no longer describe them.
            let _ = fs::remove_file(dir.join("updated"));
        }
        let status = dir.join("status");
        if !status.exists() {
            fs::write(&status, "").with_context(|| format!("writing {}", status.display()))?;
        }
        let d = dir.display();
        let opts = [
            format!("Dir::Etc::sourcelist={d}/sources.list"),
            "Dir::Etc::sourceparts=-".to_string(),
            format!("Dir::Etc::preferences={d}/etc/preferences"),
            format!("Dir::Etc::preferencesparts={d}/etc/preferences.d"),
            format!("Dir::State::Lists={d}/lists"),
            format!("Dir::State::status={d}/status"),
            format!("Dir::Cache={d}/cache"),
            "APT::Sandbox::User=root".to_string(),
            "Acquire::Languages=none".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect();
        Ok(Apt {
            opts,
            private: Some(dir.to_path_buf()),
            label: format!("a private apt state in {d} ({})", suites.join(", ")),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.args(&self.opts).env("LC_ALL", "C").stdin(Stdio::null());
        c
    }

    /// When the private lists were last updated successfully (None: never, or system).
    pub fn updated_age(&self) -> Option<Duration> {
        let stamp = self.private.as_ref()?.join("updated");
        let mtime = fs::metadata(stamp).ok()?.modified().ok()?;
        SystemTime::now().duration_since(mtime).ok()
    }

    /// `apt-get update` of a private state. The machine's own lists are never updated here.
    pub fn update(&self) -> Result<()> {
        let Some(dir) = &self.private else {
            bail!("refusing to update the machine's apt lists; run `apt-get update` yourself");
        };
        eprintln!("kernels: apt-get update ({})", self.label);
        let out =
            self.command("apt-get").args(["-q", "update"]).output().context("running apt-get (is apt installed?)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // apt-get update exits 0 on some fetch failures; "W:"/"E:" lines tell.
        if !out.status.success() || stderr.lines().any(|l| l.starts_with("E:")) {
            bail!("apt-get update for {} failed: {}", self.label, stderr.trim());
        }
        fs::write(dir.join("updated"), "").context("writing the update stamp")?;
        Ok(())
    }

    /// `apt-cache policy PKG`.
    pub fn policy(&self, package: &str) -> Result<Vec<PolicyVersion>> {
        let out = self
            .command("apt-cache")
            .args(["policy", package])
            .output()
            .context("running apt-cache (is apt installed?)")?;
        if !out.status.success() {
            bail!("apt-cache policy {package} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(parse_policy(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The index record of PKG=VERSION, or None when apt does not know that version.
    pub fn show(&self, package: &str, version: &str) -> Result<Option<BTreeMap<String, String>>> {
        let out = self
            .command("apt-cache")
            .args(["show", &format!("{package}={version}")])
            .output()
            .context("running apt-cache (is apt installed?)")?;
        if !out.status.success() {
            return Ok(None);
        }
        Ok(parse_stanzas(&String::from_utf8_lossy(&out.stdout)).into_iter().find(|r| {
            r.get("package").map(String::as_str) == Some(package)
                && r.get("version").map(String::as_str) == Some(version)
        }))
    }

    /// `apt-get download PKG=VERSION` into `dir` (which should be empty); returns the file.
    pub fn download(&self, package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
        eprintln!("kernels: downloading {package} {version}");
        let out = self
            .command("apt-get")
            .args(["-q", "download", &format!("{package}={version}")])
            .current_dir(dir)
            .stdout(Stdio::null())
            .output()
            .context("running apt-get (is apt installed?)")?;
        if !out.status.success() {
            bail!("apt-get download {package}={version} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let mut debs = fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "deb"));
        match (debs.next(), debs.next()) {
            (Some(p), None) => Ok(p),
            _ => bail!("apt-get download {package}={version} did not leave exactly one .deb in {}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://other.example/debian
Suites: trixie
Components: main
Enabled: no
";

    #[test]
    fn deb822_sources() {
        let e = parse_deb822(DEB822);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].uris, ["http://mirror.example/debian"]);
        assert_eq!(e[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(e[0].signed_by.as_deref(), Some("/usr/share/keyrings/debian-archive-keyring.gpg"));
        assert_eq!(e[1].suites, ["bookworm-security"]);
        assert!(has_suite(&e, "bookworm-security"));
        assert!(!has_suite(&e, "trixie"));
    }

    #[test]
    fn one_line_sources() {
        let e = parse_one_line(
            "# comment\n\
             deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ bookworm main contrib\n\
             deb-src http://m.example/debian bookworm main\n\
             deb http://m.example/debian-security bookworm-security main # trailing\n\
             garbage\n",
        );
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(e[0].components, ["main", "contrib"]);
        assert_eq!(e[2].suites, ["bookworm-security"]);
    }

    #[test]
    fn mirrors_come_from_the_machine() {
        let e = parse_deb822(DEB822);
        assert_eq!(mirror_for(&e, "sid").unwrap().0, "http://mirror.example/debian");
        assert_eq!(mirror_for(&e, "bookworm-backports").unwrap().0, "http://mirror.example/debian");
        assert_eq!(mirror_for(&e, "trixie-security").unwrap().0, "http://mirror.example/debian-security");
        assert_eq!(mirror_for(&e, "bookworm-security").unwrap().1, None, "no keyring on that entry");
        assert!(mirror_for(&[], "sid").is_err());
    }

    #[test]
    fn policy_table() {
        let text = "\
linux-image-cloud-amd64:
  Installed: (none)
  Candidate: 6.1.192-2
  Version table:
     6.12.95-1~bpo12+1 100
        100 http://deb.example/debian bookworm-backports/main amd64 Packages
     6.1.192-2 500
        500 http://deb.example/debian-security bookworm-security/main amd64 Packages
 *** 6.1.176-1 500
        500 http://deb.example/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
";
        let p = parse_policy(text);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].version, "6.12.95-1~bpo12+1");
        assert_eq!(p[0].suites, ["bookworm-backports"]);
        assert_eq!(p[1].suites, ["bookworm-security"]);
        assert_eq!(p[2].version, "6.1.176-1");
        assert_eq!(p[2].suites, ["bookworm"]);
    }

    #[test]
    fn stanzas_with_continuations() {
        let s = parse_stanzas("Package: a\nDescription: x\n more\n\nPackage: b\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["description"], "x\nmore");
        assert_eq!(s[1]["package"], "b");
    }
}
