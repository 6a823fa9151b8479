//! The VM test suite: runs the guest scripts of test/vm/ on every kernel and checks what they
//! measured. Guest scripts only measure and print `CASE` lines; the verdicts are made here.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

/// One measured case from a guest script (see test/vm/dio-pins.sh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub fields: BTreeMap<String, String>,
}

impl Case {
    fn int(&self, key: &str) -> Option<u64> {
        self.fields.get(key).and_then(|v| v.parse().ok())
    }
    fn str(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or("")
    }
}

/// Parses every `CASE <name> k=v ...` line of a console log.
pub fn parse_cases(console: &str) -> Vec<Case> {
    console
        .lines()
        .filter_map(|line| {
            let rest = line.trim_end_matches('\r').split_once("CASE ")?.1;
            let mut words = rest.split_whitespace();
            let name = words.next()?.to_string();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some(Case { name, fields })
        })
        .collect()
}

/// What the DIO cases must show on a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DioPins {
    /// DIO pins pages (FOLL_PIN): every DIO case pins more than 0 pages.
    Pinned,
    /// DIO takes FOLL_GET references (6.1): every DIO case shows 0 pins.
    Referenced,
}

/// Checks one case: the run succeeded, nothing was lost, the pin figures were measured and
/// equal the /proc/vmstat deltas exactly, and the DIO expectation holds.
pub fn check_case(case: &Case, expect: DioPins) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |what: String| problems.push(format!("{}: {what}", case.name));
    if case.int("status") != Some(0) {
        bad(format!("workload or tracer exited with status {}", case.str("status")));
    }
    if case.str("accounting") != "measured" {
        bad(format!("pin accounting was '{}', not measured", case.str("accounting")));
    }
    if case.int("lost") != Some(0) {
        bad(format!("lost events: {}", case.str("lost")));
    }
    let (p, u) = (case.int("pinned"), case.int("unpinned"));
    let (a, r) = (case.int("vm_acquired"), case.int("vm_released"));
    if p.is_none() || p != a {
        bad(format!("pages pinned {} != vmstat nr_foll_pin_acquired delta {}", case.str("pinned"), case.str("vm_acquired")));
    }
    if u.is_none() || u != r {
        bad(format!("pages unpinned {} != vmstat nr_foll_pin_released delta {}", case.str("unpinned"), case.str("vm_released")));
    }
    match (expect, p) {
        (DioPins::Pinned, Some(0)) => bad("no pages pinned: DIO pins on this kernel".into()),
        (DioPins::Referenced, Some(n)) if n > 0 => bad(format!("{n} pages pinned: DIO takes references on this kernel")),
        _ => {}
    }
    problems
}

/// Checks a whole guest run: at least `min_cases` cases, all passing, and the script finished.
pub fn check_run(console: &str, expect: DioPins, min_cases: usize) -> Result<Vec<Case>> {
    let cases = parse_cases(console);
    let mut problems: Vec<String> = cases.iter().flat_map(|c| check_case(c, expect)).collect();
    if !console.contains("CASES-DONE") {
        problems.push("the guest script did not finish (no CASES-DONE)".into());
    }
    if cases.len() < min_cases {
        problems.push(format!("only {} cases ran, expected at least {min_cases}", cases.len()));
    }
    if !problems.is_empty() {
        bail!("{} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    Ok(cases)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = "noise\r\nCASE nullb0-dd-read status=0 pinned=1648 unpinned=1648 lost=0 accounting=measured vm_acquired=1648 vm_released=1648\r\nCASES-DONE\n";

    #[test]
    fn parses_case_lines_amid_console_noise() {
        let cases = parse_cases(GOOD);
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].name, "nullb0-dd-read");
        assert_eq!(cases[0].int("pinned"), Some(1648));
    }

    #[test]
    fn equal_counts_pass_and_any_difference_fails() {
        assert!(check_run(GOOD, DioPins::Pinned, 1).is_ok());
        let off_by_one = GOOD.replace("vm_released=1648", "vm_released=1649");
        let err = check_run(&off_by_one, DioPins::Pinned, 1).unwrap_err().to_string();
        assert!(err.contains("unpinned 1648 != vmstat nr_foll_pin_released delta 1649"), "{err}");
    }

    #[test]
    fn expectations_per_kernel_and_missing_fields_fail() {
        let err = check_run(GOOD, DioPins::Referenced, 1).unwrap_err().to_string();
        assert!(err.contains("DIO takes references"), "{err}");
        let zero = "CASE x status=0 pinned=0 unpinned=0 lost=0 accounting=measured vm_acquired=0 vm_released=0\nCASES-DONE";
        assert!(check_run(zero, DioPins::Referenced, 1).is_ok());
        assert!(check_run(zero, DioPins::Pinned, 1).is_err());
        let empty = "CASE x status=0 pinned= unpinned= lost=0 accounting=unverifiable vm_acquired=0 vm_released=0\nCASES-DONE";
        let err = check_run(empty, DioPins::Referenced, 1).unwrap_err().to_string();
        assert!(err.contains("not measured") && err.contains("pages pinned  !="), "{err}");
    }

    #[test]
    fn unfinished_or_short_runs_fail() {
        assert!(check_run(&GOOD.replace("CASES-DONE", ""), DioPins::Pinned, 1).is_err());
        assert!(check_run(GOOD, DioPins::Pinned, 2).is_err());
    }
}
