//! Ring buffer records (raw bytes) to typed records. Pure.

use tracer_common::{BioRecord, BioWire, LatencyEvent, RecordType, BIO_MAX_VECS};

/// x86_64 page size (the only architecture the stock kernels we support run on).
const PAGE_SIZE: u64 = 4096;

/// One record of the `EVENTS` ring buffer. Records are handled one at a time, so the size
/// difference between the variants costs nothing worth a heap allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Latency(LatencyEvent),
    Bio(BioRecord),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is too short for its type")]
    Short(usize),
    #[error("unknown record type {0}")]
    UnknownType(u32),
}

/// Decodes one record. The first 4 bytes name its [`RecordType`].
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let head: [u8; 4] = bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or(DecodeError::Short(bytes.len()))?;
    let kind = u32::from_ne_bytes(head);
    if kind == RecordType::Latency as u32 {
        read::<LatencyEvent>(bytes).map(Record::Latency)
    } else if kind == RecordType::Bio as u32 {
        read::<BioWire>(bytes).map(|w| Record::Bio(bio_record(&w)))
    } else {
        Err(DecodeError::UnknownType(kind))
    }
}

/// The pages of each vec of a bio, from the raw `struct bio_vec` array of its wire record.
pub fn bio_record(w: &BioWire) -> BioRecord {
    let mut rec = BioRecord {
        record: w.record,
        event: w.event,
        ts_ns: w.ts_ns,
        bio: w.bio,
        dev: w.dev,
        op: w.op,
        flags: w.flags,
        status: w.status,
        bytes: w.bytes,
        _pad: 0,
        owner: w.owner,
        nr_vecs: w.nr_vecs,
        nr_pages: 0,
        pages: [0; BIO_MAX_VECS],
        vec_pages: [0; BIO_MAX_VECS],
    };
    let size = w.bvec_size as usize;
    if size == 0 {
        return rec;
    }
    let filled = (w.vec_bytes as usize).min(w.vecs.len());
    let field = |at: usize, len: usize| -> Option<u64> {
        let b = w.vecs.get(at..at + len)?;
        Some(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    };
    for i in 0..(filled / size).min(BIO_MAX_VECS) {
        let base = i * size;
        let (Some(page), Some(len), Some(offset)) = (
            field(base + w.bvec_page as usize, 8),
            field(base + w.bvec_len as usize, 4),
            field(base + w.bvec_offset as usize, 4),
        ) else {
            break;
        };
        let n = (offset + len).div_ceil(PAGE_SIZE);
        rec.pages[i] = page;
        rec.vec_pages[i] = u16::try_from(n).unwrap_or(u16::MAX);
        rec.nr_pages += n as u32;
    }
    rec
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
impl Plain for BioWire {}

/// The bytes of a record, as the kernel writes them (tests build records with it).
#[cfg(test)]
pub fn bytes_of<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: reading the initialized bytes of a Copy value; records have no padding (asserted
    // in tracer-common).
    unsafe { std::slice::from_raw_parts(record as *const T as *const u8, std::mem::size_of::<T>()) }.to_vec()
}

#[cfg(test)]
mod tests {
    use tracer_common::{BioEvent, LatencyKind, Owner, BIO_FLAG_PINNED, BIO_WIRE_VEC_BYTES};

    use super::*;

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
        // A 64 KiB multi-page vec at offset 0, a 4 KiB vec straddling two pages, a 512-byte one.
        let w = wire(&[(0x1000, 65536, 0), (0x2000, 4096, 2048), (0x3000, 512, 0)]);
        let Record::Bio(rec) = decode(&bytes_of(&w)).unwrap() else { panic!("not a bio") };
        assert_eq!(rec.nr_pages, 16 + 2 + 1);
        assert_eq!(&rec.pages[..4], &[0x1000, 0x2000, 0x3000, 0]);
        assert_eq!(&rec.vec_pages[..3], &[16, 2, 1]);
        assert_eq!(rec.owner.tgid, 7);
        // vec_bytes bounds what is read, whatever the array holds beyond it.
        let mut short = w;
        short.vec_bytes = 16;
        assert_eq!(bio_record(&short).nr_pages, 16);
        // An unknown layout gives no pages, not garbage.
        short.bvec_size = 0;
        assert_eq!(bio_record(&short).nr_pages, 0);
        // Offsets pointing past the array end stop the walk.
        let mut odd = w;
        odd.bvec_size = 250;
        odd.bvec_page = 250;
        assert_eq!(bio_record(&odd).nr_pages, 0);
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
}
