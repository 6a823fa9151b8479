//! Names from the running system: block devices by dev_t from /sys, operations from the
//! kernel's `enum req_op`.

use std::collections::BTreeMap;

use super::kernel::Facts;
use crate::model::{Dev, Names};

/// Device names from /sys/dev/block, operation names from the kernel's `enum req_op`.
pub struct SysNames {
    ops: BTreeMap<u32, String>,
}

impl SysNames {
    pub fn new(facts: &Facts) -> SysNames {
        SysNames { ops: facts.req_ops.clone() }
    }
}

impl Names for SysNames {
    fn device(&self, dev: u32) -> String {
        if dev == 0 {
            return "?".into();
        }
        let key = Dev(dev).to_string();
        std::fs::read_to_string(format!("/sys/dev/block/{key}/uevent"))
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string)))
            .or_else(|| hidden_disk(&key))
            .unwrap_or(key)
    }

    fn op(&self, op: u32) -> String {
        self.ops.get(&op).cloned().unwrap_or_else(|| format!("op{op}"))
    }
}

/// Hidden disks (the per-path devices of native NVMe multipath, nvme0c0n1) are not in
/// /sys/dev/block, but they are in /sys/block. `key`: "major:minor".
fn hidden_disk(key: &str) -> Option<String> {
    std::fs::read_dir("/sys/block").ok()?.flatten().find_map(|entry| {
        let dev = std::fs::read_to_string(entry.path().join("dev")).ok()?;
        (dev.trim() == key).then(|| entry.file_name().to_string_lossy().into_owned())
    })
}
