//! `cargo xtask bench overhead`: fio IOPS untraced, under the tracer and under an equivalent
//! bpftrace script, in one VM boot per kernel (test/vm/bench-overhead.sh), with the BPF run
//! time of every program. Prints Markdown; `--write` puts it into docs/benchmarks.md between
//! the `<!-- bench overhead begin -->` and `<!-- bench overhead end -->` markers.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::report::{self, Console, Mode, JOBS};
use crate::{kernels, vm, workspace_root};

/// Only one VM at a time on this machine: every VM boot holds this lock (flock) for its life.
pub(super) const VM_LOCK: &str = "/tmp/vm.lock";
const BEGIN: &str = "<!-- bench overhead begin -->";
const END: &str = "<!-- bench overhead end -->";
/// Guest memory: the initramfs is the root file system, and bpftrace's libraries (LLVM,
/// clang) add about 200 MB to it.
const GUEST_MB: u32 = 2048;

#[derive(clap::Args, Debug)]
pub struct OverheadBenchArgs {
    /// Kernels to boot, one VM each (names from xtask/kernels.toml). Repeatable.
    #[arg(long = "kernel", value_name = "NAME", default_values_t = ["6.12".to_string(), "sid".to_string()])]
    pub kernels: Vec<String>,
    /// Seconds per fio run.
    #[arg(long, default_value_t = 5)]
    pub runtime: u32,
    /// Rounds (each: untraced, tracer, untraced, bpftrace, untraced, floor; one more untraced pass
    /// at the end).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// The tracer binary to measure. Nothing is built: the default is target/release/tracer as
    /// it is (build it first).
    #[arg(long, value_name = "PATH")]
    pub tracer: Option<PathBuf>,
    /// How to name the measured tracer in the results (default: its path, mtime and the
    /// workspace's commit).
    #[arg(long, value_name = "TEXT")]
    pub tracer_label: Option<String>,
    /// Write the results into docs/benchmarks.md (between the bench overhead markers; the
    /// section goes before "## Not measured yet" the first time). Only when every kernel ran.
    #[arg(long)]
    pub write: bool,
    /// Make the tables from recorded console logs (target/vm/logs/...) instead of booting.
    #[arg(long = "from-log", value_name = "LOG")]
    pub from_logs: Vec<PathBuf>,
}

/// The tracer binary under test: a copy, so that a rebuild while we wait for the VM lock does
/// not change what the second kernel measures.
pub(super) struct TracerBinary {
    pub(super) path: PathBuf,
    pub(super) label: String,
}

/// One kernel's results.
struct KernelRun {
    console: Console,
    log: PathBuf,
    took: Option<Duration>,
    host: Option<HostLoad>,
}

/// What else ran on the host during a VM boot, sampled every 5 s: on 2 cores another VM (or a
/// build) skews every figure, so the results say how busy the host was.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HostLoad {
    samples: u32,
    /// Samples that saw another QEMU than ours.
    with_other_vm: u32,
    max_other_vms: usize,
    load_sum: f64,
    /// From taking the VM lock to the end of the VM.
    pub(super) took: Duration,
}

impl HostLoad {
    fn sample(&mut self) {
        let qemus = fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("qemu-system")))
            .count();
        // Ours is one of them (but for the first seconds, while the initramfs is written).
        let others = qemus.saturating_sub(1);
        let load = fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
            .unwrap_or(0.0);
        self.samples += 1;
        self.with_other_vm += u32::from(others > 0);
        self.max_other_vms = self.max_other_vms.max(others);
        self.load_sum += load;
    }

    pub(super) fn describe(&self) -> String {
        if self.samples == 0 {
            return String::new();
        }
        format!(
            "; host meanwhile: 1-min load average {:.1} on the mean, another VM running in {} of {} samples (at most {})",
            self.load_sum / f64::from(self.samples),
            self.with_other_vm,
            self.samples,
            self.max_other_vms
        )
    }
}

/// Runs `f` while a thread samples the host's load.
pub(super) fn watch_host<T>(f: impl FnOnce() -> T) -> (T, HostLoad) {
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Mutex::new(HostLoad::default()));
    let watcher = {
        let (stop, load) = (Arc::clone(&stop), Arc::clone(&load));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut l) = load.lock() {
                    l.sample();
                }
                for _ in 0..50 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    let started = Instant::now();
    let out = f();
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let mut load = load.lock().map(|l| *l).unwrap_or_default();
    load.took = started.elapsed();
    (out, load)
}

pub fn overhead(args: &OverheadBenchArgs) -> Result<i32> {
    if args.runtime == 0 || args.rounds == 0 {
        bail!("--runtime and --rounds must be at least 1");
    }
    let (runs, failures, label) = if args.from_logs.is_empty() {
        let tracer = tracer_binary(args.tracer.as_deref(), args.tracer_label.as_deref())?;
        let tools = [host_tool("bpftrace")?, host_tool("bpftool")?];
        let (runs, failures) = boot_all(args, &tracer, &tools);
        (runs, failures, tracer.label)
    } else {
        let runs = args.from_logs.iter().map(|log| from_log(log)).collect::<Result<Vec<_>>>()?;
        (runs, Vec::new(), args.tracer_label.clone().unwrap_or_else(|| "(not recorded)".into()))
    };
    for (kernel, e) in &failures {
        eprintln!("bench: {kernel}: {e:#}");
    }
    if runs.is_empty() {
        bail!("no kernel gave results");
    }
    let section = section(&runs, &label, &command_line(args))?;
    println!("\n{section}");
    if args.write {
        if !failures.is_empty() {
            bail!("not writing docs/benchmarks.md: a kernel failed (remake the tables from the logs with --from-log)");
        }
        write_doc(&section, BEGIN, END)?;
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}

fn boot_all(
    args: &OverheadBenchArgs,
    tracer: &TracerBinary,
    tools: &[PathBuf],
) -> (Vec<KernelRun>, Vec<(String, anyhow::Error)>) {
    let (mut runs, mut failures) = (Vec::new(), Vec::new());
    for kernel in &args.kernels {
        let result = boot(kernel, args, &tracer.path, tools).and_then(|(log, host)| {
            let mut run = from_log(&log)?;
            run.took = Some(host.took);
            run.host = Some(host);
            Ok(run)
        });
        match result {
            Ok(run) => {
                let host = run.host.map(|h| h.describe()).unwrap_or_default();
                eprintln!(
                    "bench: {kernel}: {:.1} min{host}; log {}",
                    run.took.unwrap_or_default().as_secs_f64() / 60.0,
                    run.log.display()
                );
                runs.push(run);
            }
            Err(e) => failures.push((kernel.clone(), e)),
        }
    }
    (runs, failures)
}

fn from_log(log: &Path) -> Result<KernelRun> {
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let console = report::parse(&text).with_context(|| format!("{}", log.display()))?;
    Ok(KernelRun { console, log: log.to_path_buf(), took: None, host: None })
}

/// Takes the VM lock, waiting for it as long as another VM runs.
pub(super) fn vm_lock() -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(VM_LOCK)
        .or_else(|_| File::open(VM_LOCK))
        .with_context(|| format!("opening {VM_LOCK}"))?;
    if file.try_lock().is_err() {
        eprintln!("bench: waiting for {VM_LOCK} (another VM is running)");
        file.lock().with_context(|| format!("locking {VM_LOCK}"))?;
    }
    Ok(file)
}

/// Generous: the tracer loads its probes in 30-60 s under TCG, bpftrace compiles its script.
fn timeout_secs(runtime: u32, rounds: u32) -> u32 {
    // Per round: four untraced passes and four traced ones (tracer, bpftrace, floor, chains),
    // each traced run followed by one with BPF statistics on; one more untraced pass at the end.
    let runs = JOBS.len() as u32 * (8 * rounds + 1);
    let stats_runs = JOBS.len() as u32 * 4 * rounds;
    300 + runs * (runtime + 15) + stats_runs * (runtime / 2 + 15) + rounds * 4 * 300
}

/// Boots `kernel` with the guest script and returns the console log and the host's load
/// meanwhile.
fn boot(kernel: &str, args: &OverheadBenchArgs, tracer: &Path, tools: &[PathBuf]) -> Result<(PathBuf, HostLoad)> {
    let root = workspace_root();
    let mut adds = vec![
        root.join("test/vm/bench-overhead.sh").display().to_string(),
        root.join("test/vm/bench-overhead.bt").display().to_string(),
        root.join("test/vm/bench-floor.bt").display().to_string(),
        format!("{}:/root/tracer-bench", tracer.display()),
    ];
    adds.extend(tools.iter().map(|t| format!("{}:{}", t.display(), t.display())));
    let guest = Guest { kernel, mem_mb: Some(GUEST_MB), timeout_secs: timeout_secs(args.runtime, args.rounds), adds };
    guest.boot("bench-overhead.sh", &format!("{} {} /root/tracer-bench", args.runtime, args.rounds))
}

/// A benchmark's VM boot: the kernel, the guest's memory (the harness's default when None), the
/// files added to the guest (`--add` specs) and the time it may take.
pub(super) struct Guest<'a> {
    pub(super) kernel: &'a str,
    pub(super) mem_mb: Option<u32>,
    pub(super) timeout_secs: u32,
    pub(super) adds: Vec<String>,
}

impl Guest<'_> {
    /// Boots and runs `sh /root/SCRIPT ARGS` in the guest, under the VM lock, watching the
    /// host's load; the console log, or an error naming the script and its log.
    pub(super) fn boot(&self, script: &str, args: &str) -> Result<(PathBuf, HostLoad)> {
        let mut argv: Vec<String> = vec!["--kernel".into(), self.kernel.into(), "--no-build".into()];
        if let Some(mb) = self.mem_mb {
            argv.extend(["--mem".to_string(), mb.to_string()]);
        }
        argv.extend(["--timeout".to_string(), self.timeout_secs.to_string()]);
        for spec in &self.adds {
            argv.extend(["--add".to_string(), spec.clone()]);
        }
        argv.extend(["--".to_string(), format!("sh /root/{script} {args}")]);
        let vm_args = vm::args_from(argv)?;
        let _lock = vm_lock()?;
        let (result, host) = watch_host(|| vm::run_logged(vm_args));
        let (code, log) = result?;
        if code != 0 {
            bail!("{script} exited {code} (log: {})", log.display());
        }
        Ok((log, host))
    }
}

/// Puts `section` into docs/benchmarks.md between its markers `begin` and `end` (see
/// [`replace_marked`]).
pub(super) fn write_doc(section: &str, begin: &str, end: &str) -> Result<()> {
    let doc = workspace_root().join("docs/benchmarks.md");
    let text = fs::read_to_string(&doc).with_context(|| format!("reading {}", doc.display()))?;
    fs::write(&doc, replace_marked(&text, section, begin, end)?)
        .with_context(|| format!("writing {}", doc.display()))?;
    eprintln!("bench: wrote {}", doc.display());
    Ok(())
}

/// Each kernel's part of a bench whose guest script needs the tracer and one host tool:
/// booted per kernel (`boot(kernel, tracer, tool)` gives the console log), or made from
/// recorded console logs; with the tracer's label ("(not recorded)" from logs).
pub(super) fn kernel_parts(
    kernels: &[String],
    from_logs: &[PathBuf],
    (tracer, tool): (Option<&Path>, &str),
    boot: impl Fn(&str, &Path, &Path) -> Result<PathBuf>,
    part: impl Fn(&Path) -> Result<String>,
) -> Result<(Vec<String>, String)> {
    if !from_logs.is_empty() {
        let parts = from_logs.iter().map(|log| part(log)).collect::<Result<Vec<_>>>()?;
        return Ok((parts, "(not recorded)".to_string()));
    }
    let tracer = tracer_binary(tracer, None)?;
    let tool = host_tool(tool)?;
    let parts = kernels.iter().map(|k| part(&boot(k, &tracer.path, &tool)?)).collect::<Result<Vec<_>>>()?;
    Ok((parts, tracer.label))
}

/// A generated section of docs/benchmarks.md of a bench run under TCG on the build host: its
/// heading, its method, the machine and the date, then each kernel's part.
pub(super) struct DocSection<'a> {
    pub begin: &'a str,
    pub end: &'a str,
    /// The heading, after `## `.
    pub title: &'a str,
    /// The method paragraph, after `**Method.** `.
    pub method: String,
    /// The bench's name in `cargo xtask bench NAME`.
    pub bench: &'a str,
}

impl DocSection<'_> {
    /// Prints the section for `kernels` (the tracer `label`, the kernels' `parts`) and, with
    /// `write`, puts it into docs/benchmarks.md.
    pub(super) fn emit(&self, kernels: &[String], label: &str, parts: &[String], write: bool) -> Result<()> {
        let DocSection { begin, end, title, method, bench } = self;
        let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let mut s = format!(
            "{begin}\n## {title}\n\n**Method.** {method}\n\n**Machine.** Host: {} (the 2-core build host), {}, TCG; \
             tracer: {label}.\n\nMeasured {} (`cargo xtask bench {bench}{}`).\n\n",
            host_cpu(),
            qemu_version(),
            &date[..10],
            kernels.iter().map(|k| format!(" --kernel {k}")).collect::<String>(),
        );
        for part in parts {
            s.push('\n');
            s.push_str(part);
        }
        s.push_str(end);
        s.push('\n');
        println!("\n{s}");
        if write {
            write_doc(&s, begin, end)?;
        }
        Ok(())
    }
}

pub(super) fn host_tool(name: &str) -> Result<PathBuf> {
    kernels::find_program(name)
        .or_else(|| ["/usr/sbin", "/usr/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.is_file()))
        .ok_or_else(|| {
            anyhow!(
                "{name} is not on this machine (apt-get install -y bpftrace bpftool); the guest gets it from the host"
            )
        })
}

pub(super) fn tracer_binary(tracer: Option<&Path>, tracer_label: Option<&str>) -> Result<TracerBinary> {
    let root = workspace_root();
    let src = tracer.map_or_else(|| root.join("target/release/tracer"), Path::to_path_buf);
    let bytes = fs::read(&src)
        .with_context(|| format!("reading {} (build it first: cargo build --release -p tracer)", src.display()))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let dir = kernels::vm_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("tracer-{}", &sha[..12]));
    fs::copy(&src, &path).with_context(|| format!("copying {} to {}", src.display(), path.display()))?;
    let label = match tracer_label {
        Some(l) => l.to_string(),
        None => default_label(&src, tracer.is_none())?,
    };
    Ok(TracerBinary { path, label: format!("{label}, sha256 {}", &sha[..12]) })
}

/// The binary's path and mtime; for target/release/tracer also the workspace's commit and
/// whether the tracer's sources have uncommitted changes.
fn default_label(src: &Path, in_workspace: bool) -> Result<String> {
    let mtime = fs::metadata(src)?.modified()?;
    let mut label = format!("{} (built {})", src.display(), humantime::format_rfc3339_seconds(mtime));
    if in_workspace {
        let git = |args: &[&str]| -> String {
            Command::new("git")
                .args(args)
                .current_dir(workspace_root())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let commit = git(&["rev-parse", "--short", "HEAD"]);
        let dirty = !git(&["status", "--porcelain", "--", "tracer", "tracer-ebpf", "tracer-common"]).is_empty();
        let _ = write!(label, ", workspace at {commit}{}", if dirty { " with uncommitted tracer changes" } else { "" });
    }
    Ok(label)
}

fn command_line(args: &OverheadBenchArgs) -> String {
    let mut c = String::from("cargo xtask bench overhead");
    for k in &args.kernels {
        let _ = write!(c, " --kernel {k}");
    }
    let _ = write!(c, " --runtime {} --rounds {}", args.runtime, args.rounds);
    if let Some(t) = &args.tracer {
        let _ = write!(c, " --tracer {}", t.display());
    }
    if args.write {
        c.push_str(" --write");
    }
    c
}

/// The host's CPU model (first "model name" of /proc/cpuinfo) and CPU count.
pub(super) fn host_cpu() -> String {
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let n = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{n} x \"{model}\"")
}

pub(super) fn qemu_version() -> String {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "QEMU (version unknown)".into())
}

fn info<'a>(c: &'a Console, key: &str) -> &'a str {
    c.info.get(key).map_or("?", String::as_str)
}

/// The method paragraph, with the figures of the first run.
fn method(first: &Console) -> String {
    let rounds: u32 = info(first, "rounds").parse().unwrap_or(0);
    format!(
        "**Method.** One VM boot per kernel runs `test/vm/bench-overhead.sh`: fio on `/dev/nullb0` \
         (null_blk, module defaults: no memory backing, so an I/O costs no copy and the CPU cost of \
         the I/O path is all there is to measure), plus two jobs that pin nothing. Every fio run is \
         time-based, {runtime} s, `--output-format=json`, `--norandommap --randrepeat=0`. Four modes \
         in the same boot: untraced; under `tracer run --format json` (started before a traced pass, \
         which begins once its probe records are out, and stopped after it: it is never loaded \
         during an untraced run); under bpftrace with `test/vm/bench-overhead.bt` (kfunc/kretfunc on \
         `pin_user_pages_fast`, `unpin_user_page`, `unpin_user_pages`, `unpin_user_pages_dirty_lock`, \
         `unpin_user_folio`, `__bio_release_pages`, and the `block:block_rq_issue`/`block_rq_complete` \
         tracepoints with a `hist()` of the request latency (perf tracepoints keyed by device and \
         sector: bpftrace 0.17 has no raw tracepoints, where the tracer uses tp_btf): pins and pages \
         per call and per process, bios released, far less than the tracer records); and the floor: \
         bpftrace with `test/vm/bench-floor.bt`, an empty program on each place the tracer attaches \
         to on a 4 KiB read's path (`pin_user_pages_fast` fexit, \
         `block_bio_queue`, `block_rq_issue`, `block_rq_complete` (perf tracepoints here), \
         `__bio_release_pages` and `unpin_user_folio` fentry; and `bio_endio` before 2026-12-05, \
         when the bios' ends had a probe of their own, and `bio_iov_iter_get_pages` fexit before \
         2026-12-05 night, when the bios' queueing began to stream their acquisitions): what any \
         tracer of those places pays before it does any work; and the chains' floor: \
         `test/vm/bench-floor.bt` with each place's empty program repeated as many times as the \
         tracer had programs attached there in the boot's first tracer pass (its primary and its \
         chain's backups, from `bpftool link show`; the count per place is in the notes: on 6.12 \
         one on the pin and the block layer's two starts and three on the places interrupts reach, \
         on sid four everywhere; until 2026-12-06 afternoon the file `bench-floor-chains.bt` had 6.12's \
         layout on every kernel): what the tracer's chains pay before they do any work. A round is an untraced pass of every job, a \
         tracer pass, an untraced pass, a bpftrace pass, an untraced pass, a floor pass, an \
         untraced pass, a chains pass; {rounds} \
         rounds, then one more untraced pass, so every traced pass has untraced neighbours. A \
         figure is the median IOPS of a mode's runs ({untraced} untraced, {rounds} per traced \
         mode); a ratio is that median over the untraced median. The IOPS runs have \
         `kernel.bpf_stats_enabled` at 0, as a user's run has it (before 2026-12-04 23:00 it was 1 \
         during traced passes, and each traced figure paid two clock reads per program run); \
         after each traced run, a shorter one ({stats_runtime} s) with it at 1 measures the \
         programs: the run time and run count of every program come from `bpftool prog show` \
         before and after that run; a program is named `name:target` (BPF keeps 15 characters of a name, and the backups of \
         a chain share them; the target comes from `bpftool link show` / `perf show`). \"BPF µs / \
         I/O\": the run time of every program over the I/Os of the runs that measured it. The \
         tracer's sessions lines give its userspace CPU time over a pass (`userspace_cpu`: \
         seconds of CPU / seconds of the pass). Under \
         TCG every instruction is emulated, so absolute IOPS mean little; the ratios are what \
         compares, and the tracer's userspace reader shares the guest's vCPUs with fio.\n",
        runtime = info(first, "runtime"),
        stats_runtime = info(first, "stats_runtime"),
        untraced = 4 * rounds + 1,
    )
}

fn machine(runs: &[KernelRun], tracer: &str) -> String {
    let c = &runs[0].console;
    let mem_mib = info(c, "mem_kb").parse::<u64>().map_or("?".into(), |kb| (kb / 1024).to_string());
    let kernels: Vec<String> = runs.iter().map(|r| format!("`{}`", info(&r.console, "kernel"))).collect();
    let accel = c.accel.as_deref().unwrap_or("?").to_uppercase();
    format!(
        "**Machine.** Host: {} ({}), {}, accelerator {accel} (`-cpu max`); guest: {} vCPUs, {mem_mib} MiB \
         RAM (MemTotal), kernels {}; null_blk scheduler `{}`; fio {}, bpftrace {}, bpftool {}. Tracer: {tracer}.\n",
        host_cpu(),
        "the 2-core build host",
        qemu_version(),
        info(c, "cpus"),
        kernels.join(", "),
        info(c, "nullb_sched"),
        info(c, "fio").trim_start_matches("fio-"),
        info(c, "bpftrace"),
        info(c, "bpftool"),
    )
}

/// The results of one kernel: the IOPS table, the programs tables, the sessions and notes.
fn kernel_part(run: &KernelRun) -> String {
    let c = &run.console;
    let mut s = format!("### {}\n\n", info(c, "kernel"));
    s.push_str(&report::job_table(&report::jobs(c)));
    let tables = [
        (Mode::Tracer, false, 10, "the tracer's programs over the four null_blk jobs"),
        (Mode::Tracer, true, 5, "the tracer's programs over the two jobs that pin nothing"),
        (Mode::Bpftrace, false, 5, "bpftrace's programs over the four null_blk jobs"),
    ];
    for (mode, collateral, top, what) in tables {
        let (progs, ios) = report::programs(c, mode, |j| report::is_collateral(j) == collateral);
        let total: u64 = progs.iter().map(|p| p.ns).sum();
        let _ = write!(
            s,
            "\nBPF run time, {what} ({ios} I/Os, {:.2} s of BPF run time in all, {} programs ran), top {top}:\n\n{}",
            total as f64 / 1e9,
            progs.len(),
            report::program_table(&progs, top)
        );
    }
    s.push_str("\nSessions (how each traced pass ended):");
    s.push_str(&report::session_list(c));
    let took = run.took.map(|t| format!(", {:.0} min in all", t.as_secs_f64() / 60.0)).unwrap_or_default();
    let log = run.log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let host = run.host.map(|h| h.describe()).unwrap_or_default();
    let _ = writeln!(s, "\n\nConsole log: `target/vm/logs/{log}`{took}{host}.");
    s
}

/// The whole docs section, markers included.
fn section(runs: &[KernelRun], tracer: &str, command: &str) -> Result<String> {
    let first = runs.first().ok_or_else(|| anyhow!("no results"))?;
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut s = format!("{BEGIN}\n## Overhead on I/O rate in the VMs (`cargo xtask bench overhead`)\n\n");
    s.push_str(&method(&first.console));
    s.push('\n');
    s.push_str(&machine(runs, tracer));
    let _ = writeln!(
        s,
        "\nMeasured {} (`{command}`).\n\n**Targets** (issue A; stated, not checked): IOPS ≥ {:.2} of untraced on every fio job \
         (goal {:.2}), less overhead than the bpftrace script's, jobs that pin nothing ≥ {:.2}.\n",
        &date[..10],
        report::TARGET_IO,
        report::GOAL_IO,
        report::TARGET_COLLATERAL
    );
    for run in runs {
        s.push_str(&kernel_part(run));
        s.push('\n');
    }
    s.push_str(END);
    s.push('\n');
    Ok(s)
}

/// `doc` with the part between `begin` and `end` (markers included) replaced by `section`;
/// the first time, the section goes before "## Not measured yet" (or at the end).
pub(super) fn replace_marked(doc: &str, section: &str, begin: &str, end: &str) -> Result<String> {
    match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) if b < e => {
            let after = &doc[e + end.len()..];
            Ok(format!("{}{}{}", &doc[..b], section.trim_end_matches('\n'), after))
        }
        (None, None) => Ok(match doc.find("\n## Not measured yet") {
            Some(at) => format!("{}{section}\n{}", &doc[..at + 1], &doc[at + 1..]),
            None => format!("{}\n\n{section}", doc.trim_end_matches('\n')),
        }),
        _ => bail!("docs/benchmarks.md has a broken pair of {begin} / {end} markers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTION: &str = "<!-- bench overhead begin -->\nnew\n<!-- bench overhead end -->\n";

    #[test]
    fn section_inserted_once_then_replaced() {
        let doc = "# B\n\n## Latency\ntext\n\n## Not measured yet\n- x\n";
        let first = replace_marked(doc, SECTION, BEGIN, END).expect("inserts");
        assert_eq!(first, "# B\n\n## Latency\ntext\n\n<!-- bench overhead begin -->\nnew\n<!-- bench overhead end -->\n\n## Not measured yet\n- x\n");
        let again = replace_marked(&first, &SECTION.replace("new", "newer"), BEGIN, END).expect("replaces");
        assert_eq!(again, first.replace("new\n", "newer\n"));
        assert_eq!(replace_marked("# B\n", SECTION, BEGIN, END).expect("appends"), format!("# B\n\n{SECTION}"));
        assert!(
            replace_marked("<!-- bench overhead end --> <!-- bench overhead begin -->", SECTION, BEGIN, END).is_err()
        );
    }

    #[test]
    fn timeout_covers_every_run() {
        assert!(timeout_secs(5, 3) > 78 * 5 + 6 * 60);
    }

    #[test]
    fn section_from_the_recorded_console() {
        let console = report::parse(include_str!("../../tests/fixtures/bench-overhead-6.12.log")).expect("parses");
        let run = KernelRun { console, log: PathBuf::from("/x/6.12-run.log"), took: None, host: None };
        let s = section(&[run], "a tracer", "cargo xtask bench overhead").expect("renders");
        assert!(s.starts_with(BEGIN) && s.ends_with(&format!("{END}\n")));
        assert!(s.contains("| 4k randread libaio QD32 |"), "{s}");
        assert!(s.contains("the tracer's programs over the four null_blk jobs"));
        assert!(s.contains("Console log: `target/vm/logs/6.12-run.log`."));
    }
}
