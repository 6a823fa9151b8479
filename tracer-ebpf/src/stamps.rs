//! The stamp table: where a request's issue time and an unpinned bio's queue time wait for the
//! completion that carries them to userspace (tracer_common::block), instead of a record each.
//!
//! A slot (tracer_common::block::stamp_slot of the object's address) has an owner word and a
//! time; the rule is tracer_common::block's [`stamp_keep`] and [`stamp_take`] (checked on the
//! host against every interleaving of their memory operations: tracer-common/tests/stamps.rs).
//! A start takes a free slot with a compare-and-swap (or finds its object owns it already: a
//! request issued again after a requeue, a bio address reused by a new bio) and writes the time;
//! the completion gives the time back and frees the slot when its object owns it. Only the
//! owner's own start and completion touch a slot they own, and a completion comes after its
//! start has returned (the driver gets the request, the block layer the bio, once the tracepoint
//! is done), so the time is written before it is read. A start whose slot another object owns
//! is streamed as before, and a completion that owns no slot carries 0: userspace pairs it with
//! the streamed start. A completion the programs never see leaves its slot owned until its
//! object's address starts again; nothing is lost meanwhile, starts hashing there are only
//! streamed.

use core::intrinsics::{atomic_cxchg, atomic_xchg, AtomicOrdering};

use aya_ebpf::{macros::map, maps::Array};
use tracer_common::block::{stamp_keep, stamp_take, StampSlots, STAMP_SLOTS};

/// One slot: the request or bio that owns it (0: free) and its start.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Stamp {
    owner: u64,
    ts_ns: u64,
}

#[map(name = "STAMPS")]
static STAMPS: Array<Stamp> = Array::with_max_entries(STAMP_SLOTS, 0);

/// The map as the rule sees it: a slot is the pointer to its value, looked up once per call.
struct Table;

impl StampSlots for Table {
    type Slot = *mut Stamp;

    #[inline(always)]
    fn slot(&mut self, i: u32) -> Option<*mut Stamp> {
        STAMPS.get_ptr_mut(i)
    }

    #[inline(always)]
    fn owner(&mut self, s: *mut Stamp) -> u64 {
        // SAFETY: a slot of the map; its owner word changes only by compare-and-swap or exchange.
        unsafe { core::ptr::read_volatile(&raw const (*s).owner) }
    }

    #[inline(always)]
    fn claim(&mut self, s: *mut Stamp, addr: u64) -> bool {
        // SAFETY: as above; BPF v3's compare-and-exchange on the map value.
        unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(&raw mut (*s).owner, 0, addr).1
        }
    }

    #[inline(always)]
    fn write_time(&mut self, s: *mut Stamp, ts_ns: u64) {
        // SAFETY: a slot of the map, owned by the caller's object (module documentation).
        unsafe { core::ptr::write_volatile(&raw mut (*s).ts_ns, ts_ns) };
    }

    #[inline(always)]
    fn read_time(&mut self, s: *mut Stamp) -> u64 {
        // SAFETY: as in write_time.
        unsafe { core::ptr::read_volatile(&raw const (*s).ts_ns) }
    }

    #[inline(always)]
    fn free(&mut self, s: *mut Stamp) {
        // SAFETY: as in claim; the exchange orders the time's load before the slot is free.
        unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(&raw mut (*s).owner, 0) };
    }
}

/// `pointer` (a BTF-typed request or bio) as a number, through the program's own word `scratch`
/// (crate::chain::scratch; crate::typed::as_number); 0 when there is none.
#[inline(always)]
pub fn number(pointer: u64, scratch: *mut u64) -> u64 {
    if scratch.is_null() {
        return 0;
    }
    // SAFETY: the program's own word (crate::chain::scratch), used by nothing else meanwhile.
    unsafe { crate::typed::as_number(pointer, scratch) }
}

/// Keeps `ts_ns` as the start of the request or bio at `addr` (a number: [`number`]); false
/// when its slot is another's (the caller streams the start).
#[inline(always)]
pub fn keep(addr: u64, ts_ns: u64) -> bool {
    stamp_keep(&mut Table, addr, ts_ns)
}

/// The start kept for `addr` (a number: [`number`]), its slot freed; 0 when `addr` owns no slot.
#[inline(always)]
pub fn take(addr: u64) -> u64 {
    stamp_take(&mut Table, addr)
}
