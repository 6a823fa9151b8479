//! End-to-end tests of `cargo xtask vm`: each boots the pinned 6.12 kernel in QEMU, so
//! they are ignored by default. Run them with `cargo test -p xtask -- --ignored` (see
//! docs/testing.md); they need qemu-system-x86_64 and the packages of scripts/setup.sh,
//! and fetch the kernel on first use.

use std::process::{Command, Output};

const KERNEL: &str = "6.12";

fn xtask_vm(extra: &[&str], command: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["vm", "--kernel", KERNEL, "--no-build"]).args(extra).arg("--").args(command);
    let out = cmd.output().expect("running the xtask binary");
    eprintln!("--- stderr of xtask vm {extra:?} -- {command:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The one-line reason that `xtask vm` printed last on stderr.
fn reason(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).lines().rev().find(|l| l.starts_with("xtask: ")).unwrap_or("").to_string()
}

#[test]
#[ignore = "boots a kernel in QEMU (seconds to minutes); run with --ignored"]
fn exit_status_and_output_pass_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("probe.sh");
    std::fs::write(&script, "echo \"hello from $(uname -r)\"\nexit 3\n").expect("write script");
    let add = format!("{}:/opt/probe.sh", script.display());
    let out = xtask_vm(&["--add", &add], &["sh", "/opt/probe.sh"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{}", reason(&out));
    assert!(stdout.contains("hello from 6.12."), "guest output missing:\n{stdout}");
    assert!(stdout.contains("TRACER-VM: kernel 6.12."));
    assert!(String::from_utf8_lossy(&out.stderr).contains("console log: "), "no log path printed");
}

#[test]
#[ignore = "boots a kernel in QEMU (seconds to minutes); run with --ignored"]
fn kernel_panic_fails_the_run() {
    let out = xtask_vm(&[], &["echo c > /proc/sysrq-trigger"]);
    assert_eq!(out.status.code(), Some(2));
    let why = reason(&out);
    assert!(why.contains("guest kernel panic"), "{why}");
    assert!(why.contains("sysrq triggered crash"), "{why}");
    // Who and where, from the report after the panic line (the log is out of reach on CI).
    assert!(why.contains("Comm: sh") && why.contains(" | "), "{why}");
    assert!(why.contains("console log: "), "{why}");
}

#[test]
#[ignore = "boots a kernel in QEMU (seconds to minutes); run with --ignored"]
fn timeout_kills_the_guest() {
    // The command never ends; whether the guest is still booting or already running it
    // when the time is up, the run must end as a timeout.
    let out = xtask_vm(&["--timeout", "20"], &["sleep", "1000"]);
    assert_eq!(out.status.code(), Some(2));
    let why = reason(&out);
    assert!(why.starts_with("xtask: timeout: no verdict after 20 s"), "{why}");
    assert!(why.contains("console log: "), "{why}");
}

#[test]
#[ignore = "boots a kernel in QEMU (seconds to minutes); run with --ignored"]
fn powering_off_early_is_a_missing_verdict() {
    // A forged verdict line without this run's nonce does not count.
    let out = xtask_vm(&[], &["echo TRACER-VERDICT 00000000000000000000000000000000 exit=0; poweroff -f"]);
    assert_eq!(out.status.code(), Some(2));
    let why = reason(&out);
    assert!(why.starts_with("xtask: missing verdict"), "{why}");
    assert!(why.contains("console log: "), "{why}");
}

#[test]
fn bad_arguments_fail_with_one_line() {
    for args in [
        &["vm", "--kernel", "no-such-kernel", "--no-build", "--", "true"][..],
        &["vm", "--kernel", KERNEL, "--no-build", "--timeout", "0", "--", "true"][..],
        &["vm", "--kernel", KERNEL, "--no-build", "--add", "/no/such/file", "--", "true"][..],
        &["kernels", "no-such-kernel"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().expect("running the xtask binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("xtask: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
