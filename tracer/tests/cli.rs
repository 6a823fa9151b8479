//! The tracer binary from the outside: arguments, exit statuses, error lines, and `tracer
//! report` on record files written here byte by byte from docs/ledger.md (so the format is
//! documented well enough to write one).
// Test helpers outside #[test] functions unwrap too: a failure is the test's failure.
#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions unwrap too")]

use std::{mem::offset_of, path::PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{json, Value};
use tracer_common::{BioWire, LatencyEvent, Owner};

fn tracer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracer"))
}

#[test]
fn the_dashboard_without_a_terminal_is_refused_in_one_line_before_anything_loads() {
    tracer()
        .args(["run", "--format", "tui", "--duration", "1"])
        .write_stdin("")
        .assert()
        .failure()
        .code(1)
        .stderr(predicate::str::contains("--format tui needs a terminal"))
        .stderr(predicate::str::contains("BPF").not());
}

/// A fresh path in cargo's temporary directory for integration tests.
fn temp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir.join(name)
}

/// `BioWire` offsets as docs/ledger.md gives them.
mod doc {
    pub const EVENT: usize = 4;
    pub const TS_NS: usize = 8;
    pub const BIO: usize = 16;
    pub const DEV: usize = 24;
    pub const OP: usize = 28;
    pub const FLAGS: usize = 32;
    pub const NR_VECS: usize = 44;
    pub const TGID: usize = 48;
    pub const PID: usize = 52;
    pub const COMM: usize = 64;
    pub const BVEC_SIZE: usize = 80;
    pub const VEC_BYTES: usize = 84;
    pub const VECS: usize = 88;
    pub const SIZE: usize = 344;
}

#[test]
fn the_documented_bio_layout_is_the_real_one() {
    assert_eq!(offset_of!(BioWire, event), doc::EVENT);
    assert_eq!(offset_of!(BioWire, ts_ns), doc::TS_NS);
    assert_eq!(offset_of!(BioWire, bio), doc::BIO);
    assert_eq!(offset_of!(BioWire, dev), doc::DEV);
    assert_eq!(offset_of!(BioWire, op), doc::OP);
    assert_eq!(offset_of!(BioWire, flags), doc::FLAGS);
    assert_eq!(offset_of!(BioWire, nr_vecs), doc::NR_VECS);
    assert_eq!(offset_of!(BioWire, owner) + offset_of!(Owner, tgid), doc::TGID);
    assert_eq!(offset_of!(BioWire, owner) + offset_of!(Owner, pid), doc::PID);
    assert_eq!(offset_of!(BioWire, owner) + offset_of!(Owner, comm), doc::COMM);
    assert_eq!(offset_of!(BioWire, bvec_size), doc::BVEC_SIZE);
    assert_eq!(offset_of!(BioWire, vec_bytes), doc::VEC_BYTES);
    assert_eq!(offset_of!(BioWire, vecs), doc::VECS);
    assert_eq!(std::mem::size_of::<BioWire>(), doc::SIZE);
    assert_eq!(std::mem::size_of::<LatencyEvent>(), 40);
}

const ACQUIRE: u32 = 0;
const END: u32 = 1;
const RELEASE: u32 = 2;
const MS: u64 = 1_000_000;

/// A bio record: `vecs` = (struct page address, pages), in the x86_64 bio_vec layout.
fn bio(event: u32, addr: u64, ts: u64, task: (u32, u32, &str), vecs: &[(u64, u32)]) -> Vec<u8> {
    let mut b = vec![0u8; doc::SIZE];
    let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    put(0, &2u32.to_le_bytes());
    put(doc::EVENT, &event.to_le_bytes());
    put(doc::TS_NS, &ts.to_le_bytes());
    put(doc::BIO, &addr.to_le_bytes());
    put(doc::DEV, &(254u32 << 20).to_le_bytes());
    put(doc::OP, &1u32.to_le_bytes());
    put(doc::FLAGS, &1u32.to_le_bytes()); // BIO_FLAG_PINNED
    put(doc::NR_VECS, &(vecs.len() as u32).to_le_bytes());
    put(doc::TGID, &task.0.to_le_bytes());
    put(doc::PID, &task.1.to_le_bytes());
    put(doc::COMM, task.2.as_bytes());
    put(doc::BVEC_SIZE, &[16, 0, 8, 12]);
    put(doc::VEC_BYTES, &(16 * vecs.len() as u32).to_le_bytes());
    for (i, &(page, pages)) in vecs.iter().enumerate() {
        put(doc::VECS + 16 * i, &page.to_le_bytes());
        put(doc::VECS + 16 * i + 8, &(pages * 4096).to_le_bytes());
    }
    b
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend((payload.len() as u32).to_le_bytes());
    out.extend(payload);
}

/// A record file: header, records, trailer, as docs/ledger.md describes them.
fn record_file(records: &[Vec<u8>], end_ns: u64) -> Vec<u8> {
    let probe = |target: &str, attached: &str| json!({"target": target, "role": "latency", "attached": attached, "reasons": []});
    let meta = json!({
        "tracer_version": "0.1.0",
        "kernel_release": "6.12.0-test",
        "start_unix_ns": 1_700_000_000_000_000_000u64,
        "start_monotonic_ns": 1_000 * MS,
        "byte_order": "little",
        "record_sizes": {"latency": 40, "bio": 344},
        "probes": [
            probe("bio_iov_iter_get_pages", "fexit"),
            probe("block_rq_complete", "tp_btf"),
            probe("block_bio_complete", "tp_btf"),
            probe("__bio_release_pages", "fentry"),
            probe("pin_user_pages_fast", "fexit"),
            probe("unpin_user_page", "fentry"),
            probe("unpin_user_pages", "fentry"),
        ],
        "req_ops": {"0": "read", "1": "write"},
        "command": ["dd", "if=/dev/vda", "iflag=direct"],
    });
    let meta = serde_json::to_vec(&meta).expect("JSON");
    let mut f = b"TRACEREC".to_vec();
    f.extend(1u32.to_le_bytes());
    f.extend((meta.len() as u32).to_le_bytes());
    f.extend(&meta);
    for r in records {
        frame(&mut f, 1, r);
    }
    let trailer = json!({
        "records": records.len(),
        "end_monotonic_ns": end_ns,
        "devices": {"254:0": "vda"},
        "command_exit_status": 0,
    });
    frame(&mut f, 2, &serde_json::to_vec(&trailer).expect("JSON"));
    f
}

const DD: (u32, u32, &str) = (4242, 4242, "dd");
const IRQ: (u32, u32, &str) = (0, 0, "swapper/0");

/// dd: one bio released in time, one completed and never released, one released with other
/// pages than it acquired, and a release of pages acquired before the trace.
fn leaky_run() -> Vec<Vec<u8>> {
    let a = [(0xffff_ea00_0400_0000, 4), (0xffff_ea00_0400_8000, 2)];
    let b = [(0xffff_ea00_0500_0000, 16)];
    let d = [(0xffff_ea00_0700_0000, 1), (0xffff_ea00_0700_0040, 1)];
    let d_released = [(0xffff_ea00_0700_0000, 1), (0xffff_ea00_0800_0040, 1)];
    vec![
        bio(ACQUIRE, 0xffff_8880_0d00_0000, 1_050 * MS, DD, &d),
        bio(END, 0xffff_8880_0d00_0000, 1_060 * MS, IRQ, &[]),
        bio(RELEASE, 0xffff_8880_0d00_0000, 1_061 * MS, IRQ, &d_released),
        bio(ACQUIRE, 0xffff_8880_0a00_0000, 1_100 * MS, DD, &a),
        bio(ACQUIRE, 0xffff_8880_0b00_0000, 1_100 * MS, DD, &b),
        bio(END, 0xffff_8880_0a00_0000, 1_101 * MS, IRQ, &[]),
        bio(RELEASE, 0xffff_8880_0a00_0000, 1_102 * MS, IRQ, &a),
        bio(END, 0xffff_8880_0b00_0000, 1_103 * MS, IRQ, &[]),
        bio(RELEASE, 0xffff_8880_0c00_0000, 1_104 * MS, IRQ, &[(0xffff_ea00_0600_0000, 1)]),
    ]
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = temp(name);
    std::fs::write(&path, bytes).expect("a temporary file");
    path
}

#[test]
fn help_lists_the_commands() {
    tracer()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("record").and(predicate::str::contains("report")));
    tracer().args(["report", "--help"]).assert().success().stdout(predicate::str::contains("--leak-grace"));
}

#[test]
fn every_subcommand_has_help_that_says_what_it_does() {
    for (cmd, says) in [
        ("run", "--pid"),
        ("record", "--output"),
        ("report", "--report"),
        ("check", "--format"),
        ("completions", "bash"),
        ("man", "man page"),
    ] {
        tracer()
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: tracer ").and(predicate::str::contains(says)));
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["frobnicate"][..],
        &["run", "--duration", "soon"],
        &["report"],
        &["report", "f", "--format", "xml"],
        &["record", "--duration", "1"],
        &["run", "--nice", "20"],
        &["run", "--nice", "-21"],
        &["run", "--nice", "low"],
        &["run", "--backups", "4"],
        &["run", "--backups", "-1"],
        &["record", "-o", "f", "--backups", "two"],
    ] {
        tracer().args(args).assert().code(2).stderr(predicate::str::contains("error:"));
    }
    for size in ["3", "6", "0", "2097152", "lots"] {
        tracer()
            .args(["run", "--ring-buffer", size])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("is not a ring buffer size in KiB (a power of two from 4 to 1048576)"));
    }
}

#[test]
fn report_on_a_missing_file_is_one_line_and_exit_1() {
    tracer()
        .args(["report", "/nonexistent"])
        .assert()
        .code(1)
        .stdout("")
        .stderr("tracer: cannot open /nonexistent: No such file or directory\n");
}

#[test]
fn report_on_garbage_is_one_line_and_exit_1() {
    let path = write("garbage.rec", b"this is not a record file at all\n");
    tracer()
        .arg("report")
        .arg(&path)
        .assert()
        .code(1)
        .stderr(format!("tracer: {}: not a tracer record file (bad magic)\n", path.display()));
}

#[test]
fn report_on_a_truncated_file_is_one_line_and_exit_1() {
    let full = record_file(&leaky_run(), 5_000 * MS);
    let path = write("truncated.rec", &full[..full.len() - 30]);
    let out = tracer().arg("report").arg(&path).assert().code(1).get_output().stderr.clone();
    let err = String::from_utf8(out).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("truncated record file: the trailer ends early"), "{err}");
}

#[test]
fn report_prints_the_ledger_and_its_verdict() {
    let path = write("leaky.rec", &record_file(&leaky_run(), 5_000 * MS));
    let out = tracer().arg("report").arg(&path).assert().success().get_output().stdout.clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with(&format!("record file {}: 9 records", path.display())), "{out}");
    assert!(out.contains("command: dd if=/dev/vda iflag=direct"), "{out}");
    assert!(out.contains("pin ledger: leaks found\ncommand exit status: 0\n"), "{out}");
    let start = out.find("pin ledger (").expect("a ledger section");
    let end = out.find("--- summary").expect("a summary");
    insta::assert_snapshot!("leaky_ledger_text", &out[start..end]);
}

#[test]
fn report_json_ends_with_the_summary_and_its_ledger_verdict() {
    let path = write("leaky-json.rec", &record_file(&leaky_run(), 5_000 * MS));
    let out =
        tracer().arg("report").arg(&path).args(["--format", "json"]).assert().success().get_output().stdout.clone();
    let lines: Vec<Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.last().unwrap();
    assert_eq!((&last["type"], &last["ledger"]), (&json!("summary"), &json!("leaks found")));
    let ledger = lines.iter().find(|l| l["type"] == "ledger").unwrap();
    assert_eq!(ledger["leaked"], json!({"bios": 1, "pages": 16}));
    assert_eq!(ledger["matched"], json!({"bios": 2, "pages": 8}));
    assert_eq!(ledger["mismatched"], json!({"bios": 1, "pages": 2}));
    assert_eq!(ledger["mismatches"][0]["differences"], json!(["pages"]));
    assert_eq!(ledger["mismatches"][0]["first_vec"], 1);
    assert_eq!(ledger["unknown_origin"], json!({"bios": 1, "pages": 1}));
    assert_eq!(ledger["leaks"][0]["bio"], "0xffff88800b000000");
    assert_eq!(ledger["leaks"][0]["comm"], "dd");
}

#[test]
fn a_longer_grace_period_leaves_only_the_mismatch() {
    let path = write("grace.rec", &record_file(&leaky_run(), 5_000 * MS));
    tracer().arg("report").arg(&path).args(["--leak-grace", "10"]).assert().success().stdout(
        predicate::str::contains("pin ledger: mismatches found").and(predicate::str::contains("leaked: 1 bio").not()),
    );
}

/// Record files written in the stock-kernel VMs (tests/fixtures/README.md): replaying them on
/// the host gives the verdicts the VM runs gave.
fn replay_fixture(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let out = tracer().args(["report", "--format", "json"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let ledger = text.lines().find(|l| l.contains("\"type\":\"ledger\"")).expect("a ledger record");
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(summary["type"], "summary");
    let mut ledger: serde_json::Value = serde_json::from_str(ledger).unwrap();
    ledger["summary"] = summary;
    let pages = text.lines().find(|l| l.contains("\"type\":\"pages\"")).expect("a pages record");
    ledger["pages"] = serde_json::from_str(pages).unwrap();
    ledger
}

/// The call path of the audit that took the most pages.
fn top_path(l: &serde_json::Value) -> &serde_json::Value {
    &l["pages"]["paths"][0]
}

/// The live mix of the replay workloads (the default stream of `cargo xtask bench ledger`, which
/// must replay: it once went stale after a layout change with nothing noticing): clean, every
/// request timed from its issue, the kernel's totals matched.
#[test]
fn recorded_612_workloads_replay_clean_with_every_request_timed() {
    let l = replay_fixture("6.12-workloads.rec");
    let s = &l["summary"];
    assert_eq!(s["ledger"], "clean");
    assert_eq!((s["lost_events"].as_u64(), s["block"]["requests_completed"].as_u64()), (Some(0), Some(224)));
    assert_eq!((s["block"]["requests_untimed"].as_u64(), s["block"]["starts_dropped"].as_u64()), (Some(0), Some(0)));
    assert_eq!((s["pages_pinned"].as_u64(), s["pages_unpinned"].as_u64()), (Some(784), Some(784)));
}

#[test]
fn recorded_612_sg_io_pins_are_matched_to_their_unpins_and_bios() {
    // 16 SG_IO reads of 64 KiB from a page-aligned buffer (pin-workload): 256 pages pinned by
    // bio_map_user_iov, each tied to its bio and unpinned when the request is unmapped.
    let l = replay_fixture("6.12-sgio.rec");
    let p = &l["pages"];
    assert_eq!(l["summary"]["vmstat"]["nr_foll_pin_acquired"], 256);
    assert_eq!(
        (p["pinned"].as_u64(), p["unpinned_matched"].as_u64(), p["pinned_with_bio"].as_u64()),
        (Some(256), Some(256), Some(256))
    );
    assert_eq!(
        (p["outstanding"].as_u64(), p["unpinned_unknown_origin"].as_u64(), p["unknown_stacks"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    let path = top_path(&l);
    assert_eq!(path["class"], "FOLL_PIN");
    assert_eq!(path["entry"], "pin_user_pages_fast");
    let callers: Vec<&str> = path["callers"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
    assert!(callers.contains(&"bio_map_user_iov"), "{callers:?}");
}

#[test]
fn recorded_61_sg_io_takes_references_released_with_their_bios() {
    let l = replay_fixture("6.1-sgio.rec");
    let p = &l["pages"];
    assert_eq!((p["pinned"].as_u64(), p["referenced"].as_u64()), (Some(0), Some(256)));
    assert_eq!(p["referenced_released_with_bio"].as_u64(), Some(256));
    assert_eq!(top_path(&l)["class"], "FOLL_GET");
    assert_eq!(top_path(&l)["released_by"]["__bio_release_pages"].as_u64(), Some(256));
}

#[test]
fn recorded_io_uring_fixed_buffers_are_long_term_pins_on_both_kernels() {
    for file in ["6.1-fixedbufs.rec", "6.12-fixedbufs.rec"] {
        let l = replay_fixture(file);
        let p = &l["pages"];
        assert!(p["pinned"].as_u64().unwrap() > 0, "{file}");
        assert_eq!(p["pinned_longterm"], p["pinned"], "{file}: every pin FOLL_LONGTERM");
        assert_eq!(p["unpinned_matched"], p["pinned"], "{file}: all unregistered");
        let longterm = l["pages"]["paths"].as_array().unwrap().iter().find(|r| r["class"] == "FOLL_PIN|FOLL_LONGTERM");
        assert!(longterm.is_some(), "{file}: a FOLL_PIN|FOLL_LONGTERM path");
    }
}

#[test]
fn recorded_612_dio_pins_every_page_and_releases_it() {
    let l = replay_fixture("6.12-dd-read.rec");
    assert_eq!(l["verdict"], "clean");
    // 16 reads of 64 KiB: 16 bios, 256 pages, all FOLL_PIN, all released, = the kernel's count.
    assert_eq!(l["pinned"]["bios"], 16);
    assert_eq!(l["pinned"]["pages"], 256);
    assert_eq!(l["referenced"]["pages"], 0);
    assert_eq!(l["matched"]["pages"], 256);
    assert_eq!(l["summary"]["pages_pinned"], 256);
    assert_eq!(l["summary"]["vmstat"]["nr_foll_pin_acquired"], 256);
    assert_eq!(l["summary"]["lost_events"], 0);
}

#[test]
fn recorded_61_dio_takes_references_not_pins() {
    let l = replay_fixture("6.1-dd-read.rec");
    assert_eq!(l["verdict"], "clean");
    assert_eq!(l["referenced"]["pages"], 256);
    assert_eq!(l["pinned"]["pages"], 0);
    assert_eq!(l["matched"]["pages"], 256);
    assert_eq!(l["summary"]["pages_pinned"], 0);
}

#[test]
fn recorded_612_mixed_reads_and_writes_match_the_kernel_count() {
    let l = replay_fixture("6.12-fio-randrw.rec");
    assert_eq!(l["verdict"], "clean");
    assert_eq!(l["matched"]["pages"], l["acquired"]["pages"]);
    assert_eq!(l["pinned"]["pages"], l["summary"]["pages_pinned"]);
    assert_eq!(l["summary"]["pages_pinned"], l["summary"]["pages_unpinned"]);
    assert!(l["pinned"]["pages"].as_u64().unwrap() >= 256, "1 MiB of 16 KiB I/O");
}

/// Recorded on Debian sid (7.2.13, THP `always`) by a tracer that read tail pages as their own
/// folios (compound_head became compound_info in 7.0, with a mask encoding): fio 1 MiB O_DIRECT
/// reads at queue depth 4 into a buffer partly backed by one 2 MiB huge page, whose pages several
/// bios pinned at once and whose releases (`unpin_user_folio(folio, npages)`) name only the folio.
/// That tracer reported 4088 unpins of unknown origin and "leaks found" (issue F). Replayed now,
/// the bio releases name the pages each folio-level unpin ends: every unpin matched, clean.
#[test]
fn recorded_sid_thp_reads_at_queue_depth_4_are_clean() {
    let l = replay_fixture("sid-thp-fio-qd4.rec");
    let p = &l["pages"];
    let golden = serde_json::json!({
        "verdict": l["verdict"],
        "kernel_pinned": l["summary"]["vmstat"]["nr_foll_pin_acquired"],
        "kernel_unpinned": l["summary"]["vmstat"]["nr_foll_pin_released"],
        "pinned": p["pinned"],
        "unpinned": p["unpinned"],
        "unpinned_matched": p["unpinned_matched"],
        "unpinned_unknown_origin": p["unpinned_unknown_origin"],
        "outstanding": p["outstanding"],
        "suspect": p["suspect"],
    });
    insta::assert_snapshot!("sid_thp_fio_qd4", serde_json::to_string_pretty(&golden).unwrap());
    assert_eq!(l["verdict"], "clean");
    assert_eq!((p["pinned"].as_u64(), p["unpinned_matched"].as_u64()), (Some(8192), Some(8192)));
    assert_eq!(
        (p["unpinned_unknown_origin"].as_u64(), p["outstanding"].as_u64(), p["suspect"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
}

#[test]
fn completions_and_man_page_come_from_the_command_line_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = tracer().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["record", "report", "check", "leak-grace", "no-tui"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bad = tracer().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");
    let man = tracer().arg("man").output().unwrap();
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(page.contains(".TH tracer 1"), "a roff man page of section 1");
    for word in ["run", "record", "report", "check"] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
}

#[test]
fn report_files_hold_the_run_in_json_and_markdown() {
    let rec = write("leaky-report.rec", &record_file(&leaky_run(), 5_000 * MS));
    let json_path = temp("leaky-report.json");
    let _ = std::fs::remove_file(&json_path);
    let stdout = tracer().arg("report").arg(&rec).arg("--report").arg(&json_path).assert().success();
    // The report is beside the usual output, not instead of it.
    assert!(String::from_utf8_lossy(&stdout.get_output().stdout).contains("pin ledger: leaks found"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&json_path).unwrap().permissions().mode() & 0o777, 0o600);
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!((&r["schema"], &r["schema_version"]), (&json!("tracer-report"), &json!(1)));
    assert_eq!(r["tool"]["name"], "tracer");
    assert_eq!(r["command"], json!(["dd", "if=/dev/vda", "iflag=direct"]));
    assert_eq!(r["recording"]["records"], 9);
    assert_eq!(r["thresholds"]["leak_grace_s"], 1.0);
    assert_eq!(r["summary"]["ledger"], "leaks found");
    assert_eq!(r["bio_ledger"]["leaked"], json!({"bios": 1, "pages": 16}));
    assert_eq!(r["bio_ledger"]["leaks"][0]["comm"], "dd");
    assert!(r["probes"].as_array().unwrap().len() > 10, "every probe of the catalogue");
    assert!(r["page_ledger"]["paths"].is_array());

    // Thresholds change offline: a longer grace turns the leak into a completed bio.
    let md_path = temp("leaky-report.md");
    tracer().arg("report").arg(&rec).args(["--leak-grace", "10", "--report"]).arg(&md_path).assert().success();
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(md.starts_with("# tracer report: mismatches found\n"), "{md}");
    for section in [
        "## FOLL_PIN totals and losses",
        "## Probes (",
        "## Bio ledger",
        "## Page ledger",
        "| thresholds | leak grace 10 s",
    ] {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
}

#[test]
fn the_html_report_is_one_self_contained_page_with_its_charts() {
    let path = temp("sid-thp.html");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sid-thp-fio-qd4.rec");
    tracer().arg("report").arg(fixture).arg("--report").arg(&path).assert().success();
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("<h1>tracer report: clean</h1>"), "{}", &html[..300]);
    for id in ["id=\"outstanding-over-time\"><svg", "id=\"pin-ages\"><svg", "class=\"latency\" id=\"latency-"] {
        assert!(html.contains(id), "{id} missing");
    }
    assert_eq!(html.matches("<figure").count(), html.matches("<svg").count(), "every figure holds its chart");
    for external in ["src=", "href=", "<script", "url("] {
        assert!(!html.contains(external), "the page must need nothing else: found {external}");
    }
}

#[test]
fn a_report_name_without_a_known_format_is_refused_before_anything_runs() {
    let rec = write("leaky-report-bad.rec", &record_file(&leaky_run(), 5_000 * MS));
    tracer()
        .arg("report")
        .arg(&rec)
        .args(["--report", "out.report"])
        .assert()
        .failure()
        .code(1)
        .stderr(predicate::str::contains("cannot tell the report format"))
        .stdout("");
    tracer()
        .args(["run", "--duration", "1", "--report", "out.txt"])
        .assert()
        .failure()
        .code(1)
        .stderr(predicate::str::contains("cannot tell the report format"));
}

#[test]
fn a_metrics_port_in_use_is_one_line_and_exit_1_before_anything_loads() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    tracer()
        .args(["run", "--duration", "1", "--prometheus", &port])
        .assert()
        .failure()
        .code(1)
        .stderr(predicate::str::contains(format!("--prometheus: cannot listen on 127.0.0.1:{port}")))
        .stderr(predicate::str::contains("BPF").not());
}
