//! The VM test suite: runs the guest scripts of test/vm/ on every kernel and checks what they
//! measured. Guest scripts only measure and print `CASE` lines; the verdicts are made here.

use std::{collections::BTreeMap, path::Path, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

use crate::{vm, workspace_root};

/// `cargo xtask test` options.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Only the VM tests of these kernels (default: every kernel of kernels.toml we test).
    #[arg(long = "kernel", value_name = "NAME")]
    pub kernels: Vec<String>,
    /// Skip the host tiers (cargo test, host live run) and run only the VM tests.
    #[arg(long)]
    pub vm_only: bool,
    /// Only the steps whose name contains this text (e.g. "latency", "replay").
    #[arg(long, value_name = "TEXT")]
    pub only: Option<String>,
}

/// Kernels the suite boots, with what DIO does on each.
const KERNELS: [(&str, DioPins); 3] =
    [("6.1", DioPins::Referenced), ("6.12", DioPins::Pinned), ("sid", DioPins::Pinned)];

/// Cases the pins script runs per kernel (5 per raw device x 3; 4 per ext4 file system on
/// virtio, NVMe and memory-backed null_blk; 2 on xfs; 2 on btrfs).
const DIO_CASES: usize = 32;

/// The whole suite: host tests, the host live run, the harness's own failure-mode tests, and
/// the VM tests on every kernel. Runs everything, then reports every failure.
pub fn test(args: &TestArgs) -> Result<i32> {
    let started = Instant::now();
    let mut results: Vec<(String, Result<String>)> = Vec::new();
    let mut step = |name: &str, f: &mut dyn FnMut() -> Result<String>| {
        if args.only.as_deref().is_some_and(|only| !name.contains(only)) {
            return;
        }
        eprintln!("\n=== {name} ===");
        let t = Instant::now();
        let r = f();
        match &r {
            Ok(msg) => eprintln!("=== {name}: ok ({:.0} s) {msg}", t.elapsed().as_secs_f64()),
            Err(e) => eprintln!("=== {name}: FAILED ({:.0} s): {e:#}", t.elapsed().as_secs_f64()),
        }
        results.push((name.to_string(), r));
    };
    if !args.vm_only {
        step("host: cargo xtask fmt --check", &mut || crate::lint::fmt(true).map(|_| String::new()));
        step("host: cargo xtask clippy", &mut || crate::lint::clippy().map(|_| String::new()));
        step("host: cargo test --workspace", &mut || cargo(&["test", "--workspace", "--quiet"]).map(|_| String::new()));
    }
    step("build: tracer (release, with eBPF) and pin-workload", &mut || {
        cargo(&["build", "--release", "-p", "tracer", "-p", "tracer-workloads"]).map(|_| String::new())
    });
    if !args.vm_only {
        step("host: tracer check / run (tracepoints only here)", &mut host_live);
        step("host: HTML report in headless Chromium", &mut crate::report_browser::run);
    }
    step("harness: failure modes (panic, timeout, missing verdict)", &mut || {
        cargo(&["test", "-p", "xtask", "--quiet", "--test", "vm", "--", "--ignored"]).map(|_| String::new())
    });
    for (kernel, expect) in KERNELS {
        if !args.kernels.is_empty() && !args.kernels.iter().any(|k| k == kernel) {
            continue;
        }
        step(&format!("vm {kernel}: pins = /proc/vmstat"), &mut || dio_pins(kernel, expect));
        step(&format!("vm {kernel}: pin paths (io_uring fixed buffers, SG_IO, NVMe passthrough, vmsplice, legacy DIO, FUSE, NFS, orphaned pins)"), &mut || pin_paths(kernel, expect));
        step(
            &format!("vm {kernel}: large folios (THP always and never, concurrent bios in one huge page)"),
            &mut || crate::large_folios::run(kernel, expect),
        );
        // Only a kernel that preempts threads inside programs makes them skip each other's.
        if kernel == "sid" {
            step(
                &format!(
                    "vm {kernel}: oversubscribed chains (12 DIO threads on 2 vCPUs: skips reported, none doubled)"
                ),
                &mut || crate::oversubscribed::run(kernel),
            );
        }
        step(&format!("vm {kernel}: latency"), &mut || latency(kernel));
        step(&format!("vm {kernel}: record in the VM, replay on the host"), &mut || replay(kernel));
        // One kernel is enough for what a person sees in a terminal.
        if kernel == "6.12" {
            step(&format!("vm {kernel}: dashboard in a real terminal (tmux), Prometheus scraped"), &mut || {
                crate::terminal::run(kernel)
            });
        }
    }
    let failed: Vec<&String> = results.iter().filter(|(_, r)| r.is_err()).map(|(n, _)| n).collect();
    eprintln!(
        "\n=== {} steps, {} failed, {:.1} min ===",
        results.len(),
        failed.len(),
        started.elapsed().as_secs_f64() / 60.0
    );
    for (name, r) in &results {
        match r {
            Ok(msg) => eprintln!("  ok      {name} {msg}"),
            // Every line of the cause: the summary is often all a CI log keeps.
            Err(e) => eprintln!("  FAILED  {name}: {}", format!("{e:#}").replace('\n', "\n          ")),
        }
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(args)
        .current_dir(workspace_root())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Boots `kernel`, runs `script` (a file of test/vm/) and returns the console log.
pub fn run_script(kernel: &str, script: &str, timeout: u32) -> Result<String> {
    let root = workspace_root();
    let path = root.join("test/vm").join(script);
    let cases = root.join("test/vm/cases.sh");
    let workload = root.join("target/release/pin-workload");
    let args = vm::args_from([
        "--kernel".to_string(),
        kernel.to_string(),
        "--no-build".to_string(),
        "--timeout".to_string(),
        timeout.to_string(),
        "--add".to_string(),
        path.display().to_string(),
        "--add".to_string(),
        cases.display().to_string(),
        "--add".to_string(),
        format!("{}:/usr/bin/pin-workload", workload.display()),
        "--".to_string(),
        format!("sh /root/{script}"),
    ])?;
    let (code, log) = vm::run_logged(args)?;
    let console = std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    if code != 0 {
        bail!("{script} exited {code} (log: {})", log.display());
    }
    Ok(console)
}

/// The host can attach only tracepoints: `tracer check` must exit 0 and explain every missing
/// probe, `tracer run --duration 2` must run degraded and exit 0.
fn host_live() -> Result<String> {
    let tracer = workspace_root().join("target/release/tracer");
    let check = Command::new(&tracer).args(["check"]).output()?;
    let text = String::from_utf8_lossy(&check.stdout);
    if !check.status.success() {
        bail!("tracer check exited {}: {}", check.status, String::from_utf8_lossy(&check.stderr));
    }
    let missing = text.matches("MISSING").count();
    let reasons = text.lines().filter(|l| l.starts_with("             ")).count();
    if missing > 0 && reasons < missing {
        bail!("tracer check names {missing} missing probes but gives only {reasons} reasons:\n{text}");
    }
    let run = Command::new(&tracer).args(["run", "--duration", "2", "--format", "json"]).output()?;
    if !run.status.success() {
        bail!("tracer run --duration 2 exited {}: {}", run.status, String::from_utf8_lossy(&run.stderr));
    }
    let out = String::from_utf8_lossy(&run.stdout);
    let last = out.lines().last().unwrap_or_default();
    if !last.contains("\"type\":\"summary\"") {
        bail!("the last line of tracer run --format json is not the summary: {last}");
    }
    let nice = host_nice(&tracer)?;
    Ok(format!("({missing} probes missing, each with a reason; {nice})"))
}

/// `--nice`: the tracer runs at the value asked for, the command it runs at the one the
/// tracer was started with (this harness's).
fn host_nice(tracer: &Path) -> Result<String> {
    let stat_nice = |stat: &str| stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(16)).map(str::to_owned);
    let ours = stat_nice(&std::fs::read_to_string("/proc/self/stat")?).context("our own nice value")?;
    let report = "echo NICE command=$(cut -d' ' -f19 /proc/self/stat) tracer=$(cut -d' ' -f19 /proc/$PPID/stat)";
    let run =
        Command::new(tracer).args(["run", "--format", "json", "--nice", "-5", "--", "sh", "-c", report]).output()?;
    let out = String::from_utf8_lossy(&run.stdout);
    if !run.status.success() {
        bail!("tracer run --nice -5 exited {}: {}", run.status, String::from_utf8_lossy(&run.stderr));
    }
    let want = format!("NICE command={ours} tracer=-5");
    if !out.lines().any(|l| l == want) {
        bail!("tracer run --nice -5 -- sh: expected the line {want:?}; stdout:\n{out}");
    }
    Ok(format!("--nice -5: the tracer at -5, its command at {ours}"))
}

fn dio_pins(kernel: &str, expect: DioPins) -> Result<String> {
    let console = run_script(kernel, "dio-pins.sh", 1800)?;
    let cases = check_run(&console, expect, DIO_CASES)?;
    check_probe_plan(kernel, &console)?;
    let pages: u64 = cases.iter().filter_map(|c| c.int("pinned")).sum();
    let paths = learned_paths(kernel, &cases)?;
    let guards = kernel_guards(&console)?;
    Ok(format!(
        "({} cases, {pages} pages pinned in all, each equal to the vmstat delta; {paths}; {guards})",
        cases.len()
    ))
}

/// The chains' check of the kernel's recursion guards (TRACER_DEBUG_CHAINS, which the cases
/// set: every program whose guard the loader found reads its own while it runs, and must find
/// it taken): the last `CHAIN` line of each chain on the console. Every supported kernel has
/// the guards' addresses, so at least one check must have run, and none may have failed.
fn kernel_guards(console: &str) -> Result<String> {
    let (mut taken, mut not_taken, mut chains) = (0u64, 0u64, 0usize);
    for line in console.lines().filter(|l| l.starts_with("CHAIN ")) {
        let Some(rest) = line.split_once("own kernel count taken ").map(|(_, r)| r) else { continue };
        let mut numbers = rest.split(" / not taken ").map(|n| n.trim().parse::<u64>());
        match (numbers.next(), numbers.next()) {
            (Some(Ok(t)), Some(Ok(n))) => {
                taken += t;
                not_taken += n;
                chains += usize::from(t + n > 0);
            }
            _ => bail!("unreadable CHAIN line: {line}"),
        }
    }
    if not_taken > 0 {
        bail!("{not_taken} program runs found their own kernel guard not taken: the guards' addresses are wrong");
    }
    if taken == 0 {
        bail!("no chain read the kernel's recursion guards (the loader did not find them; see the console)");
    }
    Ok(format!("kernel guards read by {chains} chains, each program's own found taken {taken} times"))
}

/// The learned call paths of a step's cases: some pin records took their stacks from them,
/// some reuses walked again to check, and (check_case) none was wrong. On 6.1 pins walk
/// (tracer/src/probes/kernel.rs, `Facts::learned_paths`): none may be reused there.
fn learned_paths(kernel: &str, cases: &[Case]) -> Result<String> {
    let sum = |k: &str| cases.iter().filter_map(|c| c.int(k)).sum::<u64>();
    let (reused, rewalked, walked) = (sum("paths_reused"), sum("paths_rewalked"), sum("paths_walked"));
    if kernel == "6.1" {
        if reused > 0 {
            bail!("{reused} pin records took their stacks from learned paths on 6.1, where pins walk");
        }
        return Ok("stacks walked: no learned paths below 6.2".into());
    }
    if reused == 0 || rewalked == 0 {
        bail!("no pin record took its stack from a learned call path ({reused} reused, {rewalked} checked by a walk)");
    }
    Ok(format!("stacks: {reused} from learned paths, {rewalked} of them walked again and equal, {walked} walked"))
}

/// Cases of pin-paths.sh.
const PATH_CASES: usize = 18;

fn pin_paths(kernel: &str, expect: DioPins) -> Result<String> {
    let console = run_script(kernel, "pin-paths.sh", 1800)?;
    let cases = check_run(&console, expect, PATH_CASES)?;
    let sum = |k: &str| cases.iter().filter_map(|c| c.int(k)).sum::<u64>();
    Ok(format!(
        "({} cases: {} pages pinned ({} long-term), {} referenced, every unpin matched; {})",
        cases.len(),
        sum("pl_pinned"),
        sum("pl_longterm"),
        sum("pl_referenced"),
        learned_paths(kernel, &cases)?
    ))
}

/// What `tracer check` must say on each kernel.
fn check_probe_plan(kernel: &str, console: &str) -> Result<()> {
    let must: &[&str] = match kernel {
        "6.1" => &["MISSING  unpin_user_folio", "MISSING  unpin_folio ", "ok       pin_user_pages_fast"],
        _ => &["ok       pin_user_pages_fast", "ok       unpin_user_folio", "ok       __bio_release_pages"],
    };
    for m in must {
        if !console.contains(m) {
            bail!("tracer check output lacks {m:?}");
        }
    }
    Ok(())
}

fn latency(kernel: &str) -> Result<String> {
    let console = run_script(kernel, "latency.sh", 1200)?;
    check_latency(&console)
}

/// One measured case from a guest script (see test/vm/dio-pins.sh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub fields: BTreeMap<String, String>,
}

impl Case {
    pub fn int(&self, key: &str) -> Option<u64> {
        self.fields.get(key).and_then(|v| v.parse().ok())
    }
    pub fn str(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or("")
    }
}

/// Parses every `CASE <name> k=v ...` line of a console log.
pub fn parse_cases(console: &str) -> Vec<Case> {
    console
        .lines()
        .filter_map(|line| {
            let rest = line.trim_end_matches('\r').split_once("CASE ")?.1;
            let mut words = rest.split_whitespace();
            let name = words.next()?.to_string();
            let fields = words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Some(Case { name, fields })
        })
        .collect()
}

/// What the DIO cases must show on a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DioPins {
    /// DIO pins pages (FOLL_PIN): every DIO case pins more than 0 pages.
    Pinned,
    /// DIO takes FOLL_GET references (6.1): every DIO case shows 0 pins.
    Referenced,
}

/// Checks one case: the run succeeded, nothing was lost, the pin figures were measured and
/// equal the /proc/vmstat deltas exactly, and the DIO expectation holds.
pub fn check_case(case: &Case, expect: DioPins) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |what: String| problems.push(format!("{}: {what}", case.name));
    if case.int("status") != Some(0) {
        bad(format!("workload or tracer exited with status {}", case.str("status")));
    }
    if case.str("accounting") != "measured" {
        bad(format!("pin accounting was '{}', not measured", case.str("accounting")));
    }
    if case.str("path") == "overload" {
        check_overload(case, &mut bad);
        return problems;
    }
    if case.int("lost") != Some(0) {
        bad(format!("lost events: {}", case.str("lost")));
    }
    // A learned call path that a walk of the same stack contradicts (tracer_common::stack_path).
    if case.int("paths_wrong").is_some_and(|n| n > 0) {
        bad(format!("{} learned call paths disagreed with a walk of the stack", case.str("paths_wrong")));
    }
    let (p, u) = (case.int("pinned"), case.int("unpinned"));
    if case.str("path") == "running_before" {
        check_running_before(case, expect, &mut bad);
        check_owner(case, &mut bad);
        return problems;
    }
    let (a, r) = (case.int("vm_acquired"), case.int("vm_released"));
    if p.is_none() || p != a {
        bad(format!(
            "pages pinned {} != vmstat nr_foll_pin_acquired delta {}",
            case.str("pinned"),
            case.str("vm_acquired")
        ));
    }
    if u.is_none() || u != r {
        bad(format!(
            "pages unpinned {} != vmstat nr_foll_pin_released delta {}",
            case.str("unpinned"),
            case.str("vm_released")
        ));
    }
    check_page_ledger(case, &mut bad);
    check_owner(case, &mut bad);
    // Cases of other pin paths than DIO (pin-paths.sh) have their own expectations.
    if case.fields.contains_key("path") {
        check_path(case, expect, &mut bad);
        return problems;
    }
    // btrfs may serve O_DIRECT writes through the page cache (data checksums): no pages then.
    let may_buffer = case.str("note") == "may_buffer";
    match (expect, p) {
        (DioPins::Pinned, Some(0)) if !may_buffer => bad("no pages pinned: DIO pins on this kernel".into()),
        (DioPins::Referenced, Some(n)) if n > 0 => {
            bad(format!("{n} pages pinned: DIO takes references on this kernel"))
        }
        _ => {}
    }
    // Each pinned bio page released by __bio_release_pages, named so (the unpin record names its
    // caller from the trampoline's frame, without a stack walk; older recordings have no
    // released_by).
    if expect == DioPins::Pinned && !may_buffer && case.fields.contains_key("released_by") {
        let names: Vec<&str> = case.str("released_by").split(',').filter(|n| !n.is_empty()).collect();
        if names.is_empty() || names.iter().any(|n| !n.ends_with("<-__bio_release_pages")) {
            bad(format!("releases named '{}', not all '<variant> <- __bio_release_pages'", case.str("released_by")));
        }
    }
    // The bio ledger (older recordings have no ledger fields; new runs always do).
    if case.fields.contains_key("ledger") {
        let g = |k: &str| case.int(k);
        if case.str("ledger") != "clean" {
            bad(format!("ledger verdict '{}', not clean", case.str("ledger")));
        }
        if g("ledger_matched").is_none() || g("ledger_matched") != g("ledger_acquired") {
            bad(format!(
                "ledger matched {} of {} acquired pages",
                case.str("ledger_matched"),
                case.str("ledger_acquired")
            ));
        }
        // A bio of more than 16 vecs (1 MiB of small pages) is followed by its first 16 vecs
        // (docs/ledger.md, limits): then the bio ledger sees part of its pages, and the page
        // ledger (checked above) is what matches every pin.
        let truncated = g("ledger_truncated").unwrap_or(0) > 0;
        match expect {
            // Every FOLL_PIN page of these workloads is a bio's: two independent counts agree.
            DioPins::Pinned if truncated && (g("ledger_pinned").unwrap_or(0) == 0 || g("ledger_pinned") > p) => {
                bad(format!(
                    "ledger saw {} pinned bio pages (some bios truncated), kernel accounting {}",
                    case.str("ledger_pinned"),
                    case.str("pinned")
                ))
            }
            DioPins::Pinned if !truncated && g("ledger_pinned") != p => bad(format!(
                "ledger saw {} pinned bio pages, kernel accounting {}",
                case.str("ledger_pinned"),
                case.str("pinned")
            )),
            DioPins::Referenced if g("ledger_pinned") != Some(0) => {
                bad(format!("ledger saw {} pinned bio pages on a FOLL_GET kernel", case.str("ledger_pinned")))
            }
            DioPins::Referenced if !may_buffer && g("ledger_referenced").unwrap_or(0) == 0 => {
                bad("no referenced bio pages: DIO takes FOLL_GET references on this kernel".into())
            }
            _ => {}
        }
    }
    problems
}

/// Page ledger fields that are 0 when every pin seen was released and listed.
const NOTHING_HELD: [(&str, &str); 4] = [
    ("pl_outstanding", "pages still pinned at the end"),
    ("pl_suspect", "pins held past the grace period"),
    ("pl_owner_exited", "pins outliving their process"),
    ("pl_unlisted", "pins counted but not listed"),
];

/// The page ledger of a case (runs of this tracer always print it): every unpin matched to a pin
/// seen in the trace, nothing left pinned, nothing uncounted, and its totals equal to the
/// kernel's own accounting (the pins of legacy direct I/O's folio_add_pin excepted: the kernel
/// does not count them when they are taken, only when they are released).
fn check_page_ledger(case: &Case, bad: &mut impl FnMut(String)) {
    if !case.fields.contains_key("pl_pinned") {
        return;
    }
    let g = |k: &str| case.int(k);
    let legacy = case.str("path") == "legacy_dio";
    let pinned_ok = if legacy { g("pl_pinned") >= g("pinned") } else { g("pl_pinned") == g("pinned") };
    if g("pl_pinned").is_none() || !pinned_ok {
        bad(format!("page ledger pinned {} pages, kernel accounting {}", case.str("pl_pinned"), case.str("pinned")));
    }
    if g("pl_unpinned").is_none() || g("pl_unpinned") != g("unpinned") {
        bad(format!(
            "page ledger unpinned {} pages, kernel accounting {}",
            case.str("pl_unpinned"),
            case.str("unpinned")
        ));
    }
    if g("pl_matched") != g("pl_unpinned") {
        bad(format!(
            "page ledger matched {} of {} unpins to their pins",
            case.str("pl_matched"),
            case.str("pl_unpinned")
        ));
    }
    // The orphan case leaves pins held on purpose (check_path judges them).
    let orphan = case.str("path") == "orphan";
    for (key, what) in NOTHING_HELD {
        if orphan && key != "pl_unlisted" {
            continue;
        }
        // (Recordings from before exit records have no pl_owner_exited.)
        if key == "pl_owner_exited" && !case.fields.contains_key(key) {
            continue;
        }
        if g(key) != Some(0) {
            bad(format!("page ledger: {} {what}", case.str(key)));
        }
    }
    if !case.str("skipped").is_empty() {
        bad(format!("probes skipped by the kernel: {}", case.str("skipped")));
    }
}

/// Direct I/O that was running when the tracer started (pin-paths.sh, `path=running_before`):
/// what was pinned or acquired before the trace began is not the trace's, so the pins of the
/// trace are not the vmstat delta around the whole case; but nothing may look leaked, held or
/// orphaned, and every pin and bio the trace saw is matched to its release.
fn check_running_before(case: &Case, expect: DioPins, bad: &mut impl FnMut(String)) {
    let g = |k: &str| case.int(k);
    let (taken, kind) = match expect {
        DioPins::Pinned => ("pl_pinned", "pinned"),
        DioPins::Referenced => ("pl_referenced", "referenced"),
    };
    if g(taken).unwrap_or(0) == 0 || g("ledger_acquired").unwrap_or(0) == 0 {
        bad(format!(
            "the trace saw {} {kind} pages and {} acquired bio pages of the running workload",
            case.str(taken),
            case.str("ledger_acquired")
        ));
    }
    if case.str("ledger") != "clean" {
        bad(format!("ledger verdict '{}', not clean", case.str("ledger")));
    }
    if g("ledger_matched") != g("ledger_acquired") {
        bad(format!("ledger matched {} of {} acquired pages", case.str("ledger_matched"), case.str("ledger_acquired")));
    }
    if g("pl_matched") != g("pl_pinned") {
        bad(format!(
            "page ledger matched {} of {} pins to their unpins",
            case.str("pl_matched"),
            case.str("pl_pinned")
        ));
    }
    for (key, what) in NOTHING_HELD {
        if g(key) != Some(0) {
            bad(format!("page ledger: {} {what}", case.str(key)));
        }
    }
    if !case.str("skipped").is_empty() {
        bad(format!("probes skipped by the kernel: {}", case.str("skipped")));
    }
}

/// A ring buffer too small for the records (pin-paths.sh, `path=overload`): records are lost
/// and counted as `ring_full`; every record the programs submitted was read, so the loss
/// reported is the loss that happened; the verdict is unverifiable.
fn check_overload(case: &Case, bad: &mut impl FnMut(String)) {
    let ring_full = case
        .str("lost_why")
        .split(',')
        .find_map(|kv| kv.strip_prefix("ring_full:"))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    if ring_full == 0 || case.int("lost").unwrap_or(0) < ring_full {
        bad(format!(
            "a one-page ring buffer: {ring_full} records lost to a full ring buffer, {} lost events in all (lost_why '{}')",
            case.str("lost"),
            case.str("lost_why")
        ));
    }
    let (submitted, read) = (case.int("records_submitted"), case.int("records_read"));
    if submitted.unwrap_or(0) == 0 || submitted != read {
        bad(format!(
            "the programs submitted {} records, the tracer read {}: a loss not counted",
            case.str("records_submitted"),
            case.str("records_read")
        ));
    }
    if case.str("ledger") != "unverifiable" {
        bad(format!("records lost but the verdict is '{}', not unverifiable", case.str("ledger")));
    }
}

/// A case with `owner=COMM`: every process that pinned or unpinned in it is COMM's, and each
/// unpinned exactly what it pinned. Unpins are the pinning process's, not the task a bio
/// completion interrupted or the kworker that tore a ring down. With `cgroup=ID` too, every
/// such process is in that cgroup (the records' owners are read from the task in the kernel).
fn check_owner(case: &Case, bad: &mut impl FnMut(String)) {
    let owner = case.str("owner");
    if owner.is_empty() {
        return;
    }
    let cgroup = case.str("cgroup");
    let procs: Vec<(&str, u64, u64)> = case
        .str("procs")
        .split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (name, counts) = p.split_once(':')?;
            let (pinned, unpinned) = counts.split_once(':')?;
            Some((name, pinned.parse().ok()?, unpinned.parse().ok()?))
        })
        .collect();
    if procs.is_empty() && case.int("pinned").unwrap_or(0) > 0 {
        bad(format!("{} pages pinned, but no process figures (procs='{}')", case.str("pinned"), case.str("procs")));
    }
    for (name, pinned, unpinned) in procs {
        // A process is named by the comm of the first of its threads that pinned: io_uring's
        // worker threads (iou-wrk-PID, iou-sqp-PID) are threads of the process too.
        // comm/tgid, or comm/tgid/cgroup since the process records have the cgroup.
        let comm = name.split('/').next().unwrap_or_default();
        let io_thread = comm.starts_with("iou-wrk-") || comm.starts_with("iou-sqp-");
        if !cgroup.is_empty() && name.split('/').nth(2) != Some(cgroup) {
            bad(format!("process {name} is not shown in the case's cgroup {cgroup} (comm/tgid/cgroup)"));
        }
        if comm != owner && !io_thread {
            bad(format!("process {name} shows {pinned} pinned and {unpinned} unpinned pages; only {owner} pins here"));
        } else if pinned != unpinned {
            bad(format!("process {name} unpinned {unpinned} of its {pinned} pinned pages"));
        }
    }
}

/// The expectation of a `path=` case of pin-paths.sh on a kernel whose DIO pins (6.2+) or takes
/// FOLL_GET references (6.1).
fn check_path(case: &Case, expect: DioPins, bad: &mut impl FnMut(String)) {
    let g = |k: &str| case.int(k).unwrap_or(0);
    let want = case.int("expect");
    let (pinned, referenced, longterm) = (g("pl_pinned"), g("pl_referenced"), g("pl_longterm"));
    match case.str("path") {
        "longterm" => {
            // FOLL_PIN|FOLL_LONGTERM on every kernel (io_uring pinned its buffers before 6.2 too).
            if pinned == 0 || longterm != pinned {
                bad(format!("registered buffers: {pinned} pages pinned, {longterm} of them FOLL_LONGTERM; all expected long-term"));
            }
        }
        "passthrough_aligned" => {
            let (got, other, kind) = match expect {
                DioPins::Pinned => (pinned, referenced, "pinned"),
                DioPins::Referenced => (referenced, pinned, "referenced"),
            };
            if Some(got) != want || other != 0 {
                bad(format!(
                    "aligned passthrough buffer: {got} pages {kind} (expected {}), {other} of the other kind",
                    case.str("expect")
                ));
            }
            if expect == DioPins::Pinned && g("pl_with_bio") != pinned {
                bad(format!("aligned passthrough: {} of {pinned} pinned pages tied to a bio", g("pl_with_bio")));
            }
        }
        "passthrough_copy" => {
            if pinned != 0 || referenced != 0 {
                bad(format!(
                    "unaligned passthrough buffer (a bounce copy): {pinned} pages pinned, {referenced} referenced"
                ));
            }
        }
        "foll_get" => {
            if Some(referenced) != want || pinned != 0 {
                bad(format!(
                    "vmsplice: {referenced} pages referenced (expected {}), {pinned} pinned",
                    case.str("expect")
                ));
            }
            // Each reference released with its pipe buffer (recordings from before the pipe
            // buffer probe have no pl_ref_put).
            if case.fields.contains_key("pl_ref_put") && case.int("pl_ref_put") != want {
                bad(format!(
                    "vmsplice: {} of {referenced} references released with their pipe buffers",
                    case.str("pl_ref_put")
                ));
            }
        }
        "legacy_dio" => {
            // (A few FOLL_GET references of other callers, fio's start, may show on any kernel.)
            let ok = match expect {
                DioPins::Pinned => pinned > 0,
                DioPins::Referenced => referenced > 0 && pinned == 0,
            };
            if !ok {
                bad(format!("legacy direct I/O: {pinned} pages pinned, {referenced} referenced"));
            }
        }
        "fuse" => {
            // The client's buffers: pinned where DIO pins (fuse_get_user_pages ->
            // iov_iter_extract_pages), referenced before. The server's copies through
            // /dev/fuse (fuse_copy_fill) take FOLL_GET references of its own buffer on top.
            let want = want.unwrap_or(0);
            let ok = match expect {
                DioPins::Pinned => pinned == want && referenced >= want,
                DioPins::Referenced => pinned == 0 && referenced >= want,
            };
            if want == 0 || !ok {
                bad(format!(
                    "FUSE direct I/O: {pinned} pages pinned, {referenced} referenced (client buffers: {want} pages)"
                ));
            }
            // Each reference, the client's (6.1) and the server's, is dropped before the
            // read_iter or write_iter that took it returns: dd's I/O is synchronous.
            // (Recordings from before those probes have no pl_ref_put.)
            if case.fields.contains_key("pl_ref_put") && g("pl_ref_put") != referenced {
                bad(format!(
                    "FUSE direct I/O: {} of {referenced} references released when their call returned",
                    case.str("pl_ref_put")
                ));
            }
        }
        "nfs" => {
            // NFS direct I/O takes FOLL_GET references on every kernel (nfs_direct_*_schedule_iovec
            // -> iov_iter_get_pages_alloc2 -> get_user_pages_fast, dropped by put_page), never
            // pins. Other callers of get_user_pages_fast may add a few references. Each is
            // dropped before nfs_direct_*_schedule_iovec returns: the tracer releases them there
            // (recordings from before that probe have no pl_ref_put).
            let want = want.unwrap_or(0);
            if want == 0 || pinned != 0 || referenced < want {
                bad(format!(
                    "NFS direct I/O: {pinned} pages pinned, {referenced} referenced (dd's buffers: {want} pages)"
                ));
            }
            if case.fields.contains_key("pl_ref_put") && case.int("pl_ref_put").unwrap_or(0) < want {
                bad(format!(
                    "NFS direct I/O: {} of {referenced} references released when their request was built",
                    case.str("pl_ref_put")
                ));
            }
        }
        "thp_halves" => {
            // Two threads' O_DIRECT into the halves of one huge page: every page of their
            // buffers pinned (references on 6.1), each matched to its release (checked above).
            let want = want.unwrap_or(0);
            let ok = match expect {
                DioPins::Pinned => pinned == want,
                DioPins::Referenced => pinned == 0 && referenced >= want,
            };
            if want == 0 || !ok {
                bad(format!(
                    "two threads in one huge page: {pinned} pages pinned, {referenced} referenced (expected {want})"
                ));
            }
        }
        "orphan" => {
            // Long-term pins whose process exited more than the grace period ago: every one
            // outstanding, outliving its process, a suspect; the case's verdict says so.
            let want = want.unwrap_or(0);
            let exited = g("pl_owner_exited");
            if want == 0 || longterm != want || g("pl_outstanding") != want || exited != want || g("pl_suspect") != want
            {
                bad(format!(
                    "orphaned registered buffers: {longterm} long-term pins, {} outstanding, {exited} outliving their process, {} suspect (expected {want} each)",
                    g("pl_outstanding"),
                    g("pl_suspect")
                ));
            }
            if case.str("ledger") != "leaks_found" {
                bad(format!("orphaned registered buffers: verdict '{}', not leaks_found", case.str("ledger")));
            }
        }
        other => bad(format!("unknown path '{other}'")),
    }
}

/// Checks a whole guest run: at least `min_cases` cases, all passing, and the script finished.
pub fn check_run(console: &str, expect: DioPins, min_cases: usize) -> Result<Vec<Case>> {
    let cases = parse_cases(console);
    let mut problems: Vec<String> = cases.iter().flat_map(|c| check_case(c, expect)).collect();
    if !console.contains("CASES-DONE") {
        problems.push("the guest script did not finish (no CASES-DONE)".into());
    }
    if console.contains("TRACER-START-FAILED") {
        problems.push("the tracer did not start (see the console log)".into());
    }
    if let Some(line) = console.lines().find(|l| l.starts_with("TRACER-EXIT ") && !l.ends_with("status=0")) {
        problems.push(format!("the tracer of the cases ended badly: {line}"));
    }
    if cases.len() < min_cases {
        problems.push(format!("only {} cases ran, expected at least {min_cases}", cases.len()));
    }
    if !problems.is_empty() {
        bail!("{} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    Ok(cases)
}

/// Records real workloads in the VM, ships the record files to the host, replays them with
/// `tracer report` and requires the same ledger (and pin totals) as the live run printed.
fn replay(kernel: &str) -> Result<String> {
    let console = run_script(kernel, "replay.sh", 900)?;
    let dir = workspace_root().join("target/vm/records");
    std::fs::create_dir_all(&dir)?;
    let tracer = workspace_root().join("target/release/tracer");
    let mut done = Vec::new();
    for name in ["workloads"] {
        if !console.contains(&format!("RECORDED {name} status=0")) {
            bail!("{name}: the recording or its workload failed (RECORDED {name} status=0 missing)");
        }
        let bytes = shipped_file(&console, name)?;
        let path = dir.join(format!("{kernel}-{name}.rec"));
        std::fs::write(&path, &bytes)?;
        let live_ledger = marked_line(&console, "LEDGER", name)?;
        let live_summary = marked_line(&console, "SUMMARY", name)?;
        let out = Command::new(&tracer).args(["report", "--format", "json"]).arg(&path).output()?;
        if !out.status.success() {
            bail!("tracer report {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let replayed_ledger = text.lines().find(|l| l.contains("\"type\":\"ledger\"")).unwrap_or_default();
        if replayed_ledger != live_ledger {
            bail!("{name}: replayed ledger differs from the live one\n  live:     {live_ledger}\n  replayed: {replayed_ledger}");
        }
        let live_pages = marked_line(&console, "PAGES", name)?;
        let replayed_pages = text.lines().find(|l| l.contains("\"type\":\"pages\"")).unwrap_or_default();
        if replayed_pages != live_pages {
            bail!("{name}: replayed page ledger differs from the live one\n  live:     {live_pages}\n  replayed: {replayed_pages}");
        }
        for key in ["unpinned_unknown_origin", "outstanding", "suspect", "unlisted"] {
            if json_field(&live_pages, key).as_deref() != Some("0") {
                bail!("{name}: page ledger {key} is not 0: {live_pages}");
            }
        }
        let replayed_summary = text.lines().last().unwrap_or_default();
        for key in ["pages_pinned", "pages_unpinned", "lost_events", "ledger"] {
            if json_field(replayed_summary, key) != json_field(&live_summary, key) {
                bail!("{name}: summary field {key} differs: live {live_summary} replayed {replayed_summary}");
            }
        }
        let verdict = json_field(&live_ledger, "verdict").unwrap_or_default();
        if verdict != "\"clean\"" {
            bail!("{name}: ledger verdict {verdict}");
        }
        same_report(&tracer, &console, name, &path)?;
        done.push(format!("{name} {} bytes", bytes.len()));
    }
    Ok(format!("(replayed {}: ledger, totals and --report identical; files in target/vm/records)", done.join(", ")))
}

/// The `--report` JSON the live recording wrote (shipped as `NAME-report`) against the one
/// `tracer report REC --report` writes offline from the same events: equal but for the time
/// window and the replay's `recording` object.
fn same_report(tracer: &Path, console: &str, name: &str, rec: &Path) -> Result<()> {
    let live: serde_json::Value = serde_json::from_slice(&shipped_file(console, &format!("{name}-report"))?)
        .with_context(|| format!("{name}: the live --report file is not JSON"))?;
    let offline_path = rec.with_extension("report.json");
    let out =
        Command::new(tracer).args(["report", "--format", "json", "--report"]).arg(&offline_path).arg(rec).output()?;
    if !out.status.success() {
        bail!("tracer report {} --report failed: {}", rec.display(), String::from_utf8_lossy(&out.stderr));
    }
    let offline: serde_json::Value = serde_json::from_slice(&std::fs::read(&offline_path)?)
        .with_context(|| format!("{}: not JSON", offline_path.display()))?;
    let mut diffs = Vec::new();
    json_diff("", &live, &offline, &["/window", "/recording"], &mut diffs);
    if !diffs.is_empty() {
        bail!(
            "{name}: the offline report differs from the live one in {} place(s):\n  {}",
            diffs.len(),
            diffs.iter().take(12).cloned().collect::<Vec<_>>().join("\n  ")
        );
    }
    Ok(())
}

/// The JSON pointers at which `a` and `b` differ (`skip`: pointers left out), with both values.
fn json_diff(at: &str, a: &serde_json::Value, b: &serde_json::Value, skip: &[&str], out: &mut Vec<String>) {
    use serde_json::Value;
    if skip.contains(&at) {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                json_diff(&format!("{at}/{k}"), va, vb, skip, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{at}/{i}"), va, vb, skip, out);
            }
        }
        _ if a != b => out.push(format!("{at}: live {a} offline {b}")),
        _ => {}
    }
}

/// The line `TAG NAME <rest>` of the console, as `<rest>`.
fn marked_line(console: &str, tag: &str, name: &str) -> Result<String> {
    let prefix = format!("{tag} {name} ");
    console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(&prefix).map(str::to_string))
        .with_context(|| format!("no {tag} line for {name}"))
}

/// A top-level field of a JSON line, as JSON text.
fn json_field(line: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get(key).map(|x| x.to_string())
}

/// The bytes shipped between `RECORD-BEGIN NAME` and `RECORD-END NAME` (base64 lines).
pub fn shipped_file(console: &str, name: &str) -> Result<Vec<u8>> {
    let begin = format!("RECORD-BEGIN {name}");
    let end = format!("RECORD-END {name}");
    let body: String = console
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| *l != begin)
        .skip(1)
        .take_while(|l| *l != end)
        .map(without_kernel_message)
        .collect();
    if body.is_empty() {
        bail!("the guest shipped no record file for {name}");
    }
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .with_context(|| format!("record file {name}: bad base64"))
}

/// A console line without the kernel message that cut into it: the kernel prints to the same
/// serial console ("[   15.767089] clocksource: ..." in the middle of a base64 line, the rest
/// of which follows on the next line).
fn without_kernel_message(line: &str) -> &str {
    let stamp_at = line.match_indices('[').map(|(i, _)| i).find(|&i| {
        let rest = line[i + 1..].trim_start_matches(' ');
        let (secs, frac) = rest.split_once('.').unwrap_or(("", ""));
        !secs.is_empty()
            && secs.bytes().all(|b| b.is_ascii_digit())
            && frac.split_once(']').is_some_and(|(f, _)| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    });
    stamp_at.map_or(line, |i| &line[..i])
}

/// One tracer latency record printed by latency.sh.
#[derive(Debug, serde::Deserialize)]
struct LatencyRec {
    figure: String,
    dev: String,
    op: String,
    size: String,
    scope: String,
    count: u64,
    percentiles: BTreeMap<String, f64>,
}

/// The NDJSON records of a phase of the latency script, of one `"type"`.
fn phase_records<'a>(console: &'a str, phase: &str, kind: &str) -> impl Iterator<Item = &'a str> {
    let (prefix, kind) = (format!("REC {phase} "), format!("\"type\":\"{kind}\""));
    console
        .lines()
        .filter_map(move |l| l.trim_end_matches('\r').strip_prefix(prefix.as_str()))
        .filter(move |j| j.contains(kind.as_str()))
}

fn latency_records(console: &str, phase: &str) -> Vec<LatencyRec> {
    phase_records(console, phase, "latency")
        .filter_map(|j| serde_json::from_str::<LatencyRec>(j).ok())
        .filter(|r| r.scope == "cumulative" && r.size == "all" && r.op == "read")
        .collect()
}

/// A phase's summary figures: its block requests completed untimed and starts dropped.
fn untimed_in(console: &str, phase: &str) -> Result<(u64, u64)> {
    let summary = phase_records(console, phase, "summary")
        .find_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .with_context(|| format!("phase {phase}: no summary record"))?;
    let field = |name: &str| {
        summary["block"][name].as_u64().with_context(|| format!("phase {phase}: no block.{name} in its summary"))
    };
    Ok((field("requests_untimed")?, field("starts_dropped")?))
}

fn find<'a>(recs: &'a [LatencyRec], figure: &str, dev: &str) -> Result<&'a LatencyRec> {
    recs.iter()
        .find(|r| r.figure == figure && r.dev == dev)
        .with_context(|| format!("no {figure} read figure for device {dev}"))
}

/// A `NAME=VALUE` word the guest script printed on a `DEVICES` line.
fn guest_value(console: &str, name: &str) -> Result<String> {
    let key = format!("{name}=");
    console
        .lines()
        .filter(|l| l.starts_with("DEVICES "))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(&key).map(str::to_string)))
        .with_context(|| format!("the guest did not print {name}"))
}

/// Checks the latency script's records (see test/vm/latency.sh).
pub fn check_latency(console: &str) -> Result<String> {
    if !console.contains("LATENCY-DONE") {
        bail!("latency.sh did not finish");
    }
    if !console.contains("TRACER-EXIT status=0") {
        bail!("the tracer did not exit cleanly on SIGINT (TRACER-EXIT status=0 missing)");
    }
    for phase in ["two-devices", "dm-base", "dm-delay", "ext4"] {
        if !console.contains(&format!("PHASE {phase} status=0")) {
            bail!("phase {phase} failed");
        }
        // Every request of a phase timed: the tracer began before any of its I/O, and an issue
        // still waiting at a segment's end carries over into the next segment.
        let (untimed, dropped) = untimed_in(console, phase)?;
        if untimed != 0 || dropped != 0 {
            bail!(
                "phase {phase}: {untimed} block requests completed untimed, {dropped} starts dropped (expected none)"
            );
        }
    }
    // 1. virtio-blk and NVMe apart, each with its own figures.
    let two = latency_records(console, "two-devices");
    let vda = find(&two, "d2c", &guest_value(console, "vda")?)?;

    // NVMe requests run on the namespace, or under native multipath on its hidden path device
    // (nvme0c0n1), which has the same major and no dev attribute in sysfs.
    let vda_dev = guest_value(console, "vda")?;
    let nvme_major = guest_value(console, "nvme0n1")?.split(':').next().unwrap_or_default().to_string();
    let nvme = two
        .iter()
        .find(|r| r.figure == "d2c" && r.dev != vda_dev && r.dev.split(':').next() == Some(nvme_major.as_str()))
        .with_context(|| format!("no d2c read figure for an NVMe device (major {nvme_major})"))?;
    if vda.count < 300 || nvme.count < 300 {
        bail!("two devices: {} virtio and {} NVMe reads, expected 300 each", vda.count, nvme.count);
    }
    // 2. dm-delay: median of the delayed device within 5% of delay + base.
    let delay_ms: f64 = guest_value(console, "delay_ms")?.parse().context("delay_ms")?;
    let (base_recs, delayed_recs) = (latency_records(console, "dm-base"), latency_records(console, "dm-delay"));
    let base = find(&base_recs, "q2c", &guest_value(console, "d0")?)?;
    let delayed = find(&delayed_recs, "q2c", &guest_value(console, "dlong")?)?;
    let base_p50 = base.percentiles["p50"];
    let expected = delay_ms * 1e6 + base_p50;
    let got = delayed.percentiles["p50"];
    let off = (got / expected - 1.0) * 100.0;
    if off.abs() > 5.0 || delayed.count < 25 {
        bail!(
            "dm-delay: median {:.2} ms vs {delay_ms} ms + base {:.3} ms = {:.2} ms ({off:+.1}%), {} I/Os",
            got / 1e6,
            base_p50 / 1e6,
            expected / 1e6,
            delayed.count
        );
    }
    // 3. Pin hold time and completion -> unpin lag on ext4, beside the DIO and syscall figures.
    let ext4 = latency_records(console, "ext4");
    let dev = guest_value(console, "nvme0n1")?;
    let mut figures = Vec::new();
    // The iomap DIO tracepoints (and so the dio and sys figures) exist only on newer kernels.
    let iomap = console.contains("\"target\":\"iomap_dio_rw_begin\",\"role\":\"latency\",\"attached\":\"tp_btf\"");
    let wanted: &[&str] = if iomap { &["hold", "unpin_lag", "dio", "sys"] } else { &["hold", "unpin_lag"] };
    for &figure in wanted {
        let r = find(&ext4, figure, &dev)?;
        if r.count < 500 {
            bail!("ext4: {figure} has {} reads, expected at least 500", r.count);
        }
        figures.push(format!("{figure} p50 {:.1} us", r.percentiles["p50"] / 1e3));
    }
    Ok(format!(
        "(dm-delay {delay_ms} ms: median {:.2} ms, {off:+.2}% of delay+base {:.3} ms; base {} I/Os; {})",
        got / 1e6,
        base_p50 / 1e6,
        base.count,
        figures.join(", ")
    ))
}

/// `cargo xtask demo`: the demo script in a VM, its console streamed.
pub fn demo(kernel: &str, seconds: u32) -> Result<i32> {
    let script = workspace_root().join("test/vm/demo.sh");
    cargo(&["build", "--release", "-p", "tracer"])?;
    // In a terminal, the guest draws the live dashboard through its console, at this size.
    // One row less than the terminal: a write to its last row would scroll the screen under the
    // dashboard (its diffs would then land one row off).
    let size = terminal_size()
        .map_or(String::new(), |(rows, cols)| format!("DEMO_ROWS={} DEMO_COLS={cols} ", rows.saturating_sub(1)));
    let args = vm::args_from([
        "--kernel".to_string(),
        kernel.to_string(),
        "--no-build".to_string(),
        "--timeout".to_string(),
        (seconds + 300).to_string(),
        "--add".to_string(),
        script.display().to_string(),
        "--".to_string(),
        format!("{size}DEMO_SECONDS={seconds} sh /root/demo.sh"),
    ])?;
    // The dashboard draws with escape sequences, which the console filter would drop.
    let mut args = args;
    args.raw_console = !size.is_empty();
    vm::run(args)
}

/// Rows and columns of the terminal this runs in, if it runs in one.
fn terminal_size() -> Option<(u16, u16)> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let tty = std::fs::File::open("/dev/tty").ok()?;
    let out = std::process::Command::new("stty").arg("size").stdin(tty).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    match (it.next()??, it.next()??) {
        (rows, cols) if rows >= 20 && cols >= 80 => Some((rows, cols)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "noise\r\nCASE nullb0-dd-read status=0 pinned=1648 unpinned=1648 lost=0 accounting=measured vm_acquired=1648 vm_released=1648\r\nCASES-DONE\n";

    /// The CASE line `case_print` (test/vm/cases.sh) makes of a case's records, with the host's
    /// sh and `awk` in PATH (busybox's when `busybox` is given, as in the guest).
    fn case_line(busybox: Option<&Path>) -> Case {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(bb) = busybox {
            std::os::unix::fs::symlink(bb, dir.path().join("awk")).expect("awk link");
            path = std::env::join_paths(std::iter::once(dir.path().to_path_buf()).chain(std::env::split_paths(&path)))
                .expect("PATH");
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#". "$1/test/vm/cases.sh"; CASE_NOTE="thp=always owner=fio"; case_print nullb0-x 0 "$2" 784 783"#)
            .arg("sh")
            .arg(root)
            .arg(root.join("xtask/tests/fixtures/case-records.json"))
            .env("PATH", path)
            .output()
            .expect("sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let cases = parse_cases(&stdout);
        assert_eq!(cases.len(), 1, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        cases[0].clone()
    }

    #[test]
    fn case_print_reads_every_field_of_a_case_from_its_records() {
        let busybox = ["/usr/bin/busybox", "/bin/busybox"].into_iter().map(Path::new).find(|p| p.exists());
        let mut lines = vec![case_line(None)];
        lines.extend(busybox.map(|bb| case_line(Some(bb))));
        for c in &lines {
            assert_eq!(c, &lines[0], "busybox awk and the host's awk agree");
            assert_eq!(c.name, "nullb0-x");
            let expect = [
                ("status", "0"),
                ("pinned", "784"),
                ("unpinned", "784"),
                ("lost", "15"),
                ("accounting", "measured"),
                ("vm_acquired", "784"),
                ("vm_released", "783"),
                ("ledger", "clean"),
                ("ledger_pinned", "512"),
                ("ledger_referenced", "0"),
                ("ledger_matched", "512"),
                ("ledger_acquired", "512"),
                ("pl_pinned", "784"),
                ("pl_with_bio", "768"),
                ("pl_longterm", "16"),
                ("pl_large", "0"),
                ("ledger_truncated", "0"),
                ("procs", "dd/179/1:256:256,kworker_u8/179/1:256:256,fio/182/1:256:256,kworker_u8/182/1:256:256,fio/185/1:16:16,kworker_u8/185/1:16:16,pin-workload/187/1:256:256,kworker_u8/187/1:256:256"),
                ("pl_unpinned", "784"),
                ("pl_matched", "784"),
                ("pl_unknown", "0"),
                ("pl_unlisted", "0"),
                ("pl_outstanding", "0"),
                ("pl_suspect", "0"),
                ("pl_owner_exited", "0"),
                ("pl_referenced", "22"),
                ("pl_ref_with_bio", "0"),
                ("pl_ref_put", "0"),
                ("records_submitted", "701"),
                ("records_read", "701"),
                ("paths_reused", "4"),
                ("paths_rewalked", "10"),
                ("paths_wrong", "0"),
                ("paths_walked", "108"),
                ("released_by", "unpin_user_folio<-__bio_release_pages,unpin_user_folio<-io_buffer_unmap"),
                ("skipped", "pin_user_pages_fast:2,unpin_user_folio:9"),
                ("lost_why", "ring_full:3,bad_index:1"),
                ("thp", "always"),
                ("owner", "fio"),
            ];
            for (k, v) in expect {
                assert_eq!(c.str(k), v, "{k}");
            }
            assert_eq!(c.fields.len(), expect.len(), "no other field: {:?}", c.fields.keys());
        }
    }

    #[test]
    fn parses_case_lines_amid_console_noise() {
        let cases = parse_cases(GOOD);
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].name, "nullb0-dd-read");
        assert_eq!(cases[0].int("pinned"), Some(1648));
    }

    #[test]
    fn equal_counts_pass_and_any_difference_fails() {
        assert!(check_run(GOOD, DioPins::Pinned, 1).is_ok());
        let off_by_one = GOOD.replace("vm_released=1648", "vm_released=1649");
        let err = check_run(&off_by_one, DioPins::Pinned, 1).unwrap_err().to_string();
        assert!(err.contains("unpinned 1648 != vmstat nr_foll_pin_released delta 1649"), "{err}");
    }

    #[test]
    fn expectations_per_kernel_and_missing_fields_fail() {
        let err = check_run(GOOD, DioPins::Referenced, 1).unwrap_err().to_string();
        assert!(err.contains("DIO takes references"), "{err}");
        let zero =
            "CASE x status=0 pinned=0 unpinned=0 lost=0 accounting=measured vm_acquired=0 vm_released=0\nCASES-DONE";
        assert!(check_run(zero, DioPins::Referenced, 1).is_ok());
        assert!(check_run(zero, DioPins::Pinned, 1).is_err());
        let empty =
            "CASE x status=0 pinned= unpinned= lost=0 accounting=unverifiable vm_acquired=0 vm_released=0\nCASES-DONE";
        let err = check_run(empty, DioPins::Referenced, 1).unwrap_err().to_string();
        assert!(err.contains("not measured") && err.contains("pages pinned  !="), "{err}");
    }

    /// The verdicts of real VM runs, recorded from their consoles (tests/fixtures/).
    #[test]
    fn recorded_vm_runs_pass_their_checks() {
        let dir = crate::workspace_root().join("xtask/tests/fixtures");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        for (file, kernel, expect) in [
            ("dio-pins-6.1.log", "6.1", DioPins::Referenced),
            ("dio-pins-6.12.log", "6.12", DioPins::Pinned),
            ("dio-pins-sid.log", "sid", DioPins::Pinned),
        ] {
            let console = read(file);
            // Recorded before the case in a cgroup of its own was added.
            const RECORDED: usize = DIO_CASES - 1;
            let cases = check_run(&console, expect, RECORDED).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            assert_eq!(cases.len(), RECORDED);
            assert!(cases.iter().all(|c| c.str("ledger") == "clean"), "{file}: every ledger verdict clean");
            check_probe_plan(kernel, &console).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            // The other kernel's expectation must fail on the same data.
            let other = if expect == DioPins::Pinned { DioPins::Referenced } else { DioPins::Pinned };
            assert!(check_run(&console, other, RECORDED).is_err(), "{file}");
        }
        // The ledger must agree with the kernel's count: one page off fails.
        let console = read("dio-pins-6.12.log");
        let off = console.replacen("ledger_pinned=1648 ", "ledger_pinned=1647 ", 1);
        assert_ne!(off, console);
        let err = check_run(&off, DioPins::Pinned, DIO_CASES).unwrap_err().to_string();
        assert!(err.contains("ledger saw 1647 pinned bio pages, kernel accounting 1648"), "{err}");
        let latency = read("latency-sid.log");
        let verdict = check_latency(&latency).unwrap();
        assert!(verdict.contains("dm-delay 200 ms"), "{verdict}");
        assert!(verdict.contains("sys p50"), "iomap figures are required where the tracepoints attach: {verdict}");
        // A slower median breaks the 5% bound.
        let slow = latency.replace("\"p50\":203554815", "\"p50\":222000000");
        assert_ne!(slow, latency);
        assert!(check_latency(&slow).unwrap_err().to_string().contains("dm-delay"));
        // A tracer that had to be killed after SIGINT fails the step.
        let hung = latency.replace("TRACER-EXIT status=0", "TRACER-EXIT status=137");
        assert!(check_latency(&hung).unwrap_err().to_string().contains("SIGINT"));
        // A completion without its start fails the step.
        let untimed = latency.replacen("\"requests_untimed\":0", "\"requests_untimed\":3", 1);
        assert_ne!(untimed, latency);
        assert!(check_latency(&untimed).unwrap_err().to_string().contains("3 block requests completed untimed"));
    }

    /// The pin-path cases of real VM runs: every path's expectation holds on its kernel, fails
    /// on the other kind of kernel, and one unmatched unpin fails.
    #[test]
    fn recorded_pin_path_runs_pass_their_checks() {
        let dir = crate::workspace_root().join("xtask/tests/fixtures");
        for (file, expect, matched, unpins) in [
            ("pin-paths-6.1.log", DioPins::Referenced, 16, 16),
            ("pin-paths-6.12.log", DioPins::Pinned, 1024, 1024),
            ("pin-paths-sid.log", DioPins::Pinned, 1024, 1024),
        ] {
            let console = std::fs::read_to_string(dir.join(file)).unwrap();
            let cases = check_run(&console, expect, PATH_CASES).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            assert_eq!(cases.len(), PATH_CASES, "{file}");
            let other = if expect == DioPins::Pinned { DioPins::Referenced } else { DioPins::Pinned };
            assert!(check_run(&console, other, PATH_CASES).is_err(), "{file}: the other kernel's expectation");
            let off = console.replacen(&format!("pl_matched={matched} "), &format!("pl_matched={} ", matched - 1), 1);
            assert_ne!(off, console, "{file}");
            let err = check_run(&off, expect, PATH_CASES).unwrap_err().to_string();
            assert!(err.contains(&format!("matched {} of {unpins} unpins", matched - 1)), "{file}: {err}");
        }
    }

    /// `good` with `from` replaced by `to` fails its check with a message containing `why`.
    fn assert_breaks(good: &str, from: &str, to: &str, why: &str) {
        let bad = good.replace(from, to);
        let err = check_run(&bad, DioPins::Pinned, 1).unwrap_err().to_string();
        assert!(err.contains(why), "{from} -> {to}: {err}");
    }

    #[test]
    fn a_workload_running_before_the_trace_is_judged_by_what_the_trace_saw() {
        let good = "CASE vda-fio-running-before status=0 pinned=5304 unpinned=5312 lost=0 accounting=measured \
            vm_acquired=- vm_released=- ledger=clean ledger_pinned=5300 ledger_referenced=0 ledger_matched=5300 \
            ledger_acquired=5300 pl_pinned=5300 pl_with_bio=5300 pl_longterm=0 pl_large=0 ledger_truncated=0 \
            procs=fio/179:5300:5300 pl_unpinned=5312 pl_matched=5300 pl_unknown=12 pl_unlisted=0 pl_outstanding=0 \
            pl_suspect=0 pl_owner_exited=0 pl_referenced=2 pl_ref_with_bio=0 pl_ref_put=0 paths_wrong=0 skipped= lost_why= \
            path=running_before owner=fio\nCASES-DONE\n";
        check_run(good, DioPins::Pinned, 1).unwrap();
        // What the tracer said when it took the attachment's records for the trace's.
        for (from, to, why) in [
            ("ledger=clean", "ledger=leaks_found", "not clean"),
            ("pl_owner_exited=0", "pl_owner_exited=424", "424 pins outliving their process"),
            ("pl_outstanding=0", "pl_outstanding=432", "432 pages still pinned"),
            ("ledger_matched=5300", "ledger_matched=5172", "matched 5172 of 5300 acquired"),
            ("pl_matched=5300", "pl_matched=4868", "matched 4868 of 5300 pins"),
            ("lost=0", "lost=3", "lost events: 3"),
            ("pl_pinned=5300", "pl_pinned=0", "the trace saw 0 pinned pages"),
            ("paths_wrong=0", "paths_wrong=2", "2 learned call paths disagreed"),
        ] {
            assert_breaks(good, from, to, why);
        }
    }

    #[test]
    fn a_workload_in_a_cgroup_shows_its_cgroup_and_comm() {
        let good = "CASE nullb0-fio-fixedbufs-in-cgroup status=0 pinned=2048 unpinned=2048 lost=0 accounting=measured \
            vm_acquired=2048 vm_released=2048 ledger=clean ledger_pinned=2048 ledger_referenced=0 ledger_matched=2048 \
            ledger_acquired=2048 pl_pinned=2048 pl_with_bio=2048 pl_longterm=0 pl_large=0 ledger_truncated=0 \
            procs=fio/247/28:2048:2048 pl_unpinned=2048 pl_matched=2048 pl_unknown=0 pl_unlisted=0 pl_outstanding=0 \
            pl_suspect=0 pl_owner_exited=0 paths_wrong=0 skipped= lost_why= owner=fio cgroup=28\nCASES-DONE\n";
        check_run(good, DioPins::Pinned, 1).unwrap();
        for (from, to, why) in [
            ("procs=fio/247/28:", "procs=fio/247/1:", "not shown in the case's cgroup 28"),
            ("procs=fio/247/28:", "procs=fio/247:", "not shown in the case's cgroup 28"),
            ("procs=fio/247/28:", "procs=dd/247/28:", "only fio pins here"),
        ] {
            assert_breaks(good, from, to, why);
        }
    }

    #[test]
    fn an_overloaded_ring_buffer_counts_its_losses_and_is_unverifiable() {
        let good = "CASE nullb0-fio-overload status=0 pinned=4096 unpinned=4096 lost=3512 accounting=measured \
            vm_acquired=- vm_released=- ledger=unverifiable records_submitted=5120 records_read=5120 \
            skipped= lost_why=ring_full:3512 path=overload\nCASES-DONE\n";
        check_run(good, DioPins::Pinned, 1).unwrap();
        for (from, to, why) in [
            ("ledger=unverifiable", "ledger=clean", "not unverifiable"),
            ("records_read=5120", "records_read=5100", "submitted 5120 records, the tracer read 5100"),
            ("lost_why=ring_full:3512", "lost_why=", "0 records lost to a full ring buffer"),
            ("records_submitted=5120 records_read=5120", "records_submitted= records_read=", "a loss not counted"),
        ] {
            assert_breaks(good, from, to, why);
        }
    }

    #[test]
    fn the_kernel_guards_must_be_read_and_right() {
        let line = |chain: &str, taken: u64, not: u64| {
            format!("CHAIN {chain}: recursion misses 0/0/0 (primary/backups), before armed 0, rescued 0 (cpu rule 0, word rule 0), no word 0, context unknown 0, count unreadable 0, own kernel count taken {taken} / not taken {not}")
        };
        let good =
            [line("unpin_user_folio", 229464, 0), line("block_rq_complete", 49384, 0), "noise".into()].join("\n");
        assert!(super::kernel_guards(&good).unwrap().contains("2 chains"));
        assert!(super::kernel_guards(&line("x", 5, 1)).is_err(), "a wrong address");
        assert!(super::kernel_guards(&line("x", 0, 0)).is_err(), "nothing read the guards");
        assert!(super::kernel_guards("CHAIN x: own kernel count taken many / not taken 0").is_err());
        assert!(super::kernel_guards("").is_err());
    }

    #[test]
    fn unfinished_or_short_runs_fail() {
        assert!(check_run(&GOOD.replace("CASES-DONE", ""), DioPins::Pinned, 1).is_err());
        assert!(check_run(GOOD, DioPins::Pinned, 2).is_err());
    }

    #[test]
    fn kernel_messages_cut_out_of_shipped_files() {
        let console = "RECORD-BEGIN x\r\nAAAA//[   15.767089] clocksource: Watchdog remote CPU 1 read timed out\r\n8=\r\nRECORD-END x\r\n";
        use base64::Engine as _;
        let want = base64::engine::general_purpose::STANDARD.decode("AAAA//8=").unwrap();
        assert_eq!(shipped_file(console, "x").unwrap(), want);
        assert_eq!(without_kernel_message("AB[c]D"), "AB[c]D");
        assert_eq!(without_kernel_message("[ 1.5] boot"), "");
    }
}
