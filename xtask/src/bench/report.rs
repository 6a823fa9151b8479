//! What test/vm/bench-overhead.sh measured: its console lines parsed, the median IOPS of each
//! mode per job, the ratios to the untraced runs, and the BPF run time per program, as
//! Markdown tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thiserror::Error;

/// How a fio run was traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Untraced,
    Tracer,
    Bpftrace,
    /// Empty programs on the tracer's attach points (test/vm/bench-floor.bt).
    Floor,
    /// As many empty programs on each place as the tracer had there in the boot (bench-floor.bt
    /// with each place's program repeated: test/vm/bench-overhead.sh, chains_script).
    Chains,
    /// The tracer with parts of its page records left out (test/vm/bench-ablation.sh: a mask
    /// of tracer_common::bench_skip).
    Without(u64),
    /// Two tracer builds in one boot (test/vm/bench-ab.sh): the one before a change, the one
    /// after.
    BuildA,
    BuildB,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "none" => Some(Mode::Untraced),
            "tracer" => Some(Mode::Tracer),
            "bpftrace" => Some(Mode::Bpftrace),
            "floor" => Some(Mode::Floor),
            "chains" => Some(Mode::Chains),
            "a" => Some(Mode::BuildA),
            "b" => Some(Mode::BuildB),
            _ => s.strip_prefix("tracer-").and_then(|p| tracer_common::bench_skip::parse(p).ok()).map(Mode::Without),
        }
    }
}

/// A fio job of the guest script.
pub struct JobSpec {
    pub name: &'static str,
    pub label: &'static str,
    /// Pins nothing: the tracer's cost on I/O it has nothing to record about.
    pub collateral: bool,
}

/// The jobs of test/vm/bench-overhead.sh, in its order.
pub const JOBS: [JobSpec; 6] = [
    JobSpec { name: "randread-libaio-qd32", label: "4k randread libaio QD32", collateral: false },
    JobSpec { name: "randread-psync-qd1", label: "4k randread psync QD1", collateral: false },
    JobSpec { name: "read64k-libaio-qd8", label: "64k seq read libaio QD8", collateral: false },
    JobSpec { name: "randwrite-uring-fixed-qd32", label: "4k randwrite io_uring QD32 fixedbufs", collateral: false },
    JobSpec { name: "syscall-zero-512", label: "512 B psync reads of /dev/zero (syscall loop)", collateral: true },
    JobSpec { name: "tmpfs-write-4k", label: "4k buffered psync writes, tmpfs", collateral: true },
];

/// Targets stated in issue A (not checked anywhere, only printed beside the figures).
pub const TARGET_IO: f64 = 0.90;
pub const GOAL_IO: f64 = 0.97;
pub const TARGET_COLLATERAL: f64 = 0.99;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("no BENCH-INFO line: the guest script did not start")]
    NoInfo,
    #[error("no BENCH-DONE line: the guest script did not finish")]
    Unfinished,
}

/// One fio run.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub job: String,
    pub mode: Mode,
    pub round: u32,
    pub ok: bool,
    pub iops: f64,
    pub ios: u64,
}

/// What one BPF program ran during one fio run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgRun {
    pub job: String,
    pub mode: Mode,
    pub name: String,
    pub run_ns: u64,
    pub run_cnt: u64,
}

/// A parsed console.
#[derive(Clone, Debug, Default)]
pub struct Console {
    /// The fields of the BENCH-INFO line (kernel, cpus, mem_kb, runtime, rounds, versions).
    pub info: BTreeMap<String, String>,
    pub runs: Vec<Run>,
    /// BENCH-STATS lines: the fio runs with BPF statistics on, which the BENCH-PROG lines
    /// measure (older logs have none: their BENCH-PROG lines measure the BENCH-RUN runs).
    pub stats_runs: Vec<Run>,
    pub progs: Vec<ProgRun>,
    /// BENCH-TRACER, BENCH-BT, BENCH-FLOOR and BENCH-CHAINS lines: how each traced session ended.
    pub sessions: Vec<String>,
    /// BENCH-NOTE lines, and lines that could not be parsed.
    pub notes: Vec<String>,
    /// The accelerator the harness used (from the log's header).
    pub accel: Option<String>,
}

/// `k=v` words of a line.
fn fields(rest: &str) -> BTreeMap<&str, &str> {
    rest.split_whitespace().filter_map(|w| w.split_once('=')).collect()
}

fn parse_run(rest: &str) -> Option<Run> {
    let f = fields(rest);
    Some(Run {
        job: f.get("job")?.to_string(),
        mode: Mode::parse(f.get("mode")?)?,
        round: f.get("round")?.parse().ok()?,
        ok: *f.get("status")? == "0",
        iops: f.get("iops")?.parse().ok()?,
        ios: f.get("ios")?.parse().ok()?,
    })
}

fn parse_prog(rest: &str) -> Option<ProgRun> {
    let f = fields(rest);
    Some(ProgRun {
        job: f.get("job")?.to_string(),
        mode: Mode::parse(f.get("mode")?)?,
        name: f.get("name")?.to_string(),
        run_ns: f.get("run_ns")?.parse().ok()?,
        run_cnt: f.get("run_cnt")?.parse().ok()?,
    })
}

/// Parses a console log of bench-overhead.sh. Lines a kernel message cut into are skipped
/// and listed in the notes.
pub fn parse(console: &str) -> Result<Console, ParseError> {
    let mut c = Console::default();
    let mut done = false;
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("# cargo xtask vm: ") {
            c.accel = rest.rsplit_once("accel ").map(|(_, a)| a.trim().to_string());
        }
        let Some((_, tail)) = line.split_once("BENCH-") else { continue };
        let (tag, rest) = tail.split_once(' ').unwrap_or((tail, ""));
        let parsed = match tag {
            "INFO" => {
                c.info = fields(rest).into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                true
            }
            "RUN" => parse_run(rest).map(|r| c.runs.push(r)).is_some(),
            "PROG" => parse_prog(rest).map(|p| c.progs.push(p)).is_some(),
            "STATS" => match parse_run(rest) {
                Some(r) => {
                    c.stats_runs.push(r);
                    true
                }
                None => false,
            },
            "TRACER" | "BT" | "FLOOR" | "CHAINS" => {
                c.sessions.push(format!("{tag} {rest}"));
                true
            }
            "NOTE" => {
                c.notes.push(rest.to_string());
                true
            }
            "DONE" => {
                done = true;
                true
            }
            _ => false,
        };
        if !parsed {
            c.notes.push(format!("unparsed console line: {line}"));
        }
    }
    if c.info.is_empty() {
        return Err(ParseError::NoInfo);
    }
    if !done {
        return Err(ParseError::Unfinished);
    }
    Ok(c)
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

/// The IOPS of one job in one mode, over every round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stat {
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Successful runs.
    pub n: usize,
    pub failed: usize,
    /// BPF run time per I/O (all programs that ran, over the successful and failed runs).
    pub bpf_ns_per_io: Option<f64>,
}

/// Per job: every mode.
#[derive(Clone, Debug)]
pub struct JobResult {
    pub label: String,
    pub collateral: bool,
    pub modes: BTreeMap<Mode, Stat>,
}

impl JobResult {
    pub fn stat(&self, mode: Mode) -> Stat {
        self.modes.get(&mode).cloned().unwrap_or_default()
    }

    /// Median IOPS of `mode` over the median untraced IOPS.
    pub fn ratio(&self, mode: Mode) -> Option<f64> {
        let base = self.stat(Mode::Untraced).median?;
        let traced = self.stat(mode).median?;
        (base > 0.0).then(|| traced / base)
    }
}

/// The fio runs the BENCH-PROG lines measured: the BENCH-STATS runs when the log has them,
/// else (older logs, statistics on during the measured runs) the BENCH-RUN runs.
fn measured_runs(console: &Console) -> &[Run] {
    if console.stats_runs.is_empty() {
        &console.runs
    } else {
        &console.stats_runs
    }
}

pub fn stat(console: &Console, job: &str, mode: Mode) -> Stat {
    let runs: Vec<&Run> = console.runs.iter().filter(|r| r.job == job && r.mode == mode).collect();
    let iops: Vec<f64> = runs.iter().filter(|r| r.ok).map(|r| r.iops).collect();
    let ios: u64 = measured_runs(console).iter().filter(|r| r.job == job && r.mode == mode).map(|r| r.ios).sum();
    let ns: u64 = console.progs.iter().filter(|p| p.job == job && p.mode == mode).map(|p| p.run_ns).sum();
    Stat {
        median: median(&iops),
        min: iops.iter().copied().reduce(f64::min),
        max: iops.iter().copied().reduce(f64::max),
        n: iops.len(),
        failed: runs.len() - iops.len(),
        bpf_ns_per_io: (mode != Mode::Untraced && ios > 0).then(|| ns as f64 / ios as f64),
    }
}

/// Every job of [`JOBS`] the console has runs of, in that order, then any other job.
pub fn jobs(console: &Console) -> Vec<JobResult> {
    let mut names: Vec<&str> = JOBS.iter().map(|j| j.name).collect();
    for r in &console.runs {
        if !names.contains(&r.job.as_str()) {
            names.push(&r.job);
        }
    }
    names
        .into_iter()
        .filter(|n| console.runs.iter().any(|r| r.job == *n))
        .map(|name| {
            let spec = JOBS.iter().find(|j| j.name == name);
            let modes =
                [Mode::Untraced, Mode::Tracer, Mode::Bpftrace, Mode::Floor, Mode::Chains, Mode::BuildA, Mode::BuildB]
                    .into_iter()
                    .map(|m| (m, stat(console, name, m)))
                    .collect();
            JobResult {
                label: spec.map_or(name, |s| s.label).to_string(),
                collateral: spec.is_some_and(|s| s.collateral),
                modes,
            }
        })
        .collect()
}

/// One BPF program's run time over a set of fio runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgStat {
    pub name: String,
    pub runs: u64,
    pub ns: u64,
    pub runs_per_io: f64,
    pub ns_per_run: f64,
    /// Of the run time of every program over the same runs.
    pub share: f64,
}

/// The programs that ran in `mode` during the jobs `pick` selects, by total run time
/// (programs of one name, e.g. reloaded each round, added up), with the I/Os of those runs.
pub fn programs(console: &Console, mode: Mode, pick: impl Fn(&str) -> bool) -> (Vec<ProgStat>, u64) {
    let ios: u64 = measured_runs(console).iter().filter(|r| r.mode == mode && pick(&r.job)).map(|r| r.ios).sum();
    let mut by_name: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for p in console.progs.iter().filter(|p| p.mode == mode && pick(&p.job)) {
        let e = by_name.entry(&p.name).or_default();
        e.0 += p.run_cnt;
        e.1 += p.run_ns;
    }
    let total: u64 = by_name.values().map(|(_, ns)| ns).sum();
    let mut out: Vec<ProgStat> = by_name
        .into_iter()
        .map(|(name, (runs, ns))| ProgStat {
            name: name.to_string(),
            runs,
            ns,
            runs_per_io: if ios > 0 { runs as f64 / ios as f64 } else { f64::NAN },
            ns_per_run: if runs > 0 { ns as f64 / runs as f64 } else { f64::NAN },
            share: if total > 0 { ns as f64 / total as f64 } else { f64::NAN },
        })
        .collect();
    out.sort_by(|a, b| b.ns.cmp(&a.ns).then_with(|| a.name.cmp(&b.name)));
    (out, ios)
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn iops_cell(s: &Stat) -> String {
    let failed = if s.failed > 0 { format!(", {} failed", s.failed) } else { String::new() };
    opt(s.median, |m| format!("{m:.0} ({}{failed})", s.n))
}

/// Whether a ratio meets the job's target, as a table cell.
fn verdict(job: &JobResult, ratio: Option<f64>) -> String {
    let Some(r) = ratio else { return "-".to_string() };
    let (target, goal) = if job.collateral { (TARGET_COLLATERAL, None) } else { (TARGET_IO, Some(GOAL_IO)) };
    if goal.is_some_and(|g| r >= g) {
        "goal met".to_string()
    } else if r >= target {
        "target met".to_string()
    } else {
        format!("**below {target:.2}**")
    }
}

/// The IOPS table of one kernel.
pub fn job_table(jobs: &[JobResult]) -> String {
    let mut t = String::from(
        "| job | untraced IOPS (median, runs) | untraced min-max | tracer IOPS | **tracer / untraced** | target (≥ 0.90, goal 0.97; pinning nothing ≥ 0.99) | bpftrace IOPS | bpftrace / untraced | less overhead than bpftrace | tracer BPF µs / I/O | bpftrace BPF µs / I/O | empty programs at the tracer's places / untraced | their BPF µs / I/O | as many empty programs as the tracer's chains / untraced |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for j in jobs {
        let (u, tr, bt) = (j.stat(Mode::Untraced), j.stat(Mode::Tracer), j.stat(Mode::Bpftrace));
        let (rt, rb) = (j.ratio(Mode::Tracer), j.ratio(Mode::Bpftrace));
        let better = match (rt, rb) {
            (Some(a), Some(b)) => if a > b { "yes" } else { "no" }.to_string(),
            _ => "-".to_string(),
        };
        let us = |s: &Stat| opt(s.bpf_ns_per_io, |v| format!("{:.2}", v / 1000.0));
        let _ = writeln!(
            t,
            "| {} | {} | {}-{} | {} | **{}** | {} | {} | {} | {better} | {} | {} | {} | {} | {} |",
            j.label,
            iops_cell(&u),
            opt(u.min, |v| format!("{v:.0}")),
            opt(u.max, |v| format!("{v:.0}")),
            iops_cell(&tr),
            opt(rt, |r| format!("{r:.3}")),
            verdict(j, rt),
            iops_cell(&bt),
            opt(rb, |r| format!("{r:.3}")),
            us(&tr),
            us(&bt),
            opt(j.ratio(Mode::Floor), |r| format!("{r:.3}")),
            us(&j.stat(Mode::Floor)),
            opt(j.ratio(Mode::Chains), |r| format!("{r:.3}")),
        );
    }
    t
}

/// The `top` programs of `progs` by run time.
pub fn program_table(progs: &[ProgStat], top: usize) -> String {
    let mut t =
        String::from("| program | runs | runs / I/O | ns / run (TCG) | share of BPF time |\n|---|---|---|---|---|\n");
    for p in progs.iter().take(top) {
        let _ = writeln!(
            t,
            "| `{}` | {} | {:.2} | {:.0} | {:.1}% |",
            p.name,
            p.runs,
            p.runs_per_io,
            p.ns_per_run,
            p.share * 100.0
        );
    }
    if progs.len() > top {
        let rest: f64 = progs[top..].iter().map(|p| p.share).sum();
        let _ = writeln!(t, "| {} more programs | | | | {:.1}% |", progs.len() - top, rest * 100.0);
    }
    t
}

/// The sessions lines and the notes of a console, a Markdown list item each (every item on a
/// line of its own, the first after a line break).
pub fn session_list(c: &Console) -> String {
    let mut s = String::new();
    for line in &c.sessions {
        let _ = write!(s, "\n- `{line}`");
    }
    for note in &c.notes {
        let _ = write!(s, "\n- note: {note}");
    }
    s
}

/// Whether `job` pins nothing (unknown jobs count as pinning ones).
pub fn is_collateral(job: &str) -> bool {
    JOBS.iter().any(|j| j.name == job && j.collateral)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/bench-overhead-6.12.log");

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    fn console(lines: &str) -> Console {
        parse(&format!("BENCH-INFO kernel=k cpus=2\n{lines}\nBENCH-DONE\n")).expect("parses")
    }

    #[test]
    fn ratios_from_medians_of_each_mode() {
        let c = console(
            "BENCH-RUN job=randread-psync-qd1 mode=none round=1 status=0 iops=100.0 ios=500\n\
             BENCH-RUN job=randread-psync-qd1 mode=tracer round=1 status=0 iops=40.0 ios=200\n\
             BENCH-PROG job=randread-psync-qd1 mode=tracer round=1 id=7 name=p run_ns=4000 run_cnt=400\n\
             [   12.5] a kernel message BENCH-RUN job=randread-psync-qd1 mode=none round=1 status=0 iops=300.0 ios=1500\n\
             BENCH-RUN job=randread-psync-qd1 mode=none round=2 status=0 iops=200.0 ios=1000\n\
             BENCH-RUN job=randread-psync-qd1 mode=tracer round=2 status=0 iops=60.0 ios=300\n\
             BENCH-RUN job=randread-psync-qd1 mode=tracer round=3 status=1 iops=0.0 ios=0\n\
             BENCH-RUN job=randread-psync-qd1 mode=bpftrace round=1 status=0 iops=190.0 ios=950\n\
             BENCH-RUN job=randread-psync-qd1 mode=floor round=1 status=0 iops=150.0 ios=750\n\
             BENCH-FLOOR round=1 status=0\n\
             BENCH-RUN job=randread-psync-qd1 mode=chains round=1 status=0 iops=120.0 ios=600\n\
             BENCH-CHAINS round=1 status=0\n\
             BENCH-RUN job=randread-psync-qd1 mode=none round=3 stat",
        );
        assert_eq!(c.runs.len(), 9);
        assert_eq!(c.sessions, ["FLOOR round=1 status=0", "CHAINS round=1 status=0"]);
        assert_eq!(c.notes.len(), 1, "the cut line is noted: {:?}", c.notes);
        let jobs = jobs(&c);
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!(j.stat(Mode::Untraced).median, Some(200.0));
        let tracer = j.stat(Mode::Tracer);
        assert_eq!((tracer.median, tracer.n, tracer.failed), (Some(50.0), 2, 1));
        assert_eq!(tracer.bpf_ns_per_io, Some(8.0));
        assert_eq!(j.ratio(Mode::Tracer), Some(0.25));
        assert_eq!(j.ratio(Mode::Bpftrace), Some(0.95));
        assert_eq!(j.ratio(Mode::Floor), Some(0.75));
        assert_eq!(j.ratio(Mode::Chains), Some(0.6));
        assert!(job_table(&jobs).contains("| 0.750 |"), "the floor's column");
        assert!(job_table(&jobs).contains("| 0.600 |"), "the chains' column");
        assert_eq!(verdict(j, j.ratio(Mode::Bpftrace)), "target met");
        assert_eq!(verdict(j, Some(0.98)), "goal met");
        assert_eq!(verdict(j, Some(0.5)), "**below 0.90**");
    }

    #[test]
    fn bpf_time_per_io_from_the_runs_with_statistics_on() {
        // IOPS from the runs with statistics off; the programs' time over the I/Os of the
        // runs that measured it.
        let c = console(
            "BENCH-RUN job=randread-psync-qd1 mode=none round=1 status=0 iops=100.0 ios=500\n\
             BENCH-RUN job=randread-psync-qd1 mode=tracer round=1 status=0 iops=50.0 ios=250\n\
             BENCH-PROG job=randread-psync-qd1 mode=tracer round=1 id=7 name=p run_ns=4000 run_cnt=100\n\
             BENCH-STATS job=randread-psync-qd1 mode=tracer round=1 status=0 iops=40.0 ios=100",
        );
        assert_eq!(c.stats_runs.len(), 1);
        let jobs = jobs(&c);
        let tracer = jobs[0].stat(Mode::Tracer);
        assert_eq!((tracer.median, tracer.bpf_ns_per_io), (Some(50.0), Some(40.0)));
        let (progs, ios) = programs(&c, Mode::Tracer, |_| true);
        assert_eq!((ios, progs[0].runs_per_io), (100, 1.0));
    }

    #[test]
    fn unfinished_or_empty_consoles_are_errors() {
        assert_eq!(parse("nothing here").unwrap_err(), ParseError::NoInfo);
        assert_eq!(parse("BENCH-INFO kernel=k\nBENCH-RUN x").unwrap_err(), ParseError::Unfinished);
    }

    #[test]
    fn programs_added_up_by_name_and_sorted_by_time() {
        let c = console(
            "BENCH-RUN job=a mode=tracer round=1 status=0 iops=1 ios=10\n\
             BENCH-RUN job=syscall-zero-512 mode=tracer round=1 status=0 iops=1 ios=1000\n\
             BENCH-PROG job=a mode=tracer round=1 id=1 name=small run_ns=100 run_cnt=10\n\
             BENCH-PROG job=a mode=tracer round=1 id=2 name=big run_ns=300 run_cnt=20\n\
             BENCH-PROG job=a mode=tracer round=2 id=9 name=big run_ns=600 run_cnt=10\n\
             BENCH-PROG job=syscall-zero-512 mode=tracer round=1 id=3 name=sys run_ns=5000 run_cnt=1000\n\
             BENCH-PROG job=a mode=bpftrace round=1 id=4 name=bt run_ns=1 run_cnt=1",
        );
        let (progs, ios) = programs(&c, Mode::Tracer, |j| !is_collateral(j));
        assert_eq!(ios, 10);
        let names: Vec<&str> = progs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["big", "small"]);
        assert_eq!((progs[0].runs, progs[0].ns), (30, 900));
        assert!((progs[0].runs_per_io - 3.0).abs() < 1e-9);
        assert!((progs[0].ns_per_run - 30.0).abs() < 1e-9);
        assert!((progs[0].share - 0.9).abs() < 1e-9);
        let table = program_table(&progs, 1);
        assert!(table.contains("| `big` | 30 | 3.00 | 30 | 90.0% |"), "{table}");
        assert!(table.contains("| 1 more programs | | | | 10.0% |"), "{table}");
    }

    #[test]
    fn recorded_console_gives_every_job_in_every_mode() {
        let c = parse(FIXTURE).expect("the recorded console parses");
        assert_eq!(c.accel.as_deref(), Some("Tcg"));
        assert_eq!(c.info["kernel"], "6.12.95+deb12-cloud-amd64");
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        assert_eq!(c.sessions.len(), 2);
        let jobs = jobs(&c);
        assert_eq!(jobs.len(), JOBS.len());
        for j in &jobs {
            assert_eq!(j.stat(Mode::Untraced).n, 3, "{}: 2 untraced passes per round and a last one", j.label);
            for mode in [Mode::Tracer, Mode::Bpftrace] {
                assert_eq!(j.stat(mode).n, 1, "{} {mode:?}", j.label);
                let r = j.ratio(mode).unwrap_or_else(|| panic!("{} {mode:?}: no ratio", j.label));
                assert!(r > 0.0 && r < 1.5, "{} {mode:?}: {r}", j.label);
            }
            // The tracer runs programs on every job (sys_enter/sys_exit at least); the bpftrace
            // script only where pages are pinned.
            assert!(j.stat(Mode::Tracer).bpf_ns_per_io.is_some_and(|v| v > 0.0), "{}", j.label);
            let bt = j.stat(Mode::Bpftrace).bpf_ns_per_io.unwrap_or(f64::NAN);
            assert_eq!(bt > 0.0, !j.collateral, "{}: {bt}", j.label);
        }
        // Recorded: the first job under the tracer, 3434.3 IOPS against 49550.2 (median of 3).
        let first = &jobs[0];
        assert_eq!(first.stat(Mode::Tracer).median, Some(3434.3));
        assert_eq!(first.stat(Mode::Untraced).median, Some(49550.2));
        let (progs, ios) = programs(&c, Mode::Tracer, |j| !is_collateral(j));
        assert!(ios > 0 && progs.len() > 10);
        assert!(progs.iter().any(|p| p.name == "fentry_unpin_us:unpin_user_folio"));
        let share: f64 = progs.iter().map(|p| p.share).sum();
        assert!((share - 1.0).abs() < 1e-9);
        let table = job_table(&jobs);
        assert_eq!(table.lines().count(), 2 + JOBS.len(), "{table}");
    }
}
