//! The "oversubscribed chains" VM test (test/vm/oversubscribed.sh): 12 Direct I/O threads on 2
//! vCPUs under a kernel that preempts threads inside BPF programs (sid), so that the kernel
//! skips the tracer's programs all the time. What the chains cannot rescue must be reported,
//! and nothing may be taken twice: the entry points' pages never exceed the kernel's own
//! counts, and every page short of them is covered by the skipped runs the tracer reports.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::suite;

/// Pages one call of the workload's can pin or unpin at most (64 KiB blocks of 4 KiB pages).
const PAGES_PER_CALL: u64 = 16;

pub fn run(kernel: &str) -> Result<String> {
    let console = suite::run_script(kernel, "oversubscribed.sh", 1200)?;
    check(&console)
}

/// The lines of `console` after `tag `.
fn tagged<'a>(console: &'a str, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    console.lines().filter_map(move |l| l.split_once(&format!("{tag} ")).map(|(_, r)| r))
}

/// One side of the ledger (pins or unpins): the entry points' pages against the kernel's count.
struct Side {
    name: &'static str,
    pages: u64,
    kernel: u64,
    skipped_runs: u64,
}

impl Side {
    fn of(summary: &Value, role: &str, name: &'static str, vmstat_key: &str) -> Result<Side> {
        let entry_points = summary["entry_points"].as_array().context("summary without entry_points")?;
        let side: Vec<&Value> = entry_points.iter().filter(|e| e["role"] == role).collect();
        let targets: Vec<&str> = side.iter().filter_map(|e| e["function"].as_str()).collect();
        let pages = side.iter().filter_map(|e| e["pages"].as_u64()).sum();
        let kernel =
            summary["vmstat"][vmstat_key].as_u64().with_context(|| format!("summary without vmstat {vmstat_key}"))?;
        let skipped_runs = summary["probes_skipped"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter(|p| p["target"].as_str().is_some_and(|t| targets.contains(&t)))
                    .filter_map(|p| p["runs"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        Ok(Side { name, pages, kernel, skipped_runs })
    }

    fn problems(&self, out: &mut Vec<String>) {
        let Side { name, pages, kernel, skipped_runs } = *self;
        if pages > kernel {
            out.push(format!(
                "the {name} entry points counted {pages} pages, more than the kernel's {kernel}: an invocation taken twice"
            ));
        } else if kernel - pages > PAGES_PER_CALL * skipped_runs {
            out.push(format!(
                "the {name} entry points counted {pages} pages of the kernel's {kernel}, and only {skipped_runs} skipped \
                 runs were reported: a loss not reported"
            ));
        }
    }
}

/// What one pass proved.
struct Pass {
    report: String,
    /// Pin runs the kernel skipped in every program of their chain.
    pins_skipped: u64,
}

/// The host-side verdict on a console of oversubscribed.sh: both passes hold, and the one with
/// every backup lost fewer pin calls than the one with the default.
pub fn check(console: &str) -> Result<String> {
    let mut passes = Vec::new();
    let mut problems = Vec::new();
    for (label, section) in passes_of(console) {
        match check_pass(section) {
            Ok(p) => passes.push((label, p)),
            Err(e) => problems.push(format!("pass {label}: {e:#}")),
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let [(first, default), (second, more)] = &passes[..] else {
        bail!("expected the passes backups=default and backups=3, found {}", passes.len());
    };
    if *first != "backups=default" || *second != "backups=3" {
        bail!("expected the passes backups=default and backups=3, found {first} and {second}");
    }
    if more.pins_skipped >= default.pins_skipped {
        bail!(
            "--backups 3 lost {} pin calls to skips, the default {}: more backups did not rescue more",
            more.pins_skipped,
            default.pins_skipped
        );
    }
    Ok(format!("default {}; --backups 3 {}", default.report, more.report))
}

/// The console's passes: each OVERSUB-PASS line's label and the lines up to the next one.
fn passes_of(console: &str) -> Vec<(&str, &str)> {
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut at = 0;
    for line in console.split_inclusive('\n') {
        if let Some((_, label)) = line.trim_end().split_once("OVERSUB-PASS ") {
            starts.push((at, label));
        }
        at += line.len();
    }
    let ends = starts.iter().skip(1).map(|&(s, _)| s).chain([console.len()]);
    starts.iter().zip(ends).map(|(&(s, label), e)| (label, &console[s..e])).collect()
}

/// The verdict on one pass's lines.
fn check_pass(console: &str) -> Result<Pass> {
    let mut problems = Vec::new();
    for (tag, what) in [("OVERSUB-FIO", "fio"), ("OVERSUB-TRACER", "tracer run")] {
        match tagged(console, tag).next() {
            Some("status=0") => {}
            Some(other) => problems.push(format!("{what} ended with {other}")),
            None => problems.push(format!("{what} did not end")),
        }
    }
    // The tracer's errors and each chain's last counters, as tracer_stop prints them (cases.sh).
    problems.extend(
        tagged(console, "TRACER-STDERR").filter(|l| l.contains("backups acted for")).map(|l| format!("a double: {l}")),
    );
    // The stress must have made the kernel skip pin programs, or the run proves nothing.
    let rescued_pins = tagged(console, "CHAIN")
        .find(|l| l.starts_with("pin_user_pages_fast:"))
        .and_then(|l| l.split_once(" rescued ").and_then(|(_, r)| r.split(' ').next()?.parse::<u64>().ok()))
        .unwrap_or(0);
    if rescued_pins == 0 {
        problems.push("no pin_user_pages_fast run was skipped and rescued: the threads did not contend".to_string());
    }
    let summary = tagged(console, "OVERSUB-SUMMARY").last().context("no summary record in the console")?;
    let summary: Value = serde_json::from_str(summary).context("the summary record is not JSON")?;
    let pins = Side::of(&summary, "pin", "pin", "nr_foll_pin_acquired")?;
    let unpins = Side::of(&summary, "unpin", "unpin", "nr_foll_pin_released")?;
    pins.problems(&mut problems);
    unpins.problems(&mut problems);
    if !problems.is_empty() {
        bail!("{} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    let report = format!(
        "({} pages pinned, {} rescued pin runs; pin entry points {} pages, {} skipped runs reported; unpin entry \
         points {} of {} pages, {} skipped runs reported; no double)",
        pins.kernel, rescued_pins, pins.pages, pins.skipped_runs, unpins.pages, unpins.kernel, unpins.skipped_runs
    );
    Ok(Pass { report, pins_skipped: pins.skipped_runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console() -> String {
        std::fs::read_to_string(crate::workspace_root().join("xtask/tests/fixtures/oversubscribed-sid.log")).unwrap()
    }

    #[test]
    fn the_recorded_run_passes_and_its_mutations_fail() {
        let c = console();
        check(&c).unwrap_or_else(|e| panic!("{e:#}"));
        let fails = |mutated: String, why: &str| {
            assert_ne!(mutated, c, "the mutation for '{why}' changed nothing");
            let err = format!("{:#}", check(&mutated).unwrap_err());
            assert!(err.contains(why), "expected '{why}' in: {err}");
        };
        // A backup that took an invocation its primary took too.
        fails(
            c.replacen(
                "OVERSUB-FIO ",
                "TRACER-STDERR [x ERROR] block_rq_issue: backups acted for 70 invocations the primary also took care of\nOVERSUB-FIO ",
                1,
            ),
            "a double",
        );
        // More pages counted than the kernel pinned.
        let summary = tagged(&c, "OVERSUB-SUMMARY").last().unwrap().to_string();
        let mut v: Value = serde_json::from_str(&summary).unwrap();
        let acquired = v["vmstat"]["nr_foll_pin_acquired"].as_u64().unwrap();
        let mut doubled = v.clone();
        for e in doubled["entry_points"].as_array_mut().unwrap() {
            if e["function"] == "pin_user_pages_fast" {
                e["pages"] = (acquired + 1).into();
            }
        }
        fails(c.replace(&summary, &doubled.to_string()), "taken twice");
        // Pages missing with no skip reported.
        v["probes_skipped"] = Value::Array(vec![]);
        let mut short = v.clone();
        for e in short["entry_points"].as_array_mut().unwrap() {
            if e["function"] == "pin_user_pages_fast" {
                e["pages"] = (e["pages"].as_u64().unwrap() - 1).into();
            }
        }
        fails(c.replace(&summary, &short.to_string()), "a loss not reported");
        // No contention: nothing proven.
        fails(c.replacen("CHAIN pin_user_pages_fast:", "CHAIN pin_user_pages_slow:", 1), "did not contend");
        fails(c.replacen("OVERSUB-TRACER status=0", "OVERSUB-TRACER status=1", 1), "tracer run ended with status=1");
        // A pass missing, or more backups losing as much as one.
        let second = c.find("OVERSUB-PASS backups=3").unwrap();
        fails(c[..second].to_string(), "found 1");
        fails(c.replacen("OVERSUB-PASS backups=3", "OVERSUB-PASS backups=2", 1), "found backups=default and backups=2");
        let more = tagged(&c, "OVERSUB-SUMMARY").last().unwrap().to_string();
        let mut v: Value = serde_json::from_str(&more).unwrap();
        for p in v["probes_skipped"].as_array_mut().unwrap() {
            if p["target"] == "pin_user_pages_fast" {
                p["runs"] = 1_000_000.into();
            }
        }
        fails(c.replace(&more, &v.to_string()), "more backups did not rescue more");
    }
}
