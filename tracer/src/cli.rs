//! Command line (clap derive).

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

/// Backups per probe at most (`--backups`) unless told otherwise.
pub const DEFAULT_BACKUPS: u8 = 1;

#[derive(Parser, Debug)]
#[command(name = "tracer", version, about = "eBPF pin accounting tracer: pinned pages and their unpins")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Trace pins and unpins until the duration ends, COMMAND exits, or Ctrl-C.
    Run(RunArgs),
    /// Like `run`, and write every event record to FILE for `tracer report`.
    Record(RecordArgs),
    /// Replay a record file: print what `tracer run` printed at the end, with the pin ledger.
    Report(ReportArgs),
    /// Print the probe plan for this kernel: each probe attached or missing, with the reason.
    Check(CheckArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `tracer man | man -l -`.
    Man,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Human-readable tables.
    #[default]
    Text,
    /// Newline-delimited JSON (docs/output.md); the last line has "type": "summary".
    Json,
    /// A live dashboard in the terminal (`run` and `record`), redrawn every interval (1 s
    /// unless --interval says otherwise); q quits. The end-of-run report follows as text.
    Tui,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Print figures every INTERVAL seconds, as --interval does (bcc style: `tracer run 1 10`
    /// prints every second, ten times, then the summary).
    #[arg(value_name = "INTERVAL", value_parser = parse_positional_seconds, conflicts_with = "interval")]
    pub interval_pos: Option<Duration>,
    /// Stop after COUNT intervals: --duration INTERVAL×COUNT (the summary ends the last one).
    #[arg(value_name = "COUNT", value_parser = parse_count, requires = "interval_pos", conflicts_with = "duration")]
    pub count: Option<u32>,
    /// Stop after this many seconds (decimals allowed).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Also print figures every S seconds (each labelled as an interval).
    #[arg(short, long, value_name = "S", value_parser = parse_seconds)]
    pub interval: Option<Duration>,
    /// On SIGUSR1, print the end-of-run records (latency, ledgers, processes, summary) of the
    /// segment so far and start a new one: case-by-case figures from one load of the probes.
    #[arg(long)]
    pub segments: bool,
    /// Print text even in a terminal (where `run` and `record` open the live dashboard unless
    /// --format says otherwise).
    #[arg(long, conflicts_with = "format")]
    pub no_tui: bool,
    /// Serve the run so far as Prometheus metrics on http://ADDR/metrics (a bare port listens
    /// on 127.0.0.1 only), refreshed every second; off by default.
    #[arg(long, value_name = "ADDR", value_parser = crate::sinks::prometheus::parse_addr)]
    pub prometheus: Option<std::net::SocketAddr>,
    /// Size of the ring buffer the probes stream records through, in KiB: a power of two, 4
    /// (one page) to 1048576. Records that find it full are lost, and counted (`ring_full`).
    #[arg(long, value_name = "KIB", default_value_t = tracer_common::EVENTS_DEFAULT_BYTES / 1024, value_parser = parse_ring_kib)]
    pub ring_buffer: u32,
    /// Run the tracer at this nice value, -20 to 19 (the traced COMMAND starts with the one the
    /// tracer was started with). On a machine whose CPUs are all busy the tracer's reader falls
    /// behind the probes and records are lost (`ring_full`): a negative value such as -10 lets
    /// it keep up, at some cost to the workload. Below the current value needs CAP_SYS_NICE.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub nice: Option<i32>,
    /// Backups per probe at most, 0 to 3: copies of a probe's program on the same kernel
    /// function that take the calls the kernel skipped in the programs before them (it skips a
    /// program already running on that CPU: an interrupt nested in it, or, on kernels that
    /// preempt threads inside programs such as Debian's 7.x, another thread preempted in it).
    /// Every backup runs for every call of its probe: 1 costs least. Calls skipped in all of
    /// them are counted (`probes_skipped`); on a machine with more busy threads than CPUs,
    /// 3 rescues more of them.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKUPS, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub backups: u8,
    /// Also measure the `sys` latency figure: each Direct I/O system call from entry to exit
    /// (what fio's synchronous engines call clat). Off by default: its probes run for every
    /// read and write system call of every process on the machine.
    #[arg(long)]
    pub syscall_latency: bool,
    #[command(flatten)]
    pub view: ViewArgs,
    /// Run COMMAND under the tracer; trace until it exits and exit with its status.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// The record file to write (format: docs/ledger.md).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A record file written by `tracer record`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub view: ViewArgs,
}

/// How a run's figures are shown and judged: shared by `run`, `record` and `report`.
#[derive(clap::Args, Debug)]
pub struct ViewArgs {
    /// Output: text, json (NDJSON) or tui (the live dashboard). Default: the dashboard when
    /// `run` or `record` has a terminal on stdin and stdout, text otherwise.
    #[arg(short, long = "format", value_enum, id = "format")]
    pub format_arg: Option<Format>,
    /// The format in effect (see [`RunArgs::resolve_format`]).
    #[arg(skip)]
    pub format: Format,
    /// Latency percentiles to report, comma-separated.
    #[arg(long, value_name = "LIST", default_value = "50,90,99,99.9,99.99", value_parser = Percentiles::parse)]
    pub percentiles: Percentiles,
    /// A bio completed this many seconds before the end of the run (or recording) and still
    /// holding its pages is a leak suspect (pin ledger; docs/ledger.md).
    #[arg(long, value_name = "S", default_value = "1", value_parser = parse_seconds)]
    pub leak_grace: Duration,
    /// Also write a report of the run to FILE when it ends (on Ctrl-C and SIGTERM too): JSON,
    /// Markdown or HTML by the name's ending (.json, .md, .html), or as --report-format says
    /// (docs/report.md).
    /// Written atomically, mode 0600, owned by $SUDO_USER under sudo.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The report's format, whatever the file is called.
    #[arg(long, value_enum, value_name = "FORMAT", requires = "report")]
    pub report_format: Option<crate::sinks::report::ReportFormat>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Which records the ledgers, the process table and the latency rows see. Options of one kind
/// are alternatives; different kinds must all match. The kernel's own totals (/proc/vmstat,
/// entry points, block requests) stay machine-wide and are labelled so.
#[derive(clap::Args, Debug, Default, Clone, PartialEq)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Only pins, unpins and bios of process PID (its thread group id, the PID `ps` shows);
    /// repeatable or comma-separated. An unpin counts for the process that took the pin,
    /// whichever task ran it (a bio completion in an interrupt, a kworker). Latency rows name
    /// no process: only --device filters them. The kernel's own totals (/proc/vmstat, entry
    /// points) stay machine-wide and are labelled so.
    #[arg(short = 'p', long = "pid", value_name = "PID", value_delimiter = ',', value_parser = parse_pid)]
    pub pids: Vec<u32>,
    /// Only processes named NAME: the kernel's process name (`ps -o comm`, at most 15
    /// characters), exact; repeatable.
    #[arg(long = "comm", value_name = "NAME", value_parser = parse_comm)]
    pub comms: Vec<String>,
    /// Only I/O on block device DEV: a name (nvme0n1, sda, nullb0, dm-0) or MAJ:MIN (259:0);
    /// repeatable or comma-separated. Filters latency rows and bios (pins are of memory, not of
    /// a device). `report`: a name from the record file's device table, else from /sys here.
    #[arg(short = 'd', long = "device", value_name = "DEV", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Only processes in the cgroup v2 directory PATH (/sys/fs/cgroup/system.slice/x.service;
    /// that cgroup itself, not its children); repeatable. `report`: the directory must exist
    /// here and have the same inode as on the recording machine (the same machine and boot).
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<PathBuf>,
}

impl FilterArgs {
    /// The filter as given ("--pid 12 --comm fio"), for the outputs.
    pub fn label(&self) -> String {
        let mut words = Vec::new();
        words.extend(self.pids.iter().map(|p| format!("--pid {p}")));
        words.extend(self.comms.iter().map(|c| format!("--comm {c}")));
        words.extend(self.devices.iter().map(|d| format!("--device {d}")));
        words.extend(self.cgroups.iter().map(|c| format!("--cgroup {}", c.display())));
        words.join(" ")
    }
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl RunArgs {
    /// The format of a live run: as asked, else the dashboard when stdin and stdout are both
    /// terminals (and neither --no-tui nor --segments was given), else text.
    pub fn resolve_format(&mut self, terminal: bool) {
        // The positionals `[INTERVAL] [COUNT]` as the options they stand for.
        if let Some(every) = self.interval_pos {
            self.interval = Some(every);
            if let Some(count) = self.count {
                self.duration = Some(every.saturating_mul(count));
            }
        }
        let interactive = terminal && !self.no_tui && !self.segments;
        self.view.format = self.view.format_arg.unwrap_or(if interactive { Format::Tui } else { Format::Text });
    }
}

impl ViewArgs {
    /// The format of a replay: as asked, else text.
    pub fn resolve_format(&mut self) {
        self.format = self.format_arg.unwrap_or(Format::Text);
    }
}

/// A percentile list (`--percentiles 50,99.9`).
#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles(pub Vec<f64>);

impl Percentiles {
    fn parse(s: &str) -> Result<Percentiles, String> {
        crate::engine::latency::parse_percentiles(s).map(Percentiles)
    }
}

/// The positional INTERVAL: seconds, or a hint for a command given without `--`.
fn parse_positional_seconds(s: &str) -> Result<Duration, String> {
    parse_seconds(s).map_err(|e| format!("{e} (a COMMAND to run goes after --)"))
}

/// The positional COUNT: a positive whole number.
fn parse_count(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' is not a positive whole number of intervals")),
    }
}

/// A ring buffer size in KiB: a power of two from one page (4 KiB) to 1 GiB.
fn parse_ring_kib(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n.is_power_of_two() && (4..=1 << 20).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is not a ring buffer size in KiB (a power of two from 4 to 1048576)")),
    }
}

/// A process id: a positive whole number.
fn parse_pid(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' is not a process id (a positive whole number)")),
    }
}

/// A process name as the kernel keeps it (TASK_COMM_LEN - 1 bytes at most).
fn parse_comm(s: &str) -> Result<String, String> {
    match s.len() {
        0 => Err("a process name cannot be empty".into()),
        1..=15 => Ok(s.to_string()),
        _ => Err(format!("'{s}' is longer than 15 bytes: the kernel keeps process names shorter (`ps -o comm`)")),
    }
}

/// Parses a positive number of seconds ("2", "0.5").
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("'{s}': seconds must be a positive number"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accepts_decimals_and_rejects_nonsense() {
        assert_eq!(parse_seconds("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_seconds("0.25").unwrap(), Duration::from_millis(250));
        for bad in ["", "x", "-1", "0", "nan", "inf"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn command_after_double_dash() {
        let cli = Cli::try_parse_from(["tracer", "run", "--format", "json", "--", "dd", "if=x"]).unwrap();
        let Command::Run(mut run) = cli.command else { panic!("expected run") };
        run.resolve_format(true);
        assert_eq!(run.view.format, Format::Json, "as asked, even in a terminal");
        assert_eq!(run.command, vec![OsString::from("dd"), OsString::from("if=x")]);
        assert_eq!(run.view.percentiles, Percentiles(vec![50.0, 90.0, 99.0, 99.9, 99.99]));
        let cli = Cli::try_parse_from(["tracer", "run", "--percentiles", "50,99.9"]).unwrap();
        let Command::Run(run) = cli.command else { panic!("expected run") };
        assert_eq!(run.view.percentiles, Percentiles(vec![50.0, 99.9]));
        assert!(Cli::try_parse_from(["tracer", "run", "--percentiles", "50,200"]).is_err());
    }

    #[test]
    fn run_opens_the_dashboard_only_in_a_terminal() {
        let format = |args: &[&str], terminal: bool| {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Run(mut run) = cli.command else { panic!("expected run") };
            run.resolve_format(terminal);
            run.view.format
        };
        assert_eq!(format(&["tracer", "run"], true), Format::Tui);
        assert_eq!(format(&["tracer", "run"], false), Format::Text, "stdout not a terminal: headless");
        assert_eq!(format(&["tracer", "run", "--no-tui"], true), Format::Text);
        assert_eq!(format(&["tracer", "run", "--segments"], true), Format::Text);
        assert_eq!(format(&["tracer", "run", "-f", "text"], true), Format::Text);
        assert!(Cli::try_parse_from(["tracer", "run", "--no-tui", "--format", "tui"]).is_err());
    }

    #[test]
    fn interval_and_count_positionals_as_bcc_has_them() {
        let run = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let (Command::Run(mut run) | Command::Record(RecordArgs { mut run, .. })) = cli.command else {
                panic!("expected run or record")
            };
            run.resolve_format(false);
            (run.interval, run.duration, run.command)
        };
        let s = Duration::from_secs;
        assert_eq!(run(&["tracer", "run", "1", "10"]), (Some(s(1)), Some(s(10)), vec![]));
        assert_eq!(run(&["tracer", "run", "0.5"]), (Some(Duration::from_millis(500)), None, vec![]));
        assert_eq!(
            run(&["tracer", "run", "2", "--", "dd", "if=x"]),
            (Some(s(2)), None, vec![OsString::from("dd"), OsString::from("if=x")])
        );
        assert_eq!(run(&["tracer", "record", "-o", "x.rec", "1", "5"]), (Some(s(1)), Some(s(5)), vec![]));
        assert_eq!(run(&["tracer", "run", "--interval", "2", "--duration", "4"]), (Some(s(2)), Some(s(4)), vec![]));
        assert!(Cli::try_parse_from(["tracer", "run", "1", "--interval", "1"]).is_err());
        assert!(Cli::try_parse_from(["tracer", "run", "1", "3", "--duration", "1"]).is_err());
    }

    #[test]
    fn filters_are_repeatable_or_comma_separated() {
        let cli = Cli::try_parse_from([
            "tracer",
            "report",
            "x.rec",
            "-p",
            "1,2",
            "--pid",
            "3",
            "--comm",
            "fio",
            "-d",
            "nvme0n1,8:0",
        ])
        .unwrap();
        let Command::Report(rep) = cli.command else { panic!("expected report") };
        let f = rep.view.filter;
        assert_eq!((f.pids, f.comms), (vec![1, 2, 3], vec!["fio".to_string()]));
        assert_eq!(f.devices, ["nvme0n1", "8:0"]);
        let cli = Cli::try_parse_from(["tracer", "run", "--comm", "fio", "--cgroup", "/sys/fs/cgroup/a"]).unwrap();
        let Command::Run(run) = cli.command else { panic!("expected run") };
        assert_eq!(run.view.filter.label(), "--comm fio --cgroup /sys/fs/cgroup/a");
        for bad in [&["--pid", "x"][..], &["--pid", "-1"], &["--comm", ""], &["--comm", "sixteen-bytes-xx"]] {
            assert!(Cli::try_parse_from(["tracer", "report", "f"].iter().chain(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn record_takes_the_run_options_and_a_file() {
        let cli =
            Cli::try_parse_from(["tracer", "record", "-o", "x.rec", "--duration", "2", "--", "fio", "j"]).unwrap();
        let Command::Record(rec) = cli.command else { panic!("expected record") };
        assert_eq!(rec.output, PathBuf::from("x.rec"));
        assert_eq!(rec.run.duration, Some(Duration::from_secs(2)));
        assert_eq!(rec.run.view.leak_grace, Duration::from_secs(1));
        assert_eq!(rec.run.command, vec![OsString::from("fio"), OsString::from("j")]);
        assert!(Cli::try_parse_from(["tracer", "record", "--duration", "2"]).is_err(), "-o is required");
        let cli =
            Cli::try_parse_from(["tracer", "report", "x.rec", "--format", "json", "--leak-grace", "0.5"]).unwrap();
        let Command::Report(mut rep) = cli.command else { panic!("expected report") };
        rep.view.resolve_format();
        assert_eq!(
            (rep.file, rep.view.format, rep.view.leak_grace),
            (PathBuf::from("x.rec"), Format::Json, Duration::from_millis(500))
        );
    }
}
