//! The metrics of one snapshot of the run so far, in the Prometheus text format.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use super::Shared;
use crate::{
    engine::latency::{kind_name, BUCKETS_NS},
    probes::plan::role_name,
    snapshot::{PinAccounting, Snapshot},
};

/// The text exposition of `shared` (only the tracer's health before the first snapshot).
pub fn encode(shared: &Shared) -> String {
    let mut registry = Registry::with_prefix("tracer");
    registry.register_collector(Box::new(Metrics {
        latest: shared.latest.clone(),
        probes: (shared.probes_attached, shared.probes_missing),
    }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Metrics {
    latest: Option<Snapshot>,
    probes: (usize, usize),
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its samples by label set.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(n: u64) -> ConstCounter<u64> {
    ConstCounter::new(n)
}

fn gauge(n: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (attached, missing) = self.probes;
        let probes = [
            (vec![("state", "attached".to_string())], gauge(attached as u64)),
            (vec![("state", "missing".to_string())], gauge(missing as u64)),
        ];
        family(
            &mut enc,
            "probes",
            "Probes of the catalogue by state (tracer check lists them)",
            MetricType::Gauge,
            probes,
        )?;
        let Some(s) = &self.latest else { return Ok(()) };
        health(&mut enc, s)?;
        pins(&mut enc, s)?;
        ledger(&mut enc, s)?;
        latency(&mut enc, s)
    }
}

/// The tracer's own health: lost events and skipped runs.
fn health(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    let f = &s.figures;
    family(
        enc,
        "lost_events",
        "Events a probe saw but could not record, and probe runs the kernel skipped",
        MetricType::Counter,
        [(Labels::new(), counter(f.lost_events))],
    )?;
    let lost = f.lost_by_reason.iter().map(|(&why, &n)| (vec![("reason", why.to_string())], counter(n)));
    family(
        enc,
        "lost_events_by_reason",
        "Lost events by reason (skipped runs are in probe_skipped_runs)",
        MetricType::Counter,
        lost,
    )?;
    let skipped = f.probes_skipped.iter().map(|k| (vec![("probe", k.target.to_string())], counter(k.runs)));
    family(
        enc,
        "probe_skipped_runs",
        "Probe runs the kernel skipped (the program was already running on the CPU)",
        MetricType::Counter,
        skipped,
    )
}

/// The kernel's FOLL_PIN totals, the entry points' calls and pages, block requests.
fn pins(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    let f = &s.figures;
    if f.pin_accounting == PinAccounting::Measured {
        let pins = [
            (vec![("event", "pinned".to_string())], counter(f.pages_pinned)),
            (vec![("event", "unpinned".to_string())], counter(f.pages_unpinned)),
        ];
        family(
            enc,
            "foll_pin_pages",
            "FOLL_PIN pages since the start, as the kernel counts them (/proc/vmstat)",
            MetricType::Counter,
            pins,
        )?;
    }
    let labels = |e: &crate::snapshot::EntryPoint| {
        vec![("function", e.function.to_string()), ("role", role_name(e.role).to_string())]
    };
    let calls = f.entry_points.iter().map(|e| (labels(e), counter(e.calls)));
    family(enc, "entry_point_calls", "Calls of each pin and unpin entry point", MetricType::Counter, calls)?;
    let pages = f.entry_points.iter().map(|e| (labels(e), counter(e.pages)));
    family(
        enc,
        "entry_point_pages",
        "Pages returned by a pin call or passed to an unpin call (entry points nest: do not add them up)",
        MetricType::Counter,
        pages,
    )?;
    if let Some(n) = f.block.requests_completed {
        family(
            enc,
            "block_requests_completed",
            "Block requests completed",
            MetricType::Counter,
            [(Labels::new(), counter(n))],
        )?;
    }
    if let Some(n) = f.block.requests_untimed {
        family(
            enc,
            "block_requests_untimed",
            "Block requests completed with no latency figure: no issue seen (in flight when the trace began, the rest of a partial completion, or the issue's record lost)",
            MetricType::Counter,
            [(Labels::new(), counter(n))],
        )?;
    }
    Ok(())
}

/// The page ledger's pages by state, and the verdict.
fn ledger(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    if let Some(p) = &s.pages {
        let t = &p.totals;
        let states = [
            ("outstanding", t.outstanding),
            ("outstanding_longterm", t.outstanding_longterm),
            ("outstanding_owner_exited", t.outstanding_owner_exited),
            ("suspect", t.suspect),
        ];
        let states = states.into_iter().map(|(k, n)| (vec![("state", k.to_string())], gauge(n)));
        family(
            enc,
            "page_ledger_pages",
            "Pinned pages the page ledger holds now, by state",
            MetricType::Gauge,
            states,
        )?;
    }
    if let Some(v) = s.figures.verdict {
        family(
            enc,
            "verdict",
            "The run's verdict so far (1 for the one that holds)",
            MetricType::Gauge,
            [(vec![("verdict", v.name().to_string())], gauge(1))],
        )?;
    }
    Ok(())
}

/// tracer_latency_seconds{figure, device, op}: every size together, cumulative.
fn latency(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(
        "latency_seconds",
        "Latency per figure (d2c, q2c, dio, sys, hold, unpin_lag), device and op, since the start",
        None,
        MetricType::Histogram,
    )?;
    let bounds: Vec<f64> = BUCKETS_NS.iter().map(|&ns| ns as f64 / 1e9).chain([f64::MAX]).collect();
    for (key, st) in s.latency_all_sizes() {
        if st.buckets.len() != bounds.len() {
            continue;
        }
        let labels: Labels = vec![
            ("figure", kind_name(key.kind).to_string()),
            ("device", s.names.device(key.dev).to_string()),
            ("op", s.names.op(key.op).to_string()),
        ];
        let buckets: Vec<(f64, u64)> = bounds.iter().copied().zip(st.buckets.iter().copied()).collect();
        let sum = st.mean_ns * st.count as f64 / 1e9;
        m.encode_family(&labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, st.count, &buckets, None)?;
    }
    Ok(())
}
