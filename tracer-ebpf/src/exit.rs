//! Process exits: the last thread of a thread group leaving (sched_process_exit with the
//! group's live-thread count at 0), streamed as [`ExitRecord`]s so that the ledger can tell
//! pins that outlive their process. tp_btf: it runs on hosts that allow only tracepoints.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{ExitRecord, LostReason, ProbeId, RecordType};

use crate::maps::{count, lost, read_at, submit_flags, submitted, EVENTS};

// sched_process_exit(struct task_struct *p[, bool group_dead]): runs in the exiting task, after
// do_exit decremented signal->live.
with_backups!(
    #[btf_tracepoint(function = "sched_process_exit")]
    tp_btf_sched_process_exit,
    sched_process_exit,
    ProbeId::ProcessExit,
    |_ctx: BtfTracePointContext| try_exit()
);

#[inline(always)]
fn try_exit() -> u32 {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let signal: u64 = read_at(task, member!(task_signal)).unwrap_or(0);
    // Threads of the group still alive; unknown (the read failed) counts as alive.
    let live: i32 = read_at(signal, member!(signal_live)).unwrap_or(1);
    if live != 0 {
        return 0;
    }
    count(ProbeId::ProcessExit, 0);
    match EVENTS.reserve::<ExitRecord>(0) {
        Some(mut entry) => {
            entry.write(ExitRecord {
                record: RecordType::Exit as u32,
                tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
                // SAFETY: helper without preconditions.
                ts_ns: unsafe { bpf_ktime_get_ns() },
            });
            entry.submit(submit_flags());
            submitted();
        }
        None => lost(LostReason::RingFull),
    }
    0
}
