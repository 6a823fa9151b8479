//! The iterator the loader runs once over the kernel's BPF programs, to learn where each chain
//! program's recursion count (`bpf_prog.active`, per CPU) lies: the chains' backups read those
//! counts to tell whether the kernel skipped an earlier program of the chain
//! (tracer_common::chain, crate::chain). It writes one record per program (its id and its
//! count's per-CPU offset) and, first, one per possible CPU (the CPU's per-CPU base,
//! `__per_cpu_offset[cpu]`, whose address the loader finds in /proc/kallsyms).

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_seq_write};
use tracer_common::chain::{ActiveRecord, ACTIVE_CPU, ACTIVE_MAX_CPUS, ACTIVE_PROGRAM};

use crate::typed;

/// Where `__per_cpu_offset` lies (patched by the loader; 0: not known, no CPU records).
#[unsafe(no_mangle)]
static PER_CPU_OFFSET_AT: u64 = 0;

/// Possible CPUs (patched by the loader).
#[unsafe(no_mangle)]
static POSSIBLE_CPUS: u64 = 0;

/// `struct bpf_iter_meta`'s members (UAPI): seq, session_id, seq_num.
const META_SEQ: u32 = 0;
const META_SEQ_NUM: u32 = 16;

/// The iterator (section `iter/bpf_prog`: the kernel runs it for each BPF program, and once
/// more with none at the end). Its context is `struct bpf_iter__bpf_prog { meta, prog }`.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/bpf_prog")]
pub fn chain_active_counts(ctx: *mut c_void) -> i32 {
    let _ = try_chain_active_counts(ctx as *const u64);
    0
}

fn try_chain_active_counts(ctx: *const u64) -> Option<()> {
    // SAFETY: the iterator's context, two BTF-typed pointers (prog NULL at the end).
    let (meta, prog) = unsafe { (core::ptr::read_volatile(ctx), core::ptr::read_volatile(ctx.add(1))) };
    let seq: u64 = typed::load(meta, META_SEQ)?;
    let seq_num: u64 = typed::load(meta, META_SEQ_NUM)?;
    if seq_num == 0 {
        cpus(seq);
    }
    if prog == 0 {
        return None;
    }
    let aux: u64 = typed::load(prog, member!(prog_aux))?;
    let id: u32 = typed::load(aux, member!(prog_aux_id))?;
    let active: u64 = typed::load(prog, member!(prog_active))?;
    write(seq, &ActiveRecord { kind: ACTIVE_PROGRAM, index: id, value: active });
    Some(())
}

/// One record per possible CPU: its per-CPU base.
fn cpus(seq: u64) {
    // SAFETY: read-only globals patched by the loader; volatile keeps the compiler from folding them.
    let (at, possible) =
        unsafe { (core::ptr::read_volatile(&PER_CPU_OFFSET_AT), core::ptr::read_volatile(&POSSIBLE_CPUS)) };
    if at == 0 {
        return;
    }
    for cpu in 0..ACTIVE_MAX_CPUS {
        if u64::from(cpu) >= possible {
            break;
        }
        // SAFETY: the read helper, on an address that is a number (a kernel array's element).
        let base = unsafe { bpf_probe_read_kernel((at + 8 * u64::from(cpu)) as *const u64) }.unwrap_or(0);
        write(seq, &ActiveRecord { kind: ACTIVE_CPU, index: cpu, value: base });
    }
}

fn write(seq: u64, record: &ActiveRecord) {
    // SAFETY: the iterator's seq_file (BTF-typed) and a record on the stack.
    unsafe {
        bpf_seq_write(seq as *mut _, record as *const ActiveRecord as *const c_void, size_of::<ActiveRecord>() as u32);
    }
}
