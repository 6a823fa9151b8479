//! Pin entry points (`pin_user_pages*`): pages each call returned as pinned.
//!
//! fexit reads the return value with bpf_get_func_ret, so the argument count (which differs
//! between kernels for pin_user_pages and pin_user_pages_remote) does not matter.

use aya_ebpf::{
    macros::{fexit, kretprobe},
    programs::{FExitContext, RetProbeContext},
};
use tracer_common::ProbeId;

use crate::maps::count;

#[inline(always)]
fn try_pin_returned(probe: ProbeId, ret: i64) -> u32 {
    // A negative return is an error: nothing was pinned.
    if ret > 0 {
        count(probe, ret as u64);
    }
    0
}

macro_rules! pin_probe {
    ($fexit:ident, $nested:ident, $kretprobe:ident, $target:literal, $id:ident) => {
        with_twin!(#[fexit(function = $target)] $fexit, $nested, ProbeId::$id, |ctx: FExitContext| {
            try_pin_returned(ProbeId::$id, ctx.ret::<i64>().unwrap_or(0))
        });

        #[kretprobe]
        pub fn $kretprobe(ctx: RetProbeContext) -> u32 {
            try_pin_returned(ProbeId::$id, ctx.ret::<i64>())
        }
    };
}

pin_probe!(fexit_pin_user_pages_fast, nested_pin_user_pages_fast, kretprobe_pin_user_pages_fast, "pin_user_pages_fast", PinUserPagesFast);
pin_probe!(fexit_pin_user_pages, nested_pin_user_pages, kretprobe_pin_user_pages, "pin_user_pages", PinUserPages);
pin_probe!(
    fexit_pin_user_pages_remote,
    nested_pin_user_pages_remote,
    kretprobe_pin_user_pages_remote,
    "pin_user_pages_remote",
    PinUserPagesRemote
);
pin_probe!(
    fexit_pin_user_pages_unlocked,
    nested_pin_user_pages_unlocked,
    kretprobe_pin_user_pages_unlocked,
    "pin_user_pages_unlocked",
    PinUserPagesUnlocked
);
