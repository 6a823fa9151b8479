//! The command line's filter options resolved into the engine's [`Filter`]: device names to
//! dev_t (from /sys, or for a replay from the record file's device table first), cgroup
//! directories to their ids. Every bad value is one line and exit 1, before anything loads.

use std::{collections::BTreeMap, io::Read, os::unix::fs::MetadataExt, path::Path};

use anyhow::{anyhow, bail, Result};

use crate::{
    cli::FilterArgs,
    engine::filter::Filter,
    record::{self, io_reason, ReadError, Reader},
};

/// The filter of a live run: devices named as /sys/class/block names them.
pub fn live(args: &FilterArgs) -> Result<Filter> {
    resolve(args, &BTreeMap::new())
}

/// The filter of a replay of the record file at `path`: a device name is looked up in the
/// file's device table (the recording machine's names) first, then in /sys here.
pub fn replay(args: &FilterArgs, path: &Path) -> Result<Filter> {
    let named = args.devices.iter().any(|d| maj_min(d).is_none());
    let table = if named { recorded_devices(path)? } else { BTreeMap::new() };
    resolve(args, &table)
}

/// `recorded`: "MAJ:MIN" -> name, as a record file's trailer has them.
fn resolve(args: &FilterArgs, recorded: &BTreeMap<String, String>) -> Result<Filter> {
    let mut filter = Filter {
        tgids: args.pids.iter().copied().collect(),
        comms: args.comms.iter().cloned().collect(),
        label: args.label(),
        ..Filter::default()
    };
    for dev in &args.devices {
        filter.devs.insert(device(dev, recorded)?);
    }
    for dir in &args.cgroups {
        filter.cgroups.insert(cgroup_id(dir)?);
    }
    Ok(filter)
}

/// "259:0" as a kernel dev_t; None when `s` is not MAJ:MIN.
fn maj_min(s: &str) -> Option<u32> {
    let (major, minor) = s.trim().split_once(':')?;
    let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
    (major < 1 << 12 && minor < 1 << 20).then_some(major << 20 | minor)
}

/// A device given as MAJ:MIN, or by name (the record file's table, then /sys/class/block).
fn device(name: &str, recorded: &BTreeMap<String, String>) -> Result<u32> {
    if let Some(dev) = maj_min(name) {
        return Ok(dev);
    }
    let from_file = recorded.iter().find(|(_, n)| n.as_str() == name).and_then(|(key, _)| maj_min(key));
    if let Some(dev) = from_file {
        return Ok(dev);
    }
    let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
    let sys = plain.then(|| std::fs::read_to_string(format!("/sys/class/block/{name}/dev")).ok()).flatten();
    match sys.as_deref().and_then(maj_min) {
        Some(dev) => Ok(dev),
        None => bail!("--device {name}: no such block device (give a name from /sys/class/block, or MAJ:MIN)"),
    }
}

/// A cgroup v2 directory's id: its inode number (what bpf_get_current_cgroup_id returns).
fn cgroup_id(dir: &Path) -> Result<u64> {
    let meta = std::fs::metadata(dir).map_err(|e| anyhow!("--cgroup {}: {}", dir.display(), io_reason(&e)))?;
    if !meta.is_dir() {
        bail!("--cgroup {}: not a directory (give a cgroup v2 directory under /sys/fs/cgroup)", dir.display());
    }
    Ok(meta.ino())
}

/// The device table of a record file's trailer ("MAJ:MIN" -> name); read through the file.
fn recorded_devices(path: &Path) -> Result<BTreeMap<String, String>> {
    let file = std::fs::File::open(path).map_err(|e| anyhow!("cannot open {}: {}", path.display(), io_reason(&e)))?;
    let err = |e: ReadError| anyhow!("{}: {e}", path.display());
    // Mapped as the replay maps it; the records are skipped without a copy of any.
    let mut reader = match record::map(&file) {
        Some(map) => Reader::<Box<dyn Read>>::mapped(Box::new(std::io::empty()), map),
        None => Reader::<Box<dyn Read>>::new(Box::new(file)),
    }
    .map_err(err)?;
    while reader.next_slice().map_err(err)?.is_some() {}
    Ok(reader.trailer().map(|t| t.devices.clone()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Dev;

    /// The devices of a filter as MAJ:MIN.
    fn shown(filter: &Filter) -> Vec<String> {
        filter.devs.iter().map(|&d| Dev(d).to_string()).collect()
    }

    #[test]
    fn devices_by_maj_min_by_recorded_name_or_refused() {
        let recorded: BTreeMap<String, String> = [("251:0".to_string(), "nullb0".to_string())].into();
        let args = FilterArgs { devices: vec!["259:3".into(), "nullb0".into()], ..FilterArgs::default() };
        let f = resolve(&args, &recorded).unwrap();
        assert_eq!(shown(&f), ["251:0", "259:3"]);
        assert_eq!(f.label, "--device 259:3 --device nullb0");
        for bad in ["nosuchdev0", "../sda", "", "4096:0", "1:2:3"] {
            let args = FilterArgs { devices: vec![bad.into()], ..FilterArgs::default() };
            let e = resolve(&args, &recorded).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--device {bad}: no such block device")), "{e}");
        }
    }

    #[test]
    fn cgroups_are_directory_inodes_and_a_missing_one_is_one_line() {
        let dir = std::env::temp_dir();
        let args = FilterArgs { cgroups: vec![dir.clone()], pids: vec![7], ..FilterArgs::default() };
        let f = resolve(&args, &BTreeMap::new()).unwrap();
        assert_eq!(f.cgroups.into_iter().collect::<Vec<_>>(), [std::fs::metadata(&dir).unwrap().ino()]);
        assert_eq!(f.tgids.into_iter().collect::<Vec<_>>(), [7]);
        let args = FilterArgs { cgroups: vec!["/nope/cgroup".into()], ..FilterArgs::default() };
        let e = resolve(&args, &BTreeMap::new()).unwrap_err().to_string();
        assert_eq!(e, "--cgroup /nope/cgroup: No such file or directory");
    }
}
