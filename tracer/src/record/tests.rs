use std::mem::offset_of;

use proptest::prelude::*;
use tracer_common::{BioEvent, LatencyKind, Owner, ProbeId, ProbeStat, RecordType, BIO_FLAG_PINNED};

use super::*;
use crate::{
    decode::{bytes_of, decode},
    model::Record,
    probes::counters::{Counters, ProcCounts},
};

pub(crate) fn metadata() -> Metadata {
    Metadata {
        tracer_version: "0.1.0".into(),
        kernel_release: "6.12.0-test".into(),
        start_unix_ns: 1_700_000_000_000_000_000,
        start_monotonic_ns: 1_000,
        byte_order: host_byte_order().into(),
        record_sizes: RecordSizes::this_build(),
        probes: vec![ProbeInfo {
            target: "__bio_release_pages".into(),
            role: "latency".into(),
            attached: Some("fentry".into()),
            reasons: vec![],
            off: false,
        }],
        req_ops: [(0, "read".to_string()), (1, "write".to_string())].into(),
        command: vec!["dd".into()],
        foll: FollBits { write: 1, longterm: 1 << 8 },
        folio_heads: true,
    }
}

pub(crate) fn trailer() -> Trailer {
    Trailer {
        records: 0,
        end_monotonic_ns: 5_000_000_000,
        elapsed_s: Some(5.0),
        counters: SavedCounters::default(),
        vmstat: Some(VmstatDelta { nr_foll_pin_acquired: 4, nr_foll_pin_released: 4 }),
        command_exit_status: Some(0),
        devices: [("254:0".to_string(), "vda".to_string())].into(),
        summary: serde_json::json!({"type": "summary"}),
    }
}

/// A bio record as the kernel writes it (x86_64 bio_vec layout: page@0, len@8, offset@12
/// in 16 bytes); `vecs`: (struct page address, pages).
pub(crate) fn bio_wire(
    event: BioEvent,
    addr: u64,
    ts: u64,
    task: (u32, u32, &str),
    vecs: &[(u64, u32)],
    pinned: bool,
) -> Vec<u8> {
    let mut bio = vec![0u8; std::mem::size_of::<BioWire>()];
    let mut put = |at: usize, v: &[u8]| bio[at..at + v.len()].copy_from_slice(v);
    put(offset_of!(BioWire, record), &(RecordType::Bio as u32).to_ne_bytes());
    put(offset_of!(BioWire, event), &(event as u32).to_ne_bytes());
    put(offset_of!(BioWire, ts_ns), &ts.to_ne_bytes());
    put(offset_of!(BioWire, bio), &addr.to_ne_bytes());
    put(offset_of!(BioWire, dev), &(254u32 << 20).to_ne_bytes());
    put(offset_of!(BioWire, op), &1u32.to_ne_bytes());
    put(offset_of!(BioWire, flags), &(if pinned { BIO_FLAG_PINNED } else { 0 }).to_ne_bytes());
    put(offset_of!(BioWire, nr_vecs), &(vecs.len() as u32).to_ne_bytes());
    let owner = offset_of!(BioWire, owner);
    put(owner + offset_of!(Owner, tgid), &task.0.to_ne_bytes());
    put(owner + offset_of!(Owner, pid), &task.1.to_ne_bytes());
    put(owner + offset_of!(Owner, comm), task.2.as_bytes());
    put(offset_of!(BioWire, bvec_size), &[16, 0, 8, 12]);
    put(offset_of!(BioWire, vec_bytes), &(vecs.len() as u32 * 16).to_ne_bytes());
    for (i, &(page, pages)) in vecs.iter().enumerate() {
        let at = offset_of!(BioWire, vecs) + i * 16;
        put(at, &page.to_le_bytes());
        put(at + 8, &(pages * 4096).to_le_bytes());
    }
    bio
}

/// Raw records as the kernel writes them: a latency event and a bio acquisition.
pub(crate) fn raw_records() -> Vec<Vec<u8>> {
    let lat = LatencyEvent {
        record: RecordType::Latency as u32,
        kind: LatencyKind::D2c as u32,
        dev: 254 << 20,
        op: 1,
        bytes: 4096,
        start_ns: 10,
        end_ns: 20,
    };
    let bio =
        bio_wire(BioEvent::Acquire, 0xffff_8880_0000_1000, 0, (7, 7, "fio"), &[(0xffff_ea00_0000_0040, 2)], false);
    vec![bytes_of(&lat), bio]
}

pub(crate) fn file() -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &metadata()).unwrap();
    for r in raw_records() {
        w.record(&r).unwrap();
    }
    w.finish(trailer()).unwrap()
}

#[test]
fn replay_yields_the_records_live_tracing_yields() {
    let bytes = file();
    assert_eq!(&bytes[..8], b"TRACEREC");
    assert_eq!(bytes[8..12], 1u32.to_le_bytes());
    let mut r = Reader::new(bytes.as_slice()).unwrap();
    assert_eq!(r.metadata(), &metadata());
    assert!(r.trailer().is_none());
    let replayed: Vec<Record> = (&mut r).map(|raw| decode(&raw.unwrap()).unwrap()).collect();
    let live: Vec<Record> = raw_records().iter().map(|raw| decode(raw).unwrap()).collect();
    assert_eq!(replayed, live);
    let Record::Bio(bio) = replayed[1] else { panic!("a bio record") };
    assert_eq!((bio.bio, bio.pages[0], bio.vec_pages[0]), (0xffff_8880_0000_1000, 0xffff_ea00_0000_0040, 2));
    let t = r.trailer().expect("read after the last record");
    assert_eq!(t.records, 2);
    assert_eq!(t.devices["254:0"], "vda");
    assert!(r.next_record().unwrap().is_none(), "stays at the end");
}

#[test]
fn counters_round_trip_through_the_trailer() {
    let mut s = Counters { pages_pinned: 7, pages_unpinned: 5, ..Counters::default() };
    s.probes[ProbeId::BioReleasePages as usize] = ProbeStat { hits: 3, amount: 0 };
    s.probes[ProbeId::PinUserPagesFast as usize] = ProbeStat { hits: 2, amount: 7 };
    s.procs.insert(9, ProcCounts { comm: "fio".into(), cgroup: 4, pages_pinned: 7, pages_unpinned: 5 });
    s.lost[2] = 4;
    let c = SavedCounters::from_counters(&s);
    let json = serde_json::to_string(&c).unwrap();
    let back: SavedCounters = serde_json::from_str(&json).unwrap();
    assert_eq!(back.to_counters(), s);
}

#[test]
fn outcomes_follow_this_catalogue() {
    let o = metadata().outcomes();
    assert_eq!(o.len(), PROBES.len());
    assert_eq!(o[ProbeId::BioReleasePages as usize].attached, Some(Method::Fentry));
    assert_eq!(o[ProbeId::PinUserPagesFast as usize].attached, None);
}

#[test]
fn bad_files_are_one_line_errors() {
    let err = |bytes: &[u8]| match Reader::new(bytes).and_then(|mut r| (&mut r).collect::<Result<Vec<_>, _>>()) {
        Ok(_) => panic!("{bytes:?} must be rejected"),
        Err(e) => e.to_string(),
    };
    assert_eq!(err(b"hello, world"), "not a tracer record file (bad magic)");
    assert_eq!(err(b""), "truncated record file: the magic ends early at byte 0");
    assert_eq!(err(b"TRACE"), "truncated record file: the magic ends early at byte 5");
    let good = file();
    let mut v2 = good.clone();
    v2[8] = 2;
    assert_eq!(err(&v2), "record file format version 2 is not supported (this tracer reads version 1)");
    assert!(err(&good[..good.len() - 1]).starts_with("truncated record file: the trailer"));
    assert!(err(&good[..good.len() - 1]).starts_with("truncated record file"));
    let mut extra = good.clone();
    extra.push(0);
    assert_eq!(err(&extra), "corrupt record file: 1 bytes after the trailer");
    let mut other_order = metadata();
    other_order.byte_order = "middle".into();
    let w = Writer::new(Vec::new(), &other_order).unwrap().finish(trailer()).unwrap();
    assert!(err(&w).starts_with("records are middle-endian"), "{}", err(&w));
    let mut old = metadata();
    old.record_sizes.bio = 8;
    let w = Writer::new(Vec::new(), &old).unwrap().finish(trailer()).unwrap();
    assert!(err(&w).contains("replay it with that version"), "{}", err(&w));
    // Block records from before the stamp table: their completions had another layout.
    let mut old = metadata();
    old.record_sizes.rq_complete = 0;
    let w = Writer::new(Vec::new(), &old).unwrap().finish(trailer()).unwrap();
    assert!(err(&w).contains("replay it with that version"), "{}", err(&w));
    for e in [err(b"hello"), err(&v2), err(&good[..40])] {
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    let good = file();
    for n in 0..good.len() {
        let r = Reader::new(&good[..n]).and_then(|mut r| (&mut r).collect::<Result<Vec<_>, _>>());
        assert!(r.is_err(), "truncated at {n} must be rejected");
    }
}

/// Every record and every error of a file read from its mapping, as read from a stream: whole,
/// cut anywhere, or with a byte too many.
#[test]
fn mapped_files_read_as_streams_do() {
    let good = file();
    let mut cases: Vec<Vec<u8>> = (1..=good.len()).map(|n| good[..n].to_vec()).collect();
    cases.push([good.as_slice(), &[0]].concat());
    let path = std::env::temp_dir().join(format!("tracer-mapped-{}.rec", std::process::id()));
    let all = |r: Result<Reader<&[u8]>, ReadError>| {
        r.and_then(|mut r| (&mut r).collect::<Result<Vec<_>, _>>().map(|v| (v, r.trailer().cloned())))
            .map_err(|e| e.to_string())
    };
    for bytes in cases {
        std::fs::write(&path, &bytes).unwrap();
        let map = super::map(&std::fs::File::open(&path).unwrap()).expect("a regular file maps");
        assert_eq!(all(Reader::mapped(&[][..], map)), all(Reader::new(bytes.as_slice())), "{} bytes", bytes.len());
    }
    std::fs::write(&path, b"").unwrap();
    assert!(super::map(&std::fs::File::open(&path).unwrap()).is_none(), "an empty file is read, not mapped");
    std::fs::remove_file(&path).unwrap();
}

proptest! {
    #[test]
    fn random_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..300), header in any::<bool>()) {
        let mut bytes = if header { file()[..16].to_vec() } else { Vec::new() };
        bytes.extend(tail);
        let _ = Reader::new(bytes.as_slice()).map(|r| r.count());
    }

    #[test]
    fn corrupted_files_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = file();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = Reader::new(bytes.as_slice()).map(|r| r.count());
    }
}
