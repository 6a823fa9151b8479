//! Pin and reference entry points (`pin_user_pages*`, `get_user_pages_fast`): the pages each
//! call returned, streamed as page records with the caller's gup_flags and stack.
//!
//! fexit reads the return value with bpf_get_func_ret, so the argument count (which differs
//! between kernels for pin_user_pages and pin_user_pages_remote) does not matter; the gup_flags
//! and pages arguments keep their positions in every supported kernel. A kretprobe sees only
//! the return value: the pages are counted, not listed.

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use tracer_common::{PageEvent, ProbeId};

use crate::{
    maps::{count, func_arg},
    pages::{emit, Call, Source},
};

#[inline(always)]
fn try_returned<C: EbpfContext>(
    ctx: &C,
    event: PageEvent,
    probe: ProbeId,
    ret: i64,
    gup_flags: u32,
    source: Source,
    trampoline: bool,
) -> u32 {
    // A negative return is an error: nothing was pinned. pin_user_pages_fast and
    // get_user_pages_fast return an int: only the low 32 bits of the register are the value.
    let ret = ret as i32 as i64;
    if ret > 0 {
        count(probe, ret as u64);
        emit(ctx, Call { event, probe, source, n: ret as u32, refs: 1, gup_flags, flags: 0, trampoline });
    }
    0
}

/// `$flags` and `$pages`: argument positions of gup_flags and the pages array.
macro_rules! returned_probe {
    ($fexit:ident, $base:ident, $kretprobe:ident, $target:literal, $event:ident, $id:ident, $flags:literal, $pages:literal) => {
        with_backups!(
            #[fexit(function = $target)]
            $fexit,
            $base,
            ProbeId::$id,
            |ctx: FExitContext| {
                try_returned(
                    &ctx,
                    PageEvent::$event,
                    ProbeId::$id,
                    ctx.ret::<i64>().unwrap_or(0),
                    func_arg(&ctx, $flags) as u32,
                    Source::PageArray(func_arg(&ctx, $pages)),
                    true,
                )
            }
        );

        #[kretprobe]
        pub fn $kretprobe(ctx: RetProbeContext) -> u32 {
            try_returned(&ctx, PageEvent::$event, ProbeId::$id, ctx.ret::<i64>(), 0, Source::Unlisted, false)
        }
    };
}

// int pin_user_pages_fast(unsigned long start, int nr_pages, unsigned int gup_flags, struct page **pages)
returned_probe!(
    fexit_pin_user_pages_fast,
    pin_user_pages_fast,
    kretprobe_pin_user_pages_fast,
    "pin_user_pages_fast",
    Pin,
    PinUserPagesFast,
    2,
    3
);
// long pin_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, struct page **pages, ...)
returned_probe!(
    fexit_pin_user_pages,
    pin_user_pages,
    kretprobe_pin_user_pages,
    "pin_user_pages",
    Pin,
    PinUserPages,
    2,
    3
);
// long pin_user_pages_remote(struct mm_struct *mm, unsigned long start, unsigned long nr_pages,
//     unsigned int gup_flags, struct page **pages, ...)
returned_probe!(
    fexit_pin_user_pages_remote,
    pin_user_pages_remote,
    kretprobe_pin_user_pages_remote,
    "pin_user_pages_remote",
    Pin,
    PinUserPagesRemote,
    3,
    4
);
// long pin_user_pages_unlocked(unsigned long start, unsigned long nr_pages, struct page **pages, unsigned int gup_flags)
returned_probe!(
    fexit_pin_user_pages_unlocked,
    pin_user_pages_unlocked,
    kretprobe_pin_user_pages_unlocked,
    "pin_user_pages_unlocked",
    Pin,
    PinUserPagesUnlocked,
    3,
    2
);
// int get_user_pages_fast(unsigned long start, int nr_pages, unsigned int gup_flags, struct page **pages)
returned_probe!(
    fexit_get_user_pages_fast,
    get_user_pages_fast,
    kretprobe_get_user_pages_fast,
    "get_user_pages_fast",
    Get,
    GetUserPagesFast,
    2,
    3
);

/// void folio_add_pin(struct folio *folio): one more pin on a folio the caller has pinned
/// (fs/direct-io.c), not counted in nr_foll_pin_acquired.
#[inline(always)]
fn try_folio_add_pin<C: EbpfContext>(ctx: &C, folio: u64, trampoline: bool) -> u32 {
    count(ProbeId::FolioAddPin, 1);
    let call = Call {
        event: PageEvent::Pin,
        probe: ProbeId::FolioAddPin,
        source: Source::Folio(folio),
        n: 1,
        refs: 1,
        gup_flags: 0,
        flags: 0,
        trampoline,
    };
    emit(ctx, call);
    0
}

with_backups!(
    #[fentry(function = "folio_add_pin")]
    fentry_folio_add_pin,
    folio_add_pin,
    ProbeId::FolioAddPin,
    |ctx: FEntryContext| try_folio_add_pin(&ctx, func_arg(&ctx, 0), true)
);

#[kprobe]
pub fn kprobe_folio_add_pin(ctx: ProbeContext) -> u32 {
    try_folio_add_pin(&ctx, ctx.arg::<u64>(0).unwrap_or(0), false)
}
