//! `tracer run`, `tracer record`, `tracer report` and `tracer check`: the glue at the edge.
//! A live run and a replay build an [`EventSource`], the engine and the sinks, and hand them
//! to the same loop ([`drive::drive`]).

mod drive;
mod filter;
pub(crate) mod priority;

#[cfg(test)]
mod tests;

use std::{
    fs::File,
    io::{BufWriter, Read, Write},
    path::Path,
    sync::{atomic::AtomicBool, Arc},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, Context, Result};

use self::drive::drive;
use crate::{
    cli::{CheckArgs, Format, ReportArgs, RunArgs, ViewArgs},
    engine,
    probes::{
        ebpf::{LoadError, Tracer},
        kernel::Facts,
        plan::{plan, plan_for, ProbeOutcome, Wanted},
        sysfs::SysNames,
    },
    record::{self, io_reason, Metadata, ProbeInfo, RecordSizes, Writer},
    sinks::{
        ndjson::{json_line, NdjsonSink, ProbeRecord},
        prometheus,
        recorder::Recorder,
        report::{self, ReportFormat, ReportSink},
        text::{probes_text, TextSink},
        tui::{terminal::need_terminal, App, Dashboard},
        EndsOnly, Sink,
    },
    snapshot::Start,
    source::{EventSource, FileSource, LiveSource, Mark, Triggers},
};

/// `tracer check`: the probe plan of this kernel, tried for real where we may load programs.
pub fn check(args: &CheckArgs) -> Result<i32> {
    let facts = Facts::probe_running_kernel();
    let planned = plan(&facts);
    let (outcomes, load_problem) = match Tracer::load(
        &facts,
        &planned,
        tracer_common::EVENTS_DEFAULT_BYTES,
        usize::from(crate::cli::DEFAULT_BACKUPS),
    ) {
        Ok(t) => (t.outcomes.clone(), None),
        Err(
            e @ (LoadError::Stub
            | LoadError::Permission(_)
            | LoadError::Object(_)
            | LoadError::Arm(_)
            | LoadError::Counters(_)
            | LoadError::Cpus(..)
            | LoadError::BenchSkip(_)),
        ) => {
            let why = e.to_string();
            (planned.iter().map(|p| ProbeOutcome::untried(p, &why)).collect(), Some(why))
        }
        // Everything was tried and nothing attached: the outcomes say why, probe by probe.
        Err(LoadError::NothingAttached) => {
            (planned.iter().map(|p| ProbeOutcome::untried(p, "no probe attached")).collect(), None)
        }
    };
    let mut out = std::io::stdout().lock();
    let layout = facts.layout_warnings();
    match args.format {
        Format::Text | Format::Tui => {
            write!(out, "{}", probes_text(&outcomes, &facts.release))?;
            for w in &layout {
                writeln!(out, "  LAYOUT   {w}")?;
            }
            writeln!(out, "  {}", facts.preemption.describe())?;
        }
        Format::Json => {
            for o in &outcomes {
                writeln!(out, "{}", json_line(&ProbeRecord::from_outcome(o)))?;
            }
            for w in &layout {
                writeln!(out, "{}", serde_json::json!({"type": "layout", "missing": w}))?;
            }
            let p = &facts.preemption;
            writeln!(
                out,
                "{}",
                serde_json::json!({"type": "preemption", "in_programs": p.in_programs(), "detail": p.describe()})
            )?;
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
        need_terminal()?;
    }
    let filter = filter::live(&args.view.filter)?;
    let command = args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let report = report_sink(&args.view, command)?;
    // Bound before the load: a port in use is one line and exit 1, not minutes later.
    let metrics = match args.prometheus {
        Some(addr) => Some(
            prometheus::bind(addr)
                .await
                .map_err(|e| anyhow!("--prometheus: cannot listen on {addr}: {}", io_reason(&e)))?,
        ),
        None => None,
    };
    let facts = Facts::probe_running_kernel();
    for w in facts.layout_warnings() {
        log::warn!("{w}");
    }
    let signals = Signals::listen(args.segments)?;
    // Before the load, so that no thread of the tracer starts at the old priority.
    let command_nice = priority::apply(args.nice)?;
    let wanted = Wanted { syscall_latency: args.syscall_latency };
    let mut tracer =
        Tracer::load(&facts, &plan_for(&facts, wanted), args.ring_buffer * 1024, usize::from(args.backups))?;
    // Before tracing starts, and only once it can: no empty record file from a failed load.
    let file = match record_to {
        Some(path) => {
            Some(File::create(path).map_err(|e| anyhow!("cannot create {}: {}", path.display(), io_reason(&e)))?)
        }
        None => None,
    };
    for o in tracer.outcomes.iter().filter(|o| o.missing()) {
        log::info!("probe {} missing; figures that need it are reported as unverifiable", o.def.target);
    }
    let first = Mark::take(&mut tracer)?;
    let mut recorder = match (file, record_to) {
        (Some(file), Some(path)) => {
            let meta = metadata(&facts, &tracer.outcomes, &args, first.ns);
            let out: Box<dyn Write> = Box::new(BufWriter::new(file));
            Some(Recorder::new(Writer::new(out, &meta).map_err(|e| write_error(path, &e))?))
        }
        _ => None,
    };
    // The dashboard's export key asks the report sink for the run so far.
    let export = (args.view.format == Format::Tui && report.is_some()).then(|| Arc::new(AtomicBool::new(false)));
    let (mut sinks, quit) = live_sinks(&args, &facts.release, &tracer.outcomes, export.clone());
    add_report_and_metrics(&mut sinks, report, export, metrics);
    let start = Start { recording: None, kernel: facts.release.clone(), probes: tracer.outcomes.clone() };
    // The dashboard and the metrics endpoint refresh every second unless --interval says.
    let refreshed = quit.is_some() || args.prometheus.is_some();
    let every = args.interval.or(refreshed.then_some(std::time::Duration::from_secs(1)));
    let triggers = Triggers {
        command: args.command.clone(),
        command_nice,
        duration: args.duration,
        interval: every,
        segments: signals.segments,
        interrupt: signals.interrupt,
        terminate: signals.terminate,
        quit,
    };
    let start_ns = first.ns;
    let live = LiveSource::new(tracer, first, triggers, SysNames::new(&facts), start)?;
    let config = engine::config(args.view.leak_grace, facts.foll, facts.folio_heads(), filter, start_ns);
    let mut refs: Vec<&mut dyn Sink> = sinks.iter_mut().map(|s| &mut **s as &mut dyn Sink).collect();
    let source = &mut EventSource::Live(Box::new(live));
    let end = drive(source, config, &mut refs, recorder.as_mut(), &args.view.percentiles.0).await?;
    if let (Some(recorder), Some(path)) = (recorder, record_to) {
        let records = recorder.finish(&end).map_err(|e| write_error(path, &e))?;
        refs.iter_mut().for_each(|s| s.recorded(&path.display().to_string(), records));
    }
    Ok(end.figures.command_exit_status.unwrap_or(0))
}

/// The signals a live run listens for.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    /// SIGUSR1, with --segments.
    segments: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// SIGINT and SIGTERM from here on end the run cleanly (see Triggers::interrupt); during
    /// the load they wait for the loop, which then stops at once. SIGUSR1 is listened for
    /// before the load too: a harness that sends it early must not kill us (the default
    /// action); a cut asked for during the load is made once the loop runs.
    fn listen(segments: bool) -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &str| signal(kind).with_context(|| format!("listening for {name}"));
        Ok(Signals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT")?,
            terminate: listen(SignalKind::terminate(), "SIGTERM")?,
            segments: match segments {
                true => Some(listen(SignalKind::user_defined1(), "SIGUSR1 (--segments)")?),
                false => None,
            },
        })
    }
}

/// Adds the report sink (answering the dashboard's export key when `export` is given) and the
/// Prometheus sink (serving on `metrics`) to `sinks`.
fn add_report_and_metrics(
    sinks: &mut Vec<Box<dyn Sink>>,
    report: Option<ReportSink>,
    export: Option<Arc<AtomicBool>>,
    metrics: Option<tokio::net::TcpListener>,
) {
    if let Some(report) = report {
        sinks.push(Box::new(match export {
            Some(asked) => report.export_on(asked),
            None => report,
        }));
    }
    if let Some(listener) = metrics {
        let shared = Arc::new(std::sync::Mutex::new(prometheus::Shared::default()));
        tokio::spawn(prometheus::serve(listener, shared.clone()));
        sinks.push(Box::new(prometheus::PrometheusSink::new(shared)));
    }
}

/// The sinks of a live run: text or NDJSON on stdout, and the dashboard (intervals only,
/// opened after the text start) with the receiver of its quit key.
fn live_sinks(
    args: &RunArgs,
    kernel: &str,
    outcomes: &[ProbeOutcome],
    export: Option<Arc<AtomicBool>>,
) -> (Vec<Box<dyn Sink>>, Option<tokio::sync::mpsc::UnboundedReceiver<()>>) {
    let out = std::io::stdout();
    let text: Box<dyn Sink> = match args.view.format {
        Format::Json => Box::new(NdjsonSink { out }),
        Format::Text | Format::Tui => Box::new(TextSink { out }),
    };
    // Intervals on stdout only when asked for and nothing draws over it: the dashboard and the
    // metrics endpoint tick every second without --interval.
    let text: Box<dyn Sink> =
        if args.view.format == Format::Tui || args.interval.is_none() { Box::new(EndsOnly(text)) } else { text };
    if args.view.format != Format::Tui {
        return (vec![text], None);
    }
    let command = (!args.command.is_empty())
        .then(|| args.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let report = args.view.report.as_ref().map(|p| p.display().to_string());
    let mut dashboard = Dashboard::new(App::new(kernel, outcomes, command).with_report(report), tx);
    if let Some(asked) = export {
        dashboard = dashboard.export_to(asked);
    }
    (vec![text, Box::new(dashboard)], Some(rx))
}

/// The record file's header.
fn metadata(facts: &Facts, outcomes: &[ProbeOutcome], args: &RunArgs, start_ns: u64) -> Metadata {
    Metadata {
        tracer_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: facts.release.clone(),
        start_unix_ns: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        start_monotonic_ns: start_ns,
        byte_order: record::host_byte_order().into(),
        record_sizes: RecordSizes::this_build(),
        probes: outcomes.iter().map(ProbeInfo::from_outcome).collect(),
        req_ops: facts.req_ops.clone(),
        foll: facts.foll,
        folio_heads: facts.folio_heads(),
        command: args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
    }
}

/// `tracer report`: a record file through the same loop and sinks as a live run.
pub async fn report(args: &ReportArgs) -> Result<i32> {
    let path = &args.file;
    let file = File::open(path).map_err(|e| anyhow!("cannot open {}: {}", path.display(), io_reason(&e)))?;
    let filter = filter::replay(&args.view.filter, path)?;
    let mut report = report_sink(&args.view, Vec::new())?;
    let out = std::io::stdout();
    let mut sink: Box<dyn Sink> = match args.view.format {
        // A replay has no live figures: the dashboard's format prints as text.
        Format::Text | Format::Tui => Box::new(TextSink { out }),
        Format::Json => Box::new(NdjsonSink { out }),
    };
    let mut sinks: Vec<&mut dyn Sink> = vec![&mut *sink];
    if let Some(r) = report.as_mut() {
        sinks.push(r);
    }
    // Mapped when it can be (no copy of the file), else read through the reader's buffer.
    let input = match record::map(&file) {
        Some(map) => Input::Mapped(map),
        None => Input::Read(Box::new(file)),
    };
    replay(&path.display().to_string(), input, &args.view, filter, &mut sinks).await?;
    Ok(0)
}

/// The report sink `--report` asks for; a name whose format cannot be told is an error before
/// anything runs.
fn report_sink(view: &ViewArgs, command: Vec<String>) -> Result<Option<ReportSink>> {
    let Some(path) = &view.report else { return Ok(None) };
    let format = ReportFormat::for_path(path, view.report_format)?;
    let settings = report::Settings {
        leak_grace_s: view.leak_grace.as_secs_f64(),
        percentiles: view.percentiles.0.clone(),
        command,
    };
    Ok(Some(ReportSink::new(path.clone(), format, settings)))
}

/// A record file to replay: read from a stream, or mapped.
enum Input {
    Read(Box<dyn Read>),
    Mapped(memmap2::Mmap),
}

/// Replays a record file from `input` into `sinks`, through `filter`. `name` is the file's name
/// for messages.
async fn replay(
    name: &str,
    input: Input,
    view: &ViewArgs,
    filter: engine::filter::Filter,
    sinks: &mut [&mut dyn Sink],
) -> Result<()> {
    let file = match input {
        Input::Read(src) => FileSource::open(name, src)?,
        Input::Mapped(map) => FileSource::open_mapped(name, map)?,
    };
    let meta = file.metadata();
    let config = engine::config(view.leak_grace, meta.foll, meta.folio_heads, filter, meta.start_monotonic_ns);
    drive(&mut EventSource::File(Box::new(file)), config, sinks, None, &view.percentiles.0).await?;
    Ok(())
}

fn write_error(path: &Path, e: &std::io::Error) -> anyhow::Error {
    anyhow!("writing {}: {}", path.display(), io_reason(e))
}
