//! `cargo xtask bench profile`: where the CPU goes on a 4 KiB random read, untraced and under
//! the tracer. One VM boot per kernel runs test/vm/bench-profile.sh: bpftrace samples every
//! CPU's kernel stack and command name at 997 Hz while fio runs. Each sample of the workload
//! (fio) is put in one class by its stack: user mode, the kernel's own path, or tracing (the
//! dispatch of programs, their bodies, or what they call). Per-program BPF run times
//! (`bench overhead`) cannot show the dispatch, nor what the tracing does to the rest of the
//! path. Prints Markdown; `--write` puts it into docs/benchmarks.md between the `<!-- bench
//! profile begin -->` and `<!-- bench profile end -->` markers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::overhead::{kernel_parts, DocSection, Guest};
use crate::workspace_root;

const BEGIN: &str = "<!-- bench profile begin -->";
const END: &str = "<!-- bench profile end -->";
/// The sampler's frequency (test/vm/bench-profile.sh).
const HZ: f64 = 997.0;
/// The workload's command name.
const WORKLOAD: &str = "fio";
/// The passes of the guest script, in order.
const MODES: [&str; 4] = ["untraced", "traced", "untraced2", "bpftrace"];

#[derive(clap::Args, Debug)]
pub struct ProfileBenchArgs {
    /// Kernels to boot, one VM each (names from xtask/kernels.toml). Repeatable.
    #[arg(long = "kernel", value_name = "NAME", default_values_t = ["6.12".to_string(), "sid".to_string()])]
    pub kernels: Vec<String>,
    /// Seconds of each fio run.
    #[arg(long, default_value_t = 15)]
    pub runtime: u32,
    /// The tracer binary to profile (default: target/release/tracer as it is; build it first).
    #[arg(long, value_name = "PATH")]
    pub tracer: Option<PathBuf>,
    /// Write the results into docs/benchmarks.md (between the bench profile markers).
    #[arg(long)]
    pub write: bool,
    /// Make the tables from recorded console logs instead of booting.
    #[arg(long = "from-log", value_name = "LOG")]
    pub from_logs: Vec<PathBuf>,
}

/// Where a sample of the workload was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// In user mode (no kernel stack).
    User,
    /// In the kernel, with no tracing frame on the stack.
    Kernel,
    /// In the code that runs programs: trampolines, the recursion guards, RCU around them, the
    /// tracepoints' iterators and `bpf_trace_run`.
    Dispatch,
    /// In a program's own instructions.
    Body,
    /// In a helper or kernel function a program called.
    Called,
}

impl Class {
    const ALL: [Class; 5] = [Class::User, Class::Kernel, Class::Dispatch, Class::Body, Class::Called];

    fn label(self) -> &'static str {
        match self {
            Class::User => "user mode",
            Class::Kernel => "kernel, no tracing frame on the stack",
            Class::Dispatch => {
                "tracing: dispatch (trampolines, recursion guards, RCU, tracepoints' ways into programs)"
            }
            Class::Body => "tracing: programs' own instructions",
            Class::Called => "tracing: helpers and kernel functions the programs call",
        }
    }
}

/// A frame's function, without its offset.
fn function(frame: &str) -> &str {
    frame.rsplit_once('+').map_or(frame, |(f, _)| f)
}

/// Functions that run programs, or run around them (the tracing frames, and what they call to
/// that end).
fn is_dispatch(f: &str) -> bool {
    const DISPATCH: [&str; 9] = [
        "__rcu_read_lock",
        "__rcu_read_unlock",
        "migrate_disable",
        "migrate_enable",
        "perf_trace_buf_alloc",
        "perf_swevent_get_recursion_context",
        "perf_swevent_put_recursion_context",
        "perf_tp_event",
        "bpf_prog_inc_misses_counter",
    ];
    TRACING.iter().any(|t| f.starts_with(t)) || DISPATCH.contains(&f)
}

/// Frames only tracing puts on a stack: trampolines, the raw tracepoints' and the perf
/// tracepoints' (bpftrace's `tracepoint:`) ways into programs.
const TRACING: [&str; 8] = [
    "__bpf_prog_enter",
    "__bpf_prog_exit",
    "bpf_trampoline_",
    "bpf_trace_run",
    "__traceiter_",
    "perf_trace_",
    "trace_call_bpf",
    "perf_tp_event",
];

fn is_program(f: &str) -> bool {
    f.starts_with("bpf_prog_") && f != "bpf_prog_inc_misses_counter"
}

/// A frame only tracing puts on a stack (not RCU's, which the kernel takes everywhere).
fn is_tracing(f: &str) -> bool {
    is_program(f) || TRACING.iter().any(|t| f.starts_with(t))
}

/// The class of a kernel stack, leaf first, by its first tracing frame from the leaf and the
/// frames below it. A trampoline also calls the traced function: below a trampoline, anything
/// but dispatch code is the traced function's own work.
pub fn classify(frames: &[String]) -> Class {
    let names: Vec<&str> = frames.iter().map(|f| function(f)).collect();
    if names.is_empty() {
        return Class::User;
    }
    let Some(i) = names.iter().position(|f| is_tracing(f)) else { return Class::Kernel };
    let only_dispatch_below = names[..i].iter().all(|f| is_dispatch(f));
    match names[i] {
        f if is_program(f) => {
            if i == 0 {
                Class::Body
            } else {
                Class::Called
            }
        }
        _ if only_dispatch_below => Class::Dispatch,
        f if f.starts_with("bpf_trampoline_") => Class::Kernel,
        _ => Class::Called,
    }
}

/// The attached program a tracing stack runs in (its outermost program frame), by name.
fn attached_program(frames: &[String]) -> Option<String> {
    let f = frames.iter().rev().map(|f| function(f)).find(|f| is_program(f))?;
    // bpf_prog_<tag>_<name>
    let rest = f.strip_prefix("bpf_prog_")?;
    Some(rest.split_once('_').map_or(rest, |(_, name)| name).to_string())
}

/// One sampled stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub comm: String,
    pub frames: Vec<String>,
    pub count: u64,
}

/// A parsed console.
#[derive(Debug, Default)]
pub struct Profile {
    pub info: BTreeMap<String, String>,
    /// mode -> (IOPS, I/Os) of its fio run.
    pub runs: BTreeMap<String, (f64, u64)>,
    pub tracer: Option<String>,
    pub samples: BTreeMap<String, Vec<Sample>>,
    pub notes: Vec<String>,
    pub done: bool,
}

fn fields(rest: &str) -> BTreeMap<String, String> {
    rest.split_whitespace().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Parses the guest script's console: its PROF lines, and the `@s[comm, stack]: n` entries
/// of each pass.
pub fn parse(console: &str) -> Profile {
    let mut p = Profile::default();
    let mut open: Option<(String, Sample)> = None;
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("PROF-INFO ") {
            p.info = fields(rest);
        } else if let Some(rest) = line.strip_prefix("PROF-RUN ") {
            let f = fields(rest);
            let run = (f.get("iops").and_then(|v| v.parse().ok()), f.get("ios").and_then(|v| v.parse().ok()));
            if let (Some(mode), (Some(iops), Some(ios)), Some("0")) =
                (f.get("mode"), run, f.get("status").map(String::as_str))
            {
                p.runs.insert(mode.clone(), (iops, ios));
            } else {
                p.notes.push(format!("fio failed or unreadable: {rest}"));
            }
        } else if let Some(rest) = line.strip_prefix("PROF-TRACER ") {
            p.tracer = Some(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("PROF-NOTE ").or_else(|| line.strip_prefix("BENCH-NOTE ")) {
            p.notes.push(rest.to_string());
        } else if line == "PROF-DONE" {
            p.done = true;
        } else if let Some((mode, rest)) = line.strip_prefix("PROF ").and_then(|r| r.split_once(' ')) {
            entry_line(&mut p, &mut open, mode, rest.trim());
        }
    }
    p
}

/// One line of a pass's map: an entry's start (`@s[comm, ` or `@s[comm, ]: n`), a frame, or
/// its end (`]: n`).
fn entry_line(p: &mut Profile, open: &mut Option<(String, Sample)>, mode: &str, rest: &str) {
    if let Some(key) = rest.strip_prefix("@s[") {
        if let Some((comm, count)) = key.rsplit_once(", ]: ") {
            let sample = Sample { comm: comm.to_string(), frames: Vec::new(), count: count.parse().unwrap_or(0) };
            p.samples.entry(mode.to_string()).or_default().push(sample);
        } else {
            let comm = key.trim_end().trim_end_matches(',').to_string();
            *open = Some((mode.to_string(), Sample { comm, frames: Vec::new(), count: 0 }));
        }
    } else if let Some(count) = rest.strip_prefix("]: ") {
        if let Some((m, mut sample)) = open.take() {
            sample.count = count.parse().unwrap_or(0);
            p.samples.entry(m).or_default().push(sample);
        }
    } else if let Some((_, sample)) = open.as_mut() {
        if !rest.is_empty() {
            sample.frames.push(rest.to_string());
        }
    }
}

/// µs of CPU per I/O for `samples` samples over a run of `ios` I/Os.
fn us_per_io(samples: u64, ios: u64) -> f64 {
    samples as f64 / HZ * 1e6 / ios.max(1) as f64
}

/// One kernel's tables.
pub fn kernel_part(p: &Profile, log: &str) -> String {
    let info = |k: &str| p.info.get(k).map_or("?", String::as_str);
    let mut s = format!("### {}\n\n", info("kernel"));
    let modes: Vec<&str> = MODES.iter().copied().filter(|m| p.runs.contains_key(*m)).collect();
    let _ = write!(s, "| µs of CPU per I/O (TCG) |");
    for m in &modes {
        let _ = write!(s, " {m} |");
    }
    let _ = write!(s, "\n|---|{}\n| IOPS |", "---|".repeat(modes.len()));
    for m in &modes {
        let _ = write!(s, " {:.0} |", p.runs[*m].0);
    }
    let mut by_class: BTreeMap<(&str, Class), u64> = BTreeMap::new();
    let mut tracer_cpu: BTreeMap<&str, u64> = BTreeMap::new();
    for m in &modes {
        for sample in p.samples.get(*m).into_iter().flatten() {
            if sample.comm == WORKLOAD {
                *by_class.entry((m, classify(&sample.frames))).or_default() += sample.count;
            } else if sample.comm.starts_with("tracer") {
                *tracer_cpu.entry(m).or_default() += sample.count;
            }
        }
    }
    let row = |s: &mut String, label: &str, f: &dyn Fn(&str) -> u64| {
        let _ = write!(s, "\n| {label} |");
        for m in &modes {
            let _ = write!(s, " {:.2} |", us_per_io(f(m), p.runs[*m].1));
        }
    };
    row(&mut s, &format!("**{WORKLOAD}, all**"), &|m| {
        Class::ALL.iter().map(|c| by_class.get(&(m, *c)).copied().unwrap_or(0)).sum()
    });
    for c in Class::ALL {
        row(&mut s, &format!("{WORKLOAD}: {}", c.label()), &|m| by_class.get(&(m, c)).copied().unwrap_or(0));
    }
    row(&mut s, "the tracer's own process (its reader and engine; traced pass)", &|m| {
        tracer_cpu.get(m).copied().unwrap_or(0)
    });
    s.push_str("\n\n");
    s.push_str(&programs_table(p));
    if let Some(t) = &p.tracer {
        let _ = write!(s, "\nTracer session: `{t}`.");
    }
    for n in &p.notes {
        let _ = write!(s, "\nNote: {n}");
    }
    let _ = writeln!(s, "\n\nConsole log: `target/vm/logs/{log}`.");
    s
}

/// The traced pass's tracing samples (every command) by attached program, and what the
/// programs call, in µs per I/O.
fn programs_table(p: &Profile) -> String {
    let Some(&(_, ios)) = p.runs.get("traced") else { return String::new() };
    let mut programs: BTreeMap<String, u64> = BTreeMap::new();
    let mut called: BTreeMap<String, u64> = BTreeMap::new();
    for sample in p.samples.get("traced").into_iter().flatten() {
        let class = classify(&sample.frames);
        if !matches!(class, Class::Dispatch | Class::Body | Class::Called) {
            continue;
        }
        let name = attached_program(&sample.frames).unwrap_or_else(|| "(dispatch outside a program)".into());
        *programs.entry(name).or_default() += sample.count;
        if class == Class::Called {
            *called.entry(function(&sample.frames[0]).to_string()).or_default() += sample.count;
        }
    }
    let top = |m: BTreeMap<String, u64>, n: usize| {
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    };
    let mut s = String::from(
        "Traced pass, tracing samples of every command by the program they ran in (its body, what it called, its \
         dispatch from inside it), and what the programs called:\n\n| program (BPF keeps 15 characters) | µs per I/O |\n|---|---|\n",
    );
    for (name, n) in top(programs, 12) {
        let _ = writeln!(s, "| `{name}` | {:.2} |", us_per_io(n, ios));
    }
    s.push_str("\n| called by the programs | µs per I/O |\n|---|---|\n");
    for (name, n) in top(called, 10) {
        let _ = writeln!(s, "| `{name}` | {:.2} |", us_per_io(n, ios));
    }
    s
}

pub fn profile(args: &ProfileBenchArgs) -> Result<i32> {
    if args.runtime == 0 {
        bail!("--runtime must be at least 1");
    }
    let (parts, label) = kernel_parts(
        &args.kernels,
        &args.from_logs,
        (args.tracer.as_deref(), "bpftrace"),
        |kernel, tracer, bpftrace| boot(kernel, args, tracer, bpftrace),
        kernel_from_log,
    )?;
    let section = DocSection {
        begin: BEGIN,
        end: END,
        title: "Where the CPU goes on a 4 KiB read (`cargo xtask bench profile`)",
        method: format!(
            "One VM boot per kernel runs `test/vm/bench-profile.sh`: fio 4 KiB randread libaio QD32 on \
             `/dev/nullb0`, {} s, untraced, under `tracer run --format json`, untraced again, and under bpftrace \
             with the overhead bench's script (`test/vm/bench-overhead.bt`), each under a \
             bpftrace sampler of every CPU's kernel stack (12 frames) and command name at {HZ} Hz (cpu-clock). \
             fio's samples are classed by their stack (xtask/src/bench/profile.rs, `classify`) and given as µs \
             of CPU per I/O: samples / {HZ} over the run's I/Os. Under TCG a timer interrupt is taken only \
             between translated blocks and where interrupts are enabled again, so samples lean towards those \
             places (the end of an interrupts-off section gets the samples of all of it); classes are robust to \
             that, single functions less so.",
            args.runtime,
        ),
        bench: "profile",
    };
    section.emit(&args.kernels, &label, &parts, args.write)?;
    Ok(0)
}

fn kernel_from_log(log: &Path) -> Result<String> {
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let p = parse(&text);
    if !p.done {
        bail!("{}: the guest script did not finish (no PROF-DONE)", log.display());
    }
    let name = log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(kernel_part(&p, &name))
}

/// Boots `kernel` with the guest script; the console log.
fn boot(kernel: &str, args: &ProfileBenchArgs, tracer: &Path, bpftrace: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    // Four passes (bpftrace compiles and attaches in up to 300 s, exits in up to 120; the last
    // under a second bpftrace), the tracer's load (up to 900 s).
    let timeout = 300 + 5 * (args.runtime + 450) + 900;
    let adds = vec![
        root.join("test/vm/bench-profile.sh").display().to_string(),
        root.join("test/vm/bench-overhead.sh").display().to_string(),
        root.join("test/vm/bench-overhead.bt").display().to_string(),
        format!("{}:/root/tracer-bench", tracer.display()),
        format!("{}:{}", bpftrace.display(), bpftrace.display()),
    ];
    let guest = Guest { kernel, mem_mb: Some(3072), timeout_secs: timeout, adds };
    let (log, host) = guest.boot("bench-profile.sh", &format!("{} /root/tracer-bench", args.runtime))?;
    eprintln!("bench: {kernel}: {:.1} min{}; log {}", host.took.as_secs_f64() / 60.0, host.describe(), log.display());
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stacks_are_classed_by_their_leaf_and_their_first_tracing_frame() {
        assert_eq!(classify(&[]), Class::User);
        assert_eq!(classify(&frames(&["blk_mq_submit_bio+4", "submit_bio+9"])), Class::Kernel);
        // The traced function, called by its trampoline: the kernel's own work.
        assert_eq!(
            classify(&frames(&[
                "gup_fast_fallback+1011",
                "bpf_trampoline_6442548615+84",
                "iov_iter_extract_pages+296"
            ])),
            Class::Kernel
        );
        assert_eq!(classify(&frames(&["bpf_trampoline_6442548615+84", "iov_iter_extract_pages+296"])), Class::Dispatch);
        assert_eq!(
            classify(&frames(&["__rcu_read_lock+0", "__bpf_prog_enter_recur+20", "bpf_trampoline_1+9"])),
            Class::Dispatch
        );
        // A perf tracepoint's way into a program (bpftrace's `tracepoint:` probes).
        assert_eq!(
            classify(&frames(&["perf_trace_buf_alloc+9", "perf_trace_block_rq+80", "trace_block_rq_issue+5"])),
            Class::Dispatch
        );
        assert_eq!(classify(&frames(&["ktime_get+3", "perf_tp_event+20", "perf_trace_block_rq+80"])), Class::Called);
        // RCU is taken everywhere: without a tracing frame it is the kernel's.
        assert_eq!(classify(&frames(&["__rcu_read_lock+0", "aio_read+7"])), Class::Kernel);
        assert_eq!(
            classify(&frames(&["bpf_prog_62f0517ee3d81067_F+78", "bpf_prog_5bfd2c1f177d2e9d_fexit_pin_user_+2173"])),
            Class::Body
        );
        assert_eq!(
            classify(&frames(&[
                "__pi_memcpy+14",
                "bpf_ringbuf_output+65",
                "bpf_prog_1acb938cc3bb1625_F+5013",
                "bpf_prog_5bfd2c1f177d2e9d_fexit_pin_user_+2173",
                "bpf_trampoline_6442548615+135",
            ])),
            Class::Called
        );
        // A kernel function a tracepoint program calls, below bpf_trace_run.
        assert_eq!(
            classify(&frames(&["ktime_get+3", "bpf_trace_run1+300", "__traceiter_block_rq_issue+56"])),
            Class::Called
        );
    }

    #[test]
    fn notes_of_the_script_and_of_the_functions_it_borrows() {
        let p = parse("PROF-NOTE traced: bpftrace did not start\nBENCH-NOTE bpftrace: f is not in this kernel\n");
        assert_eq!(p.notes, ["traced: bpftrace did not start", "bpftrace: f is not in this kernel"]);
    }

    #[test]
    fn a_console_gives_runs_and_samples_per_pass() {
        let console = "PROF-INFO kernel=k cpus=2 runtime=1\n\
            PROF-RUN mode=untraced status=0 iops=1000.0 ios=997\n\
            PROF untraced @s[fio, \n\
            PROF untraced     blk_mq_submit_bio+4\n\
            PROF untraced     submit_bio+9\n\
            PROF untraced ]: 5\n\
            PROF untraced @s[fio, ]: 3\n\
            PROF-RUN mode=traced status=0 iops=500.0 ios=997\n\
            PROF traced @s[fio, \n\
            PROF traced     bpf_prog_0bae5062941f21c9_fentry_unpin_us+20\n\
            PROF traced     bpf_trampoline_6442565577+87\n\
            PROF traced ]: 4\n\
            PROF traced @s[tracer-bench, ]: 2\n\
            PROF-TRACER status=0 pinned=10 unpinned=10 lost=0\n\
            PROF-DONE\n";
        let p = parse(console);
        assert!(p.done && p.notes.is_empty(), "{:?}", p.notes);
        assert_eq!(p.runs["traced"], (500.0, 997));
        assert_eq!(p.samples["untraced"].len(), 2);
        assert_eq!(p.samples["untraced"][0].frames, frames(&["blk_mq_submit_bio+4", "submit_bio+9"]));
        let part = kernel_part(&p, "log");
        // 8 samples of fio at 997 Hz (8.024 ms) over 997 I/Os: 8.05 µs per I/O.
        assert!(part.contains("| **fio, all** | 8.05 | 4.02 |"), "{part}");
        assert!(part.contains("| fio: user mode | 3.02 | 0.00 |"), "{part}");
        assert!(part.contains("| fio: kernel, no tracing frame on the stack | 5.03 | 0.00 |"), "{part}");
        assert!(part.contains("| fio: tracing: programs' own instructions | 0.00 | 4.02 |"), "{part}");
        assert!(
            part.contains("| the tracer's own process (its reader and engine; traced pass) | 0.00 | 2.01 |"),
            "{part}"
        );
        assert!(part.contains("| `fentry_unpin_us` | 4.02 |"), "{part}");
    }
}
