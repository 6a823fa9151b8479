//! The probe plan: for each probe of the catalogue, the ways this kernel may let us attach it,
//! in order of preference, and why the others are ruled out. Pure: made from [`Facts`].

use serde::Serialize;
use tracer_common::{Attach, ProbeDef, ProbeId, ProbeRole, PROBES};

use super::kernel::Facts;

/// A way of attaching a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
    TpBtf,
    /// Perf tracepoints (the system call events of `Attach::Syscalls`).
    Tracepoint,
    /// Raw tracepoints (`sys_enter`/`sys_exit`, the other way of `Attach::Syscalls`).
    RawTracepoint,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Fentry => "fentry",
            Method::Fexit => "fexit",
            Method::Kprobe => "kprobe",
            Method::Kretprobe => "kretprobe",
            Method::TpBtf => "tp_btf",
            Method::Tracepoint => "tracepoint",
            Method::RawTracepoint => "raw_tracepoint",
        }
    }
}

/// One probe's options on this kernel.
#[derive(Clone, Debug)]
pub struct PlannedProbe {
    pub def: ProbeDef,
    /// Not asked for (see [`Wanted`]): nothing is tried, and it is not missing.
    pub off: bool,
    /// Methods to try, best first, each with the program that implements it.
    pub candidates: Vec<(Method, &'static str)>,
    /// Methods ruled out before trying, with the reason.
    pub ruled_out: Vec<(Method, String)>,
}

impl PlannedProbe {
    /// Rank of a method for this probe (BTF programs first, then kprobes).
    pub fn preference(&self, m: Method) -> usize {
        methods(self.def.attach).iter().position(|x| *x == m).unwrap_or(usize::MAX)
    }
}

/// What happened to one probe when the loader tried its candidates.
#[derive(Clone, Debug)]
pub struct ProbeOutcome {
    pub def: ProbeDef,
    /// Not asked for: not attached, and not missing either (see [`Wanted`]).
    pub off: bool,
    /// The method that attached, if any.
    pub attached: Option<Method>,
    /// Methods that were ruled out or failed, with the reason.
    pub failures: Vec<(Method, String)>,
}

impl ProbeOutcome {
    /// The outcome of a probe that was never tried (programs not loaded): its plan alone.
    pub fn untried(p: &PlannedProbe, why: &str) -> ProbeOutcome {
        let mut failures = p.ruled_out.clone();
        failures.extend(p.candidates.iter().map(|&(m, _)| (m, format!("not tried: {why}"))));
        failures.sort_by_key(|(m, _)| p.preference(*m));
        ProbeOutcome { def: p.def, off: p.off, attached: None, failures }
    }

    /// Asked for but not attached: the figures that need it are unverifiable.
    pub fn missing(&self) -> bool {
        !self.off && self.attached.is_none()
    }
}

/// The figures a run asks for beyond the default ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The `sys` latency figure (`--syscall-latency`): its probes run for every read and write
    /// system call of every process on the machine, Direct I/O or not, so it is off unless
    /// asked for.
    pub syscall_latency: bool,
}

impl Wanted {
    /// Everything (`tracer check` shows every probe the kernel would take).
    pub const ALL: Wanted = Wanted { syscall_latency: true };
}

/// Why a probe is off.
pub const SYSCALL_LATENCY_OFF: &str =
    "off: the sys figure runs a program for every read and write system call of the machine; --syscall-latency turns it on";

/// Plans every probe of the catalogue.
pub fn plan(facts: &Facts) -> Vec<PlannedProbe> {
    plan_for(facts, Wanted::ALL)
}

/// Plans the probes of the catalogue a run asks for; the others are off.
pub fn plan_for(facts: &Facts, wanted: Wanted) -> Vec<PlannedProbe> {
    PROBES
        .iter()
        .map(|def| match def.attach {
            Attach::Syscalls if !wanted.syscall_latency => PlannedProbe {
                def: *def,
                off: true,
                candidates: Vec::new(),
                ruled_out: vec![(Method::Tracepoint, SYSCALL_LATENCY_OFF.into())],
            },
            _ => plan_one(facts, *def),
        })
        .collect()
}

fn plan_one(facts: &Facts, def: ProbeDef) -> PlannedProbe {
    let mut p = PlannedProbe { def, off: false, candidates: Vec::new(), ruled_out: Vec::new() };
    let (btf_method, kprobe_method) = match def.attach {
        Attach::Fentry => (Method::Fentry, Some(Method::Kprobe)),
        Attach::Fexit => (Method::Fexit, Some(Method::Kretprobe)),
        Attach::TpBtf => (Method::TpBtf, None),
        Attach::Syscalls => (Method::Tracepoint, None),
    };
    let btf_ok = match (&facts.btf, def.attach) {
        // Perf tracepoints need no BTF.
        (_, Attach::Syscalls) => facts.syscall_events.clone(),
        (Err(why), _) => Err(why.clone()),
        (Ok(()), Attach::TpBtf) if !facts.btf_tracepoints.contains(def.target) => {
            Err(format!("no BTF type btf_trace_{} (tracepoint absent)", def.target))
        }
        (Ok(()), Attach::Fentry | Attach::Fexit) if !facts.btf_funcs.contains(def.target) => {
            Err("no BTF FUNC record (function absent, inlined or static without BTF)".into())
        }
        (Ok(()), _) => Ok(()),
    };
    match btf_ok {
        Ok(()) => p.candidates.push((btf_method, def.btf_program)),
        Err(why) => p.ruled_out.push((btf_method, why)),
    }
    if let Some(program) = def.raw_syscall_program() {
        // Raw tracepoints need neither BTF nor tracefs. Where threads can be preempted inside
        // programs, the perf tracepoints can be skipped for other threads' calls
        // (tracer_common::Attach::Syscalls): raw first.
        let at = if facts.preemption.in_programs() { 0 } else { p.candidates.len() };
        p.candidates.insert(at, (Method::RawTracepoint, program));
    }
    if let (Some(method), None) = (kprobe_method, def.kprobe_program) {
        p.ruled_out.push((method, "no kprobe fallback for this probe (it needs the entry arguments at return)".into()));
    }
    if let (Some(method), Some(program)) = (kprobe_method, def.kprobe_program) {
        let kprobe_ok = match &facts.kprobes {
            Err(why) => Err(why.clone()),
            Ok(()) if !facts.kallsyms.contains(def.target) => {
                Err("not in /proc/kallsyms (function absent or inlined)".into())
            }
            Ok(()) => Ok(()),
        };
        match kprobe_ok {
            Ok(()) => p.candidates.push((method, program)),
            Err(why) => p.ruled_out.push((method, why)),
        }
    }
    p
}

/// Why `bio_iov_iter_get_pages` is off where the queueing streams the acquisitions.
pub const ACQUIRED_AT_QUEUE: &str =
    "off: this kernel marks the bios that hold pinned pages, and block_bio_queue streams their acquisition";

/// Whether the `block_bio_queue` program streams the bios' acquisitions (then
/// `bio_iov_iter_get_pages` needs no probe while it is attached): where the kernel marks the
/// bios holding pinned pages (`BIO_PAGE_PINNED`, 6.2+), a bio's first queueing sees the vecs
/// `bio_iov_iter_get_pages` filled, in the thread that filled them (tracer-ebpf/src/bio.rs).
/// Before 6.2 only the absence of `BIO_NO_PAGE_REF` marks them, which page cache bios share:
/// every bio of the machine would be read, so there the acquisition keeps its probe.
/// Also where `bio_iov_iter_get_pages` itself cannot be probed (inlined, no BTF record): the
/// queueing stands in for it.
pub fn acquisitions_at_queue(facts: &Facts, plan: &[PlannedProbe]) -> bool {
    let planned = |id: ProbeId| plan.get(id as usize).filter(|p| !p.off);
    facts.offsets.bio_pinned_bit != tracer_common::OFFSET_UNKNOWN
        && planned(ProbeId::BlockBioQueue).is_some_and(|p| !p.candidates.is_empty())
        && planned(ProbeId::BioIovIterGetPages).is_some()
}

fn methods(attach: Attach) -> Vec<Method> {
    match attach {
        Attach::Fentry => vec![Method::Fentry, Method::Kprobe],
        Attach::Fexit => vec![Method::Fexit, Method::Kretprobe],
        Attach::TpBtf => vec![Method::TpBtf],
        Attach::Syscalls => vec![Method::Tracepoint, Method::RawTracepoint],
    }
}

/// A probe role as the output names it.
pub fn role_name(role: ProbeRole) -> &'static str {
    match role {
        ProbeRole::Pin => "pin",
        ProbeRole::Unpin => "unpin",
        ProbeRole::Get => "get",
        ProbeRole::BlockIssue => "block_issue",
        ProbeRole::BlockComplete => "block_complete",
        ProbeRole::Latency => "latency",
        ProbeRole::Put => "put",
        ProbeRole::Exit => "exit",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::probes::preemption::Preemption;

    fn find(plan: &[PlannedProbe], id: ProbeId) -> &PlannedProbe {
        &plan[id as usize]
    }

    fn stock_612() -> Facts {
        let all: HashSet<String> = PROBES.iter().map(|d| d.target.to_string()).collect();
        Facts {
            btf: Ok(()),
            btf_funcs: all.clone(),
            btf_tracepoints: all.clone(),
            kallsyms: all,
            kprobes: Ok(()),
            syscall_events: Ok(()),
            preemption: Preemption::NotInPrograms("voluntary"),
            ..Facts::nothing("6.12.0", "")
        }
    }

    #[test]
    fn prefers_btf_then_kprobe() {
        let plan = plan(&stock_612());
        let p = find(&plan, ProbeId::PinUserPagesFast);
        assert_eq!(
            p.candidates,
            vec![(Method::Fexit, "fexit_pin_user_pages_fast"), (Method::Kretprobe, "kretprobe_pin_user_pages_fast")]
        );
        assert!(p.ruled_out.is_empty());
        let t = find(&plan, ProbeId::BlockRqComplete);
        assert_eq!(t.candidates, vec![(Method::TpBtf, "tp_btf_block_rq_complete")]);
    }

    #[test]
    fn absent_function_is_ruled_out_by_name_with_both_reasons() {
        let mut facts = stock_612();
        facts.btf_funcs.remove("unpin_user_folio");
        facts.kallsyms.remove("unpin_user_folio");
        let plan = plan(&facts);
        let p = find(&plan, ProbeId::UnpinUserFolio);
        assert!(p.candidates.is_empty());
        assert_eq!(p.ruled_out.len(), 2);
        assert!(p.ruled_out[0].1.contains("no BTF FUNC"));
        assert!(p.ruled_out[1].1.contains("kallsyms"));
    }

    #[test]
    fn host_like_kernel_keeps_only_tracepoints_as_kprobe_free() {
        // Our hosts: BTF, no kprobe PMU. fentry stays a candidate (the load may still be refused,
        // which the loader reports); kprobes are ruled out with the reason.
        let mut facts = stock_612();
        facts.kprobes = Err("kernel has no kprobe PMU".into());
        let plan = plan(&facts);
        let p = find(&plan, ProbeId::UnpinUserPage);
        assert_eq!(p.candidates, vec![(Method::Fentry, "fentry_unpin_user_page")]);
        assert_eq!(p.ruled_out, vec![(Method::Kprobe, "kernel has no kprobe PMU".to_string())]);
    }

    #[test]
    fn no_btf_falls_back_to_kprobes() {
        let mut facts = stock_612();
        facts.btf = Err("kernel BTF unreadable".into());
        let plan = plan(&facts);
        let p = find(&plan, ProbeId::UnpinUserPages);
        assert_eq!(p.candidates, vec![(Method::Kprobe, "kprobe_unpin_user_pages")]);
        let t = find(&plan, ProbeId::BlockRqIssue);
        assert!(t.candidates.is_empty());
    }

    #[test]
    fn syscall_latency_prefers_the_syscall_events_where_threads_are_not_preempted_in_programs() {
        let mut facts = stock_612();
        facts.btf = Err("kernel BTF unreadable".into());
        let p = &plan(&facts)[ProbeId::SysEnter as usize];
        assert_eq!(
            p.candidates,
            vec![(Method::Tracepoint, "tp_sys_enter"), (Method::RawTracepoint, "raw_tp_sys_enter")],
            "the perf events first, the raw tracepoint (no BTF needed) next"
        );
        facts.syscall_events = Err("tracefs not mounted".into());
        let p = &plan(&facts)[ProbeId::SysExit as usize];
        assert_eq!(p.candidates, vec![(Method::RawTracepoint, "raw_tp_sys_exit")]);
        assert_eq!(p.ruled_out, vec![(Method::Tracepoint, "tracefs not mounted".to_string())]);
    }

    #[test]
    fn syscall_latency_is_off_unless_asked_for_and_off_is_not_missing() {
        let facts = stock_612();
        for p in plan_for(&facts, Wanted::default()) {
            let syscalls = matches!(p.def.id, ProbeId::SysEnter | ProbeId::SysExit);
            assert_eq!(p.off, syscalls, "{}", p.def.target);
            if syscalls {
                assert!(p.candidates.is_empty());
                let o = ProbeOutcome::untried(&p, "test");
                assert!(o.off && !o.missing() && o.attached.is_none());
            }
        }
        let asked = plan_for(&facts, Wanted { syscall_latency: true });
        assert!(asked.iter().all(|p| !p.off));
        assert!(!asked[ProbeId::SysEnter as usize].candidates.is_empty());
    }

    #[test]
    fn acquisitions_come_from_the_queueing_only_where_the_kernel_marks_pinned_bios() {
        let mut facts = stock_612();
        facts.offsets.bio_pinned_bit = 0;
        let all = plan(&facts);
        assert!(acquisitions_at_queue(&facts, &all));
        facts.offsets.bio_pinned_bit = tracer_common::OFFSET_UNKNOWN;
        assert!(!acquisitions_at_queue(&facts, &all), "6.1 marks only the bios that hold no reference");
        facts.offsets.bio_pinned_bit = 0;
        facts.btf_funcs.remove("bio_iov_iter_get_pages");
        assert!(acquisitions_at_queue(&facts, &plan(&facts)), "the queueing stands in for an unprobeable function");
        facts.btf_tracepoints.remove("block_bio_queue");
        assert!(!acquisitions_at_queue(&facts, &plan(&facts)), "no queue program, no acquisitions from it");
    }

    #[test]
    fn syscall_latency_takes_the_chained_raw_tracepoints_where_threads_are_preempted_in_programs() {
        let mut facts = stock_612();
        facts.preemption = Preemption::Anywhere("lazy");
        let p = &plan(&facts)[ProbeId::SysEnter as usize];
        assert_eq!(p.candidates[0], (Method::RawTracepoint, "raw_tp_sys_enter"));
        assert_eq!(
            p.def.backups.len(),
            tracer_common::MAX_BACKUPS,
            "a full chain: the kernel preempts threads inside them"
        );
        assert!(p.def.filters_first());
    }
}
