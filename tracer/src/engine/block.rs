//! Block layer and Direct I/O timings: the kernel streams a record when a bio is queued, a
//! request issued, a request or a bio completed, a DIO call begun or completed
//! (tracer_common::block; a completion carries the start itself where the kernel side's stamp
//! table kept it, and then none was streamed), and this pairs them: D2C from a request's issue
//! to its completion,
//! Q2C from a bio's queueing to the completion that lists it (its request's, or its own on a
//! bio-based device), DIO from a kiocb's begin to its completion. Each block completion also
//! names the bios it ends, which the pin ledger takes as their End. Pure.
//!
//! A start whose completion never comes (a request merged from more bios than a completion
//! lists, a record lost) waits here until [`MAX_PENDING`] starts wait; then the older half is
//! dropped and counted, as the kernel side's LRU maps did before.

use tracer_common::{
    block::{BlockEvent, RQ_MAX_BIOS},
    LatencyEvent, LatencyKind, RecordType,
};

use super::Map;
use crate::model::BlockRecord;

/// Starts that wait for their completion, per kind (requests, bios), before the older half is
/// dropped.
pub const MAX_PENDING: usize = 1 << 16;

/// A bio a completion ended: what the pin ledger's End is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub bio: u64,
    pub ts_ns: u64,
    pub dev: u32,
    pub op: u32,
    pub status: i32,
}

/// A DIO call as it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DioBegin {
    ts_ns: u64,
    dev: u32,
    op: u32,
    bytes: u32,
}

/// The starts waiting for their completions.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    /// request address -> issue time.
    issued: Map<u64, u64>,
    /// bio address -> queue time.
    queued: Map<u64, u64>,
    /// kiocb address -> the DIO call's begin.
    dio: Map<u64, DioBegin>,
    /// Starts dropped without a completion (see [`MAX_PENDING`]).
    pub dropped: u64,
    /// Request completions of some bytes with no issue seen, by device (in flight when the
    /// trace began, the rest of a partial completion, or the issue's record lost): their D2C
    /// is missing. Bios are not counted: some never pass the queueing tracepoint by design (the
    /// bios of SG_IO and other passthrough requests; the front a split cuts off, traced as a
    /// split and not as queued, which NVMe multipath reports completed on its own), so a
    /// missing Q2C start tells of nothing lost.
    /// A flush sequence's completion of no bytes (its request never issued) is not counted.
    pub untimed_by_dev: Vec<(u32, u64)>,
    /// Records of an unknown event.
    pub invalid: u64,
}

impl Timings {
    /// One record: a start is kept; a completion gives its latency events to `latency` and the
    /// bios it ends to `ended`, in the request's order.
    pub fn apply(&mut self, rec: &BlockRecord, mut latency: impl FnMut(&LatencyEvent), ended: &mut Vec<Ended>) {
        let h = &rec.head;
        let event = |kind: LatencyKind, bytes: u32, start_ns: u64| LatencyEvent {
            record: RecordType::Latency as u32,
            kind: kind as u32,
            dev: h.dev,
            op: h.op,
            bytes: bytes as u64,
            start_ns,
            end_ns: h.ts_ns,
        };
        let end = |bio: u64| Ended { bio, ts_ns: h.ts_ns, dev: h.dev, op: h.op, status: h.status };
        if h.event == BlockEvent::BioQueue as u32 {
            self.dropped += start(&mut self.queued, h.addr, h.ts_ns, |&t| t);
        } else if h.event == BlockEvent::RqIssue as u32 {
            self.dropped += start(&mut self.issued, h.addr, h.ts_ns, |&t| t);
        } else if h.event == BlockEvent::RqComplete as u32 {
            match kept_or_streamed(h.start_ns, &mut self.issued, h.addr) {
                Some(issued) => latency(&event(LatencyKind::D2c, h.bytes, issued)),
                None if h.bytes > 0 => self.untimed_on(h.dev),
                None => {}
            }
            for b in rec.bios.iter().take(RQ_MAX_BIOS) {
                if let Some(queued) = kept_or_streamed(b.queued_ns, &mut self.queued, b.bio) {
                    latency(&event(LatencyKind::Q2c, b.size, queued));
                }
                ended.push(end(b.bio));
            }
        } else if h.event == BlockEvent::BioComplete as u32 {
            if let Some(queued) = kept_or_streamed(h.start_ns, &mut self.queued, h.addr) {
                latency(&event(LatencyKind::Q2c, h.bytes, queued));
            }
            ended.push(end(h.addr));
        } else if h.event == BlockEvent::DioBegin as u32 {
            let begin = DioBegin { ts_ns: h.ts_ns, dev: h.dev, op: h.op, bytes: h.bytes };
            self.dropped += start(&mut self.dio, h.addr, begin, |b| b.ts_ns);
        } else if h.event == BlockEvent::DioComplete as u32 {
            if let Some(b) = self.dio.remove(&h.addr) {
                // The bytes done, or those asked for when the call did none or failed.
                let bytes = if h.status == 0 && h.bytes > 0 { h.bytes } else { b.bytes };
                latency(&LatencyEvent { dev: b.dev, op: b.op, ..event(LatencyKind::Dio, bytes, b.ts_ns) });
            }
        } else {
            self.invalid += 1;
        }
    }

    /// One more request completion of `dev` timed by no issue ([`Timings::untimed_by_dev`]).
    fn untimed_on(&mut self, dev: u32) {
        match self.untimed_by_dev.iter_mut().find(|(d, _)| *d == dev) {
            Some((_, n)) => *n += 1,
            None => self.untimed_by_dev.push((dev, 1)),
        }
    }

    /// Request completions timed by no issue on the devices `keep` says yes to.
    pub fn untimed(&self, keep: impl Fn(u32) -> bool) -> u64 {
        self.untimed_by_dev.iter().filter(|(dev, _)| keep(*dev)).map(|(_, n)| n).sum()
    }

    /// A bio's queueing streamed as its acquisition (`BIO_FLAG_QUEUED`): the start of its Q2C.
    pub fn bio_queued(&mut self, bio: u64, ts_ns: u64) {
        self.dropped += start(&mut self.queued, bio, ts_ns, |&t| t);
    }

    /// The starts still waiting, for the next segment of a run (its I/O in flight completes
    /// there); the counts begin again.
    pub fn carry_over(&self) -> Timings {
        Timings {
            issued: self.issued.clone(),
            queued: self.queued.clone(),
            dio: self.dio.clone(),
            dropped: 0,
            untimed_by_dev: Vec::new(),
            invalid: 0,
        }
    }

    /// Starts waiting now (requests, bios).
    #[cfg(test)]
    pub fn pending(&self) -> (usize, usize) {
        (self.issued.len(), self.queued.len())
    }
}

/// A completion's start: the one the kernel side kept (`kept`, 0 when none), else the one
/// streamed for `addr`. A streamed one goes either way: with a kept start, it is an earlier
/// start of the address whose completion never came.
fn kept_or_streamed(kept: u64, streamed: &mut Map<u64, u64>, addr: u64) -> Option<u64> {
    let streamed = streamed.remove(&addr);
    if kept != 0 {
        Some(kept)
    } else {
        streamed
    }
}

/// Keeps a start (`time` tells when it began); when [`MAX_PENDING`] wait, drops the older half
/// first. Returns how many were dropped.
fn start<V>(map: &mut Map<u64, V>, addr: u64, value: V, time: impl Fn(&V) -> u64) -> u64 {
    let mut dropped = 0;
    if map.len() >= MAX_PENDING && !map.contains_key(&addr) {
        let mut times: Vec<u64> = map.values().map(&time).collect();
        let mid = times.len() / 2;
        let (_, &mut cut, _) = times.select_nth_unstable(mid);
        let before = map.len();
        map.retain(|_, v| time(v) >= cut);
        dropped = (before - map.len()) as u64;
    }
    map.insert(addr, value);
    dropped
}

#[cfg(test)]
mod tests {
    use tracer_common::block::BlockHeader;

    use super::*;
    use crate::model::ListedBio;

    fn rec(event: BlockEvent, ts_ns: u64, addr: u64, bytes: u32, bios: &[(u64, u32)]) -> BlockRecord {
        let bios: Vec<_> = bios.iter().map(|&(bio, size)| ListedBio { bio, size, queued_ns: 0 }).collect();
        BlockRecord {
            head: BlockHeader {
                record: RecordType::Block as u32,
                event: event as u32,
                ts_ns,
                addr,
                dev: 7,
                op: 1,
                bytes,
                status: 0,
                nr_bios: bios.len() as u32,
                _pad: 0,
                start_ns: 0,
            },
            bios,
        }
    }

    fn run(t: &mut Timings, records: &[BlockRecord]) -> (Vec<(u32, u64, u64)>, Vec<u64>) {
        let (mut lat, mut ended) = (Vec::new(), Vec::new());
        for r in records {
            t.apply(r, |e| lat.push(*e), &mut ended);
        }
        (lat.iter().map(|e| (e.kind, e.bytes, e.end_ns - e.start_ns)).collect(), ended.iter().map(|e| e.bio).collect())
    }

    const D2C: u32 = LatencyKind::D2c as u32;
    const Q2C: u32 = LatencyKind::Q2c as u32;

    #[test]
    fn a_request_pairs_its_issue_and_each_listed_bio_its_queueing() {
        let mut t = Timings::default();
        let (lat, ended) = run(
            &mut t,
            &[
                rec(BlockEvent::BioQueue, 10, 0xb1, 0, &[]),
                rec(BlockEvent::BioQueue, 12, 0xb2, 0, &[]),
                rec(BlockEvent::RqIssue, 20, 0xa0, 0, &[]),
                rec(BlockEvent::RqComplete, 50, 0xa0, 8192, &[(0xb1, 4096), (0xb2, 4096)]),
            ],
        );
        assert_eq!(lat, vec![(D2C, 8192, 30), (Q2C, 4096, 40), (Q2C, 4096, 38)]);
        assert_eq!(ended, vec![0xb1, 0xb2]);
        assert_eq!(t.pending(), (0, 0));
    }

    #[test]
    fn starts_the_kernel_kept_come_with_their_completion() {
        let mut t = Timings::default();
        // The request's issue and its second bio's queueing were kept; the first bio's queueing
        // was streamed (its slot was taken).
        let mut done = rec(BlockEvent::RqComplete, 50, 0xa0, 8192, &[(0xb1, 4096), (0xb2, 4096)]);
        done.head.start_ns = 20;
        done.bios[1].queued_ns = 12;
        let (lat, ended) = run(&mut t, &[rec(BlockEvent::BioQueue, 10, 0xb1, 0, &[]), done]);
        assert_eq!(lat, vec![(D2C, 8192, 30), (Q2C, 4096, 40), (Q2C, 4096, 38)]);
        assert_eq!(ended, vec![0xb1, 0xb2]);
        // A kept start wins over a streamed one of the same address left from an earlier issue
        // whose completion never came, which goes too.
        let mut done = rec(BlockEvent::RqComplete, 90, 0xa0, 512, &[]);
        done.head.start_ns = 80;
        let (lat, _) = run(&mut t, &[rec(BlockEvent::RqIssue, 60, 0xa0, 0, &[]), done]);
        assert_eq!(lat, vec![(D2C, 512, 10)]);
        assert_eq!(t.pending(), (0, 0));
        // A bio-based device's completion carries its bio's kept queueing.
        let mut done = rec(BlockEvent::BioComplete, 300, 0xd1, 4096, &[]);
        done.head.start_ns = 100;
        let (lat, ended) = run(&mut t, &[done]);
        assert_eq!((lat, ended), (vec![(Q2C, 4096, 200)], vec![0xd1]));
    }

    #[test]
    fn a_bio_based_device_completes_its_bios_itself() {
        let mut t = Timings::default();
        let (lat, ended) = run(
            &mut t,
            &[rec(BlockEvent::BioQueue, 5, 0xd1, 0, &[]), rec(BlockEvent::BioComplete, 205, 0xd1, 4096, &[])],
        );
        assert_eq!(lat, vec![(Q2C, 4096, 200)]);
        assert_eq!(ended, vec![0xd1]);
    }

    #[test]
    fn completions_without_a_start_end_their_bios_without_latency() {
        // Started before the trace began: no figure, but the bio still ends.
        let mut t = Timings::default();
        let (lat, ended) = run(&mut t, &[rec(BlockEvent::RqComplete, 50, 0xa0, 4096, &[(0xb1, 4096)])]);
        assert!(lat.is_empty());
        assert_eq!(ended, vec![0xb1]);
        // Counted untimed by its device: the request, not the bio it lists.
        assert_eq!(t.untimed_by_dev, vec![(7, 1)]);
        // A second completion of a request (the rest of a partial one) times nothing again.
        let (lat, _) = run(
            &mut t,
            &[
                rec(BlockEvent::RqIssue, 60, 0xa0, 0, &[]),
                rec(BlockEvent::RqComplete, 70, 0xa0, 512, &[]),
                rec(BlockEvent::RqComplete, 80, 0xa0, 3584, &[(0xb2, 3584)]),
            ],
        );
        assert_eq!(lat, vec![(D2C, 512, 10)]);
        assert_eq!(t.untimed_by_dev, vec![(7, 2)]);
        // Another device's; a bio completed with no queueing seen, and a flush sequence's end
        // of no bytes, are not counted.
        let mut done = rec(BlockEvent::RqComplete, 90, 0xa9, 4096, &[]);
        done.head.dev = 9;
        let mut bio = rec(BlockEvent::BioComplete, 95, 0xd1, 4096, &[]);
        bio.head.dev = 9;
        run(&mut t, &[done, bio, rec(BlockEvent::RqComplete, 99, 0xaf, 0, &[])]);
        assert_eq!(t.untimed_by_dev, vec![(7, 2), (9, 1)]);
        assert_eq!((t.untimed(|_| true), t.untimed(|d| d == 9)), (3, 1));
        // The next segment counts again.
        assert_eq!(t.carry_over().untimed(|_| true), 0);
    }

    #[test]
    fn completions_with_their_start_are_not_untimed() {
        let mut t = Timings::default();
        let mut kept = rec(BlockEvent::RqComplete, 50, 0xa1, 512, &[]);
        kept.head.start_ns = 40;
        run(
            &mut t,
            &[rec(BlockEvent::RqIssue, 10, 0xa0, 0, &[]), rec(BlockEvent::RqComplete, 20, 0xa0, 512, &[]), kept],
        );
        assert_eq!(t.untimed(|_| true), 0);
    }

    #[test]
    fn starts_never_completed_are_dropped_oldest_first_and_counted() {
        let mut t = Timings::default();
        for i in 0..MAX_PENDING as u64 {
            run(&mut t, &[rec(BlockEvent::BioQueue, 1000 + i, 0x1000 + i, 0, &[])]);
        }
        assert_eq!((t.pending().1, t.dropped), (MAX_PENDING, 0));
        // The same address again replaces its start; a new one drops the older half.
        run(&mut t, &[rec(BlockEvent::BioQueue, 5, 0x1000, 0, &[])]);
        assert_eq!(t.dropped, 0);
        run(&mut t, &[rec(BlockEvent::BioQueue, 1_000_000, 0x10_0000, 0, &[])]);
        assert!(t.dropped as usize >= MAX_PENDING / 2 - 1, "dropped {}", t.dropped);
        assert_eq!(t.pending().1 as u64 + t.dropped, MAX_PENDING as u64 + 1);
        // The newest starts are kept.
        let (lat, _) = run(&mut t, &[rec(BlockEvent::BioComplete, 2_000_000, 0x10_0000, 1, &[])]);
        assert_eq!(lat, vec![(Q2C, 1, 1_000_000)]);
    }

    #[test]
    fn a_dio_call_is_timed_from_its_begin_with_the_bytes_it_did() {
        let mut t = Timings::default();
        let mut begin = rec(BlockEvent::DioBegin, 100, 0x10c, 8192, &[]);
        begin.head.op = 1;
        let mut failed = rec(BlockEvent::DioComplete, 900, 0x20c, 0, &[]);
        failed.head.status = -5;
        let (mut lat, mut ended) = (Vec::new(), Vec::new());
        for r in [
            begin.clone(),
            rec(BlockEvent::DioBegin, 150, 0x20c, 4096, &[]),
            rec(BlockEvent::DioComplete, 400, 0x10c, 4096, &[]),
            failed,
            rec(BlockEvent::DioComplete, 950, 0x30c, 512, &[]),
        ] {
            t.apply(&r, |e| lat.push(*e), &mut ended);
        }
        let got: Vec<_> = lat.iter().map(|e| (e.kind, e.op, e.bytes, e.end_ns - e.start_ns)).collect();
        let dio = LatencyKind::Dio as u32;
        // A short call counts what it did; a failed one what it asked for; one never begun nothing.
        assert_eq!(got, vec![(dio, 1, 4096, 300), (dio, 1, 4096, 750)]);
        assert!(ended.is_empty());
    }

    #[test]
    fn unknown_events_are_counted() {
        let mut t = Timings::default();
        let mut r = rec(BlockEvent::RqIssue, 1, 2, 0, &[]);
        r.head.event = 9;
        run(&mut t, &[r]);
        assert_eq!(t.invalid, 1);
    }
}
