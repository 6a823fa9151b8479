//! Reads a record file; never panics.

use std::io::{self, Read};

use super::{
    empty_metadata, host_byte_order, io_reason, Metadata, RecordSizes, Trailer, FORMAT_VERSION, FRAME_RECORD,
    FRAME_TRAILER, MAGIC, MAX_JSON_LEN, MAX_RECORD_LEN,
};

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

/// Bytes the reader asks the file for at once.
const CHUNK: usize = 1 << 20;

/// Where a reader's bytes are: read from its source into a buffer, or a mapped file (all of it
/// at once).
enum Bytes {
    Buffer(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Buffer(b) => b,
            Bytes::Mapped(m) => m,
        }
    }
}

/// Reads a record file: the header on [`Reader::new`], then records (lent as slices of one
/// buffer, the bytes live tracing hands to its consumers, or as an iterator of owned ones),
/// then the trailer.
pub struct Reader<R: Read> {
    src: R,
    /// Bytes of the file read and not consumed yet: `buf[pos..end]`.
    buf: Bytes,
    pos: usize,
    end: usize,
    /// Bytes consumed so far.
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
        Reader::start(src, Bytes::Buffer(Vec::new()))
    }

    /// Checks the header of the file mapped in `map` (see [`super::map`]); `src`, never read,
    /// stands for the file.
    pub fn mapped(src: R, map: memmap2::Mmap) -> Result<Reader<R>, ReadError> {
        Reader::start(src, Bytes::Mapped(map))
    }

    fn start(src: R, buf: Bytes) -> Result<Reader<R>, ReadError> {
        let end = if let Bytes::Mapped(m) = &buf { m.len() } else { 0 };
        let mut r =
            Reader { src, buf, pos: 0, end, at: 0, meta: empty_metadata(), records: 0, trailer: None, done: false };
        let magic = r.consume(8)?.to_vec();
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
        let meta: Metadata = serde_json::from_slice(json).map_err(|e| ReadError::Metadata(e.to_string()))?;
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
        Ok(self.next_slice()?.map(<[u8]>::to_vec))
    }

    /// The next record, lent until the next call (no copy when it lies in the buffer, the
    /// engine's throughput being a benchmark target); None after the last one.
    pub fn next_slice(&mut self) -> Result<Option<&[u8]>, ReadError> {
        if self.done {
            return Ok(None);
        }
        // A whole record frame in the buffer: lent at once (the usual case).
        if let Some(&[kind, a, b, c, d]) = self.buf.get(self.pos..self.pos + 5) {
            let len = u32::from_le_bytes([a, b, c, d]);
            let (start, end) = (self.pos + 5, self.pos + 5 + len as usize);
            if kind == FRAME_RECORD && len <= MAX_RECORD_LEN && end <= self.end {
                self.at += (end - self.pos) as u64;
                self.pos = end;
                self.records += 1;
                return Ok(Some(&self.buf[start..end]));
            }
        }
        match self.frame() {
            Ok(Some(len)) => Ok(Some(&self.buf[self.pos - len..self.pos])),
            other => {
                self.done = true;
                other.map(|_| None)
            }
        }
    }

    /// Reads a frame; for a record, its length (its bytes end at `pos`).
    fn frame(&mut self) -> Result<Option<usize>, ReadError> {
        let at = self.at;
        let Some(&kind) = self.consume(1)?.first() else {
            return Err(ReadError::Truncated("the records (no trailer)", at));
        };
        let len = self.u32("a frame header")?;
        match kind {
            FRAME_RECORD => {
                let n = self.payload("a record", len, MAX_RECORD_LEN)?.len();
                self.records += 1;
                Ok(Some(n))
            }
            FRAME_TRAILER => {
                let json = self.payload("the trailer", len, MAX_JSON_LEN)?;
                let trailer: Trailer = serde_json::from_slice(json).map_err(|e| ReadError::Trailer(e.to_string()))?;
                let buffered = (self.end - self.pos) as u64;
                let rest = io::copy(&mut (&mut self.src).take(u64::MAX), &mut io::sink()).map_err(ReadError::Io)?;
                if buffered + rest > 0 {
                    return Err(ReadError::TrailingBytes(buffered + rest));
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
        match *self.consume(4)? {
            [a, b, c, d] => Ok(u32::from_le_bytes([a, b, c, d])),
            _ => Err(ReadError::Truncated(what, self.at)),
        }
    }

    fn payload(&mut self, what: &'static str, len: u32, max: u32) -> Result<&[u8], ReadError> {
        if len > max {
            return Err(ReadError::TooLong { what, len, at: self.at, max });
        }
        let at = self.at;
        let b = self.consume(len as usize)?;
        if b.len() < len as usize {
            return Err(ReadError::Truncated(what, at + b.len() as u64));
        }
        Ok(b)
    }

    /// The next `n` bytes (fewer only at the end of the file), consumed. Callers bound `n`
    /// (the frame limits).
    fn consume(&mut self, n: usize) -> Result<&[u8], ReadError> {
        if self.end - self.pos < n {
            self.refill(n)?;
        }
        let k = n.min(self.end - self.pos);
        self.pos += k;
        self.at += k as u64;
        Ok(&self.buf[self.pos - k..self.pos])
    }

    /// Reads until `n` bytes are buffered or the file ends, moving what is left to the front.
    fn refill(&mut self, n: usize) -> Result<(), ReadError> {
        // A mapped file is all there already.
        let Bytes::Buffer(buf) = &mut self.buf else { return Ok(()) };
        buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if buf.len() < n.max(CHUNK) {
            buf.resize(n.max(CHUNK), 0);
        }
        while self.end < n {
            match self.src.read(&mut buf[self.end..]) {
                Ok(0) => break,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Vec<u8>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
