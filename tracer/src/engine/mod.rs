//! The engine: decoded records into the latency histograms and the two ledgers; verdicts.
//! Pure: no aya, no tokio, no sinks.

pub mod bio;
pub mod block;
pub mod detect;
pub mod filter;
pub mod latency;
pub mod pages;

mod holds;
mod page_list;

use std::collections::{BTreeMap, HashMap};

use tracer_common::{BioEvent, BioRecord, LatencyEvent, LatencyKind, Owner, RecordType, BIO_FLAG_QUEUED, BIO_MAX_VECS};

use self::{
    bio::{Ledger, LedgerSnapshot},
    block::{Ended, Timings},
    detect::Judgement,
    filter::{Filter, FilterStatus, Gate},
    latency::{Key, Latency, Stats},
    pages::{OwnerPins, PageLedger, PageSnapshot},
};
use crate::{
    decode::{self, block_record_into, decode, pages_record_into},
    model::{BlockRecord, FollBits, PagesRecord, Record},
    probes::{
        counters::{Counters, ProcCounts},
        plan::ProbeOutcome,
        vmstat::FollPin,
    },
};

/// The ledgers' hash maps: keyed by kernel addresses and ids, hashed fast (foldhash; the
/// engine's throughput is a benchmark target).
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// A completed bio not released for this long is a leak suspect; so is a pin (not
    /// long-term, not tied to a bio) held this long.
    pub grace_ns: u64,
    /// FOLL_* values of the traced kernel.
    pub foll: FollBits,
    /// sizeof(struct page): the distance between the struct pages of adjacent pages (64 on
    /// x86_64 and arm64 kernels). Only the page-by-page holds use it.
    pub struct_page_size: u64,
    /// Leaks and mismatches listed one by one (all are counted).
    pub max_reports: usize,
    /// Whether the kernel side read each page's folio (the struct page layout was known). When
    /// not (record files of tracers before 7.x support), tail pages were filed as their own
    /// folios, and the page ledger matches folio-level unpins to them by address.
    pub folio_heads: bool,
    /// Which records the consumers see (`--pid`, `--comm`, `--cgroup`, `--device`).
    pub filter: Filter,
    /// When the trace began (CLOCK_MONOTONIC): every probe attached, the counters' first mark.
    /// Records written before are left out: the probes attach one by one, so before this a
    /// bio's acquisition can be seen and its release not (its probe not attached yet), and the
    /// ledgers would call correct I/O leaked.
    pub start_ns: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            grace_ns: 1_000_000_000,
            foll: FollBits::BEFORE_6_2,
            struct_page_size: 64,
            max_reports: 100,
            folio_heads: true,
            filter: Filter::default(),
            start_ns: 0,
        }
    }
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
    /// The page ledger's per-owner figures at the last interval.
    owners_before: BTreeMap<u32, OwnerPins>,
    /// The filter, when one was given.
    gate: Option<Gate>,
    /// See [`Config::start_ns`].
    start_ns: u64,
    /// Records left out for being written before `start_ns`.
    before_start: u64,
    /// The block layer's starts waiting for their completions.
    block: Timings,
    /// What the last block record gave (kept to reuse their allocations).
    block_ended: Vec<Ended>,
    /// The page record being applied (decoded, or listed by a bio release): kept to reuse its
    /// vectors.
    scratch: PagesRecord,
    block_scratch: BlockRecord,
    /// Boxed, so that it moves out and back in as a pointer (a bio record is 232 bytes).
    bio_scratch: Option<Box<BioRecord>>,
}

/// How a run ended: the counters over the run, the clock, the command. From the kernel maps in
/// a live run, from the trailer in a replay.
pub struct Ending {
    pub outcomes: Vec<ProbeOutcome>,
    pub span: Counters,
    pub elapsed_s: f64,
    pub vmstat: Option<FollPin>,
    pub command_exit_status: Option<i32>,
    /// The records' clock at the end: bios still holding pages are judged then.
    pub end_ns: u64,
}

/// What the engine makes of the records at the end of a run or segment.
pub struct Final {
    /// Cumulative latency rows in key order.
    pub latency: Vec<(Key, Stats)>,
    pub ledger: LedgerSnapshot,
    pub pages: PageSnapshot,
    pub judgement: Judgement,
    /// FOLL_PIN pages per process by the owner of each pin (the kernel's per-process counters
    /// when the page ledger saw no pin).
    pub procs: BTreeMap<u32, ProcCounts>,
    /// Records the probes produced that could not be used (lost events too).
    pub invalid: u64,
    /// What the filter let through, when one was given.
    pub filter: Option<FilterStatus>,
    /// Block requests completed with no latency figure, and starts never completed.
    pub untimed: Untimed,
}

/// The block layer's I/O the latency figures leave out, and why (engine::block::Timings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Untimed {
    /// Request completions of some bytes (on the filter's devices) with no issue seen, so no
    /// D2C: in flight when the trace began, the rest of a partial completion, or the issue's
    /// record lost.
    pub requests: u64,
    /// Starts dropped after waiting for a completion that never came, among
    /// [`block::MAX_PENDING`] others.
    pub starts_dropped: u64,
}

impl Pipeline {
    pub fn new(ledger: Config) -> Pipeline {
        let page_ledger = || PageLedger::new(ledger.foll, ledger.grace_ns, ledger.folio_heads);
        let gate = (!ledger.filter.is_empty()).then(|| Gate::new(ledger.filter.clone(), page_ledger()));
        Pipeline {
            latency: Latency::default(),
            pages: page_ledger(),
            gate,
            struct_page_size: ledger.struct_page_size,
            start_ns: ledger.start_ns,
            before_start: 0,
            ledger: Ledger::new(ledger),
            undecodable: 0,
            findings: 0,
            owners_before: BTreeMap::new(),
            block: Timings::default(),
            block_ended: Vec::new(),
            scratch: PagesRecord::default(),
            block_scratch: BlockRecord::default(),
            bio_scratch: Some(Box::default()),
        }
    }

    /// A fresh pipeline for the next segment of a run; what the stream described once
    /// (kernel symbols) and the block layer's starts of I/O in flight carry over.
    pub fn next_segment(&self, ledger: Config) -> Pipeline {
        let mut next = Pipeline::new(ledger);
        next.block = self.block.carry_over();
        next.pages.inherit_symbols(&self.pages);
        if let Some(gate) = next.gate.as_mut() {
            gate.shadow_mut().inherit_symbols(&self.pages);
        }
        next
    }

    /// One ring buffer record, as the kernel wrote it.
    pub fn consume(&mut self, bytes: &[u8]) {
        // The frequent types are applied as they are decoded (no Record to move), page and
        // block records into scratch records (no allocation).
        let kind = bytes.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let decoded = if kind == Some(RecordType::Pages as u32) {
            let mut rec = std::mem::take(&mut self.scratch);
            let decoded = pages_record_into(bytes, &mut rec);
            if decoded.is_ok() && self.started(Some(rec.ts_ns)) {
                self.apply_pages(&rec);
            }
            self.scratch = rec;
            decoded
        } else if kind == Some(RecordType::Block as u32) {
            let mut rec = std::mem::take(&mut self.block_scratch);
            let decoded = block_record_into(bytes, &mut rec);
            if decoded.is_ok() && self.started(Some(rec.head.ts_ns)) {
                self.apply_block(&rec);
            }
            self.block_scratch = rec;
            decoded
        } else if kind == Some(RecordType::Bio as u32) {
            let mut rec = self.bio_scratch.take().unwrap_or_default();
            let decoded = decode::bio_into(bytes, &mut rec);
            if decoded.is_ok() && self.started(Some(rec.ts_ns)) {
                self.apply_bio(&rec);
            }
            self.bio_scratch = Some(rec);
            decoded
        } else {
            decode(bytes).map(|rec| self.apply(&rec))
        };
        if let Err(e) = decoded {
            self.undecodable += 1;
            self.latency.undecodable(e);
        }
    }

    /// Whether a record written at `ts_ns` is past the start (those before are counted).
    fn started(&mut self, ts_ns: Option<u64>) -> bool {
        if ts_ns.is_some_and(|ts| ts < self.start_ns) {
            self.before_start += 1;
            return false;
        }
        true
    }

    /// One decoded record, through the filter if there is one.
    pub fn apply(&mut self, rec: &Record) {
        if !self.started(rec.ts_ns()) {
            return;
        }
        match rec {
            Record::Latency(ev) => self.latency_event(ev),
            Record::Block(rec) => self.apply_block(rec),
            Record::Bio(rec) => self.apply_bio(rec),
            Record::Pages(rec) => self.apply_pages(rec),
            Record::Symbols(symbols) => {
                self.pages.symbols(symbols);
                if let Some(gate) = self.gate.as_mut() {
                    gate.shadow_mut().symbols(symbols);
                }
            }
            Record::Exit(exit) => {
                self.pages.exit(exit.tgid, exit.ts_ns);
                if let Some(gate) = self.gate.as_mut() {
                    gate.shadow_mut().exit(exit.tgid, exit.ts_ns);
                }
            }
        }
    }

    fn apply_block(&mut self, rec: &BlockRecord) {
        let mut ended = std::mem::take(&mut self.block_ended);
        let (latency, gate) = (&mut self.latency, &mut self.gate);
        self.block.apply(rec, |ev| latency_event(latency, gate, ev), &mut ended);
        for end in ended.drain(..) {
            // Only the bios the ledger follows (holding user pages) have an End (stamped with
            // the completion's time: past the start, as the completion is).
            if self.ledger.follows(end.bio) {
                self.apply_bio(&end_record(&end));
            }
        }
        self.block_ended = ended;
    }

    fn apply_bio(&mut self, rec: &BioRecord) {
        if rec.flags & BIO_FLAG_QUEUED != 0 && rec.event == BioEvent::Acquire as u32 {
            self.block.bio_queued(rec.bio, rec.ts_ns);
        }
        self.pages.bio(rec, self.struct_page_size);
        // The later records of a release only list more of its vecs (their pages).
        if rec.first_vec == 0 && self.gate.as_mut().is_none_or(|g| g.bio(rec, self.struct_page_size)) {
            let step = self.ledger.apply(rec);
            if let bio::Step::Released { timing, .. } = &step {
                self.latency.bio_released(timing, rec.ts_ns);
            }
            if detect::is_finding(&step) {
                self.findings += 1;
            }
        }
        let mut unpins = std::mem::take(&mut self.scratch);
        if pages::listed_unpins_into(rec, self.struct_page_size, &mut unpins) {
            self.apply_pages(&unpins);
        }
        self.scratch = unpins;
    }

    fn latency_event(&mut self, ev: &LatencyEvent) {
        latency_event(&mut self.latency, &mut self.gate, ev);
    }

    fn apply_pages(&mut self, rec: &PagesRecord) {
        match self.gate.as_mut() {
            Some(gate) => gate.pages(rec, &mut self.pages),
            None => self.pages.apply(rec),
        }
    }

    /// What the filter let through so far; None without a filter.
    pub fn filter_status(&self) -> Option<FilterStatus> {
        self.gate.as_ref().map(Gate::status)
    }

    /// The kernel's per-process counters (by the task that ran each call), narrowed to the
    /// filter's processes where it can tell (not under --cgroup: they carry no cgroup).
    fn kernel_procs(&self, procs: &BTreeMap<u32, ProcCounts>) -> BTreeMap<u32, ProcCounts> {
        let Some(filter) = self.gate.as_ref().map(Gate::filter) else { return procs.clone() };
        let keep = |tgid: u32, p: &ProcCounts| filter.process_matches(tgid, &p.comm).unwrap_or(false);
        procs.iter().filter(|&(&tgid, p)| keep(tgid, p)).map(|(&t, p)| (t, p.clone())).collect()
    }

    /// The final figures. Pure: everything comes from the records and `end`.
    pub fn finish(&self, end: &Ending, percentiles: &[f64]) -> Final {
        let ledger = self.ledger.snapshot(end.end_ns);
        let lost = detect::lost_records(&end.span, self.undecodable);
        let pages = self.pages.snapshot(end.end_ns);
        let judgement = detect::verdict(&ledger, &pages.totals, &end.outcomes, lost);
        let procs =
            owner_counts(self.pages.owners(), &BTreeMap::new()).unwrap_or_else(|| self.kernel_procs(&end.span.procs));
        Final {
            latency: self.latency.cumulative(percentiles),
            ledger,
            pages,
            judgement,
            procs,
            invalid: self.latency.invalid,
            filter: self.filter_status(),
            untimed: self.untimed(),
        }
    }

    /// The block I/O the latency figures leave out so far (requests on the filter's devices).
    fn untimed(&self) -> Untimed {
        Untimed {
            requests: self.block.untimed(|dev| self.gate.as_ref().is_none_or(|g| g.filter().dev_matches(dev))),
            starts_dropped: self.block.dropped,
        }
    }

    /// The latency rows of the interval since the last call; the next interval starts.
    pub fn take_interval(&mut self, percentiles: &[f64]) -> Vec<(Key, Stats)> {
        self.latency.take_interval(percentiles)
    }

    /// Warns of what the records showed wrong, once, at the end of a run or segment (not at
    /// every dashboard refresh, which also calls [`Pipeline::finish`]).
    pub fn warn_at_end(&self) {
        if self.latency.invalid > 0 {
            log::warn!(
                "{} event records were invalid (undecodable, or ending before they start)",
                self.latency.invalid
            );
        }
        if self.before_start > 0 {
            log::info!(
                "{} records written while the probes attached, before the trace began, left out",
                self.before_start
            );
        }
        if self.findings > 0 {
            log::info!("{} leaks or mismatches found while the records streamed", self.findings);
        }
        if self.block.invalid > 0 {
            log::warn!("{} block records named an unknown event", self.block.invalid);
        }
        if let Some(f) = self.filter_status().filter(|f| f.matched == 0) {
            log::warn!("filter {} matched no records", f.label);
        }
    }

    /// The processes' figures since the last interval, by the owner of each pin (None when the
    /// page ledger saw no pin at all: then the kernel's per-process counters are all there is).
    pub fn owner_interval(&mut self) -> Option<BTreeMap<u32, ProcCounts>> {
        let now = self.pages.owners();
        let procs = owner_counts(now, &self.owners_before);
        self.owners_before = now.clone();
        procs
    }

    /// The kernel's per-process counters of an interval, narrowed to the filter's processes
    /// (see [`Pipeline::owner_interval`] for when they are used).
    pub fn kernel_interval(&self, procs: &BTreeMap<u32, ProcCounts>) -> BTreeMap<u32, ProcCounts> {
        self.kernel_procs(procs)
    }
}

/// A bio's End as the pin ledger takes it, from the completion that ended it (the task that
/// ran the completion is not recorded: an End is matched by the bio's address alone).
fn end_record(end: &Ended) -> BioRecord {
    BioRecord {
        record: RecordType::Bio as u32,
        event: BioEvent::End as u32,
        ts_ns: end.ts_ns,
        bio: end.bio,
        dev: end.dev,
        op: end.op,
        flags: 0,
        status: end.status,
        bytes: 0,
        first_vec: 0,
        owner: Owner { tgid: 0, pid: 0, cgroup: 0, comm: [0; tracer_common::COMM_LEN] },
        nr_vecs: 0,
        nr_pages: 0,
        pages: [0; BIO_MAX_VECS],
        vec_pages: [0; BIO_MAX_VECS],
    }
}

/// FOLL_PIN pages per process from the page ledger's owners, since `before`: pins by the process
/// that took them, unpins by the process whose pins they released (a bio completion in an
/// interrupt is the pinning process's, not the interrupted task's). Processes with nothing in
/// the span are left out. None when the ledger has no owner at all.
fn owner_counts(
    now: &BTreeMap<u32, OwnerPins>,
    before: &BTreeMap<u32, OwnerPins>,
) -> Option<BTreeMap<u32, ProcCounts>> {
    if now.is_empty() {
        return None;
    }
    let procs = now
        .iter()
        .filter_map(|(&tgid, o)| {
            let b = before.get(&tgid).map_or((0, 0), |b| (b.pinned, b.unpinned));
            Some((tgid, ProcCounts::grown(&o.comm, o.cgroup, (o.pinned, o.unpinned), b)?))
        })
        .collect();
    Some(procs)
}

/// The engine's configuration from the command line's grace period, the traced kernel's
/// facts and the trace's start (see [`Config::start_ns`]).
pub fn config(grace: std::time::Duration, foll: FollBits, folio_heads: bool, filter: Filter, start_ns: u64) -> Config {
    Config {
        grace_ns: grace.as_nanos().min(u64::MAX as u128) as u64,
        foll,
        folio_heads,
        filter,
        start_ns,
        ..Config::default()
    }
}

/// A latency event into the histograms, through the filter if there is one.
fn latency_event(latency: &mut Latency, gate: &mut Option<Gate>, ev: &LatencyEvent) {
    // Earlier recordings carry the kernel's own hold and unpin-lag records: those figures
    // come from the pin ledger's bio timings now (bio_released above).
    let from_bios = [LatencyKind::PinHold as u32, LatencyKind::UnpinLag as u32];
    if !from_bios.contains(&ev.kind) && gate.as_mut().is_none_or(|g| g.latency(ev)) {
        latency.record(ev);
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::block::{BlockEvent, BlockHeader};

    use super::*;
    use crate::engine::bio::tests::{acquire, end, release, S};

    const MS: u64 = 1_000_000;

    /// A bio acquired while the probes attached, whose release probe was not attached yet: the
    /// same address acquired again once the trace began is a new bio, not a leak.
    #[test]
    fn records_from_before_the_start_are_left_out() {
        let run = |start_ns| {
            let mut p = Pipeline::new(Config { start_ns, ..Config::default() });
            for r in [acquire(0xb10, 5), acquire(0xb10, 20), end(0xb10, 21), release(0xb10, 22)] {
                p.apply(&Record::Bio(r));
            }
            p.ledger.snapshot(10 * S).totals
        };
        let t = run(10);
        assert_eq!((t.leaked.bios, t.acquired.bios, t.matched.bios), (0, 1, 1));
        assert_eq!(run(0).leaked.bios, 1, "without the start, the attachment's record looks leaked");
    }

    fn block(event: BlockEvent, ts_ns: u64, addr: u64, bios: &[(u64, u32)]) -> Record {
        let head = BlockHeader {
            record: RecordType::Block as u32,
            event: event as u32,
            ts_ns,
            addr,
            dev: 254 << 20,
            op: 0,
            bytes: 4096,
            status: 0,
            nr_bios: bios.len() as u32,
            _pad: 0,
            start_ns: 0,
        };
        let bios = bios.iter().map(|&(bio, size)| crate::model::ListedBio { bio, size, queued_ns: 0 }).collect();
        Record::Block(crate::model::BlockRecord { head, bios })
    }

    /// The block layer's completion records end the bios the ledger follows (hold and unpin
    /// lag are timed from them), give the D2C and Q2C figures, and leave other bios alone.
    #[test]
    fn block_completions_end_the_bios_and_time_the_io() {
        let mut p = Pipeline::new(Config::default());
        for r in [
            Record::Bio(acquire(0xb10, 10 * MS)),
            block(BlockEvent::BioQueue, 11 * MS, 0xb10, &[]),
            block(BlockEvent::BioQueue, 11 * MS, 0xc10, &[]),
            block(BlockEvent::RqIssue, 12 * MS, 0xa10, &[]),
            block(BlockEvent::RqComplete, 15 * MS, 0xa10, &[(0xb10, 4096), (0xc10, 4096)]),
            Record::Bio(release(0xb10, 17 * MS)),
        ] {
            p.apply(&r);
        }
        let s = p.ledger.snapshot(20 * MS);
        assert_eq!((s.totals.matched.bios, s.totals.ends_untracked), (1, 0), "{:?}", s.totals);
        let rows = p.latency.cumulative(&[50.0]);
        let median = |kind: LatencyKind| {
            let row = rows.iter().find(|(k, _)| k.kind == kind && k.size_class.is_none());
            row.map(|(_, st)| (st.count, st.at(50.0)))
        };
        assert_eq!(median(LatencyKind::D2c).map(|m| m.0), Some(1));
        assert_eq!(median(LatencyKind::Q2c).map(|m| m.0), Some(2));
        let hold = median(LatencyKind::PinHold).expect("a hold figure");
        let lag = median(LatencyKind::UnpinLag).expect("an unpin lag figure");
        assert_eq!(hold.0, 1);
        assert!(hold.1.abs_diff(7 * MS) < MS / 100 && lag.1.abs_diff(2 * MS) < MS / 100, "{hold:?} {lag:?}");
    }

    /// A request completed with no issue seen is counted untimed, on the filter's devices only.
    #[test]
    fn requests_without_their_issue_are_counted_untimed_by_device() {
        let run = |devs: &[u32]| {
            let filter = Filter { devs: devs.iter().copied().collect(), label: "test".into(), ..Filter::default() };
            let mut p = Pipeline::new(Config { filter, ..Config::default() });
            p.apply(&block(BlockEvent::RqIssue, 12 * MS, 0xa10, &[]));
            p.apply(&block(BlockEvent::RqComplete, 15 * MS, 0xa10, &[]));
            p.apply(&block(BlockEvent::RqComplete, 16 * MS, 0xa20, &[]));
            p.untimed()
        };
        assert_eq!(run(&[]), Untimed { requests: 1, starts_dropped: 0 });
        assert_eq!(run(&[254 << 20]).requests, 1);
        assert_eq!(run(&[8 << 20]).requests, 0, "another device's request is not the filter's");
    }

    /// An acquisition streamed by the bio's queueing (6.2+) is the start of its Q2C too; one
    /// from bio_iov_iter_get_pages (6.1, older record files) is not.
    #[test]
    fn an_acquisition_at_the_queueing_starts_the_bios_q2c() {
        let q2c = |flags: u32| {
            let mut p = Pipeline::new(Config::default());
            for r in [
                Record::Bio(BioRecord { flags: acquire(0xb10, 10 * MS).flags | flags, ..acquire(0xb10, 10 * MS) }),
                block(BlockEvent::RqComplete, 15 * MS, 0xa10, &[(0xb10, 4096)]),
                Record::Bio(release(0xb10, 17 * MS)),
            ] {
                p.apply(&r);
            }
            assert_eq!(p.ledger.snapshot(20 * MS).totals.matched.bios, 1);
            let rows = p.latency.cumulative(&[50.0]);
            let row = rows.iter().find(|(k, _)| k.kind == LatencyKind::Q2c && k.size_class.is_none());
            row.map(|(_, st)| (st.count, st.at(50.0)))
        };
        let (count, median) = q2c(BIO_FLAG_QUEUED).expect("a q2c figure");
        assert_eq!(count, 1);
        assert!(median.abs_diff(5 * MS) < MS / 100, "{median}");
        assert_eq!(q2c(0).map(|(n, _)| n), None, "no queueing, no q2c");
    }
}
