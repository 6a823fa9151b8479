//! The decoded records the engine consumes, and the small kernel values they carry (FOLL_*
//! bits, dev_t, comm). Pure data: decode.rs makes them from ring buffer bytes.

use serde::{Deserialize, Serialize};
use tracer_common::{block::BlockHeader, BioRecord, ExitRecord, LatencyEvent, Owner, RecordType, COMM_LEN};

/// One record of the `EVENTS` ring buffer. Records are handled one at a time, so the size
/// difference between the variants costs nothing worth a heap allocation per record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Latency(LatencyEvent),
    Bio(BioRecord),
    Pages(PagesRecord),
    Symbols(SymbolsRecord),
    Exit(ExitRecord),
    Block(BlockRecord),
}

impl Record {
    /// When the kernel wrote it (CLOCK_MONOTONIC); None for what userspace adds (symbols).
    pub fn ts_ns(&self) -> Option<u64> {
        match self {
            Record::Latency(ev) => Some(ev.end_ns),
            Record::Bio(b) => Some(b.ts_ns),
            Record::Pages(p) => Some(p.ts_ns),
            Record::Symbols(_) => None,
            Record::Exit(e) => Some(e.ts_ns),
            Record::Block(b) => Some(b.head.ts_ns),
        }
    }
}

/// A decoded block timing record (tracer_common::block): the header, and for a request's
/// completion the bios it completes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockRecord {
    pub head: BlockHeader,
    pub bios: Vec<ListedBio>,
}

/// A bio a request's completion lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListedBio {
    pub bio: u64,
    /// Bytes still to complete when the request completed.
    pub size: u32,
    /// Its queueing as the kernel side's stamp table kept it; 0 when streamed, or not seen.
    pub queued_ns: u64,
}

/// Values of the FOLL_* flags the audit names, from the traced kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollBits {
    pub write: u32,
    pub longterm: u32,
}

impl FollBits {
    /// Kernels before 6.2 define FOLL_* as macros (not in BTF): FOLL_WRITE 0x01,
    /// FOLL_LONGTERM 0x10000.
    pub const BEFORE_6_2: FollBits = FollBits { write: 0x01, longterm: 0x10000 };
}

impl Default for FollBits {
    fn default() -> FollBits {
        FollBits::BEFORE_6_2
    }
}

/// A decoded page record (tracer_common::PagesHeader and its entries): one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PagesRecord {
    pub event: u32,
    pub ts_ns: u64,
    pub probe: u32,
    pub gup_flags: u32,
    pub nr: u32,
    pub refs: u32,
    pub flags: u32,
    pub owner: Owner,
    /// Kernel stack of the call (return addresses, innermost first; empty when unread).
    pub frames: Vec<u64>,
    /// (struct page or 0, folio) of each listed entry.
    pub entries: Vec<(u64, u64)>,
}

/// Kernel symbols of return addresses ("function+0xoff"), as userspace resolved them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolsRecord {
    pub symbols: Vec<(u64, String)>,
}

/// Symbols of one symbols record at most.
pub const MAX_SYMBOLS: usize = 4096;

/// A symbols record as userspace writes it: type, count, then each symbol as its address
/// (u64), a u16 length and UTF-8 bytes (native byte order, like the kernel's records).
pub fn symbols_bytes(s: &SymbolsRecord) -> Vec<u8> {
    let symbols = &s.symbols[..s.symbols.len().min(MAX_SYMBOLS)];
    let mut out = Vec::with_capacity(8 + symbols.iter().map(|(_, n)| 10 + n.len()).sum::<usize>());
    out.extend_from_slice(&(RecordType::Stack as u32).to_ne_bytes());
    out.extend_from_slice(&(symbols.len() as u32).to_ne_bytes());
    for (ip, name) in symbols {
        let b = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
        out.extend_from_slice(&ip.to_ne_bytes());
        out.extend_from_slice(&(b.len() as u16).to_ne_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// A kernel comm (NUL-padded) as text.
pub fn comm_to_string(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// A kernel dev_t (major << 20 | minor), shown as "major:minor".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dev(pub u32);

impl Dev {
    pub fn major(self) -> u32 {
        self.0 >> 20
    }

    pub fn minor(self) -> u32 {
        self.0 & 0xfffff
    }
}

impl std::fmt::Display for Dev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major(), self.minor())
    }
}

/// Names the rows need: device names by dev_t and operation names by REQ_OP value.
pub trait Names {
    fn device(&self, dev: u32) -> String;
    fn op(&self, op: u32) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul() {
        let mut c = [0u8; COMM_LEN];
        c[..3].copy_from_slice(b"fio");
        assert_eq!(comm_to_string(&c), "fio");
        assert_eq!(comm_to_string(&[b'x'; COMM_LEN]), "x".repeat(COMM_LEN));
    }

    #[test]
    fn devices_show_as_major_minor() {
        assert_eq!(Dev(254 << 20 | 3).to_string(), "254:3");
    }
}
