//! `cargo xtask bench ab`: two tracer builds against each other and bpftrace in one VM boot
//! (test/vm/bench-ab.sh): each round runs the jobs of `bench overhead` untraced, under build A,
//! untraced, under build B, untraced, under bpftrace. Under TCG one boot differs from the next
//! more than most kernel-side changes do, so a change is judged by the two builds in the same
//! boot. Prints Markdown (IOPS over untraced, BPF time an I/O, and the programs' ns a run side by
//! side); the figures go into docs/benchmarks.md by hand, with what changed between A and B.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::overhead::{host_tool, Guest};
use super::report::{self, Console, Mode, JOBS};
use crate::workspace_root;

#[derive(clap::Args, Debug)]
pub struct AbBenchArgs {
    /// Build A (the one before the change): a tracer binary.
    #[arg(long, value_name = "PATH", required_unless_present = "from_logs")]
    pub a: Option<PathBuf>,
    /// Build B (the one after).
    #[arg(long, value_name = "PATH", required_unless_present = "from_logs")]
    pub b: Option<PathBuf>,
    /// The kernel to boot (a name from xtask/kernels.toml).
    #[arg(long, default_value = "sid")]
    pub kernel: String,
    /// Rounds (each: A, B and bpftrace, every pass between untraced ones).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Make the tables from recorded console logs instead of booting.
    #[arg(long = "from-log", value_name = "LOG")]
    pub from_logs: Vec<PathBuf>,
}

/// Seconds of fio per run in bench-ab.sh (bench-overhead.sh's first argument there).
const RUNTIME: u32 = 5;
const GUEST_MB: u32 = 3072;

pub fn ab(args: &AbBenchArgs) -> Result<i32> {
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let logs = if args.from_logs.is_empty() {
        let (Some(a), Some(b)) = (&args.a, &args.b) else { bail!("--a and --b name the two tracer binaries") };
        for p in [a, b] {
            if !p.is_file() {
                bail!("{} is not a file (build the tracer first: cargo build --release -p tracer)", p.display());
            }
        }
        vec![boot(args, a, b)?]
    } else {
        args.from_logs.clone()
    };
    for log in &logs {
        let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
        let c = report::parse(&text).with_context(|| format!("{}", log.display()))?;
        println!("{}", tables(&c, log));
    }
    Ok(0)
}

fn boot(args: &AbBenchArgs, a: &Path, b: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    let mut adds = vec![
        root.join("test/vm/bench-overhead.sh").display().to_string(),
        root.join("test/vm/bench-overhead.bt").display().to_string(),
        root.join("test/vm/bench-ab.sh").display().to_string(),
        format!("{}:/root/tracer-a", a.display()),
        format!("{}:/root/tracer-b", b.display()),
    ];
    for tool in ["bpftrace", "bpftool"] {
        let t = host_tool(tool)?;
        adds.push(format!("{}:{}", t.display(), t.display()));
    }
    // Per round: three untraced passes and three traced ones (each with its start, up to 300 s,
    // and a run with statistics on after each traced run); one untraced pass more.
    let jobs = JOBS.len() as u32;
    let timeout = 300 + jobs * (6 * args.rounds + 1) * (RUNTIME + 15) + args.rounds * 3 * (300 + jobs * 20);
    let guest = Guest { kernel: &args.kernel, mem_mb: Some(GUEST_MB), timeout_secs: timeout, adds };
    let (log, host) = guest.boot("bench-ab.sh", &args.rounds.to_string())?;
    eprintln!("bench ab: {}: {:.1} min{}", args.kernel, host.took.as_secs_f64() / 60.0, host.describe());
    Ok(log)
}

const MODES: [(Mode, &str); 3] = [(Mode::BuildA, "A"), (Mode::BuildB, "B"), (Mode::Bpftrace, "bpftrace")];

fn cell(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// The console's tables: per job, IOPS over untraced and BPF µs an I/O of A, B and bpftrace;
/// then per program, A's and B's ns a run on the jobs that pin.
fn tables(c: &Console, log: &Path) -> String {
    let kernel = c.info.get("kernel").map_or("?", String::as_str);
    let mut s = format!("### {kernel}: A against B and bpftrace, one boot\n\n");
    s.push_str("| job | untraced IOPS (median, min-max) | A / untraced | B / untraced | bpftrace / untraced | BPF µs / I/O: A | B | bpftrace |\n|---|---|---|---|---|---|---|---|\n");
    for j in report::jobs(c) {
        let u = j.stat(Mode::Untraced);
        let _ = write!(
            s,
            "| {} | {} ({}-{}) |",
            j.label,
            cell(u.median, |m| format!("{m:.0}")),
            cell(u.min, |m| format!("{m:.0}")),
            cell(u.max, |m| format!("{m:.0}"))
        );
        for (mode, _) in MODES {
            let _ = write!(s, " {} |", cell(j.ratio(mode), |r| format!("{r:.3}")));
        }
        for (mode, _) in MODES {
            let _ = write!(s, " {} |", cell(j.stat(mode).bpf_ns_per_io, |ns| format!("{:.2}", ns / 1000.0)));
        }
        s.push('\n');
    }
    let pins = |job: &str| JOBS.iter().any(|j| j.name == job && !j.collateral);
    let c = &with_targets(c);
    let (a, a_ios) = report::programs(c, Mode::BuildA, pins);
    let (b, b_ios) = report::programs(c, Mode::BuildB, pins);
    let names: BTreeSet<&str> = a.iter().chain(&b).map(|p| p.name.as_str()).collect();
    let mut rows: Vec<(&str, Option<&report::ProgStat>, Option<&report::ProgStat>)> =
        names.into_iter().map(|n| (n, a.iter().find(|p| p.name == n), b.iter().find(|p| p.name == n))).collect();
    rows.sort_by_key(|(_, a, b)| std::cmp::Reverse(a.map_or(0, |p| p.ns).max(b.map_or(0, |p| p.ns))));
    let _ = write!(
        s,
        "\nPrograms over the jobs that pin ({a_ios} I/Os under A, {b_ios} under B):\n\n| program | A ns / run | B ns / run | A runs / I/O | B runs / I/O |\n|---|---|---|---|---|\n"
    );
    for (name, a, b) in rows {
        let _ = writeln!(
            s,
            "| `{name}` | {} | {} | {} | {} |",
            cell(a.map(|p| p.ns_per_run), |v| format!("{v:.0}")),
            cell(b.map(|p| p.ns_per_run), |v| format!("{v:.0}")),
            cell(a.map(|p| p.runs_per_io), |v| format!("{v:.2}")),
            cell(b.map(|p| p.runs_per_io), |v| format!("{v:.2}")),
        );
    }
    s.push_str("\nSessions:");
    s.push_str(&report::session_list(c));
    let _ = write!(s, "\n\nConsole log: `{}`.", log.display());
    s
}

/// The console with each program named as BPF keeps it (15 characters) given the target the
/// same name has elsewhere in the console, where that target is the only one (the guest script
/// does not always resolve it): the same program's runs then add up on one row.
fn with_targets(c: &Console) -> Console {
    let mut out = c.clone();
    for p in out.progs.iter_mut().filter(|p| !p.name.contains(':')) {
        let targets: BTreeSet<&str> = c
            .progs
            .iter()
            .filter_map(|q| q.name.split_once(':').filter(|(short, _)| *short == p.name).map(|_| q.name.as_str()))
            .collect();
        if let [only] = targets.into_iter().collect::<Vec<_>>()[..] {
            p.name = only.to_string();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_builds_and_bpftrace_side_by_side() {
        let log = "BENCH-INFO kernel=k runtime=5\n\
            BENCH-RUN job=randread-libaio-qd32 mode=none round=1 status=0 iops=100.0 ios=500\n\
            BENCH-RUN job=randread-libaio-qd32 mode=a round=1 status=0 iops=40.0 ios=200\n\
            BENCH-STATS job=randread-libaio-qd32 mode=a round=1 status=0 iops=40.0 ios=10\n\
            BENCH-PROG job=randread-libaio-qd32 mode=a round=1 id=1 name=tp_btf_block_rq:block_rq_issue run_ns=20000 run_cnt=10\n\
            BENCH-RUN job=randread-libaio-qd32 mode=b round=1 status=0 iops=50.0 ios=250\n\
            BENCH-STATS job=randread-libaio-qd32 mode=b round=1 status=0 iops=50.0 ios=20\n\
            BENCH-PROG job=randread-libaio-qd32 mode=b round=1 id=2 name=tp_btf_block_rq:block_rq_issue run_ns=20000 run_cnt=10\n\
            BENCH-PROG job=randread-libaio-qd32 mode=b round=2 id=3 name=tp_btf_block_rq run_ns=0 run_cnt=10\n\
            BENCH-RUN job=randread-libaio-qd32 mode=bpftrace round=1 status=0 iops=60.0 ios=300\n\
            BENCH-TRACER round=1 mode=a status=0 lost=0\n\
            BENCH-DONE\n";
        let c = report::parse(log).unwrap();
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        let t = tables(&c, Path::new("x.log"));
        assert!(
            t.contains("| 4k randread libaio QD32 | 100 (100-100) | 0.400 | 0.500 | 0.600 | 2.00 | 1.00 | - |"),
            "{t}"
        );
        assert!(t.contains("| `tp_btf_block_rq:block_rq_issue` | 2000 | 1000 | 1.00 | 1.00 |"), "{t}");
        assert!(t.contains("TRACER round=1 mode=a"), "{t}");
    }
}
