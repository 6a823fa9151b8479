//! Block layer and Direct I/O timing records: when a bio is queued, a request issued, a
//! request or a bio completed, an iomap Direct I/O call begun or completed. The kernel side
//! stamps and streams them without matching: userspace pairs starts with completions
//! (tracer/src/engine/block.rs) into the D2C, Q2C and DIO figures, and ends the bios of the pin
//! ledger with the completions that list them.
//!
//! A request's issue and an unpinned bio's queueing are not streamed when their slot of the
//! kernel side's stamp table ([`stamp_slot`]) is free: the start time waits there, and the
//! completion that finds it carries it ([`BlockHeader::start_ns`], [`RqBio::queued_ns`]):
//! one record an I/O instead of two or three. A start whose slot another object holds is
//! streamed as before, so nothing depends on the table's size but the cost.

use core::mem::size_of;

/// What a [`BlockHeader`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockEvent {
    /// block_bio_queue: `addr` is the bio (submit_bio).
    BioQueue = 0,
    /// block_rq_issue: `addr` is the request, handed to the driver.
    RqIssue = 1,
    /// block_rq_complete: `addr` is the request; `bytes` the bytes this completion covers,
    /// `status` its blk_status_t; a [`RqCompleteWire`] lists the bios it completes.
    RqComplete = 2,
    /// block_bio_complete: `addr` is a bio of a bio-based device (device mapper, ...), whose
    /// bios never become requests; `bytes` its size, `status` its bi_status.
    BioComplete = 3,
    /// iomap_dio_rw_begin: `addr` is the kiocb; `dev` the file system's device, `op` 0 (read)
    /// or 1 (write), `bytes` the bytes asked for.
    DioBegin = 4,
    /// iomap_dio_complete: `addr` is the kiocb; `status` the call's return value when it is an
    /// error, `bytes` the bytes done otherwise.
    DioComplete = 5,
}

/// Bios of one request listed at its completion (a request merged from more bios lists these
/// only; the others get no Q2C and no end).
pub const RQ_MAX_BIOS: usize = 16;

/// Every block timing record begins with this; alone, it is the whole record of every event
/// but [`BlockEvent::RqComplete`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockHeader {
    /// [`crate::RecordType::Block`].
    pub record: u32,
    /// A [`BlockEvent`].
    pub event: u32,
    /// bpf_ktime_get_ns.
    pub ts_ns: u64,
    /// The bio or request address.
    pub addr: u64,
    /// Kernel dev_t (major << 20 | minor) at completions; 0 when unknown or at starts.
    pub dev: u32,
    /// REQ_OP_* (low 8 bits of cmd_flags / bi_opf) at completions; u32::MAX when unknown.
    pub op: u32,
    pub bytes: u32,
    pub status: i32,
    /// Bios listed after the header ([`RqCompleteWire`]).
    pub nr_bios: u32,
    pub _pad: u32,
    /// At a completion, the start the stamp table kept for `addr` (the request's issue, or a
    /// bio-based device's bio's queueing); 0 when its start was streamed, or not seen.
    pub start_ns: u64,
}

/// A bio a request's completion lists.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RqBio {
    /// The bio's address.
    pub bio: u64,
    /// Its queueing as the stamp table kept it; 0 when streamed, or not seen.
    pub queued_ns: u64,
    /// Its size (bytes still to complete when the request completed).
    pub size: u32,
    pub _pad: u32,
}

/// A request's completion and the first bios it completes, in request order, with room for
/// `N`: the kernel side sends [`RqCompleteOne`] for a request of one bio (most of them) and
/// [`RqCompleteWire`] otherwise; userspace reads the header's `nr_bios` entries of either.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RqComplete<const N: usize> {
    pub head: BlockHeader,
    /// The first `head.nr_bios` are valid.
    pub bios: [RqBio; N],
}

/// A completion with room for [`RQ_MAX_BIOS`] bios.
pub type RqCompleteWire = RqComplete<RQ_MAX_BIOS>;
/// A completion of a request of one bio.
pub type RqCompleteOne = RqComplete<1>;

const _: () = assert!(size_of::<BlockHeader>() == 56);
const _: () = assert!(size_of::<RqBio>() == 24);
const _: () = assert!(size_of::<RqCompleteWire>() == 56 + 24 * RQ_MAX_BIOS);
const _: () = assert!(size_of::<RqCompleteOne>() == 56 + 24);

/// Slots of the kernel side's stamp table (requests issued and unpinned bios queued whose
/// completion has not come yet): more than the requests and bios a machine has in flight at
/// once, so that few starts find their slot taken and are streamed.
pub const STAMP_SLOTS: u32 = 1 << 14;
const _: () = assert!(STAMP_SLOTS.is_power_of_two());

/// The stamp table's slot of a request or bio at `addr`: Fibonacci hashing of the address's
/// cache line (the kernel allocates both from arrays and slabs of fixed-size objects, so the
/// low bits repeat and the line number counts up by the object's size).
#[inline(always)]
pub const fn stamp_slot(addr: u64) -> u32 {
    ((addr >> 6).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - STAMP_SLOTS.trailing_zeros())) as u32
}

/// The stamp table's slots as [`stamp_keep`] and [`stamp_take`] see them: the kernel side's
/// array map (tracer-ebpf/src/stamps.rs), a model in the tests. A slot is looked up once per
/// call ([`StampSlots::slot`]); each other method is one memory operation on it.
pub trait StampSlots {
    /// A slot found in the table.
    type Slot: Copy;
    /// Slot `i`; None when the table has none (the start is then streamed).
    fn slot(&mut self, i: u32) -> Option<Self::Slot>;
    /// The slot's owner word (0: free).
    fn owner(&mut self, s: Self::Slot) -> u64;
    /// Compare-and-swap of the owner word from 0 to `addr`; whether it took the slot.
    fn claim(&mut self, s: Self::Slot, addr: u64) -> bool;
    /// Stores the slot's time.
    fn write_time(&mut self, s: Self::Slot, ts_ns: u64);
    /// Loads the slot's time.
    fn read_time(&mut self, s: Self::Slot) -> u64;
    /// Exchange of the owner word with 0, after the time's load (a full barrier).
    fn free(&mut self, s: Self::Slot);
}

/// Keeps `ts_ns` as the start of the request or bio at `addr` in its slot: a free slot is
/// claimed, one the address owns already (a request issued again, a bio address reused after a
/// completion the programs never saw) is written again. False when another address owns it:
/// the caller streams the start.
#[inline(always)]
pub fn stamp_keep<S: StampSlots>(slots: &mut S, addr: u64, ts_ns: u64) -> bool {
    if addr == 0 {
        return false;
    }
    let Some(s) = slots.slot(stamp_slot(addr)) else { return false };
    if slots.owner(s) != addr && !slots.claim(s, addr) {
        return false;
    }
    slots.write_time(s, ts_ns);
    true
}

/// The start kept for `addr`, its slot freed; 0 when `addr` owns no slot (its start was
/// streamed, or not seen).
#[inline(always)]
pub fn stamp_take<S: StampSlots>(slots: &mut S, addr: u64) -> u64 {
    if addr == 0 {
        return 0;
    }
    let Some(s) = slots.slot(stamp_slot(addr)) else { return 0 };
    if slots.owner(s) != addr {
        return 0;
    }
    let ts_ns = slots.read_time(s);
    slots.free(s);
    ts_ns
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    /// Objects laid out as the kernel lays out requests (a tag set's static array) and bios (a
    /// slab): a few in-flight sets of each barely collide.
    #[test]
    fn fixed_size_objects_spread_over_the_slots() {
        for (base, size, n) in [
            (0xffff_8880_0410_0000u64, 384u64, 1024u64),
            (0xffff_8880_1234_5600, 256, 4096),
            (0xffff_8881_0000_0000, 192, 2048),
            (0xffff_8881_0000_0000, 4096, 1024),
        ] {
            let mut used = std::collections::HashSet::new();
            for i in 0..n {
                assert!(stamp_slot(base + i * size) < STAMP_SLOTS);
                used.insert(stamp_slot(base + i * size));
            }
            // A random mapping of n objects into the slots leaves about n^2 / (2 * slots)
            // collisions; allow twice that.
            let allowed = (n * n / (2 * STAMP_SLOTS as u64)) * 2 + 1;
            let collisions = n - used.len() as u64;
            assert!(collisions <= allowed, "size {size}: {collisions} collisions of {n}, allowed {allowed}");
        }
    }
}
