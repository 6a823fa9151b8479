//! The tracer's own map reads, shielded from the threads it traces.
//!
//! Reading a map from userspace (bpf(BPF_MAP_LOOKUP_ELEM)) raises the CPU's `bpf_prog_active`
//! count for the copy (bpf_disable_instrumentation), and on a kernel that preempts threads in
//! kernel code (full or lazy preemption: Debian's 7.x) the reader can be preempted in there. A
//! thread that then reaches a system call tracepoint on that CPU has the tracer's tracepoint
//! programs skipped: the kernel runs perf tracepoint and kprobe programs only while that count
//! is zero (seen on sid: one `sys_exit` skipped by a dd that ran while the tracer read its
//! counters). While it reads, the reading thread is a real-time thread (SCHED_FIFO, the lowest
//! priority): no ordinary thread preempts it, so none can reach a tracepoint on its CPU
//! meanwhile. Without the privilege (CAP_SYS_NICE) the reads go on as before.

/// While alive, the calling thread runs SCHED_FIFO; dropping it restores the policy it had.
pub struct Shielded {
    previous: Option<(libc::c_int, libc::sched_param)>,
}

impl Shielded {
    pub fn new() -> Shielded {
        // SAFETY: pid 0 is the calling thread; the out-parameter is a valid sched_param.
        let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let policy = unsafe {
            if libc::sched_getparam(0, &mut param) == 0 {
                libc::sched_getscheduler(0)
            } else {
                -1
            }
        };
        if policy == libc::SCHED_FIFO {
            // Already a real-time thread: shielded as it is, nothing to restore.
            return Shielded { previous: None };
        }
        let fifo = libc::sched_param { sched_priority: 1 };
        // SAFETY: pid 0 is the calling thread; `fifo` is a valid sched_param.
        if policy < 0 || unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) } != 0 {
            log::debug!("map reads not shielded: {}", std::io::Error::last_os_error());
            return Shielded { previous: None };
        }
        Shielded { previous: Some((policy, param)) }
    }
}

impl Drop for Shielded {
    fn drop(&mut self) {
        if let Some((policy, param)) = self.previous {
            // SAFETY: restores what sched_getscheduler/sched_getparam returned for this thread.
            unsafe { libc::sched_setscheduler(0, policy, &param) };
        }
    }
}
