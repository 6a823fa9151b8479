//! Where the kernel's recursion count (`bpf_prog.active`) of each chain program lies on each CPU,
//! handed to the programs (map CHAIN_ACTIVE) so that a backup reads whether the kernel skipped
//! an earlier program of its chain from the kernel's own count (tracer_common::chain).
//!
//! The counts are per-CPU allocations of the kernel: a program's count on a CPU lies at its
//! per-CPU offset (`bpf_prog.active`) plus the CPU's per-CPU base (`__per_cpu_offset[cpu]`). An
//! iterator over the kernel's programs (tracer-ebpf/src/active.rs) reports both, once; the
//! address of `__per_cpu_offset` comes from /proc/kallsyms. Where any of it is missing, the
//! programs keep counting themselves running (exact but for the kernel's few instructions around
//! a program, which the reports then count as lost).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read},
    os::fd::AsFd,
};

use aya::{
    maps::{PerCpuArray, PerCpuValues},
    programs::Iter,
    Btf, Ebpf,
};
use tracer_common::{
    chain::{active_address, ActiveRecord, ACTIVE_CPU, ACTIVE_MAX_CPUS, ACTIVE_PROGRAM, MAX_CHAIN},
    names, ProbeId,
};

use super::prog_info;

/// The address of the kernel's `__per_cpu_offset` array from /proc/kallsyms (0 when it cannot
/// be read or the addresses are hidden). Stops at the symbol's line.
pub(super) fn per_cpu_offset_address() -> u64 {
    let Ok(file) = std::fs::File::open("/proc/kallsyms") else { return 0 };
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { return 0 };
        if let Some(addr) = line.strip_suffix(" __per_cpu_offset").and_then(|l| l.split(' ').next()) {
            return u64::from_str_radix(addr, 16).unwrap_or(0);
        }
    }
    0
}

/// What the iterator reported: each program's count's per-CPU offset (by program id) and each
/// CPU's per-CPU base (by CPU).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Learned {
    programs: HashMap<u32, u64>,
    cpu_bases: Vec<u64>,
}

/// The iterator's output: whole [`ActiveRecord`]s.
pub(super) fn parse(bytes: &[u8]) -> Result<Learned, String> {
    const SIZE: usize = size_of::<ActiveRecord>();
    if !bytes.len().is_multiple_of(SIZE) {
        return Err(format!("{} bytes, not a whole number of {SIZE}-byte records", bytes.len()));
    }
    let mut learned = Learned::default();
    for chunk in bytes.chunks_exact(SIZE) {
        let word = |at: usize| u32::from_ne_bytes(chunk[at..at + 4].try_into().expect("4 bytes"));
        let value = u64::from_ne_bytes(chunk[8..16].try_into().expect("8 bytes"));
        match (word(0), word(4)) {
            (ACTIVE_PROGRAM, id) => {
                learned.programs.insert(id, value);
            }
            (ACTIVE_CPU, cpu) if cpu < ACTIVE_MAX_CPUS => {
                let cpu = cpu as usize;
                if learned.cpu_bases.len() <= cpu {
                    learned.cpu_bases.resize(cpu + 1, 0);
                }
                learned.cpu_bases[cpu] = value;
            }
            (kind, index) => return Err(format!("unknown record kind {kind} (index {index})")),
        }
    }
    Ok(learned)
}

impl Learned {
    /// For each of `cpus` CPUs, the addresses of the counts of the programs `ids` (by position in
    /// the chain); None when a CPU's base or a program's offset is unknown.
    pub(super) fn addresses(&self, ids: &[u32], cpus: usize) -> Option<Vec<[u64; MAX_CHAIN]>> {
        (0..cpus)
            .map(|cpu| {
                let base = *self.cpu_bases.get(cpu)?;
                let mut at = [0u64; MAX_CHAIN];
                for (slot, id) in at.iter_mut().zip(ids) {
                    *slot = active_address(base, *self.programs.get(id)?)?;
                }
                Some(at)
            })
            .collect()
    }
}

/// Runs the iterator and writes the addresses of the counts of every chain in `chains` (each
/// probe's program names by position: primary first) into CHAIN_ACTIVE. Returns how many chains
/// read the kernel's counts from now on.
pub(super) fn learn(
    ebpf: &mut Ebpf,
    btf: &Btf,
    chains: &[(ProbeId, Vec<&'static str>)],
    cpus: usize,
) -> Result<usize, String> {
    let learned = run_iterator(ebpf, btf)?;
    let mut values = Vec::new();
    for (probe, programs) in chains {
        let ids: Option<Vec<u32>> =
            programs.iter().map(|name| Some(prog_info(ebpf.program(name)?.fd().ok()?.as_fd()).ok()?.id)).collect();
        let Some(ids) = ids else {
            log::debug!("{probe:?}: a program's id is unknown; its chain counts itself");
            continue;
        };
        match learned.addresses(&ids, cpus) {
            Some(at) => values.push((*probe, at)),
            None => log::debug!("{probe:?}: the iterator did not report every count; its chain counts itself"),
        }
    }
    let map = ebpf.map_mut(names::CHAIN_ACTIVE).ok_or_else(|| format!("map {} missing", names::CHAIN_ACTIVE))?;
    let mut active = PerCpuArray::<_, [u64; MAX_CHAIN]>::try_from(map).map_err(|e| e.to_string())?;
    let mut written = 0;
    for (probe, at) in values {
        let per_cpu = PerCpuValues::try_from(at).map_err(|e| e.to_string())?;
        active.set(probe as u32, per_cpu, 0).map_err(|e| e.to_string())?;
        written += 1;
    }
    Ok(written)
}

/// Loads the iterator, reads what it writes and unloads it.
fn run_iterator(ebpf: &mut Ebpf, btf: &Btf) -> Result<Learned, String> {
    let prog = ebpf
        .program_mut(names::CHAIN_ACTIVE_ITER)
        .ok_or_else(|| format!("program {} missing from the eBPF object", names::CHAIN_ACTIVE_ITER))?;
    let iter: &mut Iter = prog.try_into().map_err(|e| super::describe(&e))?;
    iter.load("bpf_prog", btf).map_err(|e| super::describe(&e))?;
    let read = (|| {
        let link = iter.attach().and_then(|id| iter.take_link(id)).map_err(|e| super::describe(&e))?;
        let mut file = link.into_file().map_err(|e| super::describe(&e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| format!("reading the iterator: {e}"))?;
        Ok::<_, String>(bytes)
    })();
    if let Err(e) = iter.unload() {
        log::debug!("unloading {}: {e}", names::CHAIN_ACTIVE_ITER);
    }
    parse(&read?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, index: u32, value: u64) -> Vec<u8> {
        [kind.to_ne_bytes().as_slice(), &index.to_ne_bytes(), &value.to_ne_bytes()].concat()
    }

    #[test]
    fn each_programs_count_on_each_cpu_is_its_offset_plus_the_cpus_base() {
        let bytes = [
            record(ACTIVE_CPU, 0, 0x1000_0000),
            record(ACTIVE_CPU, 1, 0x2000_0000),
            record(ACTIVE_PROGRAM, 7, 0x40),
            record(ACTIVE_PROGRAM, 9, 0x80),
            record(ACTIVE_PROGRAM, 3, 0xc0),
        ]
        .concat();
        let learned = parse(&bytes).unwrap();
        let at = learned.addresses(&[9, 7], 2).unwrap();
        assert_eq!(at[0][..2], [0x1000_0080, 0x1000_0040]);
        assert_eq!(at[1][..2], [0x2000_0080, 0x2000_0040]);
        assert_eq!(at[1][2..], [0, 0], "positions without a program stay unknown");
        assert_eq!(learned.addresses(&[9, 8], 2), None, "a program the iterator did not see");
        assert_eq!(learned.addresses(&[9], 3), None, "a CPU the iterator did not report");
    }

    #[test]
    fn cut_or_unknown_records_are_refused() {
        let whole = record(ACTIVE_PROGRAM, 1, 2);
        assert!(parse(&whole[..12]).is_err());
        assert!(parse(&record(5, 0, 0)).is_err());
        assert_eq!(parse(&[]).unwrap(), Learned::default());
        let zero_base = [record(ACTIVE_CPU, 0, 0), record(ACTIVE_PROGRAM, 1, 0x40)].concat();
        assert_eq!(parse(&zero_base).unwrap().addresses(&[1], 1), None, "an unread base is unknown");
    }
}
