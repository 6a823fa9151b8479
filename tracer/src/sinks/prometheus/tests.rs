use tracer_common::{LatencyEvent, LatencyKind, ProbeId, ProbeStat, RecordType};

use super::{metrics::encode, parse_addr, Shared};
use crate::{
    engine::latency::Latency,
    model::Names,
    probes::{counters::Counters, plan::Method, vmstat::FollPin},
    snapshot::{Figures, Scope, Snapshot},
};

struct TestNames;
impl Names for TestNames {
    fn device(&self, _dev: u32) -> String {
        "nvme0n1".into()
    }
    fn op(&self, _op: u32) -> String {
        "read".into()
    }
}

fn snapshot() -> Snapshot {
    let outcomes: Vec<_> = tracer_common::PROBES
        .iter()
        .map(|d| crate::probes::plan::ProbeOutcome {
            def: *d,
            off: false,
            attached: (d.id == ProbeId::PinUserPagesFast).then_some(Method::Fexit),
            failures: vec![],
        })
        .collect();
    let mut c = Counters { pages_pinned: 1648, pages_unpinned: 1600, ..Counters::default() };
    c.probes[ProbeId::PinUserPagesFast as usize] = ProbeStat { hits: 103, amount: 1648 };
    let vm = FollPin { nr_foll_pin_acquired: 1648, nr_foll_pin_released: 1600 };
    let f = Figures::new(Scope::Interval, &outcomes, &c, (2.0, 1.0), Some(vm));
    let mut l = Latency::default();
    for ns in [20_000u64, 40_000, 3_000_000, 20_000_000_000] {
        let kind = LatencyKind::Q2c as u32;
        l.record(&LatencyEvent {
            record: RecordType::Latency as u32,
            kind,
            dev: 259 << 20,
            op: 0,
            bytes: 4096,
            start_ns: 0,
            end_ns: ns,
        });
    }
    Snapshot::interval(f, c, l.cumulative(&[50.0]), &TestNames, 0)
}

#[test]
fn a_bare_port_listens_on_loopback_only() {
    assert_eq!(parse_addr("9464").unwrap().to_string(), "127.0.0.1:9464");
    assert_eq!(parse_addr("0.0.0.0:9464").unwrap().to_string(), "0.0.0.0:9464");
    assert!(parse_addr("localhost").unwrap_err().contains("neither a port"));
}

#[test]
fn before_the_first_snapshot_only_the_probes_show() {
    let text = encode(&Shared { latest: None, probes_attached: 9, probes_missing: 23 });
    assert!(text.contains("tracer_probes{state=\"attached\"} 9\n"), "{text}");
    assert!(!text.contains("tracer_foll_pin_pages"), "{text}");
}

#[test]
fn totals_entry_points_and_latency_buckets_are_exposed_with_bounded_labels() {
    let text = encode(&Shared { latest: Some(snapshot()), probes_attached: 1, probes_missing: 31 });
    for line in [
        "tracer_foll_pin_pages_total{event=\"pinned\"} 1648\n",
        "tracer_foll_pin_pages_total{event=\"unpinned\"} 1600\n",
        "tracer_entry_point_pages_total{function=\"pin_user_pages_fast\",role=\"pin\"} 1648\n",
        "tracer_latency_seconds_count{figure=\"q2c\",device=\"nvme0n1\",op=\"read\"} 4\n",
        // Cumulative buckets: 20 us and 40 us by 50 us, 3 ms by 5 ms, 20 s only in +Inf.
        "tracer_latency_seconds_bucket{le=\"0.00005\",figure=\"q2c\",device=\"nvme0n1\",op=\"read\"} 2\n",
        "tracer_latency_seconds_bucket{le=\"0.005\",figure=\"q2c\",device=\"nvme0n1\",op=\"read\"} 3\n",
        "tracer_latency_seconds_bucket{le=\"10.0\",figure=\"q2c\",device=\"nvme0n1\",op=\"read\"} 3\n",
        "tracer_latency_seconds_bucket{le=\"+Inf\",figure=\"q2c\",device=\"nvme0n1\",op=\"read\"} 4\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    for unbounded in ["pid", "tgid", "comm", "pfn", "addr"] {
        assert!(!text.contains(&format!("{unbounded}=")), "a {unbounded} label:\n{text}");
    }
}
