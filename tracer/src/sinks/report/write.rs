//! Writing a file that only its owner may read, atomically.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{chown, OpenOptionsExt},
    path::Path,
};

/// Writes `bytes` to `path` through a temporary file in the same directory, renamed over it:
/// a reader never sees half a report, and a failed write leaves the old one. Mode 0600; under
/// sudo ($SUDO_UID and $SUDO_GID set) the file is given to the invoking user.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| std::io::Error::other("the report path names no file"))?;
    let tmp = path.with_file_name(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Some((uid, gid)) = sudo_owner() {
            chown(&tmp, Some(uid), Some(gid))?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The user and group that ran sudo, when both are given and valid.
fn sudo_owner() -> Option<(u32, u32)> {
    let var = |k: &str| std::env::var(k).ok()?.parse::<u32>().ok();
    Some((var("SUDO_UID")?, var("SUDO_GID")?))
}
