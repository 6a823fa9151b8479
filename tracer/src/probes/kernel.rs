//! What the running kernel offers, found by feature detection (BTF, kallsyms, the kprobe PMU),
//! never by version number (one exception: `Facts::learned_paths`). Only the facts about the
//! probes in the catalogue are gathered.

use std::{collections::HashSet, fs, path::Path};

use btf_rs::{Btf, Type};
use tracer_common::{Attach, Offsets, OFFSET_UNKNOWN, PROBES, RW_SYSCALLS};

use super::preemption::Preemption;
use crate::model::FollBits;

impl Facts {
    /// Whether pin records take their kernel stacks from learned call paths
    /// (tracer_common::stack_path) instead of walking. The one decision made by version
    /// number, for want of a feature to detect: the verifier of 6.1 (Debian 12's kernel) did
    /// not finish verifying the pin programs with that code in 12 minutes under TCG (6.12 and
    /// 7.x take seconds), so below 6.2 they walk, as before. `TRACER_WALK_STACKS=1` makes any
    /// kernel walk.
    pub fn learned_paths(&self) -> bool {
        if std::env::var_os("TRACER_WALK_STACKS").is_some_and(|v| v == "1") {
            return false;
        }
        release_at_least(&self.release, (6, 2))
    }
}

/// Whether a `uname -r` release is `min` (major, minor) or later; false when it cannot be read.
pub fn release_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((major, minor), (Some(a), Some(b)) if (a, b) >= min)
}

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
    /// Whether the perf tracepoints of every system call of tracer_common::RW_SYSCALLS exist
    /// (entry and exit), or why not.
    pub syscall_events: Result<(), String>,
    /// Struct member offsets the latency programs read.
    pub offsets: Offsets,
    /// `struct.member` paths this kernel's BTF does not have (their offsets are unknown).
    pub offsets_missing: Vec<String>,
    /// `enum req_op` values and their names ("read", "write", "flush", ...).
    pub req_ops: std::collections::BTreeMap<u32, String>,
    /// Values of the FOLL_* flags the audit names.
    pub foll: FollBits,
    /// Whether threads can be preempted inside tracing programs (the chains' rules).
    pub preemption: Preemption,
    /// Where `__bio_release_pages` lies in kernel text, [start, end) from /proc/kallsyms (the
    /// next text symbol ends it); None when the addresses are hidden or the function is missing.
    /// Unpins called from there are listed by the bio's release record instead of a record each
    /// (tracer-ebpf/src/bio.rs, "Releases list their unpins").
    pub bio_release_text: Option<(u64, u64)>,
}

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";
/// Where tracefs is mounted, in the order aya looks.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

impl Facts {
    /// One line per struct member this kernel's BTF lacks, with what the tracer loses without
    /// it (`tracer check` prints them; a run warns with them).
    pub fn layout_warnings(&self) -> Vec<String> {
        self.offsets_missing
            .iter()
            .map(|m| match m.as_str() {
                "page.compound_head" => format!(
                    "struct {m} (compound_info) not in this kernel's BTF: tail pages of large folios are read as their own folios; folio-level unpins are matched by their bio's release only"
                ),
                _ => format!("struct {m} not in this kernel's BTF: the figures read through it are missing"),
            })
            .collect()
    }

    /// Whether the eBPF side can read each page's folio (struct page's compound_head is known).
    pub fn folio_heads(&self) -> bool {
        self.offsets.page_compound_head != tracer_common::OFFSET_UNKNOWN
    }

    /// A kernel that offers nothing at all; the caller fills in what it has.
    pub fn nothing(release: &str, why: &str) -> Facts {
        Facts {
            release: release.to_string(),
            btf: Err(why.to_string()),
            btf_funcs: HashSet::new(),
            btf_tracepoints: HashSet::new(),
            kallsyms: HashSet::new(),
            kprobes: Err(why.to_string()),
            syscall_events: Err(why.to_string()),
            offsets: Offsets::UNKNOWN,
            offsets_missing: Vec::new(),
            req_ops: Default::default(),
            foll: FollBits::BEFORE_6_2,
            preemption: Preemption::Unknown(why.to_string()),
            bio_release_text: None,
        }
    }

    /// Reads the facts of the running kernel.
    pub fn probe_running_kernel() -> Facts {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        // Read once: the kprobe targets and the release function's text come from the same file.
        let kallsyms = fs::read_to_string("/proc/kallsyms").unwrap_or_else(|e| {
            log::warn!("/proc/kallsyms unreadable ({e}): no kprobe targets");
            String::new()
        });
        let mut facts = Facts {
            kprobes: kprobe_support(Path::new(KPROBE_PMU)),
            syscall_events: {
                mount_tracefs_if_missing();
                syscall_event_support(&TRACEFS.map(Path::new))
            },
            kallsyms: parse_kallsyms(&kallsyms, &PROBES.iter().map(|d| d.target).collect()),
            bio_release_text: parse_text_range(&kallsyms, "__bio_release_pages"),
            preemption: Preemption::of_running_kernel(),
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
                (facts.offsets, facts.offsets_missing, facts.foll) = read_offsets(&btf);
                facts.req_ops = enum_values(&btf, "req_op", "REQ_OP_");
            }
            Err(e) => {
                let why = format!("kernel BTF unreadable at {BTF_PATH}: {e}");
                facts.btf = Err(why);
            }
        }
        facts
    }
}

fn has_func(btf: &Btf, name: &str) -> bool {
    btf.resolve_types_by_name(name).map(|types| types.iter().any(|t| matches!(t, Type::Func(_)))).unwrap_or(false)
}

fn has_tracepoint(btf: &Btf, name: &str) -> bool {
    btf.resolve_types_by_name(&format!("btf_trace_{name}")).map(|types| !types.is_empty()).unwrap_or(false)
}

/// Members of `enum name`, value -> lower-case name without `prefix`.
fn enum_values(btf: &Btf, name: &str, prefix: &str) -> std::collections::BTreeMap<u32, String> {
    let mut out = std::collections::BTreeMap::new();
    for t in btf.resolve_types_by_name(name).unwrap_or_default() {
        if let Type::Enum(e) = t {
            for m in &e.members {
                if let Ok(n) = btf.resolve_name(m) {
                    if n != "REQ_OP_LAST" {
                        out.entry(m.val()).or_insert_with(|| n.trim_start_matches(prefix).to_lowercase());
                    }
                }
            }
        }
    }
    out
}

/// The offsets of [`Offsets`], each as `struct` + member path.
const OFFSET_PATHS: [(&str, &str); 42] = [
    ("request", "part"),
    ("request", "cmd_flags"),
    ("request", "bio"),
    ("request", "__data_len"),
    ("block_device", "bd_dev"),
    ("bio", "bi_next"),
    ("bio", "bi_bdev"),
    ("bio", "bi_opf"),
    ("bio", "bi_iter.bi_size"),
    ("kiocb", "ki_filp"),
    ("file", "f_inode"),
    ("inode", "i_sb"),
    ("super_block", "s_dev"),
    ("iov_iter", "data_source"),
    ("iov_iter", "count"),
    ("bio", "bi_io_vec"),
    ("bio", "bi_vcnt"),
    ("bio", "bi_flags"),
    ("bio", "bi_status"),
    ("bio_vec", "bv_page"),
    ("bio_vec", "bv_len"),
    ("bio_vec", "bv_offset"),
    ("page", "compound_head"),
    ("task_struct", "signal"),
    ("signal_struct", "live"),
    ("pipe_buffer", "page"),
    ("page", "mapping"),
    ("task_struct", "stack"),
    ("task_struct", "files"),
    ("files_struct", "fdt"),
    ("fdtable", "fd"),
    ("file", "f_flags"),
    ("task_struct", "pid"),
    ("task_struct", "tgid"),
    ("task_struct", "comm"),
    ("task_struct", "cgroups"),
    ("css_set", "dfl_cgrp"),
    ("cgroup", "kn"),
    ("kernfs_node", "id"),
    ("bpf_prog", "aux"),
    ("bpf_prog", "active"),
    ("bpf_prog_aux", "id"),
];

/// The later name of a member some kernels renamed: 7.0 renamed struct page's compound_head to
/// compound_info (a tail page's word then holds either its head's address + 1, or, on kernels
/// with HugeTLB vmemmap optimization and a power-of-two struct page, a mask that gives the head
/// from the tail's own address: the eBPF side tells the two apart by value).
fn renamed(st: &str, path: &str) -> Option<&'static str> {
    match (st, path) {
        ("page", "compound_head") => Some("compound_info"),
        _ => None,
    }
}

fn read_offsets(btf: &Btf) -> (Offsets, Vec<String>, FollBits) {
    let mut values = [OFFSET_UNKNOWN; OFFSET_PATHS.len()];
    let mut missing = Vec::new();
    for (slot, (st, path)) in values.iter_mut().zip(OFFSET_PATHS) {
        match member_offset(btf, st, path).or_else(|| renamed(st, path).and_then(|p| member_offset(btf, st, p))) {
            Some(off) => *slot = off,
            None => missing.push(format!("{st}.{path}")),
        }
    }
    let [rq_part, rq_cmd_flags, rq_bio, rq_data_len, bdev_dev, bio_next, bio_bdev, bio_opf, bio_size, kiocb_filp, file_inode, inode_sb, sb_dev, iter_data_source, iter_count, bio_io_vec, bio_vcnt, bio_flags, bio_status, bvec_page, bvec_len, bvec_offset, page_compound_head, task_signal, signal_live, pipe_buffer_page, page_mapping, task_stack, task_files, files_fdt, fdt_fd, file_f_flags, task_pid, task_tgid, task_comm, task_cgroups, css_set_dfl_cgrp, cgroup_kn, kernfs_node_id, prog_aux, prog_active, prog_aux_id] =
        values;
    let [bio_pinned_bit, bio_no_page_ref_bit, foll_write, foll_longterm] =
        enumerators(btf, ["BIO_PAGE_PINNED", "BIO_NO_PAGE_REF", "FOLL_WRITE", "FOLL_LONGTERM"]);
    let [bio_pinned_bit, bio_no_page_ref_bit] =
        [bio_pinned_bit, bio_no_page_ref_bit].map(|v| v.unwrap_or(OFFSET_UNKNOWN));
    // FOLL_* became enumerators (visible in BTF) in 6.2; before, they were #defines.
    let foll = match (foll_write, foll_longterm) {
        (Some(write), Some(longterm)) => FollBits { write, longterm },
        _ => FollBits::BEFORE_6_2,
    };
    let offsets = Offsets {
        rq_part,
        rq_cmd_flags,
        rq_bio,
        rq_data_len,
        bdev_dev,
        bio_next,
        bio_bdev,
        bio_opf,
        bio_size,
        kiocb_filp,
        file_inode,
        inode_sb,
        sb_dev,
        iter_data_source,
        iter_count,
        bio_io_vec,
        bio_vcnt,
        bio_flags,
        bio_status,
        bvec_page,
        bvec_len,
        bvec_offset,
        bvec_size: struct_size(btf, "bio_vec").unwrap_or(OFFSET_UNKNOWN),
        bio_pinned_bit,
        bio_no_page_ref_bit,
        page_compound_head,
        struct_page_size: struct_size(btf, "page").unwrap_or(OFFSET_UNKNOWN),
        task_signal,
        signal_live,
        pipe_buffer_page,
        page_mapping,
        task_stack,
        task_files,
        files_fdt,
        fdt_fd,
        file_f_flags,
        task_pid,
        task_tgid,
        task_comm,
        task_cgroups,
        css_set_dfl_cgrp,
        cgroup_kn,
        kernfs_node_id,
        prog_aux,
        prog_active,
        prog_aux_id,
        bio_head_bytes: tracer_common::bio_head_bytes(&[
            (bio_bdev, 8),
            (bio_opf, 4),
            (bio_flags, 2),
            (bio_size, 4),
            (bio_vcnt, 2),
            (bio_io_vec, 8),
        ]),
    };
    (offsets, missing, foll)
}

/// Size in bytes of `struct name`.
fn struct_size(btf: &Btf, name: &str) -> Option<u32> {
    btf.resolve_types_by_name(name).ok()?.into_iter().find_map(|t| match t {
        Type::Struct(s) if !s.members.is_empty() => u32::try_from(s.size()).ok(),
        _ => None,
    })
}

/// Values of the enumerators `names` in any enum of the BTF, anonymous ones included (the bio
/// flags are an anonymous enum). Scans every type once for all names; kernel BTF has ~150k
/// types.
fn enumerators<const N: usize>(btf: &Btf, names: [&str; N]) -> [Option<u32>; N] {
    let mut found = [None; N];
    let mut id = 1;
    while let Ok(t) = btf.resolve_type_by_id(id) {
        if let Type::Enum(e) = &t {
            for m in &e.members {
                let Ok(member) = btf.resolve_name(m) else { continue };
                if let Some(i) = names.iter().position(|n| *n == member) {
                    found[i].get_or_insert(m.val());
                }
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
        id += 1;
    }
    found
}

/// Byte offset of `path` (members separated by '.') inside `struct name`, looking through
/// anonymous structs and unions.
fn member_offset(btf: &Btf, name: &str, path: &str) -> Option<u32> {
    let types = btf.resolve_types_by_name(name).ok()?;
    let mut ty = types.into_iter().find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))?;
    let mut bits = 0u32;
    for field in path.split('.') {
        let (off, member_ty) = find_member(btf, &ty, field)?;
        bits += off;
        ty = member_ty;
    }
    bits.is_multiple_of(8).then_some(bits / 8)
}

/// Bit offset and (typedef-stripped) type of member `field` of struct/union `ty`.
fn find_member(btf: &Btf, ty: &Type, field: &str) -> Option<(u32, Type)> {
    let members = match ty {
        Type::Struct(s) | Type::Union(s) => &s.members,
        _ => return None,
    };
    for m in members {
        let name = btf.resolve_name(m).unwrap_or_default();
        let mty = strip(btf, btf.resolve_chained_type(m).ok()?)?;
        if name == field {
            return Some((m.bit_offset(), mty));
        }
        if name.is_empty() {
            if let Some((off, t)) = find_member(btf, &mty, field) {
                return Some((m.bit_offset() + off, t));
            }
        }
    }
    None
}

/// Follows typedefs and qualifiers to the underlying type.
fn strip(btf: &Btf, mut ty: Type) -> Option<Type> {
    for _ in 0..16 {
        ty = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t).ok()?,
            Type::Const(t) => btf.resolve_chained_type(t).ok()?,
            Type::Volatile(t) => btf.resolve_chained_type(t).ok()?,
            Type::Restrict(t) => btf.resolve_chained_type(t).ok()?,
            Type::TypeTag(t) => btf.resolve_chained_type(t).ok()?,
            _ => return Some(ty),
        };
    }
    None
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

/// Mounts tracefs at /sys/kernel/tracing when no tracefs is mounted (as perf does): the
/// syscall tracepoints are found through it. Needs root; failing, the probes that need it are
/// reported missing with the reason.
fn mount_tracefs_if_missing() {
    if TRACEFS.iter().any(|r| Path::new(r).join("events").is_dir()) || !Path::new(TRACEFS[0]).is_dir() {
        return;
    }
    let (src, dir, fstype) = (c"tracefs", c"/sys/kernel/tracing", c"tracefs");
    // SAFETY: NUL-terminated strings that outlive the call; no mount data.
    let rc = unsafe { libc::mount(src.as_ptr(), dir.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        log::info!("mounted tracefs at /sys/kernel/tracing (for the system call tracepoints)");
    } else {
        log::debug!("cannot mount tracefs: {}", std::io::Error::last_os_error());
    }
}

/// Whether some tracefs of `roots` has the events `syscalls/sys_enter_<name>` and
/// `syscalls/sys_exit_<name>` of every read and write system call (CONFIG_FTRACE_SYSCALLS).
pub fn syscall_event_support(roots: &[&Path]) -> Result<(), String> {
    let Some(root) = roots.iter().find(|r| r.join("events").is_dir()) else {
        let names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(format!("tracefs not mounted (no events/ under {})", names.join(" or ")));
    };
    let events = root.join("events/syscalls");
    for name in RW_SYSCALLS {
        for side in ["sys_enter", "sys_exit"] {
            if !events.join(format!("{side}_{name}")).join("id").exists() {
                return Err(format!(
                    "no syscall tracepoint {side}_{name} in {} (CONFIG_FTRACE_SYSCALLS off?)",
                    events.display()
                ));
            }
        }
    }
    Ok(())
}

/// The text symbols of /proc/kallsyms' `text`: (address, name), module suffixes ignored.
fn text_symbols(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.lines().filter_map(|line| {
        let mut cols = line.split_whitespace();
        let (addr, kind, name) = (cols.next()?, cols.next()?, cols.next()?);
        matches!(kind, "T" | "t" | "W" | "w").then_some((u64::from_str_radix(addr, 16).ok()?, name))
    })
}

/// Where the text of function `name` lies, [start, end): from its address in /proc/kallsyms'
/// `text` to the next text symbol's. None when the function is missing or its addresses read 0
/// (hidden by kptr_restrict).
fn parse_text_range(text: &str, name: &str) -> Option<(u64, u64)> {
    let start = text_symbols(text).find(|&(_, symbol)| symbol == name).map(|(addr, _)| addr).filter(|&a| a != 0)?;
    let end = text_symbols(text).map(|(addr, _)| addr).filter(|&a| a > start).min()?;
    Some((start, end))
}

/// The function names of `wanted` that /proc/kallsyms' `text` lists as text (kprobes can target
/// them).
fn parse_kallsyms(text: &str, wanted: &HashSet<&str>) -> HashSet<String> {
    text_symbols(text).map(|(_, name)| name).filter(|name| wanted.contains(name)).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_compared_by_major_and_minor() {
        assert!(!release_at_least("6.1.0-56-cloud-amd64", (6, 2)));
        assert!(release_at_least("6.12.95+deb12-cloud-amd64", (6, 2)));
        assert!(release_at_least("7.2.13+deb14-cloud-amd64", (6, 2)));
        assert!(!release_at_least("5.19.0", (6, 2)));
        assert!(!release_at_least("garbage", (6, 2)));
    }

    /// Reads the host's own BTF when it has one (every kernel we support does); the offsets of
    /// these long-stable members must all resolve, nested and anonymous members included.
    #[test]
    fn offsets_resolve_from_the_running_kernels_btf() {
        let Ok(btf) = Btf::from_file(BTF_PATH) else {
            eprintln!("no {BTF_PATH}: skipped");
            return;
        };
        let (offsets, missing, foll) = read_offsets(&btf);
        assert!(missing.is_empty(), "missing: {missing:?}");
        // x86_64 and arm64: compound_head is the word after flags; struct page is 64 bytes.
        assert_eq!((offsets.page_compound_head, offsets.struct_page_size), (8, 64));
        assert_eq!(foll.write, 1);
        assert!(foll.longterm == FollBits::BEFORE_6_2.longterm || foll.longterm == 1 << 8, "{foll:?}");
        assert_eq!(offsets.iter_count % 8, 0);
        assert_ne!(offsets.bio_size, OFFSET_UNKNOWN);
        assert_eq!(member_offset(&btf, "request", "no_such_member"), None);
        assert_eq!(offsets.bvec_size, 16);
        // Bit 0 on every kernel that pins DIO pages (6.2+); absent before.
        assert!(matches!(offsets.bio_pinned_bit, 0 | OFFSET_UNKNOWN), "{}", offsets.bio_pinned_bit);
        let ops = enum_values(&btf, "req_op", "REQ_OP_");
        assert_eq!(ops.get(&0).map(String::as_str), Some("read"));
        assert_eq!(ops.get(&1).map(String::as_str), Some("write"));
    }

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
    fn a_functions_text_ends_at_the_next_text_symbol() {
        let text = "ffffffff81600000 T bio_endio\n\
                    ffffffff81600400 T __bio_release_pages\n\
                    ffffffff81600500 D some_data\n\
                    ffffffff81600580 t bio_release_helper\n\
                    ffffffff81600300 T earlier\n";
        assert_eq!(parse_text_range(text, "__bio_release_pages"), Some((0xffffffff81600400, 0xffffffff81600580)));
        assert_eq!(parse_text_range(text, "missing"), None);
        let hidden = "0000000000000000 T __bio_release_pages\n0000000000000000 T next\n";
        assert_eq!(parse_text_range(hidden, "__bio_release_pages"), None, "kptr_restrict hides addresses");
    }

    #[test]
    fn syscall_events_are_looked_up_under_tracefs() {
        let root = std::env::temp_dir().join(format!("tracer-tracefs-{}", std::process::id()));
        let none = syscall_event_support(&[root.as_path()]).unwrap_err();
        assert!(none.contains("tracefs not mounted"), "{none}");
        for name in RW_SYSCALLS {
            for side in ["sys_enter", "sys_exit"] {
                let dir = root.join("events/syscalls").join(format!("{side}_{name}"));
                fs::create_dir_all(&dir).unwrap();
                if name != "pwritev2" || side != "sys_exit" {
                    fs::write(dir.join("id"), "1").unwrap();
                }
            }
        }
        let missing = syscall_event_support(&[root.as_path()]).unwrap_err();
        assert!(missing.contains("sys_exit_pwritev2"), "{missing}");
        fs::write(root.join("events/syscalls/sys_exit_pwritev2/id"), "1").unwrap();
        assert_eq!(syscall_event_support(&[Path::new("/nonexistent"), root.as_path()]), Ok(()));
        fs::remove_dir_all(&root).unwrap();
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
