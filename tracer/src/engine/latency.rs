//! I/O latency histograms (HDR, nanoseconds, 3 significant digits), per figure, device,
//! operation and size class; cumulative and per interval. Pure: fed with decoded events.

use std::{borrow::Cow, collections::HashMap};

use hdrhistogram::Histogram;
use serde::Serialize;
use tracer_common::{LatencyEvent, LatencyKind, RecordType};

use super::bio::BioTiming;

/// What a row of figures covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: LatencyKind,
    pub dev: u32,
    pub op: u32,
    /// log2 of the I/O size rounded up to a power of two; None = all sizes together.
    pub size_class: Option<u32>,
}

/// Percentile figures of one histogram.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub count: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
    pub stddev_ns: f64,
    /// (percentile, value) in the order asked.
    pub percentiles: Vec<(f64, u64)>,
    /// Values per bucket of [`BUCKETS_NS`] (not cumulative), then the values above the last
    /// bound: the Prometheus histogram's buckets.
    #[serde(skip)]
    pub buckets: Vec<u64>,
}

/// Upper bounds of the latency buckets (ns): 10 us to 10 s, 1-2.5-5 steps.
pub const BUCKETS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

impl Stats {
    /// The value at percentile `p` if it was asked for, else 0.
    pub fn at(&self, p: f64) -> u64 {
        self.percentiles.iter().find(|(q, _)| *q == p).map_or(0, |(_, v)| *v)
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 ns .. ~1 hour at 3 significant digits; auto-resize beyond.
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("static bounds are valid");
    h.auto(true);
    h
}

/// The histograms of one key (size classes apart): before the current interval, and since it
/// began. An event updates one histogram, found with one lookup; the cumulative figures and the
/// all-sizes rows are sums, added when figures are taken.
#[derive(Clone)]
struct Pair {
    /// Before the current interval (an event is recorded once, in `interval`; intervals are
    /// added here when they end).
    past: Histogram<u64>,
    interval: Histogram<u64>,
}

/// Histograms by key, sorted only when figures are taken. A key's pair is found through the
/// last key of its figure first (the events of one figure mostly repeat one device, operation
/// and size), then through the index.
#[derive(Default)]
struct Histograms {
    pairs: Vec<(Key, Pair)>,
    index: HashMap<Key, u32, foldhash::fast::RandomState>,
    /// Per figure ([`LatencyKind`] as index): the last key recorded and its place in `pairs`.
    recent: [Option<(Key, u32)>; FIGURES],
}

/// Figures ([`LatencyKind`]s).
const FIGURES: usize = 6;
const _: () = assert!(LatencyKind::UnpinLag as usize + 1 == FIGURES, "one recent key per figure");

impl Histograms {
    /// The pair of `key`, made empty if it has none yet.
    #[inline]
    fn get_mut(&mut self, key: Key) -> &mut Pair {
        let slot = key.kind as usize % FIGURES;
        let at = match self.recent[slot] {
            Some((k, at)) if k == key => at,
            _ => {
                let pairs = &mut self.pairs;
                let at = *self.index.entry(key).or_insert_with(|| {
                    pairs.push((key, Pair { past: new_histogram(), interval: new_histogram() }));
                    (pairs.len() - 1) as u32
                });
                self.recent[slot] = Some((key, at));
                at
            }
        };
        &mut self.pairs[at as usize].1
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&Key, &Pair)> {
        self.pairs.iter().map(|(k, p)| (k, p))
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Pair> {
        self.pairs.iter_mut().map(|(_, p)| p)
    }
}

/// The figures of one side of `h` in key order: each size class's, and for each figure, device
/// and operation the sum of its size classes' (`size_class` None). Empty histograms (no event
/// in the interval) give no row.
fn sorted(
    h: &Histograms,
    side: impl for<'a> Fn(&'a Pair) -> Cow<'a, Histogram<u64>>,
    percentiles: &[f64],
) -> Vec<(Key, Stats)> {
    let mut totals: HashMap<Key, Histogram<u64>, foldhash::fast::RandomState> = HashMap::default();
    let mut rows: Vec<(Key, Stats)> = Vec::with_capacity(h.len() * 2);
    for (k, pair) in h.iter() {
        let one = side(pair);
        if one.is_empty() {
            continue;
        }
        rows.push((*k, stats(&one, percentiles)));
        let total = totals.entry(Key { size_class: None, ..*k }).or_insert_with(new_histogram);
        // The histograms auto-resize, so adding cannot fail.
        let _ = total.add(one.as_ref());
    }
    rows.extend(totals.iter().map(|(k, h)| (*k, stats(h, percentiles))));
    rows.sort_by_key(|(k, _)| *k);
    rows
}

/// The histograms of `p` added up: since the start.
fn whole(p: &Pair) -> Cow<'_, Histogram<u64>> {
    let mut h = p.past.clone();
    // The histograms auto-resize, so adding cannot fail.
    let _ = h.add(&p.interval);
    Cow::Owned(h)
}

/// Cumulative and current-interval histograms.
#[derive(Default)]
pub struct Latency {
    histograms: Histograms,
    /// Events whose end precedes their start, or records that could not be decoded (should
    /// stay 0).
    pub invalid: u64,
}

impl Latency {
    /// The `hold` and `unpin_lag` figures of a bio released at `released_ns`, from the pin
    /// ledger's timing of it (the bio records' timestamps: no latency record of their own).
    pub fn bio_released(&mut self, t: &BioTiming, released_ns: u64) {
        let figure = |kind: LatencyKind, ns: u64| LatencyEvent {
            record: RecordType::Latency as u32,
            kind: kind as u32,
            dev: t.dev,
            op: t.op,
            bytes: t.bytes as u64,
            start_ns: released_ns.saturating_sub(ns),
            end_ns: released_ns,
        };
        self.record(&figure(LatencyKind::PinHold, t.hold_ns));
        if let Some(lag) = t.unpin_lag_ns {
            self.record(&figure(LatencyKind::UnpinLag, lag));
        }
    }

    pub fn record(&mut self, ev: &LatencyEvent) {
        let Some(kind) = kind_of(ev.kind) else {
            self.invalid += 1;
            return;
        };
        let Some(ns) = ev.end_ns.checked_sub(ev.start_ns) else {
            self.invalid += 1;
            return;
        };
        let ns = ns.max(1);
        let key = Key { kind, dev: ev.dev, op: ev.op, size_class: Some(size_class(ev.bytes)) };
        self.histograms.get_mut(key).interval.saturating_record(ns);
    }

    /// Counts a ring buffer record that could not be decoded.
    pub fn undecodable(&mut self, e: crate::decode::DecodeError) {
        log::warn!("undecodable event record: {e}");
        self.invalid += 1;
    }

    /// Figures since the start of the trace.
    pub fn cumulative(&self, percentiles: &[f64]) -> Vec<(Key, Stats)> {
        sorted(&self.histograms, whole, percentiles)
    }

    /// Figures since the previous call; starts a new interval.
    pub fn take_interval(&mut self, percentiles: &[f64]) -> Vec<(Key, Stats)> {
        let rows = sorted(&self.histograms, |p| Cow::Borrowed(&p.interval), percentiles);
        for p in self.histograms.values_mut() {
            let _ = p.past.add(&p.interval);
            p.interval.reset();
        }
        rows
    }
}

fn kind_of(raw: u32) -> Option<LatencyKind> {
    [
        LatencyKind::D2c,
        LatencyKind::Q2c,
        LatencyKind::Dio,
        LatencyKind::Syscall,
        LatencyKind::PinHold,
        LatencyKind::UnpinLag,
    ]
    .into_iter()
    .find(|k| *k as u32 == raw)
}

/// log2 of `bytes` rounded up to a power of two (4096 -> 12, 4097 -> 13); 0 for 0 or 1 byte.
pub fn size_class(bytes: u64) -> u32 {
    if bytes <= 1 {
        0
    } else {
        64 - (bytes - 1).leading_zeros()
    }
}

pub fn stats(h: &Histogram<u64>, percentiles: &[f64]) -> Stats {
    Stats {
        count: h.len(),
        min_ns: h.min(),
        max_ns: h.max(),
        mean_ns: h.mean(),
        stddev_ns: h.stdev(),
        percentiles: percentiles.iter().map(|&p| (p, h.value_at_quantile(p / 100.0))).collect(),
        buckets: buckets(h),
    }
}

/// Values per bucket of [`BUCKETS_NS`], then above the last bound. A bucket holds what the
/// histogram's resolution (3 significant digits) places at or below its bound.
fn buckets(h: &Histogram<u64>) -> Vec<u64> {
    // One pass over the recorded values: a value belongs to the first bound whose histogram
    // bucket is not below its own.
    let bounds = BUCKETS_NS.map(|b| h.lowest_equivalent(b));
    let mut out = vec![0u64; BUCKETS_NS.len() + 1];
    for v in h.iter_recorded() {
        let low = h.lowest_equivalent(v.value_iterated_to());
        out[bounds.partition_point(|&b| b < low)] += v.count_at_value();
    }
    out
}

/// Parses a percentile list such as "50,90,99.9".
pub fn parse_percentiles(s: &str) -> Result<Vec<f64>, String> {
    let list: Result<Vec<f64>, String> = s
        .split(',')
        .map(|p| {
            let v: f64 = p.trim().parse().map_err(|_| format!("'{p}' is not a percentile"))?;
            if (0.0..=100.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("'{p}': a percentile is between 0 and 100"))
            }
        })
        .collect();
    let list = list?;
    if list.is_empty() {
        return Err("empty percentile list".into());
    }
    Ok(list)
}

pub fn kind_name(kind: LatencyKind) -> &'static str {
    match kind {
        LatencyKind::D2c => "d2c",
        LatencyKind::Q2c => "q2c",
        LatencyKind::Dio => "dio",
        LatencyKind::Syscall => "sys",
        LatencyKind::PinHold => "hold",
        LatencyKind::UnpinLag => "unpin_lag",
    }
}

/// "4k", "128k", "1m", ... for a size class.
pub fn size_name(class: Option<u32>) -> String {
    match class {
        None => "all".into(),
        Some(c) if c < 10 => format!("{}", 1u64 << c),
        Some(c) if c < 20 => format!("{}k", 1u64 << (c - 10)),
        Some(c) => format!("{}m", 1u64 << (c - 20)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tracer_common::RecordType;

    use super::*;

    fn ev(kind: LatencyKind, bytes: u64, ns: u64) -> LatencyEvent {
        LatencyEvent {
            record: RecordType::Latency as u32,
            kind: kind as u32,
            dev: 0xfe0_0000,
            op: 0,
            bytes,
            start_ns: 1000,
            end_ns: 1000 + ns,
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latency::default();
        for i in 1..=1000u64 {
            l.record(&ev(LatencyKind::D2c, 4096, i * 1000));
        }
        let rows = l.cumulative(&[50.0, 99.0]);
        let (key, all) = &rows[0];
        assert_eq!(key.size_class, None);
        assert_eq!(all.count, 1000);
        let p50 = all.percentiles[0].1 as f64;
        let p99 = all.percentiles[1].1 as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.002, "p50 {p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.002, "p99 {p99}");
        assert_eq!(rows[1].0.size_class, Some(12));
    }

    #[test]
    fn interval_restarts_but_cumulative_keeps_everything() {
        let mut l = Latency::default();
        l.record(&ev(LatencyKind::Dio, 4096, 10));
        assert_eq!(l.take_interval(&[50.0])[0].1.count, 1);
        assert!(l.take_interval(&[50.0]).is_empty());
        l.record(&ev(LatencyKind::Dio, 4096, 10));
        assert_eq!(l.cumulative(&[50.0])[0].1.count, 2);
    }

    #[test]
    fn backwards_or_unknown_events_are_counted_not_recorded() {
        let mut l = Latency::default();
        let mut bad = ev(LatencyKind::D2c, 1, 0);
        bad.end_ns = 10;
        l.record(&bad);
        l.record(&LatencyEvent { kind: 99, ..ev(LatencyKind::D2c, 1, 5) });
        assert_eq!(l.invalid, 2);
        assert!(l.cumulative(&[50.0]).is_empty());
    }

    #[test]
    fn size_classes_and_names() {
        assert_eq!((size_class(0), size_class(4096), size_class(4097), size_class(1 << 20)), (0, 12, 13, 20));
        assert_eq!(size_name(Some(12)), "4k");
        assert_eq!(size_name(Some(20)), "1m");
        assert_eq!(size_name(Some(9)), "512");
        assert_eq!(parse_percentiles("50, 99.9").unwrap(), vec![50.0, 99.9]);
        assert!(parse_percentiles("101").is_err());
        assert!(parse_percentiles("x").is_err());
    }

    proptest! {
        /// HDR at 3 significant digits: every percentile is within 0.1% of the exact order
        /// statistic of the recorded values.
        #[test]
        fn percentiles_match_exact_order_statistics(mut values in proptest::collection::vec(1u64..10_000_000_000, 1..400)) {
            let mut l = Latency::default();
            for v in &values {
                l.record(&ev(LatencyKind::Q2c, 512, *v));
            }
            values.sort_unstable();
            let stats = &l.cumulative(&[50.0, 99.0])[0].1;
            for (p, got) in &stats.percentiles {
                let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
                let exact = values[rank - 1] as f64;
                prop_assert!((*got as f64 - exact).abs() <= exact * 0.001 + 1.0, "p{p}: {got} vs {exact}");
            }
            prop_assert_eq!(stats.count, values.len() as u64);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The buckets in one pass equal counting below each bound, and an all-sizes row
        /// equals one histogram fed every event of its figure, device and operation.
        #[test]
        fn buckets_and_all_sizes_rows_are_exact(events in prop::collection::vec((1u64..20_000_000_000, 0u64..(1 << 21)), 1..300)) {
            let mut l = Latency::default();
            let mut whole = new_histogram();
            for &(ns, bytes) in &events {
                l.record(&ev(LatencyKind::D2c, bytes, ns));
                whole.saturating_record(ns);
            }
            let mut below = 0;
            let mut reference: Vec<u64> = BUCKETS_NS
                .iter()
                .map(|&b| {
                    let upto = whole.count_between(0, b);
                    let n = upto - below;
                    below = upto;
                    n
                })
                .collect();
            reference.push(whole.len() - below);
            prop_assert_eq!(buckets(&whole), reference);
            let rows = l.cumulative(&[50.0, 99.0]);
            let all = rows.iter().find(|(k, _)| k.size_class.is_none()).map(|(_, s)| s.clone());
            prop_assert_eq!(all, Some(stats(&whole, &[50.0, 99.0])));
            let interval = l.take_interval(&[50.0, 99.0]);
            prop_assert_eq!(&interval, &rows);
            prop_assert!(l.take_interval(&[50.0]).is_empty(), "an interval without events has no rows");
            prop_assert_eq!(l.cumulative(&[50.0, 99.0]), rows);
        }
    }
}
