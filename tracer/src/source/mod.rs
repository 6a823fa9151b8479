//! Event sources: where a run's ring buffer records come from, and the moments that cut them
//! into spans (intervals, segments, the end) with the counters over each. A live run
//! ([`LiveSource`]: the kernel's ring buffer and maps), a record file ([`FileSource`]) and, in
//! tests, records in memory all feed the same loop (`run::drive`).

mod file;
mod live;

pub use self::{
    file::FileSource,
    live::{LiveSource, Mark, Triggers},
};
use crate::{
    engine::Ending,
    model::Names,
    probes::{counters::Counters, ebpf, vmstat::FollPin},
    record::ReadError,
    snapshot::Start,
};

/// What cut the records.
pub enum Event {
    /// What the run shows first: a live run's probes, or a record file's (once its records are
    /// read: the count is in its trailer).
    Start(Start),
    /// An interval ended (live runs only).
    Interval(Box<Tick>),
    /// A segment of the run ended (SIGUSR1 under `--segments`); the run goes on.
    Segment(Ending),
    /// The records ended, and so did the run.
    End(Ending),
}

/// The end of an interval.
pub struct Tick {
    /// The counters over the interval.
    pub span: Counters,
    /// Seconds from the start of the run to the end of the interval, and of the interval.
    pub elapsed_s: f64,
    pub span_s: f64,
    pub vmstat: Option<FollPin>,
    /// The records' clock at the end of the interval.
    pub end_ns: u64,
    /// The segment so far, as if it ended here.
    pub totals: Ending,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}: {1}")]
    File(String, ReadError),
    #[error("{0}: the trailer is missing")]
    NoTrailer(String),
    #[error("polling the event ring buffer: {0}")]
    Poll(std::io::Error),
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("waiting for the traced command: {0}")]
    Wait(std::io::Error),
    #[error(transparent)]
    Counters(#[from] ebpf::ReadError),
}

/// A script of records and the events that cut them (tests).
#[cfg(test)]
pub struct MemorySource {
    pub steps: std::collections::VecDeque<(Vec<Vec<u8>>, Event)>,
    pub names: crate::record::FileNames,
}

/// Where the records come from.
pub enum EventSource {
    Live(Box<LiveSource>),
    File(Box<FileSource<Box<dyn std::io::Read>>>),
    #[cfg(test)]
    Memory(Box<MemorySource>),
}

impl EventSource {
    /// Hands every record up to the next event to `each`, then returns the event.
    pub async fn next(&mut self, each: &mut dyn FnMut(&[u8])) -> Result<Event, SourceError> {
        match self {
            EventSource::Live(live) => live.next(each).await,
            EventSource::File(file) => file.next(each),
            #[cfg(test)]
            EventSource::Memory(m) => {
                let (records, event) = m.steps.pop_front().expect("the script ends with an End");
                records.iter().for_each(|r| each(r));
                Ok(event)
            }
        }
    }

    /// Device and operation names for the records so far.
    pub fn names(&self) -> &dyn Names {
        match self {
            EventSource::Live(live) => live.names(),
            EventSource::File(file) => file.names(),
            #[cfg(test)]
            EventSource::Memory(m) => &m.names,
        }
    }
}
