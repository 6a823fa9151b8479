//! BTF-typed loads: members of kernel structs read straight from a pointer the verifier knows
//! the type of (a tp_btf, fentry or fexit argument, the current task, or a pointer member loaded
//! from one of those), instead of a call of the read helper for each. The verifier checks each
//! load against the kernel's BTF and makes it fault-tolerant (a NULL or bad pointer reads 0),
//! so it is as safe as the helper and costs a load.
//!
//! The offset must be a constant to the verifier: it is read alone from its field of the
//! loader-patched `OFFSETS` global ([`member!`]), never from a copy of the whole struct. A
//! kprobe's arguments are plain numbers, on which such a load does not verify: kprobe programs
//! keep the read helper.

/// The offset of an `Offsets` field, read alone from the global (a constant to the verifier).
macro_rules! member {
    ($field:ident) => {{
        // SAFETY: a field of the read-only global patched by the loader; volatile keeps the
        // compiler from folding it.
        unsafe { core::ptr::read_volatile(&raw const (*$crate::maps::offsets_ptr()).$field) }
    }};
}

/// The `T` at `base + off`, `base` a BTF-typed pointer and `off` a member offset from
/// [`member!`]; None when the offset is unknown on this kernel (a branch the verifier, knowing
/// the constant, leaves out).
#[inline(always)]
pub fn load<T: Copy>(base: u64, off: u32) -> Option<T> {
    if off == tracer_common::OFFSET_UNKNOWN {
        return None;
    }
    // SAFETY: a load the verifier checks against the member's BTF type and makes
    // fault-tolerant (see the module's comment).
    Some(unsafe { core::ptr::read_volatile((base as *const u8).add(off as usize) as *const T) })
}

/// `pointer` (a BTF-typed or a context pointer) as a number, for the arithmetic the verifier
/// allows on neither: stored into `slot`, memory of the program's own (a map value, or the
/// record being built), where a privileged program (CAP_PERFMON, which tracing needs anyway) may
/// keep a pointer, and loaded back, which the verifier takes as a number. A store and a load
/// instead of a call of the read helper.
///
/// # Safety
/// `slot` is writable, 8-aligned, and nothing else uses it meanwhile.
#[inline(always)]
pub unsafe fn as_number(pointer: u64, slot: *mut u64) -> u64 {
    // SAFETY: as the caller promises.
    unsafe {
        core::ptr::write_volatile(slot, pointer);
        core::ptr::read_volatile(slot)
    }
}
