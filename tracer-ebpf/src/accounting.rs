//! The kernel's own FOLL_PIN accounting: every pin acquired or released is counted by
//! `mod_node_page_state(pgdat, NR_FOLL_PIN_{ACQUIRED,RELEASED}, refs)` (through
//! node_stat_mod_folio in mm/gup.c). Observing it gives exactly what /proc/vmstat's
//! nr_foll_pin_acquired / nr_foll_pin_released add up, attributed to the current process.
//!
//! The item numbers differ between kernels; userspace reads them from BTF and sets the globals.

use aya_ebpf::{
    EbpfContext,
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tracer_common::{PinTotal, ProbeId, ITEM_UNKNOWN};

use crate::maps::{count, count_process, count_total};

#[unsafe(no_mangle)]
static NR_FOLL_PIN_ACQUIRED: u32 = ITEM_UNKNOWN;
#[unsafe(no_mangle)]
static NR_FOLL_PIN_RELEASED: u32 = ITEM_UNKNOWN;

// Five twins: mod_node_page_state is called for every page state change, in every context, so
// often that with preemptible programs (7.x) threads preempted inside its programs hold 4 of
// them on one CPU at times (measured on sid under TCG).
with_twin!(
    long: #[fentry(function = "mod_node_page_state")]
    fentry_mod_node_page_state,
    mod_node_page_state,
    ProbeId::PinAccounting,
    |ctx: FEntryContext| try_accounting(&ctx, ctx.arg::<u64>(1) as u32, ctx.arg::<i64>(2))
);

#[kprobe]
pub fn kprobe_mod_node_page_state(ctx: ProbeContext) -> u32 {
    try_accounting(&ctx, ctx.arg::<u64>(1).unwrap_or(u64::MAX) as u32, ctx.arg::<i64>(2).unwrap_or(0))
}

#[inline(always)]
fn try_accounting<C: EbpfContext>(ctx: &C, item: u32, delta: i64) -> u32 {
    // SAFETY: read-only globals patched by the loader; volatile so the compiler keeps the read.
    let acquired = unsafe { core::ptr::read_volatile(&NR_FOLL_PIN_ACQUIRED) };
    let released = unsafe { core::ptr::read_volatile(&NR_FOLL_PIN_RELEASED) };
    if delta <= 0 {
        return 0;
    }
    let pages = delta as u64;
    if item == acquired {
        count(ProbeId::PinAccounting, pages);
        count_total(PinTotal::Acquired, pages);
        count_process(ctx, pages, 0);
    } else if item == released {
        count(ProbeId::PinAccounting, pages);
        count_total(PinTotal::Released, pages);
        count_process(ctx, 0, pages);
    }
    0
}
