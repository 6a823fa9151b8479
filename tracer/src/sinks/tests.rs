use tracer_common::{ProbeId, ProbeStat, PROBES};

use super::{ndjson::*, text::*};
use crate::{
    probes::{
        counters::Counters,
        plan::{Method, ProbeOutcome},
        vmstat::FollPin,
    },
    snapshot::{Figures, NameTable, Scope},
};

fn outcomes(attached: &[ProbeId]) -> Vec<ProbeOutcome> {
    PROBES
        .iter()
        .map(|d| ProbeOutcome {
            def: *d,
            off: false,
            attached: attached.contains(&d.id).then_some(Method::Fentry),
            failures: if attached.contains(&d.id) {
                vec![]
            } else {
                vec![(Method::Fentry, "no BTF FUNC record".into())]
            },
        })
        .collect()
}

#[test]
fn summary_json_has_the_documented_integer_fields() {
    let o = outcomes(&[ProbeId::PinUserPagesFast]);
    let mut snap = Counters { pages_pinned: 1648, pages_unpinned: 1648, ..Counters::default() };
    snap.probes[ProbeId::PinUserPagesFast as usize] = ProbeStat { hits: 103, amount: 1648 };
    let vm = FollPin { nr_foll_pin_acquired: 1648, nr_foll_pin_released: 1648 };
    let mut f = Figures::new(Scope::Summary, &o, &snap, (2.0, 2.0), Some(vm));
    f.command_exit_status = Some(0);
    let v: serde_json::Value = serde_json::from_str(&json_line(&FiguresRecord::of(&f))).unwrap();
    assert_eq!(v["type"], "summary");
    assert_eq!(v["pages_pinned"], 1648);
    assert_eq!(v["pages_unpinned"], 1648);
    assert_eq!(v["lost_events"], 0);
    assert_eq!(v["pin_accounting"], "measured");
    assert_eq!(v["entry_points"][0]["function"], "pin_user_pages_fast");
    assert_eq!(v["entry_points"][0]["pages"], 1648);
    assert!(v["block"]["requests_issued"].is_null(), "unattached block probes are null, not 0");
    assert!(v["probes_missing"].as_array().unwrap().iter().any(|m| m == "unpin_user_folio"));
}

#[test]
fn no_vmstat_counters_is_unverifiable_not_zero_pins() {
    let o = outcomes(&[ProbeId::BlockRqIssue, ProbeId::BlockRqComplete]);
    let f = Figures::new(Scope::Summary, &o, &Counters::default(), (2.0, 2.0), None);
    assert_eq!(FiguresRecord::of(&f).pin_accounting, "unverifiable");
    let text = figures_text(&f, &[]);
    assert!(text.contains("unverifiable"), "{text}");
    assert!(!text.contains("pinned 0"), "{text}");
}

#[test]
fn latency_rows_render_with_percentiles_in_order() {
    use crate::engine::latency::Latency;
    use tracer_common::{LatencyEvent, LatencyKind, RecordType};
    let mut l = Latency::default();
    for ns in [100_000u64, 200_000, 300_000] {
        l.record(&LatencyEvent {
            record: RecordType::Latency as u32,
            kind: LatencyKind::D2c as u32,
            dev: 254 << 20,
            op: 0,
            bytes: 4096,
            start_ns: 0,
            end_ns: ns,
        });
    }
    let rows = l.cumulative(&[50.0, 99.9]);
    let names = NameTable::of(&[(254 << 20, "vda")], &[(0, "read")]);
    let recs = latency_records(&rows, "cumulative", &names);
    assert_eq!(recs.len(), 2, "an all-sizes row and a 4k row");
    let v: serde_json::Value = serde_json::from_str(&json_line(&recs[0])).unwrap();
    assert_eq!(v["type"], "latency");
    assert_eq!(v["dev"], "254:0");
    assert_eq!(v["op"], "read");
    assert_eq!(v["size"], "all");
    assert_eq!(v["count"], 3);
    assert!(v["percentiles"]["p50"].as_u64().unwrap().abs_diff(200_000) < 200);
    let text = latency_text(&rows, Scope::Summary, &names);
    assert!(text.contains("latency (cumulative)"), "{text}");
    assert!(text.contains("p50") && text.contains("p99.9"), "{text}");
    assert!(text.contains("d2c  vda"), "{text}");
}

#[test]
fn probe_table_names_each_missing_probe_with_its_reason() {
    let o = outcomes(&[ProbeId::BlockRqIssue]);
    let text = probes_text(&o, "6.18.0");
    assert!(text.contains(&format!("1 of {} probes attached", PROBES.len())), "{text}");
    assert!(text.contains("MISSING  pin_user_pages_fast"), "{text}");
    assert!(text.contains("no BTF FUNC record"), "{text}");
}
