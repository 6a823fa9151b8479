//! Writes a record file.

use std::io::{self, Write};

use super::{Metadata, Trailer, FORMAT_VERSION, FRAME_RECORD, FRAME_TRAILER, MAGIC, MAX_JSON_LEN, MAX_RECORD_LEN};

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
