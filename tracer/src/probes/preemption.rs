//! The running kernel's preemption model: whether a thread can be preempted inside a tracing
//! program. Trampolines (fentry/fexit) disable migration, not preemption, so on a kernel with
//! full, lazy or RT preemption another thread can run the same program on that CPU while the
//! first is preempted in it, and the chains keep a word per invocation in thread context to
//! tell invocations apart (tracer_common::chain). With no or voluntary preemption a thread is
//! never preempted inside a program (they call nothing that reschedules), so only interrupts
//! nest, and the cheaper CPU rule is exact for every invocation.
//!
//! Where the mode cannot be told, it counts as preemptible: the word rule is right under
//! every model, only dearer.

use std::{fs, path::Path};

/// How the kernel preempts threads running kernel code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preemption {
    /// `none` or `voluntary`: only at explicit rescheduling points.
    NotInPrograms(&'static str),
    /// `full`, `lazy` or `rt`: anywhere preemption is enabled, inside tracing programs too.
    Anywhere(&'static str),
    /// Not told (the reason); treated as [`Preemption::Anywhere`].
    Unknown(String),
}

impl Preemption {
    /// Whether a thread can be preempted inside a tracing program (unknown counts as yes).
    pub fn in_programs(&self) -> bool {
        !matches!(self, Preemption::NotInPrograms(_))
    }

    /// One line for `tracer check`.
    pub fn describe(&self) -> String {
        match self {
            Preemption::NotInPrograms(m) => {
                format!("preemption: {m} (a thread is never preempted inside a program: chains use the CPU rule only)")
            }
            Preemption::Anywhere(m) => {
                format!("preemption: {m} (threads can be preempted inside programs: chains keep a word per invocation)")
            }
            Preemption::Unknown(why) => {
                format!("preemption: unknown ({why}); taken as preemptible: chains keep a word per invocation")
            }
        }
    }

    /// Reads the running kernel's model: the current mode of a PREEMPT_DYNAMIC kernel from
    /// debugfs (mounted when absent, as perf does), else the build's model from the version
    /// string, else a `preempt=` boot option.
    pub fn of_running_kernel() -> Preemption {
        mount_debugfs_if_missing();
        let dynamic = fs::read_to_string("/sys/kernel/debug/sched/preempt").ok();
        let version = fs::read_to_string("/proc/sys/kernel/version").unwrap_or_default();
        let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
        preemption_from(dynamic.as_deref(), &version, &cmdline)
    }
}

fn mode(name: &str) -> Option<Preemption> {
    match name {
        "none" => Some(Preemption::NotInPrograms("none")),
        "voluntary" => Some(Preemption::NotInPrograms("voluntary")),
        "full" => Some(Preemption::Anywhere("full")),
        "lazy" => Some(Preemption::Anywhere("lazy")),
        "rt" => Some(Preemption::Anywhere("rt")),
        _ => None,
    }
}

/// The model from debugfs's `sched/preempt` (the current mode in parentheses, e.g. "none
/// (voluntary) full lazy"), the kernel's version string (`uname -v`) and its command line.
pub fn preemption_from(dynamic: Option<&str>, version: &str, cmdline: &str) -> Preemption {
    if let Some(text) = dynamic {
        let current = text.split_whitespace().find_map(|w| w.strip_prefix('(')?.strip_suffix(')'));
        return match current.and_then(mode) {
            Some(p) => p,
            None => Preemption::Unknown(format!("sched/preempt says {:?}", text.trim())),
        };
    }
    let words: Vec<&str> = version.split_whitespace().collect();
    if words.contains(&"PREEMPT_RT") {
        return Preemption::Anywhere("rt");
    }
    if words.contains(&"PREEMPT_DYNAMIC") {
        // The build can switch modes at boot; without debugfs only a boot option tells.
        let boot = cmdline.split_whitespace().find_map(|w| w.strip_prefix("preempt=")).and_then(mode);
        return boot.unwrap_or_else(|| {
            Preemption::Unknown("PREEMPT_DYNAMIC kernel and debugfs's sched/preempt unreadable".into())
        });
    }
    if words.contains(&"PREEMPT_LAZY") {
        return Preemption::Anywhere("lazy");
    }
    if words.contains(&"PREEMPT") {
        return Preemption::Anywhere("full");
    }
    if words.first().is_some_and(|w| w.starts_with('#')) {
        // A kernel built without preemption or with voluntary preemption names no model.
        return Preemption::NotInPrograms("voluntary");
    }
    Preemption::Unknown("the kernel's version string is unreadable".into())
}

/// Mounts debugfs at /sys/kernel/debug when nothing is mounted there (needs root; failing,
/// the model is read from the version string).
fn mount_debugfs_if_missing() {
    let dir = Path::new("/sys/kernel/debug");
    let empty = fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
    if !empty {
        return;
    }
    let (src, target, fstype) = (c"debugfs", c"/sys/kernel/debug", c"debugfs");
    // SAFETY: NUL-terminated strings that outlive the call; no mount data.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        log::debug!("cannot mount debugfs: {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_dynamic_mode_wins() {
        let v = "#1 SMP PREEMPT_DYNAMIC Debian 6.12.95-1";
        assert_eq!(preemption_from(Some("none (voluntary) full\n"), v, ""), Preemption::NotInPrograms("voluntary"));
        assert_eq!(preemption_from(Some("none voluntary full (lazy)\n"), v, ""), Preemption::Anywhere("lazy"));
        assert_eq!(preemption_from(Some("(full)"), v, "preempt=none"), Preemption::Anywhere("full"));
        assert!(preemption_from(Some("garbage"), v, "").in_programs(), "unreadable counts as preemptible");
    }

    #[test]
    fn without_debugfs_the_build_or_the_boot_option_tells() {
        assert_eq!(preemption_from(None, "#1 SMP Debian 6.1.158-1", ""), Preemption::NotInPrograms("voluntary"));
        assert_eq!(preemption_from(None, "#1 SMP PREEMPT Debian", ""), Preemption::Anywhere("full"));
        assert_eq!(preemption_from(None, "#1 SMP PREEMPT_RT Debian", ""), Preemption::Anywhere("rt"));
        assert_eq!(preemption_from(None, "#1 SMP PREEMPT_LAZY Debian", ""), Preemption::Anywhere("lazy"));
        let dynamic = "#1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1";
        assert_eq!(
            preemption_from(None, dynamic, "BOOT_IMAGE=x preempt=voluntary"),
            Preemption::NotInPrograms("voluntary")
        );
        let unknown = preemption_from(None, dynamic, "console=ttyS0");
        assert!(matches!(unknown, Preemption::Unknown(_)) && unknown.in_programs());
        assert!(preemption_from(None, "", "").in_programs());
    }
}
