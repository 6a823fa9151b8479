//! The "large folios" VM test (test/vm/large-folios.sh): Direct I/O into transparent huge pages,
//! several bios pinning pages of one folio at once, with THP `always` and `never`. Every case
//! passes the checks of every DIO case ([`suite::check_case`]); on top, THP must really have been
//! in play where it was asked for, and the kernel side must have read the tail pages' heads.

use anyhow::{bail, Result};

use crate::suite::{self, DioPins};

/// Cases per run: per THP mode, 3 engines on 4 targets and 2 thp-halves cases.
pub const CASES: usize = 2 * (3 * 4 + 2);

pub fn run(kernel: &str, expect: DioPins) -> Result<String> {
    let console = suite::run_script(kernel, "large-folios.sh", 2400)?;
    check(&console, expect)
}

/// The host-side verdict on a console of large-folios.sh.
pub fn check(console: &str, expect: DioPins) -> Result<String> {
    let cases = suite::check_run(console, expect, CASES)?;
    let mut problems = Vec::new();
    if console.contains("THP-MISSING") {
        problems.push("the guest kernel has no /sys/kernel/mm/transparent_hugepage/enabled".to_string());
    }
    for line in console.lines().filter_map(|l| l.split_once("THP-HALVES ").map(|(_, r)| r)) {
        if line.contains("mode=always") && !line.contains("huge=yes") {
            problems.push(format!("thp-halves did not get a huge page with THP always: {line}"));
        }
    }
    let faults = |mode: &str| -> Option<u64> {
        console
            .lines()
            .filter_map(|l| l.split_once("THP-FAULTS ").map(|(_, r)| r))
            .find(|r| r.starts_with(&format!("mode={mode} ")))
            .and_then(|r| r.split_once("n=").and_then(|(_, n)| n.trim().parse().ok()))
    };
    if faults("always").unwrap_or(0) == 0 {
        problems.push("no huge page was faulted in with THP always (thp_fault_alloc did not move)".to_string());
    }
    let large =
        |mode: &str| -> u64 { cases.iter().filter(|c| c.str("thp") == mode).filter_map(|c| c.int("pl_large")).sum() };
    // Pins of tail pages (FOLL_PIN: DIO on 6.2+, registered buffers everywhere) name their head.
    if large("always") == 0 {
        problems.push(
            "no pinned page was seen in a large folio with THP always: the tail pages' heads were not read".to_string(),
        );
    }
    if large("never") != 0 {
        problems.push(format!("{} pinned pages seen in large folios with THP never", large("never")));
    }
    if !problems.is_empty() {
        bail!("{} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    let pinned: u64 = cases.iter().filter_map(|c| c.int("pinned")).sum();
    Ok(format!(
        "({} cases, {pinned} pages pinned, {} of them tails of huge pages with THP always; every unpin matched, none of unknown origin)",
        cases.len(),
        large("always")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(name: &str) -> String {
        std::fs::read_to_string(crate::workspace_root().join("xtask/tests/fixtures").join(name)).unwrap()
    }

    #[test]
    fn recorded_large_folio_runs_pass_their_checks() {
        for (file, expect) in RECORDED {
            check_recorded(file, expect);
        }
    }

    /// Consoles of large-folios.sh recorded in the VMs (xtask/tests/fixtures).
    const RECORDED: [(&str, DioPins); 2] =
        [("large-folios-6.1.log", DioPins::Referenced), ("large-folios-sid.log", DioPins::Pinned)];

    fn check_recorded(file: &str, expect: DioPins) {
        {
            let c = console(file);
            check(&c, expect).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            // A pin left outstanding in one case (a false leak) fails the run.
            let off = c.replacen("pl_outstanding=0 ", "pl_outstanding=1 ", 1);
            assert_ne!(off, c);
            let err = check(&off, expect).unwrap_err().to_string();
            assert!(err.contains("1 pages still pinned at the end"), "{file}: {err}");
            // Unpins charged to another process than the pins' owner (consoles with owners).
            if c.contains("owner=fio") {
                let wrong = c.replacen("procs=fio/", "procs=kworker/", 1);
                assert_ne!(wrong, c);
                let err = check(&wrong, expect).unwrap_err().to_string();
                assert!(err.contains("only fio pins here"), "{file}: {err}");
            }
            // No huge page for the two threads with THP always: the case proves nothing.
            let small = c.replacen("mode=always op=read huge=yes", "mode=always op=read huge=no", 1);
            assert_ne!(small, c);
            let err = check(&small, expect).unwrap_err().to_string();
            assert!(err.contains("did not get a huge page"), "{file}: {err}");
            // Tail pages never seen (the heads unread): fails.
            let unread: String = c
                .lines()
                .map(|l| if l.starts_with("CASE always-") { regex_free_zero(l, "pl_large=") } else { l.to_string() })
                .collect::<Vec<_>>()
                .join("\n");
            let err = check(&unread, expect).unwrap_err().to_string();
            assert!(err.contains("tail pages' heads were not read"), "{file}: {err}");
        }
    }

    /// `line` with the number after `key` replaced by 0.
    fn regex_free_zero(line: &str, key: &str) -> String {
        let Some(at) = line.find(key) else { return line.to_string() };
        let start = at + key.len();
        let end = line[start..].find(' ').map_or(line.len(), |e| start + e);
        format!("{}0{}", &line[..start], &line[end..])
    }
}
