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
        let mut kind = [0u8; 1];
        if self.fill(&mut kind)? == 0 {
            return Err(ReadError::Truncated("the records (no trailer)", at));
        }
        let kind = kind[0];
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
        let mut b = [0u8; 4];
        if self.fill(&mut b)? < 4 {
            return Err(ReadError::Truncated(what, self.at));
        }
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

    /// Up to `n` bytes (fewer only at the end of the file). Callers bound `n` (the frame
    /// limits), so the buffer is sized at once: one allocation and no probing reads per frame
    /// (the engine's throughput is a benchmark target).
    fn read_up_to(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        let mut buf = vec![0u8; n];
        let filled = self.fill(&mut buf)?;
        buf.truncate(filled);
        Ok(buf)
    }

    /// Reads into `buf` until it is full or the file ends; the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.src.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        self.at += filled as u64;
        Ok(filled)
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Vec<u8>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
