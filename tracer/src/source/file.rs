//! A record file as an event source: its records, then its start (the trailer holds the record
//! count the start shows), then its end from the trailer.

use std::io::Read;

use super::{Event, SourceError};
use crate::{
    engine::Ending,
    model::Names,
    probes::vmstat::FollPin,
    record::{FileNames, Metadata, ReadError, Reader},
    snapshot::{Recording, Start},
};

pub struct FileSource<R: Read> {
    /// The file's name, for messages.
    name: String,
    reader: Reader<R>,
    names: FileNames,
    read: bool,
}

impl<R: Read> FileSource<R> {
    /// Reads the header of the record file `src`, named `name`.
    pub fn open(name: &str, src: R) -> Result<FileSource<R>, SourceError> {
        FileSource::with(name, Reader::new(src))
    }

    fn with(name: &str, reader: Result<Reader<R>, ReadError>) -> Result<FileSource<R>, SourceError> {
        let reader = reader.map_err(|e| SourceError::File(name.to_string(), e))?;
        let names = FileNames { ops: reader.metadata().req_ops.clone(), devices: Default::default() };
        Ok(FileSource { name: name.to_string(), reader, names, read: false })
    }

    pub fn metadata(&self) -> &Metadata {
        self.reader.metadata()
    }

    pub fn names(&self) -> &dyn Names {
        &self.names
    }

    /// Every record, then the start; then the end.
    pub fn next(&mut self, each: &mut dyn FnMut(&[u8])) -> Result<Event, SourceError> {
        if self.read {
            return Ok(Event::End(self.ending()?));
        }
        while let Some(raw) = self.reader.next_slice().map_err(|e| SourceError::File(self.name.clone(), e))? {
            each(raw);
        }
        self.read = true;
        let records = self.reader.trailer().ok_or_else(|| SourceError::NoTrailer(self.name.clone()))?.records;
        let meta = self.reader.metadata();
        let recording = Recording {
            file: self.name.clone(),
            tracer_version: meta.tracer_version.clone(),
            kernel_release: meta.kernel_release.clone(),
            start_unix_ns: meta.start_unix_ns,
            records,
            command: meta.command.clone(),
        };
        Ok(Event::Start(Start {
            recording: Some(recording),
            kernel: meta.kernel_release.clone(),
            probes: meta.outcomes(),
        }))
    }

    /// How the recorded run ended, from the trailer; its device names from now on.
    fn ending(&mut self) -> Result<Ending, SourceError> {
        let meta = self.reader.metadata();
        let trailer = self.reader.trailer().ok_or_else(|| SourceError::NoTrailer(self.name.clone()))?;
        self.names.devices = trailer.devices.clone();
        Ok(Ending {
            outcomes: meta.outcomes(),
            span: trailer.counters.to_counters(),
            elapsed_s: trailer
                .elapsed_s
                .unwrap_or(trailer.end_monotonic_ns.saturating_sub(meta.start_monotonic_ns) as f64 / 1e9),
            vmstat: trailer.vmstat.map(FollPin::from),
            command_exit_status: trailer.command_exit_status,
            end_ns: trailer.end_monotonic_ns,
        })
    }
}

impl FileSource<Box<dyn Read>> {
    /// The record file mapped in `map` (see [`crate::record::map`]), named `name`.
    pub fn open_mapped(name: &str, map: memmap2::Mmap) -> Result<FileSource<Box<dyn Read>>, SourceError> {
        FileSource::with(name, Reader::mapped(Box::new(std::io::empty()), map))
    }
}
