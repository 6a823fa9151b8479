//! The filters (`--pid`, `--comm`, `--device`, `--cgroup`) and the `[INTERVAL] [COUNT]`
//! positionals from the outside: a recorded fixture replayed through them, bad values.
#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions unwrap too")]

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{json, Value};

fn tracer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracer"))
}

fn temp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("filters");
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir.join(name)
}

/// A fixture replayed in JSON with `args`: its ledger record, with the summary and the pages
/// record under "summary" and "pages".
fn replay_fixture_with(name: &str, args: &[&str]) -> Value {
    let out = tracer().args(["report", "--format", "json"]).arg(fixture(name)).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let record = |kind: &str| -> Value {
        let line = text.lines().find(|l| l.contains(&format!("\"type\":\"{kind}\""))).expect(kind);
        serde_json::from_str(line).unwrap()
    };
    let mut ledger = record("ledger");
    ledger["pages"] = record("pages");
    ledger["summary"] = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(ledger["summary"]["type"], "summary");
    ledger
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The fixture's pins are all fio's (tgid 143): filtering by its name or pid keeps every pin,
/// every unpin (run in interrupts, kept by the owner of the pin they release) and every bio
/// (FOLL_GET calls of fio's other processes are what --pid leaves out).
#[test]
fn a_filter_on_the_pinning_process_keeps_every_pin_and_unpin() {
    for (filter, label) in [
        (&["--comm", "fio"][..], "--comm fio"),
        (&["--pid", "143"], "--pid 143"),
        (&["-p", "1,143"], "--pid 1 --pid 143"),
    ] {
        let l = replay_fixture_with("sid-thp-fio-qd4.rec", filter);
        let (p, f) = (&l["pages"], &l["summary"]["filter"]);
        assert_eq!(l["verdict"], "clean", "{filter:?}");
        assert_eq!((p["pinned"].as_u64(), p["unpinned_matched"].as_u64()), (Some(8192), Some(8192)), "{filter:?}");
        assert_eq!((p["outstanding"].as_u64(), p["unpinned_unknown_origin"].as_u64()), (Some(0), Some(0)));
        assert_eq!(l["acquired"], json!({"bios": 32, "pages": 3488}), "{filter:?}");
        assert_eq!(f["applied"], label);
        assert_eq!(f["matched_nothing"], json!(false));
        assert_eq!(f["vmstat_check"], "not applicable under a filter");
    }
}

#[test]
fn a_filter_that_matches_nothing_says_so_and_is_not_an_error() {
    let l = replay_fixture_with("sid-thp-fio-qd4.rec", &["--comm", "nosuch"]);
    assert_eq!(l["summary"]["filter"]["matched_nothing"], json!(true));
    assert_eq!((l["pages"]["pinned"].as_u64(), l["pages"]["unpinned"].as_u64()), (Some(0), Some(0)));
    assert_eq!(l["summary"]["pages_pinned"], 8192, "the kernel's totals stay machine-wide");
    let out = tracer().arg("report").arg(fixture("sid-thp-fio-qd4.rec")).args(["--comm", "nosuch"]).assert();
    out.success()
        .stdout(predicate::str::contains("filter --comm nosuch matched no records"))
        .stdout(predicate::str::contains("FOLL_PIN pages (machine-wide): pinned 8192"))
        .stdout(predicate::str::contains("   143 fio").not())
        .stderr(predicate::str::contains("filter --comm nosuch matched no records"));
    let md = temp("filter-nosuch.md");
    tracer()
        .arg("report")
        .arg(fixture("sid-thp-fio-qd4.rec"))
        .args(["--comm", "nosuch", "--report"])
        .arg(&md)
        .assert()
        .success();
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("| filter | --comm nosuch: matched no records; kernel totals"), "{md}");
}

/// A device by the record file's name for it, or MAJ:MIN: latency rows and bios of that device.
#[test]
fn a_device_filter_keeps_that_device_only() {
    let path = fixture("sid-thp-fio-qd4.rec");
    for (device, rows) in [("nullb0", true), ("253:0", true), ("8:0", false)] {
        let out = tracer().args(["report", "--format", "json", "--device", device]).arg(&path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let latency: Vec<Value> = text
            .lines()
            .filter(|l| l.contains("\"type\":\"latency\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(!latency.is_empty(), rows, "{device}");
        assert!(latency.iter().all(|r| r["device"] == "nullb0"), "{device}");
        let summary: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(summary["filter"]["matched_nothing"], json!(!rows), "{device}");
    }
}

#[test]
fn bad_filter_values_are_one_line_and_a_non_zero_exit() {
    let path = fixture("sid-thp-fio-qd4.rec");
    let report = |args: &[&str]| tracer().arg("report").arg(&path).args(args).assert();
    for (args, says) in [
        (&["--pid", "abc"][..], "'abc' is not a process id"),
        (&["--pid", "0"], "'0' is not a process id"),
        (&["--comm", "a-name-over-15-bytes"], "longer than 15 bytes"),
    ] {
        report(args).code(2).stderr(predicate::str::contains(says));
    }
    for (args, says) in [
        (&["--device", "nosuchdev"][..], "--device nosuchdev: no such block device"),
        (&["--cgroup", "/nope"], "--cgroup /nope: No such file or directory"),
    ] {
        let out = report(args).code(1).stderr(predicate::str::contains(says)).get_output().stderr.clone();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1, "{args:?}");
    }
    // Before anything loads in a live run.
    for args in [&["--cgroup", "/nope"][..], &["-d", "nosuchdev"]] {
        tracer()
            .args(["run", "--duration", "1", "--no-tui"])
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("BPF").not());
    }
}

#[test]
fn interval_and_count_positionals_conflict_with_the_options_they_stand_for() {
    for (args, says) in [
        (&["run", "1", "10", "--interval", "2"][..], "cannot be used with"),
        (&["run", "1", "10", "--duration", "3"], "cannot be used with"),
        (&["run", "fio"], "a COMMAND to run goes after --"),
        (&["run", "1", "0"], "not a positive whole number"),
        (&["record", "-o", "x.rec", "1", "2", "3"], "error:"),
    ] {
        tracer().args(args).assert().code(2).stderr(predicate::str::contains(says));
    }
}
