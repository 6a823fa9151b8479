//! The owner of a record: the current task's pid and tgid, its cgroup (the default hierarchy's)
//! and its command name.
//!
//! Read by BTF-typed loads from the current task (one helper call, the task's pointer) where the
//! loader found the members in the kernel's BTF, instead of three helper calls
//! (`bpf_get_current_pid_tgid`, `bpf_get_current_cgroup_id`, `bpf_get_current_comm`), each a
//! real call into the kernel that costs more than the handful of loads that replace it (page and
//! bio records take an owner each, several per I/O). The loads give what the helpers give:
//! `tgid << 32 | pid`; `task->cgroups->dfl_cgrp->kn->id` (cgroup_id() of task_dfl_cgroup());
//! the comm up to its first NUL, NUL-padded (strscpy_pad; tracer_common::comm_below_nul, tested
//! on the host). The verifier checks each load
//! against the kernel's BTF and makes it fault-tolerant (a NULL pointer on the way reads 0).

use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, generated};
use tracer_common::{comm_below_nul, Owner, COMM_LEN, OFFSET_UNKNOWN};

/// The offsets the loads need, each read alone so that the verifier knows it as a constant (a
/// BTF-typed load needs a fixed offset); None when one is unknown.
#[inline(always)]
fn task_offsets() -> Option<[u32; 7]> {
    let all = [
        member!(task_pid),
        member!(task_tgid),
        member!(task_comm),
        member!(task_cgroups),
        member!(css_set_dfl_cgrp),
        member!(cgroup_kn),
        member!(kernfs_node_id),
    ];
    (!all.contains(&OFFSET_UNKNOWN)).then_some(all)
}

/// The current task as a record's owner.
#[inline(always)]
pub fn current() -> Owner {
    let Some([pid, tgid, comm, cgroups, dfl_cgrp, kn, id]) = task_offsets() else {
        return by_helpers();
    };
    // SAFETY: helper for tracing programs: the current task as a BTF-typed pointer. Each load
    // below is at a constant offset the loader took from this kernel's BTF for that member,
    // from a pointer of the member's struct; the verifier checks it and makes it fault-tolerant.
    unsafe {
        let task = generated::bpf_get_current_task_btf() as *const u8;
        let words = [
            core::ptr::read_volatile(task.add(comm as usize) as *const u64),
            core::ptr::read_volatile(task.add(comm as usize + 8) as *const u64),
        ];
        let [first, second] = comm_below_nul(words);
        let set = core::ptr::read_volatile(task.add(cgroups as usize) as *const *const u8);
        let cgroup = core::ptr::read_volatile(set.add(dfl_cgrp as usize) as *const *const u8);
        let node = core::ptr::read_volatile(cgroup.add(kn as usize) as *const *const u8);
        let mut name = [0u8; COMM_LEN];
        name[..8].copy_from_slice(&first.to_ne_bytes());
        name[8..].copy_from_slice(&second.to_ne_bytes());
        Owner {
            tgid: core::ptr::read_volatile(task.add(tgid as usize) as *const u32),
            pid: core::ptr::read_volatile(task.add(pid as usize) as *const u32),
            cgroup: core::ptr::read_volatile(node.add(id as usize) as *const u64),
            comm: name,
        }
    }
}

/// The owner from the helpers, where the loads' offsets are not known.
#[inline(always)]
fn by_helpers() -> Owner {
    let pid_tgid = bpf_get_current_pid_tgid();
    Owner {
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        // SAFETY: helper without preconditions.
        cgroup: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    }
}
