use std::time::Duration;

use tracer_common::BioEvent;

use super::*;
use crate::{
    cli::{Percentiles, ViewArgs},
    engine::Ending,
    probes::counters::Counters,
    record::FileNames,
    record::{
        tests::{bio_wire, metadata, trailer},
        Trailer,
    },
    sinks::text::utc,
    snapshot::{Snapshot, Start},
    source::{Event, MemorySource, Tick},
};

const MS: u64 = 1_000_000;
const FIO: (u32, u32, &str) = (100, 101, "fio");
const IRQ: (u32, u32, &str) = (0, 0, "swapper/1");

fn args(format: Format) -> ReportArgs {
    ReportArgs {
        file: "t.rec".into(),
        view: ViewArgs {
            format_arg: Some(format),
            format,
            percentiles: Percentiles(vec![50.0]),
            leak_grace: Duration::from_secs(1),
            report: None,
            report_format: None,
            filter: crate::cli::FilterArgs::default(),
        },
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
            off: false,
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

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// A record file replayed into `sink`.
fn replay_into(bytes: &[u8], sink: &mut dyn Sink) -> Result<()> {
    let src = Box::new(std::io::Cursor::new(bytes.to_vec()));
    block_on(replay(
        "t.rec",
        super::Input::Read(src),
        &args(Format::Json).view,
        engine::filter::Filter::default(),
        &mut [sink],
    ))
}

fn replayed(bytes: &[u8], format: Format) -> String {
    match format {
        Format::Json => {
            let mut sink = NdjsonSink { out: Vec::new() };
            replay_into(bytes, &mut sink).unwrap();
            String::from_utf8(sink.out).unwrap()
        }
        Format::Text | Format::Tui => {
            let mut sink = TextSink { out: Vec::new() };
            replay_into(bytes, &mut sink).unwrap();
            String::from_utf8(sink.out).unwrap()
        }
    }
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
    let mut sink = NdjsonSink { out: Vec::new() };
    let e = replay_into(b"garbage", &mut sink).unwrap_err();
    assert_eq!(format!("{e:#}"), "t.rec: not a tracer record file (bad magic)");
}

#[test]
fn pipeline_counts_undecodable_records_as_lost() {
    let outcomes: Vec<ProbeOutcome> = metadata().outcomes();
    let end = Ending {
        outcomes,
        span: Counters::default(),
        elapsed_s: 1.0,
        vmstat: None,
        command_exit_status: None,
        end_ns: 0,
    };
    // Records in memory through the loop of live runs and replays.
    let memory = MemorySource { steps: [(vec![vec![9, 9]], Event::End(end))].into(), names: FileNames::default() };
    let mut sink = NdjsonSink { out: Vec::new() };
    let source = &mut EventSource::Memory(Box::new(memory));
    let fin = block_on(drive(source, engine::Config::default(), &mut [&mut sink], None, &[50.0])).unwrap();
    assert_eq!(fin.figures.lost_events, 1);
    assert_eq!(fin.bios.unwrap().judgement.verdict.name(), "unverifiable");
}

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400 * 1_000_000_000), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_700_000_000 * 1_000_000_000 + 999), "2023-11-14 22:13:20 UTC");
}

/// Takes the run so far at every interval, as the dashboard does.
#[derive(Default)]
struct TotalsSink {
    intervals: Vec<(Snapshot, Option<Snapshot>)>,
    ends: usize,
    closed_before_end: bool,
}

impl Sink for TotalsSink {
    fn start(&mut self, _start: &Start) -> std::io::Result<()> {
        Ok(())
    }

    fn interval(&mut self, interval: &Snapshot, totals: Option<&Snapshot>) -> std::io::Result<()> {
        self.intervals.push((interval.clone(), totals.cloned()));
        Ok(())
    }

    fn end(&mut self, _summary: &Snapshot) -> std::io::Result<()> {
        self.ends += 1;
        Ok(())
    }

    fn wants_totals(&self) -> bool {
        true
    }

    fn close(&mut self) {
        self.closed_before_end = self.ends == 0;
    }
}

#[test]
fn the_loop_hands_intervals_segments_and_the_end_to_every_sink() {
    let outcomes: Vec<ProbeOutcome> = metadata().outcomes();
    let ending = |end_ns: u64| Ending {
        outcomes: outcomes.clone(),
        span: Counters::default(),
        elapsed_s: 2.0,
        vmstat: None,
        command_exit_status: Some(3),
        end_ns,
    };
    let totals = ending(1100 * MS);
    let tick = Tick { span: Counters::default(), elapsed_s: 1.0, span_s: 1.0, vmstat: None, end_ns: 1100 * MS, totals };
    let start = Start { recording: None, kernel: "6.12.0-test".into(), probes: outcomes.clone() };
    let leaky = leaky();
    let steps = [
        (vec![], Event::Start(start)),
        (leaky[..2].to_vec(), Event::Interval(Box::new(tick))),
        (leaky[2..].to_vec(), Event::Segment(ending(1600 * MS))),
        (vec![], Event::End(ending(5000 * MS))),
    ];
    let memory = MemorySource { steps: steps.into(), names: FileNames::default() };
    let (mut json, mut totals) = (NdjsonSink { out: Vec::new() }, TotalsSink::default());
    let source = &mut EventSource::Memory(Box::new(memory));
    let fin = block_on(drive(source, engine::Config::default(), &mut [&mut json, &mut totals], None, &[50.0])).unwrap();
    let out = String::from_utf8(json.out).unwrap();
    let kinds: Vec<String> =
        lines(&out).iter().map(|v| v["type"].as_str().unwrap().to_string()).filter(|k| k != "probe").collect();
    // The interval's latency rows are the released bios' hold and unpin-lag figures (all sizes
    // and by size), timed from the bio records.
    assert_eq!(
        kinds,
        [
            "interval", "latency", "latency", "latency", "latency", "ledger", "pages", "summary", "ledger", "pages",
            "summary"
        ]
    );
    let (interval, so_far) = &totals.intervals[0];
    assert_eq!(interval.figures.scope, crate::snapshot::Scope::Interval);
    let so_far = so_far.as_ref().expect("the run so far for a sink that wants it");
    assert_eq!(so_far.bios.as_ref().unwrap().ledger.totals.acquired.bios, 2);
    assert_eq!((totals.ends, totals.closed_before_end), (2, false), "closed at the end, after the segment's end");
    // The segment took the records so far; the last segment has none.
    assert_eq!(lines(&out)[lines(&out).len() - 3]["acquired"]["bios"], 0);
    assert_eq!(fin.figures.command_exit_status, Some(3));
}
