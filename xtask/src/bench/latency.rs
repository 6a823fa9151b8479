//! `cargo xtask bench latency`: the tracer's latency figures against fio's clat percentiles,
//! for the same run (fio runs under `tracer run -- fio ...`), on a file of this machine's disk.
//! Prints a Markdown table for docs/benchmarks.md.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::workspace_root;

#[derive(clap::Args, Debug)]
pub struct LatencyBenchArgs {
    /// File to run fio on (created if missing). Must be on a filesystem with iomap DIO (ext4,
    /// xfs, btrfs) for the `dio` and `sys` figures.
    #[arg(long, default_value = "/var/tmp/tracer-bench.fio")]
    pub file: PathBuf,
    /// Seconds per fio run.
    #[arg(long, default_value_t = 10)]
    pub runtime: u32,
    /// Runs per configuration (each row is one run; repeat to see the spread).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

/// A fio configuration of the comparison.
struct Config {
    label: &'static str,
    args: &'static [&'static str],
}

const CONFIGS: [Config; 3] = [
    Config { label: "QD1 psync", args: &["--ioengine=psync", "--iodepth=1", "--numjobs=1"] },
    Config { label: "QD16 psync x16 jobs", args: &["--ioengine=psync", "--iodepth=1", "--numjobs=16"] },
    Config { label: "QD16 libaio", args: &["--ioengine=libaio", "--iodepth=16", "--numjobs=1"] },
];

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    figure: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    size: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    percentiles: serde_json::Map<String, serde_json::Value>,
}

pub fn latency(args: &LatencyBenchArgs) -> Result<i32> {
    let tracer = workspace_root().join("target/release/tracer");
    let status = Command::new("cargo").args(["build", "--release", "-p", "tracer"]).status()?;
    if !status.success() {
        bail!("building the tracer failed");
    }
    println!("| fio job (4k randread, O_DIRECT) | tracer figure | count | tracer p50 µs | fio clat p50 µs | Δ p50 | tracer p99 µs | fio clat p99 µs | Δ p99 | IOPS |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut worst: f64 = 0.0;
    for cfg in &CONFIGS {
        for _ in 0..args.repeat {
            let fio_json = std::env::temp_dir().join(format!("tracer-bench-{}.json", std::process::id()));
            let out = Command::new(&tracer)
                .args(["run", "--syscall-latency", "--format", "json", "--percentiles", "50,99", "--"])
                .arg("fio")
                .args([
                    "--name=bench",
                    "--rw=randread",
                    "--bs=4k",
                    "--direct=1",
                    "--size=512m",
                    "--time_based",
                    "--group_reporting",
                    "--output-format=json",
                ])
                .arg(format!("--filename={}", args.file.display()))
                .arg(format!("--runtime={}", args.runtime))
                .arg(format!("--output={}", fio_json.display()))
                .args(cfg.args)
                .output()
                .context("running fio under the tracer")?;
            if !out.status.success() {
                bail!("tracer/fio failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let fio: serde_json::Value = serde_json::from_slice(&std::fs::read(&fio_json)?)?;
            let _ = std::fs::remove_file(&fio_json);
            let read = &fio["jobs"][0]["read"];
            let fio_p = |p: &str| read["clat_ns"]["percentile"][p].as_f64().unwrap_or(f64::NAN) / 1000.0;
            let (fio50, fio99) = (fio_p("50.000000"), fio_p("99.000000"));
            let iops = read["iops"].as_f64().unwrap_or(0.0);
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let Ok(r) = serde_json::from_str::<Record>(line) else { continue };
                // 4 KiB reads only: the disk also serves the rest of the machine.
                if r.kind != "latency" || r.scope != "cumulative" || r.op != "read" || r.size != "4k" {
                    continue;
                }
                let p = |k: &str| r.percentiles.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN) / 1000.0;
                let (t50, t99) = (p("p50"), p("p99"));
                let d50 = (t50 / fio50 - 1.0) * 100.0;
                let d99 = (t99 / fio99 - 1.0) * 100.0;
                if r.figure == "sys" {
                    worst = worst.max(d50.abs()).max(d99.abs());
                }
                println!(
                    "| {} | {} | {} | {t50:.1} | {fio50:.1} | {d50:+.1}% | {t99:.1} | {fio99:.1} | {d99:+.1}% | {iops:.0} |",
                    cfg.label, r.figure, r.count
                );
            }
        }
    }
    println!("\nlargest |Δ| of the `sys` figure against fio clat: {worst:.1}%");
    Ok(0)
}
