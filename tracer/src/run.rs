//! `tracer run`, `tracer record`, `tracer report` and `tracer check`: glue between the kernel
//! side (or a record file), the pure consumers and the output.
//!
//! Live tracing and replay share one path: raw ring buffer records go into a [`Pipeline`]
//! (decode, latency histograms, pin ledger); at the end, [`Pipeline::finish`] makes the final
//! figures from the records and an [`Ending`] (the counters and clock of the live run, or the
//! record file's trailer), and a [`Sink`] prints them.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    path::Path,
    process::ExitStatus,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, Context, Result};
use tokio::{io::unix::AsyncFd, process::Command, time::MissedTickBehavior};
use tracer_common::LostReason;

use crate::{
    cli::{CheckArgs, Format, ReportArgs, RunArgs},
    decode::{decode, Record},
    ebpf::{EventStream, LoadError, Tracer},
    kernel::Facts,
    latency::{Key, Latency, Stats},
    ledger::{self, judge, FollBits, Judgement, Ledger, LedgerSnapshot, PageLedger, PageSnapshot, Step},
    output::{
        figures_text, json_line, latency_records, latency_text, ledger_record, ledger_text, page_ledger_record,
        page_ledger_text, probes_brief, probes_text, process_records, Figures, Names, ProbeRecord,
    },
    plan::{plan, ProbeOutcome},
    record::{self, io_reason, Counters, Metadata, ProbeInfo, Reader, RecordSizes, Trailer, Writer},
    screen::Screen,
    stats::Snapshot,
    tui::{Dashboard, Msg, View},
    vmstat::{self, FollPin},
};

/// `tracer check`: the probe plan of this kernel, tried for real where we may load programs.
pub fn check(args: &CheckArgs) -> Result<i32> {
    let facts = Facts::probe_running_kernel();
    let planned = plan(&facts);
    let (outcomes, load_problem) = match Tracer::load(&facts, &planned) {
        Ok(t) => (t.outcomes.clone(), None),
        Err(e @ (LoadError::Stub | LoadError::Permission(_) | LoadError::Object(_) | LoadError::Arm(_))) => {
            let why = e.to_string();
            (planned.iter().map(|p| ProbeOutcome::untried(p, &why)).collect(), Some(why))
        }
        // Everything was tried and nothing attached: the outcomes say why, probe by probe.
        Err(LoadError::NothingAttached) => (
            planned.iter().map(|p| ProbeOutcome::untried(p, "no probe attached")).collect(),
            None,
        ),
    };
    let records: Vec<ProbeRecord> = outcomes.iter().map(ProbeRecord::from_outcome).collect();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text | Format::Tui => write!(out, "{}", probes_text(&records, &facts.release))?,
        Format::Json => {
            for r in &records {
                writeln!(out, "{}", json_line(r))?;
            }
        }
    }
    if let Some(why) = load_problem {
        anyhow::bail!("probes could not be tried: {why}");
    }
    Ok(0)
}

/// `tracer run`, and `tracer record` when `record_to` names a file.
pub async fn run(args: RunArgs, record_to: Option<&Path>) -> Result<i32> {
    if args.segments && record_to.is_some() {
        anyhow::bail!("--segments cannot be used with record: a record file is replayed as one run");
    }
    if args.view.format == Format::Tui {
        // Before the probes load (tens of seconds on some machines).
        crate::screen::need_terminal()?;
    }
    let facts = Facts::probe_running_kernel();
    let planned = plan(&facts);
    let mut tracer = Tracer::load(&facts, &planned)?;
    // Listening before anything is printed: a harness that sends SIGUSR1 once it sees output
    // must not kill us (the default action).
    let mut segment_signal = if args.segments {
        Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .context("listening for SIGUSR1 (--segments)")?,
        )
    } else {
        None
    };
    // Before tracing starts, and only once it can: no empty record file from a failed load.
    let file = match record_to {
        Some(path) => Some(
            File::create(path)
                .map_err(|e| anyhow!("cannot create {}: {}", path.display(), io_reason(&e)))?,
        ),
        None => None,
    };
    let records: Vec<ProbeRecord> = tracer.outcomes.iter().map(ProbeRecord::from_outcome).collect();
    let mut sink = Sink { format: args.view.format, out: std::io::stdout() };
    match args.view.format {
        Format::Text | Format::Tui => sink.text(&probes_brief(&records, &facts.release)),
        Format::Json => records.iter().for_each(|r| sink.json(r)),
    }
    let mut screen = match args.view.format {
        Format::Tui => {
            let command = (!args.command.is_empty())
                .then(|| args.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
            Some(Screen::open(Dashboard::new(&facts.release, &records, command))?)
        }
        _ => None,
    };
    for r in records.iter().filter(|r| r.attached.is_none()) {
        log::info!("probe {} missing; figures that need it are reported as unverifiable", r.target);
    }

    let mut events = match tracer.take_events() {
        // SAFETY: the stream owns the ring buffer map, whose fd stays open and unchanged for as
        // long as the stream (and so the AsyncFd) lives.
        Some(stream) => Some(
            unsafe { AsyncFd::register_with_interest(stream, tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow::anyhow!("polling the event ring buffer: {e}"))?,
        ),
        None => None,
    };
    let names = SysNames::new(&facts);
    let percentiles = &args.view.percentiles.0;

    let vm_start = vmstat::read();
    let first = tracer.snapshot()?;
    let started = Instant::now();
    let start_ns = monotonic_ns();
    let mut consumers = Consumers { pipeline: Pipeline::new(ledger_config(args.view.leak_grace, facts.foll)), recorder: None };
    if let (Some(file), Some(path)) = (file, record_to) {
        let meta = Metadata {
            tracer_version: env!("CARGO_PKG_VERSION").into(),
            kernel_release: facts.release.clone(),
            start_unix_ns: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
            start_monotonic_ns: start_ns,
            byte_order: record::host_byte_order().into(),
            record_sizes: RecordSizes::this_build(),
            probes: records.iter().map(ProbeInfo::from_record).collect(),
            req_ops: facts.req_ops.clone(),
            foll: facts.foll,
            command: args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        };
        let writer = Writer::new(BufWriter::new(file), &meta).map_err(|e| write_error(path, &e))?;
        consumers.recorder = Some(Recorder { writer, error: None });
    }

    let mut child = match args.command.split_first() {
        Some((program, rest)) => Some(
            Command::new(program)
                .args(rest)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", program.to_string_lossy()))?,
        ),
        None => None,
    };
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let every = args.interval.or(screen.as_ref().map(|_| std::time::Duration::from_secs(1)));
    let mut ticker = every.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let mut prev = Mark { snap: first.clone(), vm: vm_start, at: started, ns: start_ns };
    let mut exit_status = None;
    // Where the current segment started (the whole run without --segments).
    let mut segment = Mark { snap: first.clone(), vm: vm_start, at: started, ns: start_ns };
    // The programs submit records without waking us (one wakeup per I/O would cost a context
    // switch per I/O) unless the ring buffer fills to a quarter: drain it on a short period.
    let mut drain_tick = tokio::time::interval(std::time::Duration::from_millis(20));
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            status = wait(&mut child) => {
                exit_status = Some(status.context("waiting for the traced command")?);
                break;
            }
            () = sleep_until(deadline) => break,
            _ = tokio::signal::ctrl_c() => break,
            () = quit_key(&mut screen) => break,
            _ = drain_tick.tick() => drain(&mut events, &mut consumers),
            ready = readable(&mut events) => {
                let mut guard = ready.context("polling the event ring buffer")?;
                guard.get_inner_mut().drain(|bytes| consumers.take(bytes));
                guard.clear_ready();
            }
            _ = next_signal(&mut segment_signal) => {
                drain(&mut events, &mut consumers);
                let now = Mark::take(&mut tracer)?;
                let ending = now.ending_since(&segment, &tracer.outcomes, None);
                sink.finish(&consumers.pipeline.finish(&ending, percentiles), &names);
                consumers.pipeline = consumers.pipeline.next_segment(ledger_config(args.view.leak_grace, facts.foll));
                segment = now;
            }
            _ = tick(&mut ticker) => {
                drain(&mut events, &mut consumers);
                let now = Mark::take(&mut tracer)?;
                let span = now.snap.since(&prev.snap);
                let vm = now.vm.zip(prev.vm).map(|(n, p)| n.since(p));
                let f = Figures::new(
                    "interval", &tracer.outcomes, &span,
                    now.at.duration_since(started).as_secs_f64(),
                    now.at.duration_since(prev.at).as_secs_f64(), vm,
                );
                let interval = consumers.pipeline.latency.take_interval(percentiles);
                match screen.as_mut() {
                    Some(screen) => {
                        // The same moment as the interval: the figures since the segment began.
                        let fin = consumers.pipeline.finish(&now.ending_since(&segment, &tracer.outcomes, None), percentiles);
                        let view = View::from_records(
                            &fin.summary,
                            Some(&f),
                            &process_records(&fin.span.procs),
                            &latency_records(&fin.latency, "cumulative", &names),
                            &ledger_record(&fin.ledger, &fin.judgement, &names),
                            &page_ledger_record(&fin.pages),
                        );
                        screen.show(Msg::View(Box::new(view)))?;
                    }
                    None => {
                        sink.latency(&interval, "interval", &names);
                        sink.figures(&f, &span);
                    }
                }
                prev = now;
            }
        }
    }
    // The terminal back to normal before the end-of-run report.
    drop(screen);
    if exit_status.is_none() {
        if let Some(c) = child.as_mut() {
            // Stopped by the duration or Ctrl-C: the command does not outlive the trace.
            let _ = c.start_kill();
            exit_status = Some(c.wait().await.context("waiting for the traced command")?);
        }
    }
    drain(&mut events, &mut consumers);
    let ending = Mark::take(&mut tracer)?.ending_since(&segment, &tracer.outcomes, exit_status.map(exit_code));
    let fin = consumers.pipeline.finish(&ending, percentiles);
    sink.finish(&fin, &names);
    if let (Some(recorder), Some(path)) = (consumers.recorder, record_to) {
        let trailer = Trailer {
            records: 0,
            end_monotonic_ns: ending.end_ns,
            elapsed_s: Some(ending.elapsed_s),
            counters: Counters::from_snapshot(&ending.span),
            vmstat: ending.vmstat.map(Into::into),
            command_exit_status: ending.command_exit_status,
            devices: fin.devices().into_iter().map(|dev| (dev_key(dev), names.device(dev))).collect(),
            summary: serde_json::to_value(&fin.summary).unwrap_or_default(),
        };
        if let Some(e) = recorder.error {
            return Err(write_error(path, &e));
        }
        let records = recorder.writer.records();
        recorder.writer.finish(trailer).map_err(|e| write_error(path, &e))?;
        if args.view.format != Format::Json {
            sink.text(&format!("record file {}: {records} records\n", path.display()));
        }
    }
    Ok(ending.command_exit_status.unwrap_or(0))
}

/// `tracer report`: a record file through the same pipeline and output as a live run.
pub fn report(args: &ReportArgs) -> Result<i32> {
    let path = &args.file;
    let file = File::open(path).map_err(|e| anyhow!("cannot open {}: {}", path.display(), io_reason(&e)))?;
    let mut sink = Sink { format: args.view.format, out: std::io::stdout() };
    replay(&path.display().to_string(), BufReader::new(file), args, &mut sink)?;
    Ok(0)
}

/// Replays a record file read from `src` into `sink`. `name` is the file's name for messages.
fn replay<R: Read, W: Write>(name: &str, src: R, args: &ReportArgs, sink: &mut Sink<W>) -> Result<()> {
    let fail = |e: record::ReadError| anyhow!("{name}: {e}");
    let mut reader = Reader::new(src).map_err(fail)?;
    let mut pipeline = Pipeline::new(ledger_config(args.view.leak_grace, reader.metadata().foll));
    for raw in &mut reader {
        pipeline.consume(&raw.map_err(fail)?);
    }
    let meta = reader.metadata().clone();
    let trailer = reader.trailer().cloned().ok_or_else(|| anyhow!("{name}: the trailer is missing"))?;
    let ending = Ending {
        outcomes: meta.outcomes(),
        span: trailer.counters.to_snapshot(),
        elapsed_s: trailer
            .elapsed_s
            .unwrap_or(trailer.end_monotonic_ns.saturating_sub(meta.start_monotonic_ns) as f64 / 1e9),
        vmstat: trailer.vmstat.map(FollPin::from),
        command_exit_status: trailer.command_exit_status,
        end_ns: trailer.end_monotonic_ns,
    };
    let probes: Vec<ProbeRecord> = ending.outcomes.iter().map(ProbeRecord::from_outcome).collect();
    let recording = RecordingRecord {
        kind: "recording",
        file: name.to_string(),
        tracer_version: meta.tracer_version.clone(),
        kernel_release: meta.kernel_release.clone(),
        start_unix_ns: meta.start_unix_ns,
        records: trailer.records,
        command: meta.command.clone(),
    };
    match args.view.format {
        // A replay has no live figures: the dashboard's format prints as text.
        Format::Text | Format::Tui => {
            sink.text(&recording_text(&recording));
            sink.text(&probes_brief(&probes, &meta.kernel_release));
        }
        Format::Json => {
            sink.json(&recording);
            probes.iter().for_each(|r| sink.json(r));
        }
    }
    let names = FileNames { ops: meta.req_ops, devices: trailer.devices };
    let fin = pipeline.finish(&ending, &args.view.percentiles.0);
    sink.finish(&fin, &names);
    Ok(())
}

/// What a report says about its record file (`"type": "recording"`, first).
#[derive(serde::Serialize)]
struct RecordingRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    file: String,
    tracer_version: String,
    kernel_release: String,
    start_unix_ns: u64,
    records: u64,
    command: Vec<String>,
}

fn recording_text(r: &RecordingRecord) -> String {
    let mut s = format!(
        "record file {}: {} records, tracer {}, started {}\n",
        r.file,
        r.records,
        r.tracer_version,
        utc(r.start_unix_ns)
    );
    if !r.command.is_empty() {
        s.push_str(&format!("command: {}\n", r.command.join(" ")));
    }
    s
}

/// "2024-05-01 12:00:00 UTC".
fn utc(unix_ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_ns / 1_000_000_000);
    // RFC 3339 "2024-05-01T12:00:00Z", respelled.
    humantime::format_rfc3339_seconds(t).to_string().replacen('T', " ", 1).replacen('Z', " UTC", 1)
}

fn ledger_config(grace: std::time::Duration, foll: FollBits) -> ledger::Config {
    ledger::Config { grace_ns: grace.as_nanos().min(u64::MAX as u128) as u64, foll, ..ledger::Config::default() }
}

fn write_error(path: &Path, e: &std::io::Error) -> anyhow::Error {
    anyhow!("writing {}: {}", path.display(), io_reason(e))
}

/// Raw ring buffer records -> the pure consumers: decoding, latency histograms, pin ledger.
pub struct Pipeline {
    latency: Latency,
    ledger: Ledger,
    pages: PageLedger,
    struct_page_size: u64,
    /// Records that could not be decoded.
    undecodable: u64,
    /// Leaks and mismatches found while the records streamed.
    findings: u64,
}

/// The counters, /proc/vmstat and both clocks at one moment of a live run.
struct Mark {
    snap: Snapshot,
    vm: Option<FollPin>,
    at: Instant,
    /// CLOCK_MONOTONIC, the records' clock.
    ns: u64,
}

impl Mark {
    fn take(tracer: &mut Tracer) -> Result<Mark> {
        let snap = tracer.snapshot()?;
        Ok(Mark { snap, vm: vmstat::read(), at: Instant::now(), ns: monotonic_ns() })
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
}

/// How a run ended: the counters over the run, the clock, the command. From the kernel maps in
/// a live run, from the trailer in a replay.
pub struct Ending {
    pub outcomes: Vec<ProbeOutcome>,
    pub span: Snapshot,
    pub elapsed_s: f64,
    pub vmstat: Option<FollPin>,
    pub command_exit_status: Option<i32>,
    /// The records' clock at the end: bios still holding pages are judged then.
    pub end_ns: u64,
}

/// Everything a run prints at its end.
pub struct Final {
    pub latency: Vec<(Key, Stats)>,
    pub ledger: LedgerSnapshot,
    pub pages: PageSnapshot,
    pub judgement: Judgement,
    pub span: Snapshot,
    pub summary: Figures,
}

impl Final {
    /// Devices the final figures name.
    fn devices(&self) -> Vec<u32> {
        let mut devs: Vec<u32> = self.latency.iter().map(|(k, _)| k.dev).collect();
        devs.extend(self.ledger.devices.iter().map(|d| d.dev));
        devs.extend(self.ledger.leaks.iter().map(|l| l.dev));
        devs.extend(self.ledger.mismatches.iter().map(|m| m.dev));
        devs.sort_unstable();
        devs.dedup();
        devs.retain(|&d| d != 0);
        devs
    }
}

impl Pipeline {
    pub fn new(ledger: ledger::Config) -> Pipeline {
        Pipeline {
            latency: Latency::default(),
            pages: PageLedger::new(ledger.foll, ledger.grace_ns),
            struct_page_size: ledger.struct_page_size,
            ledger: Ledger::new(ledger),
            undecodable: 0,
            findings: 0,
        }
    }

    /// A fresh pipeline for the next segment of a run; what the stream described once
    /// (kernel symbols) carries over.
    pub fn next_segment(&self, ledger: ledger::Config) -> Pipeline {
        let mut next = Pipeline::new(ledger);
        next.pages.inherit_symbols(&self.pages);
        next
    }

    /// One ring buffer record, as the kernel wrote it.
    pub fn consume(&mut self, bytes: &[u8]) {
        match decode(bytes) {
            Ok(Record::Latency(ev)) => self.latency.record(&ev),
            Ok(Record::Bio(rec)) => {
                self.pages.bio(&rec, self.struct_page_size);
                match self.ledger.apply(&rec) {
                    Step::Acquired { freed: Some(_) } | Step::Released { mismatch: Some(_), .. } => self.findings += 1,
                    _ => {}
                }
            }
            Ok(Record::Pages(rec)) => self.pages.apply(&rec),
            Ok(Record::Symbols(symbols)) => self.pages.symbols(&symbols),
            Ok(Record::Exit(exit)) => self.pages.exit(exit.tgid, exit.ts_ns),
            Err(e) => {
                self.undecodable += 1;
                self.latency.undecodable(e);
            }
        }
    }

    /// The final figures. Pure: everything comes from the records and `end`.
    pub fn finish(&self, end: &Ending, percentiles: &[f64]) -> Final {
        let mut summary =
            Figures::new("summary", &end.outcomes, &end.span, end.elapsed_s, end.elapsed_s, end.vmstat);
        summary.command_exit_status = end.command_exit_status;
        if self.latency.invalid > 0 {
            log::warn!("{} event records were invalid (undecodable, or ending before they start)", self.latency.invalid);
        }
        // Records the probes produced but that could not be used are lost events too.
        summary.lost_events += self.latency.invalid;
        let ledger = self.ledger.snapshot(end.end_ns);
        let missing: Vec<String> = ledger::PROBES_NEEDED
            .iter()
            .map(|&id| &end.outcomes[id as usize])
            .filter(|o| o.attached.is_none())
            .map(|o| o.def.target.to_string())
            .collect();
        // Ledger records lost in the ring buffer, undecodable, or never produced because the
        // kernel skipped a ledger probe (it was already running on that CPU).
        let skipped: u64 = tracer_common::PROBES
            .iter()
            .filter(|d| ledger::PROBES_NEEDED.contains(&d.id) || ledger::feeds_page_ledger(d.id))
            .map(|d| end.span.missed[d.id as usize])
            .sum();
        let lost = end.span.lost[LostReason::RingFull as usize]
            + end.span.lost[LostReason::ScratchBusy as usize]
            + self.undecodable
            + skipped;
        let pages = self.pages.snapshot(end.end_ns);
        let judgement = judge(&ledger, &missing, lost).with_page_suspects(&pages.totals, lost);
        if self.findings > 0 {
            log::info!("{} leaks or mismatches found while the records streamed", self.findings);
        }
        summary.ledger = Some(judgement.verdict.name());
        Final { latency: self.latency.cumulative(percentiles), ledger, pages, judgement, span: end.span.clone(), summary }
    }
}

/// The pipeline, and the record file when recording.
struct Consumers {
    pipeline: Pipeline,
    recorder: Option<Recorder>,
}

struct Recorder {
    writer: Writer<BufWriter<File>>,
    /// The first write error; recording stops there, tracing goes on.
    error: Option<std::io::Error>,
}

impl Consumers {
    fn take(&mut self, bytes: &[u8]) {
        if let Some(r) = self.recorder.as_mut() {
            if r.error.is_none() {
                if let Err(e) = r.writer.record(bytes) {
                    log::warn!("recording stopped: {e}");
                    r.error = Some(e);
                }
            }
        }
        self.pipeline.consume(bytes);
    }
}

/// Where the output goes, in the format asked for.
struct Sink<W: Write> {
    format: Format,
    out: W,
}

impl<W: Write> Sink<W> {
    fn text(&mut self, s: &str) {
        let _ = self.out.write_all(s.as_bytes()).and_then(|()| self.out.flush());
    }

    fn json<T: serde::Serialize>(&mut self, record: &T) {
        self.text(&(json_line(record) + "\n"));
    }

    fn latency(&mut self, rows: &[(Key, Stats)], scope: &'static str, names: &dyn Names) {
        let records = latency_records(rows, scope, names);
        match self.format {
            Format::Text | Format::Tui => self.text(&latency_text(&records)),
            Format::Json => records.iter().for_each(|r| self.json(r)),
        }
    }

    /// Processes first, then the figures: in NDJSON the summary is the last line.
    fn figures(&mut self, f: &Figures, span: &Snapshot) {
        let procs = process_records(&span.procs);
        match self.format {
            Format::Text | Format::Tui => self.text(&figures_text(f, &procs)),
            Format::Json => {
                procs.iter().for_each(|p| self.json(p));
                self.json(f);
            }
        }
    }

    /// The end of a run: cumulative latency, the ledger, processes, the summary (last).
    fn finish(&mut self, fin: &Final, names: &dyn Names) {
        self.latency(&fin.latency, "cumulative", names);
        let ledger = ledger_record(&fin.ledger, &fin.judgement, names);
        let pages = page_ledger_record(&fin.pages);
        match self.format {
            Format::Text | Format::Tui => {
                self.text(&ledger_text(&ledger));
                self.text(&page_ledger_text(&pages));
            }
            Format::Json => {
                self.json(&ledger);
                self.json(&pages);
            }
        }
        self.figures(&fin.summary, &fin.span);
    }
}

fn drain(events: &mut Option<AsyncFd<EventStream>>, consumers: &mut Consumers) {
    if let Some(fd) = events.as_mut() {
        fd.get_mut().drain(|bytes| consumers.take(bytes));
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

fn dev_key(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xfffff)
}

/// Names from a record file: operation names from its metadata, device names from its trailer.
struct FileNames {
    ops: BTreeMap<u32, String>,
    devices: BTreeMap<String, String>,
}

impl Names for FileNames {
    fn device(&self, dev: u32) -> String {
        if dev == 0 {
            return "?".into();
        }
        let key = dev_key(dev);
        self.devices.get(&key).cloned().unwrap_or(key)
    }

    fn op(&self, op: u32) -> String {
        self.ops.get(&op).cloned().unwrap_or_else(|| format!("op{op}"))
    }
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

/// Device names from /sys/dev/block, operation names from the kernel's `enum req_op`.
struct SysNames {
    ops: std::collections::BTreeMap<u32, String>,
}

impl SysNames {
    fn new(facts: &Facts) -> SysNames {
        SysNames { ops: facts.req_ops.clone() }
    }
}

impl Names for SysNames {
    fn device(&self, dev: u32) -> String {
        let (major, minor) = (dev >> 20, dev & 0xfffff);
        if dev == 0 {
            return "?".into();
        }
        std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string)))
            .or_else(|| hidden_disk(major, minor))
            .unwrap_or_else(|| format!("{major}:{minor}"))
    }

    fn op(&self, op: u32) -> String {
        self.ops.get(&op).cloned().unwrap_or_else(|| format!("op{op}"))
    }
}

/// Hidden disks (the per-path devices of native NVMe multipath, nvme0c0n1) are not in
/// /sys/dev/block, but they are in /sys/block.
fn hidden_disk(major: u32, minor: u32) -> Option<String> {
    let want = format!("{major}:{minor}");
    std::fs::read_dir("/sys/block").ok()?.flatten().find_map(|entry| {
        let dev = std::fs::read_to_string(entry.path().join("dev")).ok()?;
        (dev.trim() == want).then(|| entry.file_name().to_string_lossy().into_owned())
    })
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

/// Until the dashboard's user asks to quit (never without a dashboard).
async fn quit_key(screen: &mut Option<Screen>) {
    match screen {
        Some(s) => s.quit_requested().await,
        None => std::future::pending().await,
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


#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracer_common::BioEvent;

    use super::*;
    use crate::{
        cli::{Percentiles, ViewArgs},
        record::tests::{bio_wire, metadata, trailer},
    };

    const MS: u64 = 1_000_000;
    const FIO: (u32, u32, &str) = (100, 101, "fio");
    const IRQ: (u32, u32, &str) = (0, 0, "swapper/1");

    fn args(format: Format) -> ReportArgs {
        ReportArgs {
            file: "t.rec".into(),
            view: ViewArgs { format, percentiles: Percentiles(vec![50.0]), leak_grace: Duration::from_secs(1) },
        }
    }

    /// A record file whose probes are all attached except `missing`.
    fn file(records: &[Vec<u8>], end_ns: u64, missing: &[&str]) -> Vec<u8> {
        let mut meta = metadata();
        meta.probes = tracer_common::PROBES
            .iter()
            .map(|d| ProbeInfo {
                target: d.target.into(),
                role: "latency".into(),
                attached: (!missing.contains(&d.target)).then(|| "fentry".into()),
                reasons: vec![],
            })
            .collect();
        let mut w = Writer::new(Vec::new(), &meta).unwrap();
        for r in records {
            w.record(r).unwrap();
        }
        w.finish(Trailer { end_monotonic_ns: end_ns, ..trailer() }).unwrap()
    }

    /// One bio released in time, one completed and never released.
    fn leaky() -> Vec<Vec<u8>> {
        let vecs = [(0xffff_ea00_0000_0040, 2)];
        vec![
            bio_wire(BioEvent::Acquire, 0xa000, 1000 * MS, FIO, &vecs, true),
            bio_wire(BioEvent::Acquire, 0xb000, 1000 * MS, FIO, &[(0xffff_ea00_0000_1000, 1)], true),
            bio_wire(BioEvent::End, 0xa000, 1001 * MS, IRQ, &[], false),
            bio_wire(BioEvent::Release, 0xa000, 1002 * MS, IRQ, &vecs, true),
            bio_wire(BioEvent::End, 0xb000, 1500 * MS, IRQ, &[], false),
        ]
    }

    fn replayed(bytes: &[u8], format: Format) -> String {
        let mut sink = Sink { format, out: Vec::new() };
        replay("t.rec", bytes, &args(format), &mut sink).unwrap();
        String::from_utf8(sink.out).unwrap()
    }

    fn lines(out: &str) -> Vec<serde_json::Value> {
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn replay_prints_the_ledger_before_the_summary_which_stays_last() {
        let out = replayed(&file(&leaky(), 5000 * MS, &[]), Format::Json);
        let v = lines(&out);
        assert_eq!(v[0]["type"], "recording");
        assert_eq!(v[0]["records"], 5);
        assert_eq!(v[1]["type"], "probe");
        let last = v.last().unwrap();
        assert_eq!(last["type"], "summary");
        assert_eq!(last["ledger"], "leaks found");
        let ledger = v.iter().find(|r| r["type"] == "ledger").expect("a ledger record");
        assert_eq!(ledger["verdict"], "leaks found");
        assert_eq!(ledger["matched"]["bios"], 1);
        assert_eq!(ledger["leaked"]["pages"], 1);
        assert_eq!(ledger["leaks"][0]["kind"], "not_released");
        assert_eq!(ledger["leaks"][0]["comm"], "fio");
        assert_eq!(ledger["leaks"][0]["device"], "vda", "device names come from the trailer");
        assert_eq!(ledger["leaks"][0]["op"], "write", "operation names from the metadata");
        assert_eq!(ledger["leaks"][0]["ended_age_ns"], 3500 * MS);
        assert_eq!(ledger["devices"][0]["dev"], "254:0");
        assert_eq!(ledger["owners"][0]["pages"]["released"], 2);
        assert_eq!(ledger["owners"][0]["bios"]["leaked"], 1);
        // Each total appears once per line as `"name":{"bios":...`, where line-based tools
        // (test/vm/dio-pins.sh) look for it.
        let line = out.lines().find(|l| l.contains("\"type\":\"ledger\"")).unwrap();
        for name in ["acquired", "pinned", "referenced", "matched", "released", "leaked"] {
            assert_eq!(line.matches(&format!("\"{name}\":{{\"bios\":")).count(), 1, "{name} in {line}");
        }
    }

    #[test]
    fn replay_as_text() {
        let out = replayed(&file(&leaky(), 5000 * MS, &[]), Format::Text);
        assert!(out.starts_with("record file t.rec: 5 records, tracer 0.1.0, started 2023-11-14 22:13:20 UTC\n"), "{out}");
        assert!(out.contains("pin ledger (bio pages: acquired -> completed -> released): leaks found"), "{out}");
        assert!(out.contains("bio 0xb000 vda write: 1 pinned pages of fio (tgid 100, pid 101) not released"), "{out}");
        assert!(out.contains("--- summary: 5.000 s"), "{out}");
        assert!(out.contains("pin ledger: leaks found\ncommand exit status: 0\n"), "{out}");
    }

    #[test]
    fn a_later_end_or_a_longer_grace_turns_the_suspect_into_releasing() {
        let out = replayed(&file(&leaky(), 2000 * MS, &[]), Format::Json);
        assert_eq!(lines(&out).last().unwrap()["ledger"], "clean");
    }

    #[test]
    fn without_the_release_probe_the_ledger_is_unverifiable() {
        let out = replayed(&file(&leaky(), 5000 * MS, &["__bio_release_pages"]), Format::Json);
        let v = lines(&out);
        let ledger = v.iter().find(|r| r["type"] == "ledger").unwrap();
        assert_eq!(ledger["verdict"], "unverifiable");
        assert!(ledger["reasons"][0].as_str().unwrap().contains("__bio_release_pages"));
    }

    #[test]
    fn replay_errors_name_the_file() {
        let mut sink = Sink { format: Format::Json, out: Vec::new() };
        let e = replay("t.rec", &b"garbage"[..], &args(Format::Json), &mut sink).unwrap_err();
        assert_eq!(format!("{e:#}"), "t.rec: not a tracer record file (bad magic)");
    }

    #[test]
    fn pipeline_counts_undecodable_records_as_lost() {
        let mut p = Pipeline::new(ledger::Config::default());
        p.consume(&[9, 9]);
        let outcomes: Vec<ProbeOutcome> = metadata().outcomes();
        let end = Ending {
            outcomes,
            span: Snapshot::default(),
            elapsed_s: 1.0,
            vmstat: None,
            command_exit_status: None,
            end_ns: 0,
        };
        let fin = p.finish(&end, &[50.0]);
        assert_eq!(fin.summary.lost_events, 1);
        assert_eq!(fin.judgement.verdict.name(), "unverifiable");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400 * 1_000_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000 * 1_000_000_000 + 999), "2023-11-14 22:13:20 UTC");
    }
}
