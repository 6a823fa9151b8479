//! The record file of `tracer record`, replayed by `tracer report`: a header (magic, format
//! version, JSON metadata), every ring buffer record exactly as the kernel wrote it, and a
//! trailer with the final counters. Byte by byte: docs/ledger.md.
//!
//! Reading never panics: a file that is not a record file, of another version, truncated or
//! corrupt gives a one-line [`ReadError`].

use std::{collections::BTreeMap, io};

use serde::{Deserialize, Serialize};
use tracer_common::{
    block::{BlockHeader, RqCompleteWire},
    BioWire, ExitRecord, LatencyEvent, PagesHeader, PROBES,
};

mod mapped;
mod reader;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

pub use self::{
    mapped::map,
    reader::{ReadError, Reader},
    writer::Writer,
};
use crate::{
    model::{Dev, FollBits, Names},
    probes::{
        counters::{Counters, ProcCounts},
        plan::{role_name, Method, ProbeOutcome},
        vmstat::FollPin,
    },
};

/// The first 8 bytes of a record file.
pub const MAGIC: [u8; 8] = *b"TRACEREC";
/// The format version this tracer writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Frame kinds.
pub(crate) const FRAME_RECORD: u8 = 1;
pub(crate) const FRAME_TRAILER: u8 = 2;
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
    /// Whether the pin records name each page's real folio (the struct page layout was known;
    /// files without it come from tracers that did not read 7.x's compound_info).
    #[serde(default)]
    pub folio_heads: bool,
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
    /// The header of block timing records (0 in files from tracers that had none: their
    /// kernel side paired the block layer's starts and completions itself).
    #[serde(default)]
    pub block: u32,
    /// A request's completion with room for all its bios (tracer_common::block::RqCompleteWire;
    /// 0 in files from tracers that did not write this size down: a layout before the stamp
    /// table; 376 from those before the completion's bios were entries of 24 bytes).
    #[serde(default)]
    pub rq_complete: u32,
}

impl RecordSizes {
    /// Whether this build reads a file of these sizes: the same layouts, or a file from
    /// before page or exit records (it holds none).
    pub fn readable_here(&self) -> bool {
        let this = RecordSizes::this_build();
        let pages = if self.pages == 0 { 0 } else { this.pages };
        let exit = if self.exit == 0 { 0 } else { this.exit };
        let (block, rq_complete) = if self.block == 0 { (0, 0) } else { (this.block, this.rq_complete) };
        *self == RecordSizes { pages, exit, block, rq_complete, ..this }
    }

    pub fn this_build() -> RecordSizes {
        RecordSizes {
            latency: std::mem::size_of::<LatencyEvent>() as u32,
            bio: std::mem::size_of::<BioWire>() as u32,
            pages: std::mem::size_of::<PagesHeader>() as u32,
            exit: std::mem::size_of::<ExitRecord>() as u32,
            block: std::mem::size_of::<BlockHeader>() as u32,
            rq_complete: std::mem::size_of::<RqCompleteWire>() as u32,
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
    /// Not asked for (not missing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub off: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonInfo {
    pub method: String,
    pub reason: String,
}

impl ProbeInfo {
    pub fn from_outcome(o: &ProbeOutcome) -> ProbeInfo {
        ProbeInfo {
            target: o.def.target.into(),
            role: role_name(o.def.role).into(),
            attached: o.attached.map(|m| m.name().to_string()),
            off: o.off,
            reasons: o
                .failures
                .iter()
                .map(|(m, r)| ReasonInfo { method: m.name().into(), reason: r.clone() })
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
                    off: p.off,
                    attached: p.attached.as_deref().and_then(method),
                    failures: p
                        .reasons
                        .iter()
                        .filter_map(|r| method(&r.method).map(|m| (m, r.reason.clone())))
                        .collect(),
                },
                None => ProbeOutcome {
                    def: *def,
                    off: false,
                    attached: None,
                    failures: vec![(Method::Fentry, "not in the record file".into())],
                },
            })
            .collect()
    }
}

fn method(name: &str) -> Option<Method> {
    [
        Method::Fentry,
        Method::Fexit,
        Method::Kprobe,
        Method::Kretprobe,
        Method::TpBtf,
        Method::Tracepoint,
        Method::RawTracepoint,
    ]
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
    /// SavedCounters over the whole run (what the summary is made of).
    #[serde(default)]
    pub counters: SavedCounters,
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

/// [`Counters`] (kernel counter differences over the run) as plain serializable data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCounters {
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
    /// Records submitted by the programs and read, since they were loaded (0 in files of
    /// tracers before these were counted).
    #[serde(default)]
    pub records_submitted: u64,
    #[serde(default)]
    pub records_read: u64,
    /// Indexed by `tracer_common::counters::PathCount` (empty in older files).
    #[serde(default)]
    pub stack_paths: Vec<u64>,
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
    /// 0 in record files written before it was kept.
    #[serde(default)]
    pub cgroup: u64,
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

impl SavedCounters {
    pub fn from_counters(s: &Counters) -> SavedCounters {
        SavedCounters {
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
                    cgroup: p.cgroup,
                    pages_pinned: p.pages_pinned,
                    pages_unpinned: p.pages_unpinned,
                })
                .collect(),
            lost: s.lost.to_vec(),
            records_submitted: s.records_submitted,
            records_read: s.records_read,
            stack_paths: s.stack_paths.to_vec(),
        }
    }

    pub fn to_counters(&self) -> Counters {
        let mut s = Counters {
            pages_pinned: self.pages_pinned,
            pages_unpinned: self.pages_unpinned,
            records_submitted: self.records_submitted,
            records_read: self.records_read,
            ..Counters::default()
        };
        for (to, from) in s.stack_paths.iter_mut().zip(&self.stack_paths) {
            *to = *from;
        }
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
                ProcCounts {
                    comm: p.comm.clone(),
                    cgroup: p.cgroup,
                    pages_pinned: p.pages_pinned,
                    pages_unpinned: p.pages_unpinned,
                },
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
        record_sizes: RecordSizes { latency: 0, bio: 0, pages: 0, exit: 0, block: 0, rq_complete: 0 },
        probes: Vec::new(),
        req_ops: BTreeMap::new(),
        command: Vec::new(),
        foll: FollBits::default(),
        folio_heads: false,
    }
}

/// Names from a record file: operation names from its metadata, device names from its trailer.
#[derive(Default)]
pub struct FileNames {
    pub ops: BTreeMap<u32, String>,
    pub devices: BTreeMap<String, String>,
}

impl Names for FileNames {
    fn device(&self, dev: u32) -> String {
        if dev == 0 {
            return "?".into();
        }
        let key = Dev(dev).to_string();
        self.devices.get(&key).cloned().unwrap_or(key)
    }

    fn op(&self, op: u32) -> String {
        self.ops.get(&op).cloned().unwrap_or_else(|| format!("op{op}"))
    }
}
