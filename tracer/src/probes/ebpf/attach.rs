//! Attaching a probe's chain: the primary program by the method the plan chose, and its
//! backups where the kernel can skip the primary (see [`backups_needed`]).

use std::{error::Error as StdError, os::fd::AsFd};

use aya::{
    programs::{BtfTracePoint, FEntry, FExit, KProbe, ProgramError, RawTracePoint, TracePoint},
    Btf, Ebpf,
};
use tracer_common::{ProbeDef, RW_SYSCALLS};

use super::{super::plan::Method, preload, prog_info};

/// Attaches `primary` by `method`, with the probe's backups when the method is a BTF one, so that
/// the kernel runs the primary first for every invocation: the backups act only for invocations
/// the programs before them did not take care of (tracer-ebpf/src/maps.rs). A trampoline
/// (fentry/fexit) runs its programs newest first, a tracepoint oldest first. Without a backup,
/// invocations the kernel skips while the primary runs on that CPU are lost (and counted):
/// worse, not broken. `max_backups` of the probe's backups are attached (see [`backups_needed`]).
/// Returns the backups that attached.
pub(super) fn attach_chain(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    method: Method,
    primary: &str,
    def: &ProbeDef,
    max_backups: usize,
) -> Result<Vec<&'static str>, String> {
    let backups: Vec<&str> = match method {
        Method::Fentry | Method::Fexit | Method::TpBtf | Method::RawTracepoint => {
            def.backups.iter().take(max_backups).copied().collect()
        }
        Method::Kprobe | Method::Kretprobe | Method::Tracepoint => Vec::new(),
    };
    let newest_first = matches!(method, Method::Fentry | Method::Fexit);
    if !newest_first {
        attach(ebpf, btf, method, primary, def.target)?;
    }
    let order: Vec<&str> = if newest_first { backups.iter().rev().copied().collect() } else { backups };
    let mut attached = Vec::new();
    let mut failed: Vec<(&str, String)> = Vec::new();
    for backup in order {
        match attach(ebpf, btf, method, backup, def.target) {
            Ok(()) => attached.push(backup),
            Err(why) => failed.push((backup, why)),
        }
    }
    // One line per probe whose backups did not all attach, and none when the primary did not
    // either: then the probe is missing, which `tracer check` and the probe records report
    // with the reason.
    let warn_backups = |failed: &[(&str, String)]| {
        if let Some((_, why)) = failed.first() {
            let names: Vec<&str> = failed.iter().map(|(t, _)| *t).collect();
            log::warn!(
                "{} of {} backups of {} did not attach ({why}): calls the kernel skips while its other programs run are lost and counted",
                failed.len(),
                def.backups.len().min(max_backups),
                def.target
            );
            log::debug!("backups not attached: {}", names.join(", "));
        }
    };
    if !newest_first {
        warn_backups(&failed);
    }
    if newest_first {
        if let Err(why) = attach(ebpf, btf, method, primary, def.target) {
            // Backups without their primary would each act for every call: take them off.
            for backup in attached {
                let Some(prog) = ebpf.program_mut(backup) else { continue };
                let unloaded = match method {
                    Method::Fentry => <&mut FEntry>::try_from(prog).map(|p| p.unload()),
                    _ => <&mut FExit>::try_from(prog).map(|p| p.unload()),
                };
                if let Err(e) | Ok(Err(e)) = unloaded {
                    log::warn!("{backup}: cannot unload after {primary} failed: {e}");
                }
            }
            return Err(why);
        }
        warn_backups(&failed);
    }
    Ok(attached)
}

/// Backups a chain needs: an invocation is skipped only while another one of the same target
/// is inside the chain's programs on that CPU. Where threads can be preempted in the programs
/// (on a kernel with full, lazy or RT preemption: ProbeDef::preemptible), other threads on the
/// CPU may be inside them: every backup of the catalogue rescues the most. Where they cannot
/// (no or voluntary preemption), only the invocations it interrupted can be: none for a target
/// only threads reach, and at most two for the others (thread, softirq and hardirq context
/// nest; no probed target runs in NMI context). Each attached backup runs for every
/// invocation, so fewer cost less: at most `max` (`tracer run --backups`) are attached, and
/// what the kernel then skips in all of a chain's programs is counted, never hidden.
pub(super) fn backups_needed(def: &ProbeDef, threads_preemptible: bool, max: usize) -> usize {
    let needed = if threads_preemptible && def.preemptible() {
        tracer_common::MAX_BACKUPS
    } else if def.in_interrupts() {
        2
    } else {
        0
    };
    needed.min(max)
}

fn attach(ebpf: &mut Ebpf, btf: Option<&Btf>, method: Method, program: &str, target: &str) -> Result<(), String> {
    let started = std::time::Instant::now();
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the eBPF object (build mismatch)"))?;
    let no_btf = || "kernel BTF unavailable".to_string();
    // BTF programs may have been loaded by preload::preload already.
    if matches!(method, Method::Fentry | Method::Fexit | Method::TpBtf) {
        preload::load(prog, method, target, btf.ok_or_else(no_btf)?).map_err(|e| describe(&e))?;
    }
    let result: Result<(), ProgramError> = match method {
        Method::Fentry => {
            let p: &mut FEntry = prog.try_into().map_err(|e| describe(&e))?;
            p.attach().map(drop)
        }
        Method::Fexit => {
            let p: &mut FExit = prog.try_into().map_err(|e| describe(&e))?;
            p.attach().map(drop)
        }
        Method::TpBtf => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(|e| describe(&e))?;
            p.attach().map(drop)
        }
        Method::Kprobe | Method::Kretprobe => {
            let p: &mut KProbe = prog.try_into().map_err(|e| describe(&e))?;
            p.load().and_then(|()| p.attach(target, 0).map(drop))
        }
        Method::RawTracepoint => {
            // Loaded by preload::preload already, with the rest of its chain: the backups then
            // attach right after the primary (they act from then on).
            let p: &mut RawTracePoint = prog.try_into().map_err(|e| describe(&e))?;
            let loaded = if p.fd().is_ok() { Ok(()) } else { p.load() };
            loaded.and_then(|()| p.attach(target).map(drop))
        }
        Method::Tracepoint => {
            let p: &mut TracePoint = prog.try_into().map_err(|e| describe(&e))?;
            p.load().map_err(|e| describe(&e))?;
            // One program on the event of every read and write system call; all or none.
            let attached = RW_SYSCALLS.iter().try_for_each(|name| {
                let event = format!("{target}_{name}");
                p.attach("syscalls", &event).map(drop).map_err(|e| format!("syscalls:{event}: {}", describe(&e)))
            });
            if let Err(why) = attached {
                if let Err(e) = p.unload() {
                    log::warn!("{program}: cannot unload after {why}: {e}");
                }
                return Err(why);
            }
            Ok(())
        }
    };
    result.map_err(|e| describe(&e))?;
    if log::log_enabled!(log::Level::Debug) {
        if let Some(Ok(fd)) = ebpf.program(program).map(|p| p.fd()) {
            if let Ok(info) = prog_info(fd.as_fd()) {
                log::debug!(
                    "{program}: {} instructions verified ({} in the program); loaded and attached in {:.1?}",
                    info.verified_insns,
                    info.xlated_prog_len / 8,
                    started.elapsed()
                );
            }
        }
    }
    Ok(())
}

/// Adds what a bare errno means for this kind of program.
pub(super) fn explain(method: Method, why: String) -> String {
    let why = why.trim_end_matches("Verifier output:").trim_end().trim_end_matches('.').to_string();
    let refused = why.contains("Operation not permitted") || why.contains("os error 1)");
    if refused && matches!(method, Method::Fentry | Method::Fexit) {
        format!("{why}: this kernel refuses BPF trampolines (ftrace function attach disabled or locked)")
    } else {
        why
    }
}

/// An error with its causes, on one line.
pub(super) fn describe(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        cur = cause.source();
    }
    // Verifier logs span many lines and end with the cause: keep the head of the message and
    // the tail of the log, on one line.
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.split_once("Verifier output:") {
        Some((head, log)) if log.trim().len() > 300 => {
            let log = log.trim();
            let mut cut = log.len() - 300;
            while !log.is_char_boundary(cut) {
                cut += 1;
            }
            format!("{head}Verifier output (end): ...{}", &log[cut..])
        }
        _ => one_line,
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::{ProbeId, MAX_BACKUPS, PROBES};

    use super::backups_needed;

    #[test]
    fn backups_are_what_the_kernel_needs_at_most_the_cap() {
        let pin = &PROBES[ProbeId::PinUserPagesFast as usize];
        let unpin = &PROBES[ProbeId::UnpinUserFolio as usize];
        // Threads preempted inside programs: every backup up to the cap, on every target.
        for max in 0..=MAX_BACKUPS {
            assert_eq!(backups_needed(pin, true, max), max);
            assert_eq!(backups_needed(unpin, true, max), max);
        }
        assert_eq!(backups_needed(pin, true, 9), MAX_BACKUPS);
        // Only interrupts nest: none where only threads come, two at most elsewhere.
        assert_eq!(backups_needed(pin, false, 3), 0);
        assert_eq!(backups_needed(unpin, false, 3), 2);
        assert_eq!(backups_needed(unpin, false, 1), 1);
    }
}
