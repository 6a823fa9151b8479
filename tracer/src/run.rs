//! `tracer run` and `tracer check`: glue between the kernel side, the counters and the output.

use std::{
    io::Write,
    process::ExitStatus,
    time::Instant,
};

use anyhow::{Context, Result};
use tokio::{process::Command, time::MissedTickBehavior};

use crate::{
    cli::{CheckArgs, Format, RunArgs},
    ebpf::{LoadError, Tracer},
    kernel::Facts,
    output::{figures_text, json_line, probes_brief, probes_text, process_records, Figures, ProbeRecord},
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
            _ = tick(&mut ticker) => {
                let now = (tracer.snapshot()?, vmstat::read(), Instant::now());
                let span = now.0.since(&prev.0);
                let vm = now.1.zip(prev.1).map(|(n, p)| n.since(p));
                let f = Figures::new(
                    "interval", &tracer.outcomes, &span,
                    now.2.duration_since(started).as_secs_f64(),
                    now.2.duration_since(prev.2).as_secs_f64(), vm,
                );
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

