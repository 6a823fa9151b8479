//! `tracer run` and `tracer check`: glue between the kernel side, the counters and the output.

use std::{
    io::Write,
    process::ExitStatus,
    time::Instant,
};

use anyhow::{Context, Result};
use tokio::{io::unix::AsyncFd, process::Command, time::MissedTickBehavior};

use crate::{
    cli::{CheckArgs, Format, RunArgs},
    ebpf::{EventStream, LoadError, Tracer},
    kernel::Facts,
    latency::{Key, Latency, Stats},
    output::{
        figures_text, json_line, latency_records, latency_text, probes_brief, probes_text, process_records, Figures,
        Names, ProbeRecord,
    },
    plan::{plan, ProbeOutcome},
    stats::Snapshot,
    vmstat,
};

/// `tracer check`: the probe plan of this kernel, tried for real where we may load programs.
pub fn check(args: &CheckArgs) -> Result<i32> {
    let facts = Facts::probe_running_kernel();
    let planned = plan(&facts);
    let (outcomes, load_problem) = match Tracer::load(&facts, &planned) {
        Ok(t) => (t.outcomes.clone(), None),
        Err(e @ (LoadError::Stub | LoadError::Permission(_) | LoadError::Object(_))) => {
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
        Format::Text => write!(out, "{}", probes_text(&records, &facts.release))?,
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

/// `tracer run`.
pub async fn run(args: RunArgs) -> Result<i32> {
    let facts = Facts::probe_running_kernel();
    let planned = plan(&facts);
    let mut tracer = Tracer::load(&facts, &planned)?;
    let records: Vec<ProbeRecord> = tracer.outcomes.iter().map(ProbeRecord::from_outcome).collect();
    let mut sink = Sink { format: args.format };
    match args.format {
        Format::Text => sink.text(&probes_brief(&records, &facts.release)),
        Format::Json => records.iter().for_each(|r| sink.json(r)),
    }
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
    let mut latency = Latency::default();
    let names = SysNames::new(&facts);
    let percentiles = &args.percentiles.0;

    let vm_start = vmstat::read();
    let first = tracer.snapshot()?;
    let started = Instant::now();

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
    let mut ticker = args.interval.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let mut prev = (first.clone(), vm_start, started);
    let mut exit_status = None;
    loop {
        tokio::select! {
            status = wait(&mut child) => {
                exit_status = Some(status.context("waiting for the traced command")?);
                break;
            }
            () = sleep_until(deadline) => break,
            _ = tokio::signal::ctrl_c() => break,
            ready = readable(&mut events) => {
                let mut guard = ready.context("polling the event ring buffer")?;
                guard.get_inner_mut().drain(|ev| latency.record(ev));
                guard.clear_ready();
            }
            _ = tick(&mut ticker) => {
                drain(&mut events, &mut latency);
                let now = (tracer.snapshot()?, vmstat::read(), Instant::now());
                let span = now.0.since(&prev.0);
                let vm = now.1.zip(prev.1).map(|(n, p)| n.since(p));
                let f = Figures::new(
                    "interval", &tracer.outcomes, &span,
                    now.2.duration_since(started).as_secs_f64(),
                    now.2.duration_since(prev.2).as_secs_f64(), vm,
                );
                sink.latency(&latency.take_interval(percentiles), "interval", &names);
                sink.figures(&f, &span);
                prev = now;
            }
        }
    }
    if exit_status.is_none() {
        if let Some(c) = child.as_mut() {
            // Stopped by the duration or Ctrl-C: the command does not outlive the trace.
            let _ = c.start_kill();
            exit_status = Some(c.wait().await.context("waiting for the traced command")?);
        }
    }
    drain(&mut events, &mut latency);
    let last = tracer.snapshot()?;
    let vm_end = vmstat::read();
    let elapsed = started.elapsed().as_secs_f64();
    let span = last.since(&first);
    let mut summary = Figures::new(
        "summary",
        &tracer.outcomes,
        &span,
        elapsed,
        elapsed,
        vm_end.zip(vm_start).map(|(n, p)| n.since(p)),
    );
    let code = exit_status.map(exit_code);
    summary.command_exit_status = code;
    if latency.invalid > 0 {
        log::warn!("{} latency events had an end before their start and were not recorded", latency.invalid);
    }
    sink.latency(&latency.cumulative(percentiles), "cumulative", &names);
    sink.figures(&summary, &span);
    Ok(code.unwrap_or(0))
}

struct Sink {
    format: Format,
}

impl Sink {
    fn text(&mut self, s: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
    }

    fn json<T: serde::Serialize>(&mut self, record: &T) {
        self.text(&(json_line(record) + "\n"));
    }

    fn latency(&mut self, rows: &[(Key, Stats)], scope: &'static str, names: &dyn Names) {
        let records = latency_records(rows, scope, names);
        match self.format {
            Format::Text => self.text(&latency_text(&records)),
            Format::Json => records.iter().for_each(|r| self.json(r)),
        }
    }

    /// Processes first, then the figures: in NDJSON the summary is the last line.
    fn figures(&mut self, f: &Figures, span: &Snapshot) {
        let procs = process_records(&span.procs);
        match self.format {
            Format::Text => self.text(&figures_text(f, &procs)),
            Format::Json => {
                procs.iter().for_each(|p| self.json(p));
                self.json(f);
            }
        }
    }
}

fn drain(events: &mut Option<AsyncFd<EventStream>>, latency: &mut Latency) {
    if let Some(fd) = events.as_mut() {
        fd.get_mut().drain(|ev| latency.record(ev));
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

