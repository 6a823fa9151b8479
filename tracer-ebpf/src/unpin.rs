//! Unpin variants: pages (or folio references) each call was asked to release.
//!
//! unpin_user_page and unpin_folio release one reference; the others take a count argument
//! (npages, or nfolios for unpin_folios, one reference each).

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tracer_common::ProbeId;

use crate::maps::count;

#[inline(always)]
fn try_unpin(probe: ProbeId, pages: u64) -> u32 {
    count(probe, pages);
    0
}

/// A variant that releases exactly one reference.
macro_rules! unpin_one {
    ($fentry:ident, $nested:ident, $kprobe:ident, $target:literal, $id:ident) => {
        with_twin!(#[fentry(function = $target)] $fentry, $nested, ProbeId::$id, |_ctx: FEntryContext| {
            try_unpin(ProbeId::$id, 1)
        });

        #[kprobe]
        pub fn $kprobe(_ctx: ProbeContext) -> u32 {
            try_unpin(ProbeId::$id, 1)
        }
    };
}

/// A variant whose argument `$arg` is the number of references released.
macro_rules! unpin_n {
    ($fentry:ident, $nested:ident, $kprobe:ident, $target:literal, $id:ident, $arg:literal) => {
        with_twin!(#[fentry(function = $target)] $fentry, $nested, ProbeId::$id, |ctx: FEntryContext| {
            try_unpin(ProbeId::$id, ctx.arg::<u64>($arg))
        });

        #[kprobe]
        pub fn $kprobe(ctx: ProbeContext) -> u32 {
            try_unpin(ProbeId::$id, ctx.arg::<u64>($arg).unwrap_or(0))
        }
    };
}

unpin_one!(fentry_unpin_user_page, nested_unpin_user_page, kprobe_unpin_user_page, "unpin_user_page", UnpinUserPage);
unpin_one!(fentry_unpin_folio, nested_unpin_folio, kprobe_unpin_folio, "unpin_folio", UnpinFolio);
unpin_n!(fentry_unpin_user_pages, nested_unpin_user_pages, kprobe_unpin_user_pages, "unpin_user_pages", UnpinUserPages, 1);
unpin_n!(fentry_unpin_user_pages_dirty_lock, nested_unpin_user_pages_dirty_lock,
    kprobe_unpin_user_pages_dirty_lock,
    "unpin_user_pages_dirty_lock",
    UnpinUserPagesDirtyLock,
    1
);
unpin_n!(fentry_unpin_user_page_range_dirty_lock, nested_unpin_user_page_range_dirty_lock,
    kprobe_unpin_user_page_range_dirty_lock,
    "unpin_user_page_range_dirty_lock",
    UnpinUserPageRangeDirtyLock,
    1
);
unpin_n!(fentry_unpin_user_folio, nested_unpin_user_folio, kprobe_unpin_user_folio, "unpin_user_folio", UnpinUserFolio, 1);
unpin_n!(fentry_unpin_folios, nested_unpin_folios, kprobe_unpin_folios, "unpin_folios", UnpinFolios, 1);
