//! Fault-tolerant loads from kernel addresses held as numbers (a word of the task's stack, a
//! field of a `struct page` from a call's page array), without a call of the read helper
//! where the kernel allows it: the address goes through the `bpf_rdonly_cast` kfunc (6.2+),
//! which the verifier inlines as a move and after which it takes the number as an untrusted
//! BTF-typed pointer, from which a load is compiled fault-tolerant (a bad address reads 0).
//! One load instead of a helper call, and of the kernel's byte-by-word copy loop behind it.
//!
//! The object calls a placeholder helper number ([`tracer_common::kload`]) that the loader
//! turns into the kfunc call when the running kernel has it, and sets [`KLOAD_TYPE`] to the
//! type the cast gives; elsewhere `KLOAD_TYPE` stays 0, the verifier never walks the
//! placeholder, and the read helper does the load.

use core::ffi::c_void;

use aya_ebpf::helpers::generated;
use tracer_common::kload::{CAST_WORDS, PLACEHOLDER};

/// The BTF id of the cast's type (`struct pt_regs`, whose first members are u64-sized
/// numbers: tracer_common::kload::CAST_TYPE) when the loader turned the placeholders into
/// kfunc calls; 0 when it did not (tracer_common::names::KLOAD_TYPE). A known value to the
/// verifier: it keeps one way only, and the kfunc's type argument must be a constant.
#[unsafe(no_mangle)]
static KLOAD_TYPE: u64 = 0;

#[inline(always)]
fn cast_type() -> u64 {
    // SAFETY: read-only global patched by the loader; volatile keeps the compiler from folding it.
    unsafe { core::ptr::read_volatile(&KLOAD_TYPE) }
}

/// Whether [`word`] is a direct load on this kernel.
#[inline(always)]
pub fn direct() -> bool {
    cast_type() != 0
}

/// `p` (a number, or any pointer: the kfunc ignores its argument's type) as a pointer the
/// verifier lets the program load the first [`CAST_WORDS`] words of, at constant offsets, each
/// load fault-tolerant. Only where [`direct`] holds (the placeholder is patched only then).
///
/// # Safety
/// [`direct`] is true; loads through the result stay within its first `CAST_WORDS` words.
#[inline(always)]
pub unsafe fn cast(p: u64) -> *const [u64; CAST_WORDS] {
    // SAFETY: the placeholder is a call of `bpf_rdonly_cast(p, KLOAD_TYPE)` once the loader
    // patched it, which it does whenever KLOAD_TYPE is not 0 (the caller's promise); the
    // verifier inlines it as a move and types the result as an untrusted `struct pt_regs *`.
    unsafe {
        let cast: unsafe extern "C" fn(u64, u64) -> *const [u64; CAST_WORDS] =
            core::mem::transmute(PLACEHOLDER as usize);
        cast(p, cast_type())
    }
}

/// The u64 at kernel address `addr`; 0 when it cannot be read.
#[inline(always)]
pub fn word(addr: u64) -> u64 {
    if direct() {
        // SAFETY: direct loads are on; the load reads the first word (see cast).
        unsafe { core::ptr::read_volatile(&raw const (*cast(addr))[0]) }
    } else {
        let mut value = 0u64;
        // SAFETY: the helper writes 8 bytes into `value` and tolerates any source address (a
        // failed read leaves 0).
        unsafe {
            generated::bpf_probe_read_kernel(core::ptr::addr_of_mut!(value) as *mut c_void, 8, addr as *const c_void)
        };
        value
    }
}

/// Copies the `N` words at kernel address `src` to `dst` with direct loads (N at most
/// [`CAST_WORDS`]; a loop of constant bounds the compiler writes out, so that every load has a
/// constant offset); whether the first word read is not 0 (a failed load reads 0, and each
/// caller's first word is a pointer that is never 0: a page, a bio vec's page).
///
/// # Safety
/// [`direct`] is true; `dst` has room for `N` words.
#[inline(always)]
pub unsafe fn copy_words<const N: usize>(dst: *mut u64, src: u64) -> bool {
    const { assert!(N > 0 && N <= CAST_WORDS) };
    // SAFETY: the caller's promises; every index is below N <= CAST_WORDS.
    unsafe {
        let from = cast(src);
        for i in 0..N {
            core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(&raw const (*from)[i]));
        }
        core::ptr::read_volatile(dst) != 0
    }
}
