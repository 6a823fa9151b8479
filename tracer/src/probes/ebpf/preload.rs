//! Verifying the programs on several threads at once, before they are attached one by one.
//!
//! The kernel verifies a program in the thread that loads it, and the page-record programs are
//! long (loops over up to 512 pages, four copies per probe: the backups): verification is most of
//! the start-up time (minutes under TCG). Loading them from one thread per CPU divides that
//! time; attaching stays sequential (docs/probes.md).

use std::{collections::HashMap, sync::Mutex, thread};

use aya::{
    programs::{Program, ProgramError},
    Btf, Ebpf,
};

use super::super::plan::{Method, PlannedProbe};

/// Loads (verifies) the BTF programs of every probe's first candidate, primary and the backups
/// the attach step will attach (`backups(probe)`), on up to one thread per CPU. Failures are
/// left for the attach step, which loads what is not loaded yet and reports why it failed.
pub fn preload(ebpf: &mut Ebpf, btf: Option<&Btf>, plan: &[PlannedProbe], backups: impl Fn(&PlannedProbe) -> usize) {
    let Some(btf) = btf else { return };
    let mut wanted: HashMap<&str, (Method, &str)> = HashMap::new();
    for p in plan {
        let Some(&(method, program)) = p.candidates.first() else { continue };
        if matches!(method, Method::Fentry | Method::Fexit | Method::TpBtf | Method::RawTracepoint) {
            for name in std::iter::once(program).chain(p.def.backups.iter().take(backups(p)).copied()) {
                wanted.insert(name, (method, p.def.target));
            }
        }
    }
    let threads = thread::available_parallelism().map_or(1, |n| n.get()).min(wanted.len());
    if threads < 2 {
        return;
    }
    let jobs: Vec<(&mut Program, Method, &str)> = ebpf
        .programs_mut()
        .filter_map(|(name, prog)| wanted.get(name).map(|&(method, target)| (prog, method, target)))
        .collect();
    let queue = Mutex::new(jobs);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let job = queue.lock().map(|mut q| q.pop()).ok().flatten();
                let Some((prog, method, target)) = job else { break };
                if let Err(e) = load(prog, method, target, btf) {
                    log::debug!("preloading a program for {target}: {e} (left to the attach step)");
                }
            });
        }
    });
}

/// Loads `prog` for `target` unless it is loaded already.
pub fn load(prog: &mut Program, method: Method, target: &str, btf: &Btf) -> Result<(), ProgramError> {
    if prog.fd().is_ok() {
        return Ok(());
    }
    match (method, prog) {
        (Method::Fentry, Program::FEntry(p)) => p.load(target, btf),
        (Method::Fexit, Program::FExit(p)) => p.load(target, btf),
        (Method::TpBtf, Program::BtfTracePoint(p)) => p.load(target, btf),
        (Method::RawTracepoint, Program::RawTracePoint(p)) => p.load(),
        _ => Ok(()),
    }
}
