//! Command line (clap derive).

use std::{ffi::OsString, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Print the probe plan for this kernel: each probe attached or missing, with the reason.
    Check(CheckArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable tables.
    Text,
    /// Newline-delimited JSON (docs/output.md); the last line has "type": "summary".
    Json,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Stop after this many seconds (decimals allowed).
    #[arg(short, long, value_name = "S", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Also print figures every S seconds (each labelled as an interval).
    #[arg(short, long, value_name = "S", value_parser = parse_seconds)]
    pub interval: Option<Duration>,
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Latency percentiles to report, comma-separated.
    #[arg(long, value_name = "LIST", default_value = "50,90,99,99.9,99.99", value_parser = Percentiles::parse)]
    pub percentiles: Percentiles,
    /// Run COMMAND under the tracer; trace until it exits and exit with its status.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// A percentile list (`--percentiles 50,99.9`).
#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles(pub Vec<f64>);

impl Percentiles {
    fn parse(s: &str) -> Result<Percentiles, String> {
        crate::latency::parse_percentiles(s).map(Percentiles)
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
        let Command::Run(run) = cli.command else { panic!("expected run") };
        assert_eq!(run.format, Format::Json);
        assert_eq!(run.command, vec![OsString::from("dd"), OsString::from("if=x")]);
        assert_eq!(run.percentiles, Percentiles(vec![50.0, 90.0, 99.0, 99.9, 99.99]));
        let cli = Cli::try_parse_from(["tracer", "run", "--percentiles", "50,99.9"]).unwrap();
        let Command::Run(run) = cli.command else { panic!("expected run") };
        assert_eq!(run.percentiles, Percentiles(vec![50.0, 99.9]));
        assert!(Cli::try_parse_from(["tracer", "run", "--percentiles", "50,200"]).is_err());
    }
}
