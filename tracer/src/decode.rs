//! Ring buffer records (raw bytes) to typed records. Pure.

use tracer_common::{
    block::{BlockEvent, BlockHeader, RqBio, RqCompleteWire, RQ_MAX_BIOS},
    BioRecord, BioWire, ExitRecord, LatencyEvent, PageEntry, PagesHeader, RecordType, BIO_CHUNK_SHIFT, BIO_MAX_VECS,
    BIO_WIRE_VEC_BYTES, PAGES_MAX_ENTRIES, PAGES_STACK_FRAMES,
};

use crate::model::{BlockRecord, ListedBio, PagesRecord, Record, SymbolsRecord, MAX_SYMBOLS};

/// x86_64 page size (the only architecture the stock kernels we support run on).
const PAGE_SIZE: u64 = 4096;
/// sizeof(struct page) on x86_64 (the ledger's default stride too).
const STRUCT_PAGE_SIZE: u64 = 64;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is too short for its type")]
    Short(usize),
    #[error("unknown record type {0}")]
    UnknownType(u32),
    #[error("symbols record is malformed")]
    BadSymbols,
}

/// Decodes one record. The first 4 bytes name its [`RecordType`].
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let head: [u8; 4] = bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or(DecodeError::Short(bytes.len()))?;
    let kind = u32::from_ne_bytes(head);
    if kind == RecordType::Latency as u32 {
        read::<LatencyEvent>(bytes).map(Record::Latency)
    } else if kind == RecordType::Bio as u32 {
        bio(bytes).map(Record::Bio)
    } else if kind == RecordType::Pages as u32 {
        pages_record(bytes).map(Record::Pages)
    } else if kind == RecordType::Stack as u32 {
        symbols_record(bytes).map(Record::Symbols)
    } else if kind == RecordType::Exit as u32 {
        read::<ExitRecord>(bytes).map(Record::Exit)
    } else if kind == RecordType::Block as u32 {
        block_record(bytes).map(Record::Block)
    } else {
        Err(DecodeError::UnknownType(kind))
    }
}

/// A bio record.
pub fn bio(bytes: &[u8]) -> Result<BioRecord, DecodeError> {
    let mut rec = BioRecord::default();
    bio_into(bytes, &mut rec)?;
    Ok(rec)
}

/// [`BioWire`] up to its vec bytes: what a bio record is read as (the vec bytes are read in
/// place, not copied).
#[repr(C)]
#[derive(Clone, Copy)]
struct BioHead {
    record: u32,
    event: u32,
    ts_ns: u64,
    bio: u64,
    dev: u32,
    op: u32,
    flags: u32,
    status: i32,
    bytes: u32,
    nr_vecs: u32,
    owner: tracer_common::Owner,
    bvec_size: u8,
    bvec_page: u8,
    bvec_len: u8,
    bvec_offset: u8,
    vec_bytes: u32,
}
impl Plain for BioHead {}

// The same fields in the same order under #[repr(C)]: the same layout; checked where it could
// differ (the owner's alignment, the end).
const _: () = assert!(std::mem::offset_of!(BioHead, owner) == std::mem::offset_of!(BioWire, owner));
const _: () = assert!(std::mem::offset_of!(BioHead, vec_bytes) == std::mem::offset_of!(BioWire, vec_bytes));
const _: () = assert!(std::mem::size_of::<BioHead>() == std::mem::offset_of!(BioWire, vecs));

/// [`bio`] into `rec`, every field written from the head and the vec bytes of the record;
/// `rec` is unspecified after an error.
pub fn bio_into(bytes: &[u8], rec: &mut BioRecord) -> Result<(), DecodeError> {
    if bytes.len() < std::mem::size_of::<BioWire>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    let w = read::<BioHead>(bytes)?;
    let vecs = &bytes[std::mem::offset_of!(BioWire, vecs)..std::mem::size_of::<BioWire>()];
    rec.record = w.record;
    rec.event = w.event;
    rec.ts_ns = w.ts_ns;
    rec.bio = w.bio;
    rec.dev = w.dev;
    rec.op = w.op;
    rec.flags = w.flags;
    rec.status = w.status;
    rec.bytes = w.bytes;
    rec.first_vec = 0;
    rec.owner = w.owner;
    rec.nr_vecs = w.nr_vecs;
    rec.nr_pages = 0;
    let size = w.bvec_size as usize;
    let mut filled_vecs = 0;
    if let Some(per_record) = BIO_WIRE_VEC_BYTES.checked_div(size) {
        // A later record of a release that lists its unpins: its slice of the vec array only.
        let chunk = (w.flags >> BIO_CHUNK_SHIFT) & 0xff;
        if chunk > 0 {
            let per_record = per_record as u32;
            rec.first_vec = chunk * per_record;
            rec.nr_vecs = w.nr_vecs.saturating_sub(rec.first_vec).min(per_record);
        }
        let filled = (w.vec_bytes as usize).min(vecs.len());
        let u64_at = |at: usize| vecs.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
        let u32_at =
            |at: usize| vecs.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as u64);
        for i in 0..(filled / size).min(BIO_MAX_VECS) {
            let base = i * size;
            let (Some(page), Some(len), Some(offset)) = (
                u64_at(base + w.bvec_page as usize),
                u32_at(base + w.bvec_len as usize),
                u32_at(base + w.bvec_offset as usize),
            ) else {
                break;
            };
            // A vec over a large folio names its head page and an offset that can pass
            // PAGE_SIZE: its pages start at page + offset / PAGE_SIZE (struct pages are
            // adjacent in the vmemmap), as __bio_release_pages counts them.
            let n = (offset % PAGE_SIZE + len).div_ceil(PAGE_SIZE);
            rec.pages[i] = page.wrapping_add((offset / PAGE_SIZE) * STRUCT_PAGE_SIZE);
            rec.vec_pages[i] = u16::try_from(n).unwrap_or(u16::MAX);
            rec.nr_pages += n as u32;
            filled_vecs = i + 1;
        }
    }
    rec.pages[filled_vecs..].fill(0);
    rec.vec_pages[filled_vecs..].fill(0);
    Ok(())
}

/// A block timing record: the header, and after a request's completion's header its bios.
pub fn block_record(bytes: &[u8]) -> Result<BlockRecord, DecodeError> {
    let mut rec = BlockRecord::default();
    block_record_into(bytes, &mut rec)?;
    Ok(rec)
}

/// [`block_record`] into `out`, whose vector is reused; `out` is unspecified after an error.
pub fn block_record_into(bytes: &[u8], out: &mut BlockRecord) -> Result<(), DecodeError> {
    out.head = read::<BlockHeader>(bytes)?;
    out.bios.clear();
    if out.head.event != BlockEvent::RqComplete as u32 {
        return Ok(());
    }
    // The listed bios read in place; a record has room for one bio or for RQ_MAX_BIOS
    // (tracer_common::block::RqComplete), and lists `nr_bios` of them.
    let n = (out.head.nr_bios as usize).min(RQ_MAX_BIOS);
    let at = std::mem::offset_of!(RqCompleteWire, bios);
    let entry = std::mem::size_of::<RqBio>();
    let Some(listed) = bytes.get(at..at + entry * n) else {
        return Err(DecodeError::Short(bytes.len()));
    };
    for b in listed.chunks_exact(entry) {
        let b = read::<RqBio>(b)?;
        out.bios.push(ListedBio { bio: b.bio, size: b.size, queued_ns: b.queued_ns });
    }
    Ok(())
}

/// A page record: its header and the `n` entries after it.
pub fn pages_record(bytes: &[u8]) -> Result<PagesRecord, DecodeError> {
    let mut rec = PagesRecord::default();
    pages_record_into(bytes, &mut rec)?;
    Ok(rec)
}

/// [`pages_record`] into `out`, whose vectors are reused (no allocation per record once they
/// have grown); `out` is unspecified after an error.
pub fn pages_record_into(bytes: &[u8], out: &mut PagesRecord) -> Result<(), DecodeError> {
    let h = read::<PagesHeader>(bytes)?;
    let n = h.n as usize;
    let head = std::mem::size_of::<PagesHeader>();
    let entry = std::mem::size_of::<PageEntry>();
    if n > PAGES_MAX_ENTRIES || bytes.len() < head + n * entry {
        return Err(DecodeError::Short(bytes.len()));
    }
    out.event = h.event;
    out.ts_ns = h.ts_ns;
    out.probe = h.probe;
    out.gup_flags = h.gup_flags;
    out.nr = h.nr;
    out.refs = h.refs;
    out.flags = h.flags;
    out.owner = h.owner;
    out.frames.clear();
    out.frames.extend_from_slice(&h.frames[..(h.nr_frames as usize).min(PAGES_STACK_FRAMES)]);
    out.entries.clear();
    for e in bytes[head..head + n * entry].chunks_exact(entry) {
        let e = read::<PageEntry>(e)?;
        out.entries.push((e.page, e.folio));
    }
    Ok(())
}

/// The bytes of a page record as the kernel streams it (tests build records with it).
#[cfg(test)]
pub fn pages_bytes(r: &PagesRecord) -> Vec<u8> {
    let h = PagesHeader {
        record: RecordType::Pages as u32,
        event: r.event,
        ts_ns: r.ts_ns,
        probe: r.probe,
        gup_flags: r.gup_flags,
        nr: r.nr,
        n: r.entries.len() as u32,
        refs: r.refs,
        nr_frames: r.frames.len().min(PAGES_STACK_FRAMES) as u32,
        flags: r.flags,
        _pad: 0,
        owner: r.owner,
        frames: std::array::from_fn(|i| r.frames.get(i).copied().unwrap_or(0)),
    };
    let mut out = bytes_of(&h);
    for &(page, folio) in &r.entries {
        out.extend(bytes_of(&PageEntry { page, folio }));
    }
    out
}

fn symbols_record(bytes: &[u8]) -> Result<SymbolsRecord, DecodeError> {
    let count = bytes.get(4..8).ok_or(DecodeError::Short(bytes.len()))?;
    let count = u32::from_ne_bytes([count[0], count[1], count[2], count[3]]) as usize;
    if count > MAX_SYMBOLS {
        return Err(DecodeError::BadSymbols);
    }
    let mut at = 8;
    let mut symbols = Vec::with_capacity(count);
    for _ in 0..count {
        let head = bytes.get(at..at + 10).ok_or(DecodeError::BadSymbols)?;
        let ip = u64::from_ne_bytes(head[..8].try_into().map_err(|_| DecodeError::BadSymbols)?);
        let len = u16::from_ne_bytes([head[8], head[9]]) as usize;
        let text = bytes.get(at + 10..at + 10 + len).ok_or(DecodeError::BadSymbols)?;
        symbols.push((ip, String::from_utf8_lossy(text).into_owned()));
        at += 10 + len;
    }
    if at != bytes.len() {
        return Err(DecodeError::BadSymbols);
    }
    Ok(SymbolsRecord { symbols })
}

/// Copies a plain `#[repr(C)]` record out of `bytes`.
fn read<T: Copy + Plain>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < std::mem::size_of::<T>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: T is one of the Plain record types: #[repr(C)], integers and arrays of integers
    // only, valid for any bit pattern; the length is checked; read_unaligned needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// Record types valid for every bit pattern.
trait Plain {}
impl Plain for LatencyEvent {}
impl Plain for PagesHeader {}
impl Plain for PageEntry {}
impl Plain for ExitRecord {}
impl Plain for BlockHeader {}
impl Plain for RqBio {}

/// The bytes of a record, as the kernel writes them (tests build records with it).
#[cfg(test)]
pub fn bytes_of<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: reading the initialized bytes of a Copy value; records have no padding (asserted
    // in tracer-common).
    unsafe { std::slice::from_raw_parts(record as *const T as *const u8, std::mem::size_of::<T>()) }.to_vec()
}

#[cfg(test)]
mod tests {
    use tracer_common::{block::RqCompleteOne, BioEvent, LatencyKind, Owner, BIO_FLAG_PINNED};

    use super::*;
    use crate::model::symbols_bytes;

    /// A wire record with the x86_64 bio_vec layout (page@0, len@8, offset@12, 16 bytes).
    fn wire(vecs: &[(u64, u32, u32)]) -> BioWire {
        let mut raw = [0u8; BIO_WIRE_VEC_BYTES];
        for (i, (page, len, off)) in vecs.iter().enumerate() {
            raw[i * 16..i * 16 + 8].copy_from_slice(&page.to_le_bytes());
            raw[i * 16 + 8..i * 16 + 12].copy_from_slice(&len.to_le_bytes());
            raw[i * 16 + 12..i * 16 + 16].copy_from_slice(&off.to_le_bytes());
        }
        BioWire {
            record: RecordType::Bio as u32,
            event: BioEvent::Acquire as u32,
            ts_ns: 10,
            bio: 0xffff_8880_0000_1000,
            dev: 254 << 20,
            op: 0,
            flags: BIO_FLAG_PINNED,
            status: 0,
            bytes: 65536,
            nr_vecs: vecs.len() as u32,
            owner: Owner { tgid: 7, pid: 7, cgroup: 1, comm: *b"fio\0\0\0\0\0\0\0\0\0\0\0\0\0" },
            bvec_size: 16,
            bvec_page: 0,
            bvec_len: 8,
            bvec_offset: 12,
            vec_bytes: (vecs.len() * 16) as u32,
            vecs: raw,
        }
    }

    #[test]
    fn bio_vecs_become_pages() {
        // A 64 KiB multi-page vec at offset 0, a 4 KiB vec straddling two pages, a 512-byte one,
        // and 8 KiB of a large folio 3 pages and 512 bytes into it (head page 0x4000).
        let w = wire(&[(0x1000, 65536, 0), (0x2000, 4096, 2048), (0x3000, 512, 0), (0x4000, 8192, 3 * 4096 + 512)]);
        let Record::Bio(rec) = decode(&bytes_of(&w)).unwrap() else { panic!("not a bio") };
        assert_eq!(rec.nr_pages, 16 + 2 + 1 + 3);
        assert_eq!(&rec.pages[..5], &[0x1000, 0x2000, 0x3000, 0x4000 + 3 * 64, 0]);
        assert_eq!(&rec.vec_pages[..4], &[16, 2, 1, 3]);
        assert_eq!(rec.owner.tgid, 7);
        // vec_bytes bounds what is read, whatever the array holds beyond it.
        let mut short = w;
        short.vec_bytes = 16;
        assert_eq!(bio(&bytes_of(&short)).unwrap().nr_pages, 16);
        // An unknown layout gives no pages, not garbage.
        short.bvec_size = 0;
        assert_eq!(bio(&bytes_of(&short)).unwrap().nr_pages, 0);
        // Offsets pointing past the array end stop the walk.
        let mut odd = w;
        odd.bvec_size = 250;
        odd.bvec_page = 250;
        assert_eq!(bio(&bytes_of(&odd)).unwrap().nr_pages, 0);
    }

    #[test]
    fn later_records_of_a_listed_release_carry_their_slice_of_the_vecs() {
        // A 40-vec bio's third record (vecs 32..40): 8 vecs, numbered from 32.
        let mut w = wire(&[(0x9000, 4096, 0); 8]);
        w.event = BioEvent::Release as u32;
        w.nr_vecs = 40;
        w.flags |= tracer_common::BIO_FLAG_UNPINS_LISTED | 2 << BIO_CHUNK_SHIFT;
        let rec = bio(&bytes_of(&w)).unwrap();
        assert_eq!((rec.first_vec, rec.nr_vecs, rec.nr_pages), (32, 8, 8));
        // The first record keeps the bio's vec count (its list is truncated at 16 vecs).
        w.flags &= !(0xff << BIO_CHUNK_SHIFT);
        let first = bio(&bytes_of(&w)).unwrap();
        assert_eq!((first.first_vec, first.nr_vecs), (0, 40));
    }

    #[test]
    fn latency_round_trips_and_bad_input_is_an_error() {
        let ev = LatencyEvent {
            record: RecordType::Latency as u32,
            kind: LatencyKind::Dio as u32,
            dev: 1,
            op: 0,
            bytes: 4096,
            start_ns: 5,
            end_ns: 9,
        };
        let b = bytes_of(&ev);
        assert_eq!(decode(&b), Ok(Record::Latency(ev)));
        assert_eq!(decode(&b[..39]), Err(DecodeError::Short(39)));
        assert_eq!(decode(&b[..2]), Err(DecodeError::Short(2)));
        let mut unknown = b.clone();
        unknown[..4].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(decode(&unknown), Err(DecodeError::UnknownType(77)));
    }

    #[test]
    fn block_records_list_the_bios_of_a_request_completion_only() {
        let head = BlockHeader {
            record: RecordType::Block as u32,
            event: BlockEvent::RqComplete as u32,
            ts_ns: 9,
            addr: 0xa000,
            dev: 259 << 20,
            op: 0,
            bytes: 8192,
            status: 0,
            nr_bios: 2,
            _pad: 0,
            start_ns: 3,
        };
        let bio = |bio, size, queued_ns| RqBio { bio, queued_ns, size, _pad: 0 };
        let mut w = RqCompleteWire { head, bios: [RqBio::default(); RQ_MAX_BIOS] };
        w.bios[..3].copy_from_slice(&[bio(0xb1, 4096, 0), bio(0xb2, 4096, 2), bio(0xb3, 512, 1)]);
        let bytes = bytes_of(&w);
        let Ok(Record::Block(rec)) = decode(&bytes) else { panic!("not a block record") };
        let listed = |bio, size, queued_ns| ListedBio { bio, size, queued_ns };
        assert_eq!(rec.bios, vec![listed(0xb1, 4096, 0), listed(0xb2, 4096, 2)], "nr_bios bounds the list");
        assert_eq!(rec.head.start_ns, 3);
        // A completion cut short of its listed bios is an error; a start is its header alone.
        assert_eq!(decode(&bytes[..60]), Err(DecodeError::Short(60)));
        assert_eq!(decode(&bytes[..56 + 24 + 23]), Err(DecodeError::Short(103)));
        let start = BlockHeader { event: BlockEvent::BioQueue as u32, nr_bios: 5, ..head };
        let Ok(Record::Block(rec)) = decode(&bytes_of(&start)) else { panic!("not a block record") };
        assert!(rec.bios.is_empty());
        // A request of one bio: the record with room for one.
        let one = RqCompleteOne { head: BlockHeader { nr_bios: 1, ..head }, bios: [bio(0xc1, 512, 7)] };
        let bytes = bytes_of(&one);
        assert_eq!(bytes.len(), 80);
        let Ok(Record::Block(rec)) = decode(&bytes) else { panic!("not a block record") };
        assert_eq!(rec.bios, vec![listed(0xc1, 512, 7)]);
        // More bios claimed than the record holds: an error, not a read past it.
        let two = RqCompleteOne { head: BlockHeader { nr_bios: 2, ..head }, ..one };
        assert_eq!(decode(&bytes_of(&two)), Err(DecodeError::Short(80)));
        // Too many bios claimed: no more than the wire holds.
        w.head.nr_bios = 99;
        let Ok(Record::Block(rec)) = decode(&bytes_of(&w)) else { panic!("not a block record") };
        assert_eq!(rec.bios.len(), RQ_MAX_BIOS);
    }

    #[test]
    fn exit_records_round_trip_and_short_ones_are_errors() {
        let exit = ExitRecord { record: RecordType::Exit as u32, tgid: 42, ts_ns: 7 };
        let bytes = bytes_of(&exit);
        assert_eq!(decode(&bytes), Ok(Record::Exit(exit)));
        assert_eq!(decode(&bytes[..12]), Err(DecodeError::Short(12)));
    }

    #[test]
    fn page_and_symbols_records_round_trip_and_bad_ones_are_errors() {
        let rec = PagesRecord {
            event: 2,
            ts_ns: 9,
            probe: 4,
            gup_flags: 1,
            nr: 3,
            refs: 1,
            flags: 0,
            owner: Owner { tgid: 1, pid: 2, cgroup: 3, comm: [b'x'; 16] },
            frames: vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_2000],
            entries: vec![(0x1000, 0x1000), (0x1040, 0x1000), (0, 0x2000)],
        };
        let bytes = pages_bytes(&rec);
        assert_eq!(decode(&bytes), Ok(Record::Pages(rec.clone())));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err(), "an entry cut short");
        let syms = SymbolsRecord {
            symbols: vec![(0xffff_ffff_8100_0010, "iov_iter_extract_pages+0x3a".into()), (1, "".into())],
        };
        let sb = symbols_bytes(&syms);
        assert_eq!(decode(&sb), Ok(Record::Symbols(syms)));
        assert_eq!(decode(&sb[..sb.len() - 1]), Err(DecodeError::BadSymbols));
        let mut extra = sb.clone();
        extra.push(0);
        assert_eq!(decode(&extra), Err(DecodeError::BadSymbols));
    }
}
