//! The live source: records from the kernel's ring buffer, cut by the interval timer, SIGUSR1
//! (segments) and the end of the run (the traced command exits, the duration passes, Ctrl-C, or
//! the dashboard's quit key), with the kernel's counters at each cut.

use std::{ffi::OsString, process::ExitStatus, time::Instant};

use tokio::{
    io::unix::AsyncFd,
    process::{Child, Command},
    signal::unix::Signal,
    sync::mpsc::UnboundedReceiver,
    time::{Interval, MissedTickBehavior},
};

use super::{Event, SourceError, Tick};
use crate::{
    engine::Ending,
    model::Names,
    probes::{
        counters::Counters,
        ebpf::{self, EventStream, Tracer},
        plan::ProbeOutcome,
        sysfs::SysNames,
        vmstat::{self, FollPin},
    },
    snapshot::Start,
};

/// The counters, /proc/vmstat and both clocks at one moment of a live run.
pub struct Mark {
    snap: Counters,
    vm: Option<FollPin>,
    at: Instant,
    /// CLOCK_MONOTONIC, the records' clock.
    pub ns: u64,
}

impl Mark {
    pub fn take(tracer: &mut Tracer) -> Result<Mark, ebpf::ReadError> {
        let mut snap = tracer.counters()?;
        let vm = vmstat::read();
        // The exact FOLL_PIN totals are the kernel's own (spans subtract two marks).
        if let Some(v) = vm {
            snap.pages_pinned = v.nr_foll_pin_acquired;
            snap.pages_unpinned = v.nr_foll_pin_released;
        }
        Ok(Mark { snap, vm, at: Instant::now(), ns: monotonic_ns() })
    }

    /// How the span from `start` to this mark ended.
    fn ending_since(&self, start: &Mark, outcomes: &[ProbeOutcome], command_exit_status: Option<i32>) -> Ending {
        Ending {
            outcomes: outcomes.to_vec(),
            span: self.snap.since(&start.snap),
            elapsed_s: self.at.duration_since(start.at).as_secs_f64(),
            vmstat: self.vm.zip(start.vm).map(|(n, p)| n.since(p)),
            command_exit_status,
            end_ns: self.ns,
        }
    }

    fn copy(&self) -> Mark {
        Mark { snap: self.snap.clone(), ..*self }
    }
}

/// What ends or cuts a live run.
pub struct Triggers {
    /// The command to trace (started once the run's start has been shown), if any.
    pub command: Vec<OsString>,
    /// The nice value the command starts with, when the tracer runs at another (`--nice`).
    pub command_nice: Option<i32>,
    pub duration: Option<std::time::Duration>,
    pub interval: Option<std::time::Duration>,
    /// SIGUSR1, under `--segments`.
    pub segments: Option<Signal>,
    /// SIGINT and SIGTERM: the end of the run. Streams made once, before the loop: a
    /// `ctrl_c()` future made per turn of the loop misses a signal that arrives while no turn
    /// waits (the driver's work between two events), and the tracer then never stops.
    pub interrupt: Signal,
    pub terminate: Signal,
    /// The dashboard's quit key.
    pub quit: Option<UnboundedReceiver<()>>,
}

/// The timers and the command once the run is under way.
struct Running {
    child: Option<Child>,
    deadline: Option<tokio::time::Instant>,
    ticker: Option<Interval>,
    drain_tick: Interval,
}

/// The loaded programs, their ring buffer and the marks spans are measured from.
struct Clocks {
    tracer: Tracer,
    events: Option<AsyncFd<EventStream>>,
    /// Where the run, its current segment and the last interval started.
    first: Instant,
    segment: Mark,
    prev: Mark,
}

pub struct LiveSource {
    clocks: Clocks,
    triggers: Triggers,
    names: SysNames,
    start: Option<Start>,
    running: Option<Running>,
}

enum Stop {
    Exited(ExitStatus),
    Stopped,
}

impl LiveSource {
    /// `first`: the counters when tracing started; `start`: what the run shows first.
    pub fn new(
        tracer: Tracer,
        first: Mark,
        triggers: Triggers,
        names: SysNames,
        start: Start,
    ) -> Result<LiveSource, SourceError> {
        let mut tracer = tracer;
        let events = match tracer.take_events() {
            // SAFETY: the stream owns the ring buffer map, whose fd stays open and unchanged for
            // as long as the stream (and so the AsyncFd) lives.
            Some(stream) => Some(
                unsafe { AsyncFd::register_with_interest(stream, tokio::io::Interest::READABLE) }
                    .map_err(|e| SourceError::Poll(std::io::Error::other(e.to_string())))?,
            ),
            None => None,
        };
        let clocks = Clocks { tracer, events, first: first.at, segment: first.copy(), prev: first };
        Ok(LiveSource { clocks, triggers, names, start: Some(start), running: None })
    }

    pub fn names(&self) -> &dyn Names {
        &self.names
    }

    /// The start first; then, once the command runs, records until the next cut.
    pub async fn next(&mut self, each: &mut dyn FnMut(&[u8])) -> Result<Event, SourceError> {
        if let Some(start) = self.start.take() {
            return Ok(Event::Start(start));
        }
        let run = match &mut self.running {
            Some(run) => run,
            none => none.insert(Self::run(&self.triggers)?),
        };
        let (clocks, triggers) = (&mut self.clocks, &mut self.triggers);
        let stop: Stop = loop {
            tokio::select! {
                status = wait(&mut run.child) => break Stop::Exited(status.map_err(SourceError::Wait)?),
                () = sleep_until(run.deadline) => break Stop::Stopped,
                _ = triggers.interrupt.recv() => break Stop::Stopped,
                _ = triggers.terminate.recv() => break Stop::Stopped,
                () = quit_key(&mut triggers.quit) => break Stop::Stopped,
                _ = run.drain_tick.tick() => clocks.drain(each),
                ready = readable(&mut clocks.events) => {
                    let mut guard = ready.map_err(SourceError::Poll)?;
                    guard.get_inner_mut().drain(|bytes| each(bytes));
                    guard.clear_ready();
                }
                _ = next_signal(&mut triggers.segments) => return clocks.segment(each).map(Event::Segment),
                _ = tick(&mut run.ticker) => return clocks.interval(each).map(|t| Event::Interval(Box::new(t))),
            }
        };
        let status = match (stop, run.child.as_mut()) {
            (Stop::Exited(status), _) => Some(status),
            // Stopped by the duration, Ctrl-C or the quit key: the command does not outlive the
            // trace.
            (Stop::Stopped, Some(c)) => {
                let _ = c.start_kill();
                Some(c.wait().await.map_err(SourceError::Wait)?)
            }
            (Stop::Stopped, None) => None,
        };
        clocks.drain(each);
        let now = clocks.mark()?;
        Ok(Event::End(now.ending_since(&clocks.segment, &clocks.tracer.outcomes, status.map(exit_code))))
    }

    /// Starts the command and the timers.
    fn run(triggers: &Triggers) -> Result<Running, SourceError> {
        let child = match triggers.command.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).kill_on_drop(true);
                if let Some(nice) = triggers.command_nice {
                    // SAFETY: setpriority is a system call, safe between fork and exec.
                    unsafe { command.pre_exec(move || crate::run::priority::set(nice)) };
                }
                Some(command.spawn().map_err(|e| SourceError::Spawn(program.to_string_lossy().into_owned(), e))?)
            }
            None => None,
        };
        let deadline = triggers.duration.map(|d| tokio::time::Instant::now() + d);
        let ticker = triggers.interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        // The programs submit records without waking us (one wakeup per I/O would cost a
        // context switch per I/O) unless the ring buffer fills to a quarter: drain it on a
        // short period.
        let mut drain_tick = tokio::time::interval(std::time::Duration::from_millis(20));
        drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Running { child, deadline, ticker, drain_tick })
    }
}

impl Clocks {
    /// The counters now, with the records read so far.
    fn mark(&mut self) -> Result<Mark, ebpf::ReadError> {
        let mut now = Mark::take(&mut self.tracer)?;
        now.snap.records_read = self.events.as_ref().map_or(0, |fd| fd.get_ref().records_read());
        Ok(now)
    }

    fn drain(&mut self, each: &mut dyn FnMut(&[u8])) {
        if let Some(fd) = self.events.as_mut() {
            fd.get_mut().drain(|bytes| each(bytes));
        }
    }

    /// The end of an interval: the counters since the last one, and the segment so far.
    fn interval(&mut self, each: &mut dyn FnMut(&[u8])) -> Result<Tick, SourceError> {
        self.drain(each);
        let now = self.mark()?;
        let tick = Tick {
            span: now.snap.since(&self.prev.snap),
            elapsed_s: now.at.duration_since(self.first).as_secs_f64(),
            span_s: now.at.duration_since(self.prev.at).as_secs_f64(),
            vmstat: now.vm.zip(self.prev.vm).map(|(n, p)| n.since(p)),
            end_ns: now.ns,
            totals: now.ending_since(&self.segment, &self.tracer.outcomes, None),
        };
        self.prev = now;
        Ok(tick)
    }

    /// The end of a segment (the next one starts here).
    fn segment(&mut self, each: &mut dyn FnMut(&[u8])) -> Result<Ending, SourceError> {
        self.drain(each);
        let now = self.mark()?;
        let ending = now.ending_since(&self.segment, &self.tracer.outcomes, None);
        self.segment = now;
        Ok(ending)
    }
}

/// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns and so of every record.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes a timespec through a valid pointer to a local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
/// The next SIGUSR1 when segments are on; never otherwise.
async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn readable(
    events: &mut Option<AsyncFd<EventStream>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, EventStream>> {
    match events {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

async fn wait(child: &mut Option<tokio::process::Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Until the dashboard's user asks to quit (never without a dashboard, nor once its key
/// reader ended).
async fn quit_key(quit: &mut Option<UnboundedReceiver<()>>) {
    let Some(q) = quit else { return std::future::pending().await };
    if q.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Exit status as a shell reports it: the code, or 128 + the signal number.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
