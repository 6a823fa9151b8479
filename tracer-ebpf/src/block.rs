//! Block requests issued and completed (tp_btf: needs neither kprobes nor ftrace, so it runs on
//! hosts that allow only tracepoints).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::ProbeId;

use crate::maps::count;

#[btf_tracepoint(function = "block_rq_issue")]
pub fn tp_btf_block_rq_issue(_ctx: BtfTracePointContext) -> u32 {
    try_block(ProbeId::BlockRqIssue, 0)
}

/// block_rq_complete(struct request *rq, blk_status_t error, unsigned int nr_bytes)
#[btf_tracepoint(function = "block_rq_complete")]
pub fn tp_btf_block_rq_complete(ctx: BtfTracePointContext) -> u32 {
    try_block(ProbeId::BlockRqComplete, ctx.arg::<u64>(2) & 0xffff_ffff)
}

#[inline(always)]
fn try_block(probe: ProbeId, bytes: u64) -> u32 {
    count(probe, bytes);
    0
}
