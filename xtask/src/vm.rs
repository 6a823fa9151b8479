//! `cargo xtask vm`: boot a pinned stock Debian kernel in QEMU with a busybox initramfs,
//! run COMMAND as root inside it, and exit with COMMAND's exit status.
//!
//! The run fails (non-zero, one line on stderr naming the console log) on a kernel panic,
//! Oops, BUG, soft lockup, hung task or RCU stall on the console, on a timeout, and when
//! QEMU ends without the verdict line that carries this run's nonce.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use sha2::{Digest, Sha256};

use crate::console::{self, Fatal, INIT_MARKER};
use crate::initramfs::{self, AddSpec, RunPart};
use crate::kernels::{self, Kernel};

/// Kernel command line of every run. All fatal conditions end in a panic, and `panic=-1`
/// with QEMU's `-no-reboot` turns a panic into QEMU exiting at once.
const CMDLINE: &str = "console=ttyS0 panic=-1 oops=panic softlockup_panic=1 \
     sysctl.kernel.hung_task_panic=1 sysctl.kernel.panic_on_rcu_stall=1 printk.time=1 \
     edd=off rdinit=/init";

/// Added under TCG: the RCU stall timeout in seconds (the kernel's default is 21). The guest's
/// clock is the host's wall clock while TCG runs its code 20-50 times slower than hardware, and
/// a vCPU thread the host does not schedule for a while stops reporting quiescent states: a
/// stalled kernel still panics, a guest starved for 21 s of the host's time no longer does (one
/// did on CI on 2026-12-07, while the tracer loaded: stall at 26.7 s of a run that passes
/// everywhere else). Soft lockups (20 s) and hung tasks (120 s) are left at their defaults.
const TCG_RCU_STALL_SECS: u32 = 60;

/// How long to keep reading the console after a fatal message (for the backtrace).
const FATAL_GRACE: Duration = Duration::from_secs(10);
/// How long QEMU may take to power off after the verdict.
const POWEROFF_GRACE: Duration = Duration::from_secs(30);
/// How long the KVM probe boot may take (a working KVM boots it in a second or two;
/// where KVM is broken some kernels hang silently).
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// KVM if a probe boot under KVM works, else TCG.
    Auto,
    Kvm,
    Tcg,
}

#[derive(clap::Args, Debug)]
pub struct VmArgs {
    /// The kernel to boot: a name from xtask/kernels.toml (6.1, 6.12, sid).
    #[arg(long, value_name = "NAME")]
    kernel: String,
    /// Copy a host file or directory into the guest: SRC goes to /root/<basename>,
    /// SRC:DEST to DEST (relative: under /root; ending in '/': a directory). Repeatable.
    #[arg(long = "add", value_name = "SRC[:DEST]")]
    add: Vec<AddSpec>,
    /// Kill the guest and fail after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    timeout: u64,
    /// Guest memory.
    #[arg(long, value_name = "MB", default_value_t = 1024)]
    mem: u32,
    /// Guest CPUs.
    #[arg(long, value_name = "N", default_value_t = 2)]
    smp: u32,
    /// Size of each virtual disk (virtio-blk /dev/vda, NVMe /dev/nvme0n1); sparse files.
    /// mkfs.xfs wants at least 300 MB.
    #[arg(long, value_name = "MB", default_value_t = 512)]
    disk_size: u64,
    /// Another kernel module to put into the guest and load at boot. Repeatable.
    #[arg(long = "module", value_name = "NAME")]
    modules: Vec<String>,
    /// More kernel command line.
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
    /// Accelerator; auto probes KVM and falls back to TCG.
    #[arg(long, value_enum, default_value_t = Accel::Auto, env = "TRACER_VM_ACCEL")]
    accel: Accel,
    /// Do not build the tracer first; use target/release/tracer as it is, if it exists.
    #[arg(long)]
    no_build: bool,
    /// Keep the run directory (initrd, disk images) under target/vm/run/.
    #[arg(long)]
    keep: bool,
    /// Once the guest runs COMMAND, pass its console to this terminal unfiltered (escape
    /// sequences included), so that a full-screen program in the guest draws here (the
    /// demo's dashboard). The log stays filtered.
    #[arg(long, hide = true)]
    pub raw_console: bool,
    /// What to run in the guest, as root, after `--`. One argument is a shell command
    /// line (like ssh); several are a program and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub fn run(args: VmArgs) -> Result<i32> {
    run_logged(args).map(|(code, _log)| code)
}

/// Parses `cargo xtask vm` arguments (without the leading "vm"), for tasks that boot VMs.
pub fn args_from<I: IntoIterator<Item = String>>(argv: I) -> Result<VmArgs> {
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        vm: VmArgs,
    }
    use clap::Parser as _;
    let argv = std::iter::once("vm".to_string()).chain(argv);
    Ok(Wrapper::try_parse_from(argv)?.vm)
}

/// Like [`run`], and also returns the path of the console log.
pub fn run_logged(args: VmArgs) -> Result<(i32, PathBuf)> {
    if args.timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    if args.mem < 128 {
        bail!("--mem must be at least 128 MB");
    }
    if args.smp == 0 {
        bail!("--smp must be at least 1");
    }
    if args.disk_size == 0 {
        bail!("--disk-size must be at least 1 MB");
    }
    if args.command.iter().all(|a| a.trim().is_empty()) {
        bail!("COMMAND is empty");
    }
    for add in &args.add {
        if !add.src.exists() {
            bail!("--add {}: no such file or directory", add.src.display());
        }
    }
    let qemu = kernels::find_program("qemu-system-x86_64").ok_or_else(|| {
        anyhow!("qemu-system-x86_64 not found (install qemu-system-x86 from bookworm-backports: scripts/setup.sh)")
    })?;

    let kernel = kernels::ensure(&args.kernel)?;
    if !kernel.pinned {
        eprintln!(
            "vm: warning: booting {} {}, not the version pinned in xtask/kernels.toml",
            kernel.name, kernel.version
        );
    }
    let tracer = tracer_binary(args.no_build)?;
    let base = initramfs::base(&kernel, &args.modules)?;

    let nonce = nonce()?;
    let stamp = utc_stamp(SystemTime::now());
    let run_name = format!("{}-{stamp}-{}", kernel.name, &nonce[..8]);
    let vm_dir = kernels::vm_dir();
    clean_stale_runs(&vm_dir.join("run"));
    let run_dir = RunDir::create(vm_dir.join("run").join(&run_name), args.keep)?;

    let expect = initramfs::expected_devices(&base.modules, &kernel.modules_dir);
    let part = initramfs::run_part(&RunPart {
        nonce: &nonce,
        command: &args.command,
        expect_devices: &expect,
        tracer: tracer.as_deref(),
        adds: &args.add,
    })?;
    let initrd = run_dir.path.join("initrd.cpio");
    write_initrd(&initrd, &base.cpio, &part)?;
    let disk_bytes = args
        .disk_size
        .checked_mul(1024 * 1024)
        .ok_or_else(|| anyhow!("--disk-size {} MB is too large", args.disk_size))?;
    let disks = Disks { virtio: run_dir.path.join("virtio.img"), nvme: run_dir.path.join("nvme.img") };
    for d in [&disks.virtio, &disks.nvme] {
        fs::File::create(d)
            .and_then(|f| f.set_len(disk_bytes))
            .with_context(|| format!("creating disk image {}", d.display()))?;
    }

    let accel = choose_accel(args.accel, &qemu, &kernel, &run_dir.path)?;
    let cmd = qemu_command(&qemu, &args, accel, &kernel, &initrd, &disks);

    let logs = vm_dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log_path = logs.join(format!("{run_name}.log"));
    let mut log = fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    writeln!(
        log,
        "# cargo xtask vm: kernel {} {} ({}), accel {accel:?}\n# command: {:?}\n# qemu: {}",
        kernel.name,
        kernel.version,
        kernel.kver,
        args.command,
        shell_words(&cmd)
    )?;
    eprintln!(
        "vm: booting {} ({}) with {} MB, {} CPUs, accel {}",
        kernel.name,
        kernel.kver,
        args.mem,
        args.smp,
        accel_name(accel)
    );

    let report = supervise(cmd, log, &nonce, Duration::from_secs(args.timeout), args.raw_console)?;
    let timing = match report.init_at {
        Some(t) => format!("init after {:.1} s, ", t.as_secs_f64()),
        None => String::new(),
    };
    eprintln!(
        "vm: {} {}: {timing}ended after {:.1} s; console log: {}",
        kernel.name,
        accel_name(accel),
        report.elapsed.as_secs_f64(),
        log_path.display()
    );
    report.into_result(args.timeout, &log_path).map(|code| (code, log_path))
}

/// The initrd: the cached base archive with the per-run archive appended.
fn write_initrd(path: &Path, base: &Path, part: &[u8]) -> Result<()> {
    let mut out = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut base_file = fs::File::open(base).with_context(|| format!("opening {}", base.display()))?;
    io::copy(&mut base_file, &mut out)
        .and_then(|_| out.write_all(part))
        .with_context(|| format!("writing {}", path.display()))
}

/// The raw disk images of a run.
struct Disks {
    virtio: PathBuf,
    nvme: PathBuf,
}

fn qemu_command(qemu: &Path, args: &VmArgs, accel: Accel, kernel: &Kernel, initrd: &Path, disks: &Disks) -> Command {
    let mut cmdline = CMDLINE.to_string();
    if accel != Accel::Kvm {
        cmdline.push_str(&format!(" rcupdate.rcu_cpu_stall_timeout={TCG_RCU_STALL_SECS}"));
    }
    if let Some(extra) = &args.append {
        cmdline.push(' ');
        cmdline.push_str(extra);
    }
    let mut cmd = Command::new(qemu);
    cmd.args(["-name", "tracer-vm"])
        .args(accel_args(accel))
        .args(["-m", &args.mem.to_string(), "-smp", &args.smp.to_string()])
        .args(["-nographic", "-nodefaults", "-no-reboot"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &cmdline])
        .arg("-drive")
        .arg(drive_arg(&disks.virtio, "vdisk0"))
        .args(["-device", "virtio-blk-pci,drive=vdisk0,serial=tracer-vd0"])
        .arg("-drive")
        .arg(drive_arg(&disks.nvme, "nvmedisk0"))
        .args(["-device", "nvme,drive=nvmedisk0,serial=tracer-nvme0"]);
    cmd
}

fn drive_arg(path: &Path, id: &str) -> String {
    // QEMU option values escape ',' by doubling it.
    let file = path.display().to_string().replace(',', ",,");
    format!("file={file},format=raw,if=none,id={id},cache=unsafe")
}

fn accel_args(accel: Accel) -> [&'static str; 4] {
    match accel {
        Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
        Accel::Tcg | Accel::Auto => ["-accel", "tcg,thread=multi", "-cpu", "max"],
    }
}

fn accel_name(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg | Accel::Auto => "tcg",
    }
}

fn shell_words(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| console::sh_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The tracer binary for /usr/bin/tracer: built first unless `no_build`.
fn tracer_binary(no_build: bool) -> Result<Option<PathBuf>> {
    let root = crate::workspace_root();
    if !no_build {
        eprintln!("vm: building the tracer (cargo build --release -p tracer; --no-build skips this)");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "tracer"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!(
                "building the tracer failed ({status}); fix it, or pass --no-build to boot \
                 without building it"
            );
        }
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => root.join(t),
        _ => root.join("target"),
    };
    let bin = target.join("release/tracer");
    if bin.is_file() {
        Ok(Some(bin))
    } else {
        eprintln!("vm: warning: {} does not exist; the guest has no /usr/bin/tracer", bin.display());
        Ok(None)
    }
}

/// 32 hex digits from the kernel's random pool.
fn nonce() -> Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("reading /dev/urandom")?;
    Ok(hex::encode(bytes))
}

/// `YYYYmmdd-HHMMSS` in UTC.
pub fn utc_stamp(t: SystemTime) -> String {
    // RFC 3339 "2024-05-01T12:00:00Z" without its separators.
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter_map(|c| match c {
            '-' | ':' | 'Z' => None,
            'T' => Some('-'),
            c => Some(c),
        })
        .collect()
}

/// The per-run directory (initrd, disk images), removed on drop unless kept.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    fn create(path: PathBuf, keep: bool) -> Result<Self> {
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(RunDir { path, keep })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("vm: kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes run directories left behind by interrupted runs (older than a day).
fn clean_stale_runs(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(86_400));
        if old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Verdict(i32),
    Fatal(Fatal),
    Timeout,
    NoVerdict { status: ExitStatus, stderr: Option<String> },
}

#[derive(Debug)]
struct Report {
    outcome: Outcome,
    init_at: Option<Duration>,
    elapsed: Duration,
}

impl Report {
    /// COMMAND's exit status, or the one-line reason the run failed.
    fn into_result(self, timeout_secs: u64, log: &Path) -> Result<i32> {
        let log = log.display();
        match self.outcome {
            Outcome::Verdict(code) => Ok(code),
            Outcome::Fatal(f) => {
                let details =
                    if f.details.is_empty() { String::new() } else { format!(" [{}]", f.details.join(" | ")) };
                Err(anyhow!(
                    "guest {} after {:.1} s: {}{details} (console log: {log})",
                    f.kind,
                    self.elapsed.as_secs_f64(),
                    f.line
                ))
            }
            Outcome::Timeout => Err(anyhow!(
                "timeout: no verdict after {timeout_secs} s (--timeout), killed qemu \
                 (console log: {log})"
            )),
            Outcome::NoVerdict { status, stderr } => {
                let why = match stderr {
                    Some(line) => format!("qemu exited ({status}): {line}"),
                    None => format!("qemu exited ({status})"),
                };
                Err(anyhow!(
                    "missing verdict: {why} before the guest printed its verdict line \
                     (console log: {log})"
                ))
            }
        }
    }
}

enum Event {
    Console(String),
    Stderr(String),
    Eof,
}

/// Copies a QEMU output stream to our own stream and the log as it comes, and sends
/// it on line by line.
fn pump(
    mut from: impl Read + Send + 'static,
    to_stderr: bool,
    raw: bool,
    log: Arc<Mutex<fs::File>>,
    tx: mpsc::Sender<Event>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut filter = console::EscapeFilter::default();
        let mut chunk = Vec::with_capacity(buf.len());
        let mut line: Vec<u8> = Vec::new();
        // With `raw`: set once the guest runs the command (the firmware's terminal resets are
        // behind), from the next read on.
        let mut passthrough = false;
        let mut command_started = false;
        let send = |line: &mut Vec<u8>| {
            let text = String::from_utf8_lossy(line).into_owned();
            line.clear();
            let ev = if to_stderr { Event::Stderr(text) } else { Event::Console(text) };
            let _ = tx.send(ev);
        };
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            chunk.clear();
            filter.filter(&buf[..n], &mut chunk);
            if to_stderr {
                let _ = io::stderr().write_all(&chunk);
            } else {
                let mut out = io::stdout().lock();
                let _ = out.write_all(if passthrough { &buf[..n] } else { &chunk });
                let _ = out.flush();
            }
            if let Ok(mut f) = log.lock() {
                let _ = f.write_all(&chunk);
            }
            for &b in &chunk {
                if b == b'\n' {
                    command_started |= line.starts_with(b"TRACER-VM: running COMMAND");
                    send(&mut line);
                } else {
                    line.push(b);
                }
            }
            passthrough = raw && command_started;
        }
        if !line.is_empty() {
            send(&mut line);
        }
        let _ = tx.send(Event::Eof);
    })
}

/// Runs QEMU to the end, watching its console.
fn supervise(mut cmd: Command, log: fs::File, nonce: &str, timeout: Duration, raw: bool) -> Result<Report> {
    let start = Instant::now();
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let log = Arc::new(Mutex::new(log));
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no qemu stdout"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no qemu stderr"))?;
    let pumps = [pump(stdout, false, raw, log.clone(), tx.clone()), pump(stderr, true, false, log.clone(), tx)];

    let deadline = start + timeout;
    let mut verdict: Option<(i32, Instant)> = None;
    let mut fatal: Option<(Fatal, Instant)> = None;
    let mut init_at = None;
    let mut last_stderr: Option<String> = None;
    let mut eofs = 0;
    let mut timed_out = false;
    let mut exited: Option<ExitStatus> = None;
    loop {
        let now = Instant::now();
        if eofs == 2 {
            // Both streams are closed: QEMU is on its way out.
            if let Some(status) = child.try_wait()? {
                exited = Some(status);
                break;
            }
        }
        if fatal.as_ref().is_some_and(|(_, at)| now.duration_since(*at) > FATAL_GRACE)
            || verdict.as_ref().is_some_and(|(_, at)| now.duration_since(*at) > POWEROFF_GRACE)
        {
            break;
        }
        if now >= deadline && verdict.is_none() && fatal.is_none() {
            timed_out = true;
            break;
        }
        let wait = deadline.saturating_duration_since(now).clamp(Duration::from_millis(1), Duration::from_millis(100));
        match rx.recv_timeout(wait) {
            Ok(Event::Console(line)) => {
                if init_at.is_none() && line.contains(INIT_MARKER) {
                    init_at = Some(start.elapsed());
                }
                if verdict.is_none() {
                    if let Some(code) = console::parse_verdict(&line, nonce) {
                        verdict = Some((code, Instant::now()));
                    }
                }
                match fatal.as_mut() {
                    None => fatal = console::detect_fatal(&line).map(|f| (f, Instant::now())),
                    Some((f, _)) if f.details.len() < console::FATAL_DETAILS => {
                        f.details.extend(console::fatal_detail(&line));
                    }
                    Some(_) => {}
                }
            }
            Ok(Event::Stderr(line)) => {
                if !line.trim().is_empty() {
                    last_stderr = Some(line.trim().to_string());
                }
                // QEMU stops (but does not quit) a guest that KVM cannot run.
                if fatal.is_none() && line.contains("KVM internal error") {
                    let at = Instant::now().checked_sub(FATAL_GRACE).unwrap_or(start);
                    fatal = Some((
                        Fatal {
                            kind: "KVM failure",
                            line: format!("qemu: {} (try --accel tcg)", line.trim()),
                            details: Vec::new(),
                        },
                        at,
                    ));
                }
            }
            Ok(Event::Eof) => eofs += 1,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                eofs = 2;
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let status = match exited {
        Some(s) => s,
        None => {
            if verdict.is_some() && fatal.is_none() {
                eprintln!("vm: warning: the guest did not power off after its verdict; killing qemu");
            }
            let _ = child.kill();
            child.wait().context("waiting for qemu")?
        }
    };
    for p in pumps {
        let _ = p.join();
    }
    let outcome = if let Some((f, _)) = fatal {
        Outcome::Fatal(f)
    } else if timed_out {
        Outcome::Timeout
    } else if let Some((code, _)) = verdict {
        Outcome::Verdict(code)
    } else {
        Outcome::NoVerdict { status, stderr: last_stderr }
    };
    Ok(Report { outcome, init_at, elapsed: start.elapsed() })
}

/// Picks the accelerator: KVM only where a probe boot of this kernel under KVM works
/// (on some hosts /dev/kvm opens fine but guests die with an emulation failure).
fn choose_accel(req: Accel, qemu: &Path, kernel: &Kernel, scratch: &Path) -> Result<Accel> {
    match req {
        Accel::Tcg => return Ok(Accel::Tcg),
        Accel::Kvm => {
            kvm_openable().map_err(|e| anyhow!("--accel kvm: cannot use /dev/kvm: {e}"))?;
            return Ok(Accel::Kvm);
        }
        Accel::Auto => {}
    }
    if let Err(e) = kvm_openable() {
        eprintln!("vm: no usable /dev/kvm ({e}); using TCG");
        return Ok(Accel::Tcg);
    }
    // The answer holds for this host boot and QEMU binary: one failed probe means KVM is
    // broken here; a working one is recorded per kernel.
    let mut h = Sha256::new();
    h.update(fs::read("/proc/sys/kernel/random/boot_id").unwrap_or_default());
    if let Ok(m) = fs::metadata(qemu) {
        use std::os::unix::fs::MetadataExt;
        h.update(format!("{}:{}:{}", qemu.display(), m.len(), m.mtime()));
    }
    let key = hex::encode(h.finalize());
    let cache = kernels::cache_dir().join(format!("kvm-probe-{}", &key[..16]));
    let known = fs::read_to_string(&cache).unwrap_or_default();
    let kernel_id = kernel.vmlinuz.display().to_string();
    for line in known.lines() {
        if let Some(reason) = line.strip_prefix("broken\t") {
            eprintln!("vm: KVM does not work here ({reason}); using TCG");
            return Ok(Accel::Tcg);
        }
        if line.strip_prefix("works\t") == Some(kernel_id.as_str()) {
            return Ok(Accel::Kvm);
        }
    }
    let line = match probe_kvm(qemu, kernel, scratch) {
        Ok(()) => {
            eprintln!("vm: KVM works; using it");
            format!("works\t{kernel_id}")
        }
        Err(e) => {
            eprintln!("vm: KVM does not work here (probe boot of {}: {e:#}); using TCG", kernel.name);
            format!("broken\tprobe boot of {}: {e:#}", kernel.name)
        }
    };
    let _ = fs::write(&cache, format!("{known}{line}\n"));
    Ok(if line.starts_with("works") { Accel::Kvm } else { Accel::Tcg })
}

fn kvm_openable() -> io::Result<()> {
    fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(drop)
}

/// Boots the kernel under KVM with an init that only prints a marker and powers off.
fn probe_kvm(qemu: &Path, kernel: &Kernel, scratch: &Path) -> Result<()> {
    const MARKER: &str = "TRACER-KVM-PROBE-OK";
    let initrd = scratch.join("kvm-probe.cpio");
    fs::write(&initrd, initramfs::probe_initramfs(MARKER)?)?;
    let out_path = scratch.join("kvm-probe.log");
    let out = fs::File::create(&out_path)?;
    eprintln!("vm: probing KVM with a test boot");
    let mut child = Command::new(qemu)
        .args(accel_args(Accel::Kvm))
        .args(["-m", "256", "-smp", "1"])
        .args(["-nographic", "-nodefaults", "-serial", "stdio", "-monitor", "none"])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let start = Instant::now();
    let result = loop {
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        if text.contains(MARKER) {
            break Ok(());
        }
        let failure = ["KVM internal error", "emulation failure", "failed to initialize kvm", "Kernel panic"]
            .iter()
            .find_map(|k| text.find(k).map(|at| text[at..].lines().next().unwrap_or(k)));
        if let Some(reason) = failure {
            break Err(anyhow!("{}", reason.trim()));
        }
        if let Some(status) = child.try_wait()? {
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            break Err(anyhow!("qemu exited ({status}) without booting: {}", last.trim()));
        }
        if start.elapsed() > KVM_PROBE_TIMEOUT {
            break Err(anyhow!("no sign of life within {} s", KVM_PROBE_TIMEOUT.as_secs()));
        }
        thread::sleep(Duration::from_millis(100));
    };
    // Give a working guest a moment to power off by itself, then make sure it is gone.
    let until = Instant::now() + Duration::from_secs(5);
    while result.is_ok() && child.try_wait()?.is_none() && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        vm: VmArgs,
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)), "20000229-010101");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_767_225_599)), "20251231-235959");
    }

    #[test]
    fn arguments() {
        let cli = Cli::try_parse_from([
            "vm",
            "--kernel",
            "6.12",
            "--add",
            "a:/b",
            "--add",
            "c",
            "--timeout",
            "5",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        assert_eq!(cli.vm.kernel, "6.12");
        assert_eq!(cli.vm.add.len(), 2);
        assert_eq!(cli.vm.add[1].dest, "/root/c");
        assert_eq!(cli.vm.timeout, 5);
        assert_eq!(cli.vm.mem, 1024);
        assert_eq!(cli.vm.smp, 2);
        assert_eq!(cli.vm.command, ["sh", "-c", "exit 3"]);
        // COMMAND is required, and only after `--`; bad --add values are refused.
        assert!(Cli::try_parse_from(["vm", "--kernel", "6.12"]).is_err());
        assert!(Cli::try_parse_from(["vm", "--kernel", "6.12", "--add", ":x", "--", "true"]).is_err());
        assert!(Cli::try_parse_from(["vm", "--kernel", "6.12", "--timeout", "x", "--", "true"]).is_err());
    }

    #[test]
    fn drives_escape_commas() {
        assert_eq!(drive_arg(Path::new("/a,b/d.img"), "x"), "file=/a,,b/d.img,format=raw,if=none,id=x,cache=unsafe");
    }
}
