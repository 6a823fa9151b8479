//! The record file of `tracer record`, replayed by `tracer report`: a header (magic, format
//! version, JSON metadata), every ring buffer record exactly as the kernel wrote it, and a
//! trailer with the final counters. Byte by byte: docs/ledger.md.
//!
//! Reading never panics: a file that is not a record file, of another version, truncated or
//! corrupt gives a one-line [`ReadError`].

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
};

use serde::{Deserialize, Serialize};
use tracer_common::{BioWire, ExitRecord, LatencyEvent, PagesHeader, PROBES};

use crate::{
    ledger::FollBits,
    output::ProbeRecord,
    plan::{Method, ProbeOutcome},
    stats::{ProcCounts, Snapshot},
    vmstat::FollPin,
};

/// The first 8 bytes of a record file.
pub const MAGIC: [u8; 8] = *b"TRACEREC";
/// The format version this tracer writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Frame kinds.
const FRAME_RECORD: u8 = 1;
const FRAME_TRAILER: u8 = 2;
/// Largest ring buffer record a file may hold (real ones are a few hundred bytes).
pub const MAX_RECORD_LEN: u32 = 1 << 20;
/// Largest metadata or trailer JSON.
pub const MAX_JSON_LEN: u32 = 16 << 20;

/// The header's JSON metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Version of the tracer that recorded.
    pub tracer_version: String,
    /// `uname -r` of the traced kernel.
    pub kernel_release: String,
    /// Wall clock at the start of tracing (ns since the Unix epoch).
    pub start_unix_ns: u64,
    /// The records' clock (bpf_ktime_get_ns, CLOCK_MONOTONIC) at the start of tracing.
    pub start_monotonic_ns: u64,
    /// Byte order of the records: "little" or "big" (the kernel writes its own).
    pub byte_order: String,
    /// Sizes of the record types of the recording tracer; a replay needs the same layout.
    pub record_sizes: RecordSizes,
    /// Every probe of the catalogue: attached or not, and why.
    pub probes: Vec<ProbeInfo>,
    /// `enum req_op` names of the traced kernel, by value.
    #[serde(default)]
    pub req_ops: BTreeMap<u32, String>,
    /// The traced command, if any.
    #[serde(default)]
    pub command: Vec<String>,
    /// FOLL_* values of the traced kernel (files without them come from kernels before 6.2).
    #[serde(default)]
    pub foll: FollBits,
}

/// Sizes of the ring buffer record types, as the kernel writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSizes {
    pub latency: u32,
    pub bio: u32,
    /// The header of page records (0 in files from tracers that had none).
    #[serde(default)]
    pub pages: u32,
    /// Exit records (0 in files from tracers that had none).
    #[serde(default)]
    pub exit: u32,
}

impl RecordSizes {
    /// Whether this build reads a file of these sizes: the same layouts, or a file from
    /// before page or exit records (it holds none).
    pub fn readable_here(&self) -> bool {
        let this = RecordSizes::this_build();
        let pages = if self.pages == 0 { 0 } else { this.pages };
        let exit = if self.exit == 0 { 0 } else { this.exit };
        *self == RecordSizes { pages, exit, ..this }
    }

    pub fn this_build() -> RecordSizes {
        RecordSizes {
            latency: std::mem::size_of::<LatencyEvent>() as u32,
            bio: std::mem::size_of::<BioWire>() as u32,
            pages: std::mem::size_of::<PagesHeader>() as u32,
            exit: std::mem::size_of::<ExitRecord>() as u32,
        }
    }
}

/// A probe's outcome (the `probe` record of docs/output.md as plain data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub target: String,
    #[serde(default)]
    pub role: String,
    /// The attach method, or null when missing.
    #[serde(default)]
    pub attached: Option<String>,
    #[serde(default)]
    pub reasons: Vec<ReasonInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonInfo {
    pub method: String,
    pub reason: String,
}

impl ProbeInfo {
    pub fn from_record(r: &ProbeRecord) -> ProbeInfo {
        ProbeInfo {
            target: r.target.into(),
            role: r.role.into(),
            attached: r.attached.map(str::to_string),
            reasons: r
                .reasons
                .iter()
                .map(|w| ReasonInfo { method: w.method.into(), reason: w.reason.clone() })
                .collect(),
        }
    }
}

impl Metadata {
    /// The probe outcomes of the recording run, one per probe of this tracer's catalogue (in
    /// its order). A probe the file does not mention is missing; probes this tracer does not
    /// know are left out.
    pub fn outcomes(&self) -> Vec<ProbeOutcome> {
        PROBES
            .iter()
            .map(|def| match self.probes.iter().find(|p| p.target == def.target) {
                Some(p) => ProbeOutcome {
                    def: *def,
                    attached: p.attached.as_deref().and_then(method),
                    failures: p
                        .reasons
                        .iter()
                        .filter_map(|r| method(&r.method).map(|m| (m, r.reason.clone())))
                        .collect(),
                },
                None => ProbeOutcome {
                    def: *def,
                    attached: None,
                    failures: vec![(Method::Fentry, "not in the record file".into())],
                },
            })
            .collect()
    }
}

fn method(name: &str) -> Option<Method> {
    [Method::Fentry, Method::Fexit, Method::Kprobe, Method::Kretprobe, Method::TpBtf]
        .into_iter()
        .find(|m| m.name() == name)
}

/// The trailer: how the run ended and its final counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trailer {
    /// Record frames in the file (the writer fills it in; the reader checks it).
    pub records: u64,
    /// The records' clock at the end of tracing: bios still holding pages are judged then.
    pub end_monotonic_ns: u64,
    /// Seconds traced; if absent, the difference of the monotonic start and end.
    #[serde(default)]
    pub elapsed_s: Option<f64>,
    /// Counters over the whole run (what the summary is made of).
    #[serde(default)]
    pub counters: Counters,
    /// /proc/vmstat FOLL_PIN deltas over the run.
    #[serde(default)]
    pub vmstat: Option<VmstatDelta>,
    #[serde(default)]
    pub command_exit_status: Option<i32>,
    /// Names of the devices in the records ("254:0" -> "vda").
    #[serde(default)]
    pub devices: BTreeMap<String, String>,
    /// The summary record as `tracer record` printed it (for readers that do not replay).
    #[serde(default)]
    pub summary: serde_json::Value,
}

/// A [`Snapshot`] (counter differences over the run) as plain serializable data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    #[serde(default)]
    pub probes: Vec<ProbeCount>,
    #[serde(default)]
    pub pages_pinned: u64,
    #[serde(default)]
    pub pages_unpinned: u64,
    #[serde(default)]
    pub processes: Vec<ProcessCount>,
    /// Indexed by `tracer_common::LostReason`.
    #[serde(default)]
    pub lost: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeCount {
    pub target: String,
    pub hits: u64,
    pub amount: u64,
    /// Runs the kernel skipped (recursion_misses).
    #[serde(default)]
    pub missed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCount {
    pub tgid: u32,
    pub comm: String,
    pub pages_pinned: u64,
    pub pages_unpinned: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmstatDelta {
    pub nr_foll_pin_acquired: u64,
    pub nr_foll_pin_released: u64,
}

impl From<FollPin> for VmstatDelta {
    fn from(v: FollPin) -> VmstatDelta {
        VmstatDelta { nr_foll_pin_acquired: v.nr_foll_pin_acquired, nr_foll_pin_released: v.nr_foll_pin_released }
    }
}

impl From<VmstatDelta> for FollPin {
    fn from(v: VmstatDelta) -> FollPin {
        FollPin { nr_foll_pin_acquired: v.nr_foll_pin_acquired, nr_foll_pin_released: v.nr_foll_pin_released }
    }
}

impl Counters {
    pub fn from_snapshot(s: &Snapshot) -> Counters {
        Counters {
            probes: PROBES
                .iter()
                .zip(s.probes.iter().zip(s.missed.iter()))
                .filter(|(_, (stat, missed))| stat.hits > 0 || stat.amount > 0 || **missed > 0)
                .map(|(def, (stat, missed))| ProbeCount {
                    target: def.target.into(),
                    hits: stat.hits,
                    amount: stat.amount,
                    missed: *missed,
                })
                .collect(),
            pages_pinned: s.pages_pinned,
            pages_unpinned: s.pages_unpinned,
            processes: s
                .procs
                .iter()
                .map(|(tgid, p)| ProcessCount {
                    tgid: *tgid,
                    comm: p.comm.clone(),
                    pages_pinned: p.pages_pinned,
                    pages_unpinned: p.pages_unpinned,
                })
                .collect(),
            lost: s.lost.to_vec(),
        }
    }

    pub fn to_snapshot(&self) -> Snapshot {
        let mut s =
            Snapshot { pages_pinned: self.pages_pinned, pages_unpinned: self.pages_unpinned, ..Snapshot::default() };
        for p in &self.probes {
            if let Some(i) = PROBES.iter().position(|d| d.target == p.target) {
                s.probes[i].hits = p.hits;
                s.probes[i].amount = p.amount;
                s.missed[i] = p.missed;
            }
        }
        for p in &self.processes {
            s.procs.insert(
                p.tgid,
                ProcCounts { comm: p.comm.clone(), pages_pinned: p.pages_pinned, pages_unpinned: p.pages_unpinned },
            );
        }
        for (slot, n) in s.lost.iter_mut().zip(&self.lost) {
            *slot = *n;
        }
        s
    }
}

/// This host's byte order, as the metadata names it.
pub fn host_byte_order() -> &'static str {
    if cfg!(target_endian = "little") {
        "little"
    } else {
        "big"
    }
}

/// Writes a record file.
pub struct Writer<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the header.
    pub fn new(mut out: W, meta: &Metadata) -> io::Result<Writer<W>> {
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        out.write_all(&MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        out.write_all(&length(&json, MAX_JSON_LEN)?.to_le_bytes())?;
        out.write_all(&json)?;
        Ok(Writer { out, records: 0 })
    }

    /// Appends one ring buffer record, its bytes as the kernel wrote them.
    pub fn record(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.frame(FRAME_RECORD, bytes, MAX_RECORD_LEN)?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Writes the trailer (with the number of records written) and flushes.
    pub fn finish(mut self, mut trailer: Trailer) -> io::Result<W> {
        trailer.records = self.records;
        let json = serde_json::to_vec(&trailer).map_err(io::Error::other)?;
        self.frame(FRAME_TRAILER, &json, MAX_JSON_LEN)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn frame(&mut self, kind: u8, payload: &[u8], max: u32) -> io::Result<()> {
        let len = length(payload, max)?;
        self.out.write_all(&[kind])?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(payload)
    }
}

fn length(payload: &[u8], max: u32) -> io::Result<u32> {
    u32::try_from(payload.len()).ok().filter(|&n| n <= max).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} bytes exceed the format's limit of {max}", payload.len()),
        )
    })
}

/// Why a file cannot be read. One line each.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a tracer record file (bad magic)")]
    BadMagic,
    #[error("record file format version {0} is not supported (this tracer reads version {FORMAT_VERSION})")]
    Version(u32),
    #[error("truncated record file: {0} ends early at byte {1}")]
    Truncated(&'static str, u64),
    #[error("corrupt record file: {what} of {len} bytes at byte {at} exceeds the limit of {max}")]
    TooLong { what: &'static str, len: u32, at: u64, max: u32 },
    #[error("corrupt record file: unknown frame kind {kind} at byte {at}")]
    UnknownFrame { kind: u8, at: u64 },
    #[error("corrupt record file: {0} bytes after the trailer")]
    TrailingBytes(u64),
    #[error("corrupt record file: the trailer counts {counted} records, the file holds {found}")]
    RecordCount { counted: u64, found: u64 },
    #[error("bad metadata: {0}")]
    Metadata(String),
    #[error("bad trailer: {0}")]
    Trailer(String),
    #[error("records are {file}-endian, this host is {host}-endian")]
    ByteOrder { file: String, host: &'static str },
    #[error("recorded by tracer {version} whose records are {file:?} bytes (this tracer's: {this:?}); replay it with that version")]
    Layout { version: String, file: RecordSizes, this: RecordSizes },
    #[error("{}", io_reason(.0))]
    Io(io::Error),
}

/// Reads a record file: the header on [`Reader::new`], then records (as an iterator of raw
/// records, the bytes live tracing hands to its consumers), then the trailer.
pub struct Reader<R: Read> {
    src: R,
    /// Bytes read so far.
    at: u64,
    meta: Metadata,
    records: u64,
    trailer: Option<Trailer>,
    /// An error or the trailer ended the records.
    done: bool,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header.
    pub fn new(src: R) -> Result<Reader<R>, ReadError> {
        let mut r = Reader { src, at: 0, meta: empty_metadata(), records: 0, trailer: None, done: false };
        let magic = r.read_up_to(8)?;
        if magic.len() < 8 && MAGIC.starts_with(&magic) {
            return Err(ReadError::Truncated("the magic", r.at));
        }
        if magic != MAGIC {
            return Err(ReadError::BadMagic);
        }
        let version = r.u32("the format version")?;
        if version != FORMAT_VERSION {
            return Err(ReadError::Version(version));
        }
        let len = r.u32("the metadata length")?;
        let json = r.payload("the metadata", len, MAX_JSON_LEN)?;
        let meta: Metadata = serde_json::from_slice(&json).map_err(|e| ReadError::Metadata(e.to_string()))?;
        if meta.byte_order != host_byte_order() {
            return Err(ReadError::ByteOrder { file: meta.byte_order, host: host_byte_order() });
        }
        if !meta.record_sizes.readable_here() {
            return Err(ReadError::Layout {
                version: meta.tracer_version,
                file: meta.record_sizes,
                this: RecordSizes::this_build(),
            });
        }
        r.meta = meta;
        Ok(r)
    }

    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// The trailer, once every record has been read.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// The next record; None after the last one (the trailer has then been read and checked).
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let result = self.frame();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn frame(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        let at = self.at;
        let kind = self.read_up_to(1)?;
        let Some(&kind) = kind.first() else { return Err(ReadError::Truncated("the records (no trailer)", at)) };
        let len = self.u32("a frame header")?;
        match kind {
            FRAME_RECORD => {
                let bytes = self.payload("a record", len, MAX_RECORD_LEN)?;
                self.records += 1;
                Ok(Some(bytes))
            }
            FRAME_TRAILER => {
                let json = self.payload("the trailer", len, MAX_JSON_LEN)?;
                let trailer: Trailer = serde_json::from_slice(&json).map_err(|e| ReadError::Trailer(e.to_string()))?;
                let rest = io::copy(&mut (&mut self.src).take(u64::MAX), &mut io::sink()).map_err(ReadError::Io)?;
                if rest > 0 {
                    return Err(ReadError::TrailingBytes(rest));
                }
                if trailer.records != self.records {
                    return Err(ReadError::RecordCount { counted: trailer.records, found: self.records });
                }
                self.trailer = Some(trailer);
                Ok(None)
            }
            kind => Err(ReadError::UnknownFrame { kind, at }),
        }
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ReadError> {
        let b = self.read_up_to(4)?;
        let b: [u8; 4] = b.try_into().map_err(|_| ReadError::Truncated(what, self.at))?;
        Ok(u32::from_le_bytes(b))
    }

    fn payload(&mut self, what: &'static str, len: u32, max: u32) -> Result<Vec<u8>, ReadError> {
        if len > max {
            return Err(ReadError::TooLong { what, len, at: self.at, max });
        }
        let b = self.read_up_to(len as usize)?;
        if b.len() < len as usize {
            return Err(ReadError::Truncated(what, self.at));
        }
        Ok(b)
    }

    /// Up to `n` bytes (fewer only at the end of the file).
    fn read_up_to(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        let mut buf = Vec::with_capacity(n.min(64 * 1024));
        (&mut self.src).take(n as u64).read_to_end(&mut buf).map_err(ReadError::Io)?;
        self.at += buf.len() as u64;
        Ok(buf)
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Vec<u8>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// An I/O error's reason without the "(os error N)" suffix: "No such file or directory".
pub fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

fn empty_metadata() -> Metadata {
    Metadata {
        tracer_version: String::new(),
        kernel_release: String::new(),
        start_unix_ns: 0,
        start_monotonic_ns: 0,
        byte_order: String::new(),
        record_sizes: RecordSizes { latency: 0, bio: 0, pages: 0, exit: 0 },
        probes: Vec::new(),
        req_ops: BTreeMap::new(),
        command: Vec::new(),
        foll: FollBits::default(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::mem::offset_of;

    use proptest::prelude::*;
    use tracer_common::{BioEvent, LatencyKind, Owner, ProbeId, ProbeStat, RecordType, BIO_FLAG_PINNED};

    use super::*;
    use crate::decode::{bytes_of, decode, Record};

    pub(crate) fn metadata() -> Metadata {
        Metadata {
            tracer_version: "0.1.0".into(),
            kernel_release: "6.12.0-test".into(),
            start_unix_ns: 1_700_000_000_000_000_000,
            start_monotonic_ns: 1_000,
            byte_order: host_byte_order().into(),
            record_sizes: RecordSizes::this_build(),
            probes: vec![ProbeInfo {
                target: "bio_endio".into(),
                role: "latency".into(),
                attached: Some("fentry".into()),
                reasons: vec![],
            }],
            req_ops: [(0, "read".to_string()), (1, "write".to_string())].into(),
            command: vec!["dd".into()],
            foll: FollBits { write: 1, longterm: 1 << 8 },
        }
    }

    pub(crate) fn trailer() -> Trailer {
        Trailer {
            records: 0,
            end_monotonic_ns: 5_000_000_000,
            elapsed_s: Some(5.0),
            counters: Counters::default(),
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
    fn counters_round_trip_through_a_snapshot() {
        let mut s = Snapshot { pages_pinned: 7, pages_unpinned: 5, ..Snapshot::default() };
        s.probes[ProbeId::BioEndio as usize] = ProbeStat { hits: 3, amount: 0 };
        s.probes[ProbeId::PinUserPagesFast as usize] = ProbeStat { hits: 2, amount: 7 };
        s.procs.insert(9, ProcCounts { comm: "fio".into(), pages_pinned: 7, pages_unpinned: 5 });
        s.lost[2] = 4;
        let c = Counters::from_snapshot(&s);
        let json = serde_json::to_string(&c).unwrap();
        let back: Counters = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_snapshot(), s);
    }

    #[test]
    fn outcomes_follow_this_catalogue() {
        let o = metadata().outcomes();
        assert_eq!(o.len(), PROBES.len());
        assert_eq!(o[ProbeId::BioEndio as usize].attached, Some(Method::Fentry));
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
}
