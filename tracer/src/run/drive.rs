//! The one loop of live runs and replays: records from an [`EventSource`] into the engine (and
//! the recorder), and at every cut a typed [`Snapshot`] to every sink.

use std::io::Write;

use anyhow::Result;

use crate::{
    engine::{self, Ending, Pipeline},
    model::Names,
    sinks::{recorder::Recorder, Sink},
    snapshot::{Figures, Scope, Snapshot},
    source::{Event, EventSource, Tick},
};

/// Drives `source` to its end; the last snapshot (the run's, or its last segment's).
pub async fn drive(
    source: &mut EventSource,
    config: engine::Config,
    sinks: &mut [&mut dyn Sink],
    mut recorder: Option<&mut Recorder<Box<dyn Write>>>,
    percentiles: &[f64],
) -> Result<Snapshot> {
    let mut engine = Pipeline::new(config.clone());
    loop {
        let mut each = |bytes: &[u8]| {
            if let Some(r) = recorder.as_deref_mut() {
                r.record(bytes);
            }
            engine.consume(bytes);
        };
        match source.next(&mut each).await? {
            Event::Start(start) => {
                for s in sinks.iter_mut() {
                    s.start(&start)?;
                }
            }
            Event::Interval(tick) => interval(&mut engine, *tick, source.names(), sinks, percentiles)?,
            Event::Segment(ending) => {
                let summary = summary(&engine, &ending, source.names(), percentiles);
                for s in sinks.iter_mut() {
                    s.end(&summary)?;
                }
                engine = engine.next_segment(config.clone());
            }
            Event::End(ending) => {
                let summary = summary(&engine, &ending, source.names(), percentiles);
                sinks.iter_mut().for_each(|s| s.close());
                for s in sinks.iter_mut() {
                    s.end(&summary)?;
                }
                return Ok(summary);
            }
        }
    }
}

/// The run or segment that ended with `ending`.
fn summary(engine: &Pipeline, ending: &Ending, names: &dyn Names, percentiles: &[f64]) -> Snapshot {
    engine.warn_at_end();
    Snapshot::summary(engine.finish(ending, percentiles), ending, names)
}

/// An interval to the sinks, with the run so far for those that want it.
fn interval(
    engine: &mut Pipeline,
    tick: Tick,
    names: &dyn Names,
    sinks: &mut [&mut dyn Sink],
    percentiles: &[f64],
) -> Result<()> {
    let mut span = tick.span;
    span.procs = match engine.owner_interval() {
        Some(procs) => procs,
        None => engine.kernel_interval(&span.procs),
    };
    let outcomes = &tick.totals.outcomes;
    let mut figures = Figures::new(Scope::Interval, outcomes, &span, (tick.elapsed_s, tick.span_s), tick.vmstat);
    figures.filter = engine.filter_status();
    let latency = engine.take_interval(percentiles);
    let snap = Snapshot::interval(figures, span, latency, names, tick.end_ns);
    let totals = sinks
        .iter()
        .any(|s| s.wants_totals())
        .then(|| Snapshot::summary(engine.finish(&tick.totals, percentiles), &tick.totals, names));
    for s in sinks.iter_mut() {
        s.interval(&snap, totals.as_ref())?;
    }
    Ok(())
}
