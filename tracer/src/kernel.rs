//! What the running kernel offers, found by feature detection (BTF, kallsyms, the kprobe PMU),
//! never by version number. Only the facts about the probes in the catalogue are gathered.

use std::{collections::HashSet, fs, path::Path};

use btf_rs::{Btf, Type};
use tracer_common::{Attach, PROBES};

/// Facts the probe plan is made from. Plain data, so the plan is testable without a kernel.
#[derive(Clone, Debug)]
pub struct Facts {
    /// `uname -r`.
    pub release: String,
    /// Kernel BTF, or why it is unusable.
    pub btf: Result<(), String>,
    /// Catalogue functions with a BTF FUNC record (fentry/fexit can target them).
    pub btf_funcs: HashSet<String>,
    /// Catalogue tracepoints with a `btf_trace_<name>` BTF type (tp_btf can target them).
    pub btf_tracepoints: HashSet<String>,
    /// Catalogue functions present in /proc/kallsyms (kprobes can target them).
    pub kallsyms: HashSet<String>,
    /// Whether kprobes can be created, or why not.
    pub kprobes: Result<(), String>,
    /// `NR_FOLL_PIN_ACQUIRED` / `NR_FOLL_PIN_RELEASED` in `enum node_stat_item`, or why unknown.
    pub foll_pin_items: Result<(u32, u32), String>,
}

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

impl Facts {
    /// A kernel that offers nothing at all; the caller fills in what it has.
    pub fn nothing(release: &str, why: &str) -> Facts {
        Facts {
            release: release.to_string(),
            btf: Err(why.to_string()),
            btf_funcs: HashSet::new(),
            btf_tracepoints: HashSet::new(),
            kallsyms: HashSet::new(),
            kprobes: Err(why.to_string()),
            foll_pin_items: Err(why.to_string()),
        }
    }

    /// Reads the facts of the running kernel.
    pub fn probe_running_kernel() -> Facts {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let mut facts = Facts {
            kprobes: kprobe_support(Path::new(KPROBE_PMU)),
            kallsyms: kallsyms_names(Path::new("/proc/kallsyms")),
            ..Facts::nothing(&release, "")
        };
        match Btf::from_file(BTF_PATH) {
            Ok(btf) => {
                facts.btf = Ok(());
                for def in PROBES.iter() {
                    match def.attach {
                        Attach::Fentry | Attach::Fexit if has_func(&btf, def.target) => {
                            facts.btf_funcs.insert(def.target.to_string());
                        }
                        Attach::TpBtf if has_tracepoint(&btf, def.target) => {
                            facts.btf_tracepoints.insert(def.target.to_string());
                        }
                        _ => {}
                    }
                }
                facts.foll_pin_items = foll_pin_items(&btf);
            }
            Err(e) => {
                let why = format!("kernel BTF unreadable at {BTF_PATH}: {e}");
                facts.btf = Err(why.clone());
                facts.foll_pin_items = Err(why);
            }
        }
        facts
    }
}

fn has_func(btf: &Btf, name: &str) -> bool {
    btf.resolve_types_by_name(name)
        .map(|types| types.iter().any(|t| matches!(t, Type::Func(_))))
        .unwrap_or(false)
}

fn has_tracepoint(btf: &Btf, name: &str) -> bool {
    btf.resolve_types_by_name(&format!("btf_trace_{name}"))
        .map(|types| !types.is_empty())
        .unwrap_or(false)
}

/// Values of `NR_FOLL_PIN_ACQUIRED` and `NR_FOLL_PIN_RELEASED` (they differ between kernels:
/// 35/36 in Debian 6.1 and 6.12, 34/35 in 6.18).
fn foll_pin_items(btf: &Btf) -> Result<(u32, u32), String> {
    let types = btf
        .resolve_types_by_name("node_stat_item")
        .map_err(|e| format!("no enum node_stat_item in kernel BTF: {e}"))?;
    for t in types {
        let Type::Enum(e) = t else { continue };
        let mut acquired = None;
        let mut released = None;
        for m in &e.members {
            match btf.resolve_name(m).as_deref() {
                Ok("NR_FOLL_PIN_ACQUIRED") => acquired = Some(m.val()),
                Ok("NR_FOLL_PIN_RELEASED") => released = Some(m.val()),
                _ => {}
            }
        }
        return match (acquired, released) {
            (Some(a), Some(r)) => Ok((a, r)),
            _ => Err("enum node_stat_item has no NR_FOLL_PIN_ACQUIRED/RELEASED".into()),
        };
    }
    Err("node_stat_item in kernel BTF is not an enum".into())
}

/// Whether the kernel can create kprobes: the kprobe PMU is registered exactly when
/// CONFIG_KPROBES (and perf) are built in.
pub fn kprobe_support(pmu: &Path) -> Result<(), String> {
    if pmu.join("type").exists() {
        Ok(())
    } else {
        Err(format!("kernel has no kprobe PMU ({} missing: CONFIG_KPROBES off)", pmu.display()))
    }
}

/// The catalogue's function names that /proc/kallsyms lists (module suffixes ignored).
pub fn kallsyms_names(path: &Path) -> HashSet<String> {
    let wanted: HashSet<&str> = PROBES.iter().map(|d| d.target).collect();
    let Ok(text) = fs::read_to_string(path) else { return HashSet::new() };
    parse_kallsyms(&text, &wanted)
}

fn parse_kallsyms(text: &str, wanted: &HashSet<&str>) -> HashSet<String> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let (_addr, kind, name) = (cols.next()?, cols.next()?, cols.next()?);
            matches!(kind, "T" | "t" | "W" | "w").then_some(name)
        })
        .filter(|name| wanted.contains(name))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_keeps_text_symbols_we_want() {
        let text = "ffffffff815d4160 T mod_node_page_state\n\
                    ffffffff815f3de0 t unpin_user_page\t[somemod]\n\
                    ffffffff81000000 D unpin_folio\n\
                    ffffffff81000001 T unrelated\n";
        let wanted: HashSet<&str> = ["mod_node_page_state", "unpin_user_page", "unpin_folio"].into();
        let got = parse_kallsyms(text, &wanted);
        assert!(got.contains("mod_node_page_state"));
        assert!(got.contains("unpin_user_page"));
        assert!(!got.contains("unpin_folio"), "data symbols cannot take a kprobe");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn kprobe_support_names_the_missing_pmu() {
        let dir = std::env::temp_dir().join(format!("tracer-kprobe-test-{}", std::process::id()));
        let err = kprobe_support(&dir).unwrap_err();
        assert!(err.contains("CONFIG_KPROBES"), "{err}");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("type"), "6\n").unwrap();
        assert!(kprobe_support(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
