//! Unpin variants: the pins each call releases, streamed as page records (with make_dirty and
//! the caller's stack).

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
    EbpfContext,
};
use tracer_common::{PageEvent, ProbeId, PAGES_FLAG_DIRTY};

use crate::{
    maps::{count, func_arg},
    pages::{emit, Call, Source},
};

/// How a variant names what it releases, from its arguments (a0, a1, a2).
#[derive(Clone, Copy)]
enum Shape {
    /// (struct page *page)
    OnePage,
    /// (struct page **pages, unsigned long npages)
    Pages,
    /// (struct page **pages, unsigned long npages, bool make_dirty)
    PagesDirty,
    /// (struct page *page, unsigned long npages, bool make_dirty)
    Range,
    /// (struct folio *folio)
    OneFolio,
    /// (struct folio *folio, unsigned long npages): npages references of one folio.
    FolioRefs,
    /// (struct folio **folios, unsigned long nfolios)
    Folios,
}

/// What a call of a variant releases: where its entries are, how many, and references per
/// entry; whether it dirties them.
#[inline(always)]
fn released(shape: Shape, args: [u64; 3]) -> (Source, u64, u64, bool) {
    let [a0, a1, a2] = args;
    // Only the variants that take make_dirty have a third argument (a kprobe would read a
    // stale register for the others).
    let dirty = matches!(shape, Shape::PagesDirty | Shape::Range) && a2 & 0xff != 0;
    let (source, n, refs) = match shape {
        Shape::OnePage => (Source::Range(a0), 1, 1),
        Shape::Pages | Shape::PagesDirty => (Source::PageArray(a0), a1, 1),
        Shape::Range => (Source::Range(a0), a1, 1),
        Shape::OneFolio => (Source::Folio(a0), 1, 1),
        Shape::FolioRefs => (Source::Folio(a0), 1, a1),
        Shape::Folios => (Source::FolioArray(a0), a1, 1),
    };
    (source, n, refs, dirty)
}

/// Counts the pages a call releases.
#[inline(always)]
fn count_call(probe: ProbeId, shape: Shape, args: [u64; 3]) {
    let (_, n, refs, _) = released(shape, args);
    count(probe, n * refs);
}

/// Whether the call's unpins are listed by the release record of the bio they belong to
/// (crate::bio): `__bio_release_pages` calls `unpin_user_folio` for each folio of a bio it
/// names. Such calls are only counted. `fentry`: run by an fentry program (the caller is read
/// from the trampoline's frame).
#[inline(always)]
fn listed_by_release<C: EbpfContext>(ctx: &C, shape: Shape, fentry: bool) -> bool {
    if !matches!(shape, Shape::FolioRefs) {
        return false;
    }
    let caller = if fentry { crate::maps::fentry_caller(ctx) } else { crate::maps::kprobe_caller(ctx) };
    caller.is_some_and(crate::bio::listed_by_release)
}

#[inline(always)]
fn try_unpin<C: EbpfContext>(ctx: &C, probe: ProbeId, shape: Shape, args: [u64; 3], fentry: bool) -> u32 {
    let (source, n, refs, dirty) = released(shape, args);
    count(probe, n * refs);
    // (fentry programs count those calls before the chain: crate::chain::run_or_count.)
    if !fentry && listed_by_release(ctx, shape, false) {
        return 0;
    }
    let call = Call {
        event: PageEvent::Unpin,
        probe,
        source,
        n: n as u32,
        refs: refs as u32,
        gup_flags: 0,
        flags: if dirty { PAGES_FLAG_DIRTY } else { 0 },
        trampoline: fentry,
    };
    emit(ctx, call);
    0
}

macro_rules! unpin_probe {
    ($fentry:ident, $base:ident, $kprobe:ident, $target:literal, $id:ident, $shape:ident) => {
        with_backups!(
            #[fentry(function = $target)]
            $fentry,
            $base,
            ProbeId::$id,
            count_only |ctx: FEntryContext| listed_by_release(&ctx, Shape::$shape, true),
            count_call(ProbeId::$id, Shape::$shape, [func_arg(&ctx, 0), func_arg(&ctx, 1), 0]),
            {
                let args = [func_arg(&ctx, 0), func_arg(&ctx, 1), func_arg(&ctx, 2)];
                try_unpin(&ctx, ProbeId::$id, Shape::$shape, args, true)
            }
        );

        #[kprobe]
        pub fn $kprobe(ctx: ProbeContext) -> u32 {
            let arg = |i| ctx.arg::<u64>(i).unwrap_or(0);
            try_unpin(&ctx, ProbeId::$id, Shape::$shape, [arg(0), arg(1), arg(2)], false)
        }
    };
}

unpin_probe!(
    fentry_unpin_user_page,
    unpin_user_page,
    kprobe_unpin_user_page,
    "unpin_user_page",
    UnpinUserPage,
    OnePage
);
unpin_probe!(fentry_unpin_folio, unpin_folio, kprobe_unpin_folio, "unpin_folio", UnpinFolio, OneFolio);
unpin_probe!(
    fentry_unpin_user_pages,
    unpin_user_pages,
    kprobe_unpin_user_pages,
    "unpin_user_pages",
    UnpinUserPages,
    Pages
);
unpin_probe!(
    fentry_unpin_user_pages_dirty_lock,
    unpin_user_pages_dirty_lock,
    kprobe_unpin_user_pages_dirty_lock,
    "unpin_user_pages_dirty_lock",
    UnpinUserPagesDirtyLock,
    PagesDirty
);
unpin_probe!(
    fentry_unpin_user_page_range_dirty_lock,
    unpin_user_page_range_dirty_lock,
    kprobe_unpin_user_page_range_dirty_lock,
    "unpin_user_page_range_dirty_lock",
    UnpinUserPageRangeDirtyLock,
    Range
);
unpin_probe!(
    fentry_unpin_user_folio,
    unpin_user_folio,
    kprobe_unpin_user_folio,
    "unpin_user_folio",
    UnpinUserFolio,
    FolioRefs
);
unpin_probe!(fentry_unpin_folios, unpin_folios, kprobe_unpin_folios, "unpin_folios", UnpinFolios, Folios);
