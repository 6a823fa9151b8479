//! `cargo xtask bench ablation`: what each part of the tracer's page records costs. One VM
//! boot per kernel runs test/vm/bench-ablation.sh: the tracer once as it is and once per part
//! left out (`TRACER_BENCH_SKIP`, tracer_common::bench_skip), each pass between untraced
//! ones, with the BPF run time of every program. Prints Markdown; `--write` puts it into
//! docs/benchmarks.md between the `<!-- bench ablation begin -->` and `<!-- bench ablation
//! end -->` markers.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tracer_common::bench_skip;

use super::overhead::{kernel_parts, DocSection, Guest};
use super::report::{self, Console, Mode, JOBS};
use crate::workspace_root;

const BEGIN: &str = "<!-- bench ablation begin -->";
const END: &str = "<!-- bench ablation end -->";
/// The jobs measured: the 4 KiB read (one pin and one page per I/O) and the 64 KiB one (16
/// pages per I/O, 16 unpins).
const ABLATION_JOBS: [&str; 2] = ["randread-libaio-qd32", "read64k-libaio-qd8"];
/// The programs whose run time the table shows, by the start of their name (BPF keeps 15
/// characters; the fentry and fexit programs' targets are not always resolved by the script).
const SHOWN: [(&str, &str); 3] = [
    ("fexit_pin_user_", "pin_user_pages*"),
    ("fentry_unpin_us", "unpin_user_*"),
    ("fentry___bio_re", "__bio_release_pages"),
];

#[derive(clap::Args, Debug)]
pub struct AblationBenchArgs {
    /// Kernels to boot, one VM each (names from xtask/kernels.toml). Repeatable.
    #[arg(long = "kernel", value_name = "NAME", default_values_t = ["6.12".to_string()])]
    pub kernels: Vec<String>,
    /// Seconds per fio run.
    #[arg(long, default_value_t = 5)]
    pub runtime: u32,
    /// Rounds (each: the tracer as it is, then without each part, every pass after an
    /// untraced one).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// The tracer binary to measure (default: target/release/tracer as it is; build it first).
    #[arg(long, value_name = "PATH")]
    pub tracer: Option<PathBuf>,
    /// Write the results into docs/benchmarks.md (between the bench ablation markers).
    #[arg(long)]
    pub write: bool,
    /// Make the tables from recorded console logs instead of booting.
    #[arg(long = "from-log", value_name = "LOG")]
    pub from_logs: Vec<PathBuf>,
}

pub fn ablation(args: &AblationBenchArgs) -> Result<i32> {
    if args.runtime == 0 || args.rounds == 0 {
        bail!("--runtime and --rounds must be at least 1");
    }
    let (parts, label) = kernel_parts(
        &args.kernels,
        &args.from_logs,
        (args.tracer.as_deref(), "bpftool"),
        |kernel, tracer, bpftool| boot(kernel, args, tracer, bpftool),
        kernel_part,
    )?;
    let section = DocSection {
        begin: BEGIN,
        end: END,
        title: "What each part of a page record costs (`cargo xtask bench ablation`)",
        method: "One VM boot per kernel runs `test/vm/bench-ablation.sh`: the tracer (`tracer run --format \
                 json`) as it is, then once per part of its page records left out (`TRACER_BENCH_SKIP=PART`, a \
                 global the loader patches: `owner` the pid, cgroup and command name; `stack` the kernel stack; \
                 `checks` a learned path's checks of the stack, taken as holding; `frames` the copy of its frames \
                 into the record; `pages` the page list and each page's folio; `output` the copy into the ring buffer; `record` \
                 all of it, the program only counts and runs its chain), each pass after an untraced one, on the \
                 jobs of `cargo xtask bench overhead` that pin (4 KiB randread libaio QD32, 64 KiB read libaio \
                 QD8). IOPS with BPF statistics off; the programs' ns per run from a shorter run with them on \
                 after each. Only page records (pins, unpins, put_page) have the switch: bio records and latency \
                 programs run as they are. A ledger without pages or output does not add up: these runs measure, \
                 they do not trace."
            .to_string(),
        bench: "ablation",
    };
    section.emit(&args.kernels, &label, &parts, args.write)?;
    Ok(0)
}

/// Boots `kernel` with the guest script; the console log.
fn boot(kernel: &str, args: &AblationBenchArgs, tracer: &Path, bpftool: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    // Per round: six tracer passes (each with its start, up to 300 s) and six untraced ones, two
    // jobs each, every traced run followed by one with statistics on; one untraced pass more.
    let runs = ABLATION_JOBS.len() as u32 * (12 * args.rounds + 1);
    let timeout = 300 + runs * (args.runtime + 15) + 6 * args.rounds * (300 + 2 * (args.runtime / 2 + 15));
    let adds = vec![
        root.join("test/vm/bench-ablation.sh").display().to_string(),
        root.join("test/vm/bench-overhead.sh").display().to_string(),
        format!("{}:/root/tracer-bench", tracer.display()),
        format!("{}:{}", bpftool.display(), bpftool.display()),
    ];
    let guest = Guest { kernel, mem_mb: None, timeout_secs: timeout, adds };
    let script_args = format!("{} {} /root/tracer-bench {}", args.runtime, args.rounds, ABLATION_JOBS.join(" "));
    let (log, host) = guest.boot("bench-ablation.sh", &script_args)?;
    eprintln!("bench: {kernel}: {:.1} min{}; log {}", host.took.as_secs_f64() / 60.0, host.describe(), log.display());
    Ok(log)
}

/// The modes of the console in the order the script ran them: the tracer as it is first.
fn modes(c: &Console) -> Vec<Mode> {
    let mut modes: Vec<Mode> = vec![Mode::Tracer];
    for r in &c.runs {
        if matches!(r.mode, Mode::Without(_)) && !modes.contains(&r.mode) {
            modes.push(r.mode);
        }
    }
    modes
}

fn mode_label(mode: Mode) -> String {
    match mode {
        Mode::Without(mask) => {
            let names: Vec<&str> = bench_skip::PARTS.iter().filter(|(_, b)| mask & b != 0).map(|(n, _)| *n).collect();
            format!("without {}", names.join(", "))
        }
        _ => "as it is".to_string(),
    }
}

/// ns per run of the programs whose name starts with `prefix`, in `mode` during `job`.
fn ns_per_run(c: &Console, job: &str, mode: Mode, prefix: &str) -> Option<f64> {
    let (runs, ns) = c
        .progs
        .iter()
        .filter(|p| p.job == job && p.mode == mode && p.name.starts_with(prefix))
        .fold((0u64, 0u64), |(r, n), p| (r + p.run_cnt, n + p.run_ns));
    (runs > 0).then(|| ns as f64 / runs as f64)
}

/// One kernel's table: per job and mode, the IOPS ratio, BPF per I/O and the shown programs.
fn table(c: &Console) -> String {
    let mut t = String::from("| job | tracer | tracer / untraced | BPF µs / I/O |");
    for (_, label) in SHOWN {
        let _ = write!(t, " `{label}` ns / run |");
    }
    t.push_str("\n|---|---|---|---|");
    t.push_str(&"---|".repeat(SHOWN.len()));
    t.push('\n');
    let untraced = |job: &str| report::stat(c, job, Mode::Untraced).median;
    for job in ABLATION_JOBS {
        let label = JOBS.iter().find(|j| j.name == job).map_or(job, |j| j.label);
        for mode in modes(c) {
            let st = report::stat(c, job, mode);
            let ratio = match (st.median, untraced(job)) {
                (Some(m), Some(u)) if u > 0.0 => format!("{:.3}", m / u),
                _ => "-".into(),
            };
            let bpf = st.bpf_ns_per_io.map_or("-".into(), |ns| format!("{:.1}", ns / 1000.0));
            let _ = write!(t, "| {label} | {} | {ratio} | {bpf} |", mode_label(mode));
            for (prefix, _) in SHOWN {
                let cell = ns_per_run(c, job, mode, prefix).map_or("-".into(), |ns| format!("{ns:.0}"));
                let _ = write!(t, " {cell} |");
            }
            t.push('\n');
        }
    }
    t
}

fn kernel_part(log: &Path) -> Result<String> {
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let c = report::parse(&text).with_context(|| format!("{}", log.display()))?;
    let info = |k: &str| c.info.get(k).map_or("?", String::as_str);
    let mut s = format!(
        "### {}\n\n{} round(s) of {} s runs: each traced figure is the median of that many runs, the untraced one of all \
         untraced runs of the job; programs' ns per run from the runs with statistics on ({} s each).\n\n",
        info("kernel"),
        info("rounds"),
        info("runtime"),
        info("stats_runtime")
    );
    s.push_str(&table(&c));
    s.push_str("\nSessions:");
    s.push_str(&report::session_list(&c));
    let name = log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let _ = writeln!(s, "\n\nConsole log: `target/vm/logs/{name}`.");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_per_job_and_part_left_out() {
        let log = "BENCH-INFO kernel=k runtime=1\n\
            BENCH-RUN job=randread-libaio-qd32 mode=none round=1 status=0 iops=100.0 ios=100\n\
            BENCH-RUN job=randread-libaio-qd32 mode=tracer round=1 status=0 iops=25.0 ios=25\n\
            BENCH-STATS job=randread-libaio-qd32 mode=tracer round=1 status=0 iops=20.0 ios=10\n\
            BENCH-PROG job=randread-libaio-qd32 mode=tracer round=1 id=1 name=fexit_pin_user_ run_ns=90000 run_cnt=10\n\
            BENCH-RUN job=randread-libaio-qd32 mode=tracer-stack round=1 status=0 iops=40.0 ios=40\n\
            BENCH-STATS job=randread-libaio-qd32 mode=tracer-stack round=1 status=0 iops=30.0 ios=10\n\
            BENCH-PROG job=randread-libaio-qd32 mode=tracer-stack round=1 id=2 name=fexit_pin_user_:pin_user_pages_fast run_ns=30000 run_cnt=10\n\
            BENCH-DONE\n";
        let c = report::parse(log).unwrap();
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        let t = table(&c);
        assert!(t.contains("| 4k randread libaio QD32 | as it is | 0.250 | 9.0 | 9000 | - | - |"), "{t}");
        assert!(t.contains("| 4k randread libaio QD32 | without stack | 0.400 | 3.0 | 3000 | - | - |"), "{t}");
    }
}
