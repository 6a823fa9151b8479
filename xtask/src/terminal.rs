//! The "dashboard in a real terminal, Prometheus scraped" VM step: test/vm/terminal.sh runs
//! `tracer run --prometheus --report` in tmux (160x48) beside fio and a process that keeps
//! pages pinned, sends keys and ships the screens, the report that `e` wrote and two scrapes of
//! the endpoint (the second after 1000 processes each pinned a page). The host checks what a
//! person would look for on each screen, parses the report, and parses the scrapes with a real
//! exposition-format parser (Debian's python3-prometheus-client). The screens are kept in
//! target/vm/terminal/ for people to look at.

use std::{collections::BTreeSet, process::Command};

use anyhow::{bail, Context, Result};

use crate::{suite, workspace_root};

/// Labels that would make the series count grow with the processes or pages traced.
const UNBOUNDED_LABELS: &[&str] = &["pid", "tgid", "tid", "comm", "address", "addr", "pfn", "page", "stack"];

/// Runs the step on `kernel`.
pub fn run(kernel: &str) -> Result<String> {
    let console = suite::run_script(kernel, "terminal.sh", 1800)?;
    if !console.contains("TERMINAL-DONE") {
        bail!("the guest script did not finish (TERMINAL-DONE missing)");
    }
    let dir = workspace_root().join("target/vm/terminal").join(kernel);
    std::fs::create_dir_all(&dir)?;
    let screen = |name: &str| -> Result<String> {
        let text = String::from_utf8(suite::shipped_file(&console, &format!("pane-{name}"))?)
            .with_context(|| format!("screen {name}: not UTF-8"))?;
        std::fs::write(dir.join(format!("{name}.txt")), &text)?;
        Ok(text)
    };
    let overview = screen("overview")?;
    // fio started before the tracer: what it pinned while the probes attached is not the
    // trace's, and its correct I/O must not look leaked (it did until the trace's start cut
    // the attachment's records off).
    expect(&overview, "overview", &["1 Overview", "FOLL_PIN pages", "bio ledger: clean", "owner exited 0", "q quit"])?;
    let rate = pinned_per_second(&overview).context("overview: no 'per second' line")?;
    if rate == 0 {
        bail!("overview: the pin rate is 0 while fio runs:\n{overview}");
    }
    let paths = screen("callpaths")?;
    expect(&paths, "call paths", &["Call paths", "longterm", "io_pin_pages"])?;
    let stack = screen("callpath-stack")?;
    expect(&stack, "call path drill-down", &["callers, innermost first", "io_sqe_buffer_register", "outstanding"])?;
    let latency = screen("latency")?;
    expect(&latency, "latency", &["Latency", "P50", "P99", "vda"])?;
    expect(&screen("probes")?, "probes", &["pin_user_pages_fast", "fexit"])?;
    expect(&screen("help")?, "help", &["export"])?;
    expect(&screen("export")?, "export", &["export requested"])?;
    let report: serde_json::Value = serde_json::from_slice(&suite::shipped_file(&console, "report")?)
        .context("the report `e` wrote is not JSON")?;
    for key in ["schema_version", "kernel", "probes", "summary", "page_ledger", "latency"] {
        if report.get(key).is_none() {
            bail!("the report `e` wrote has no `{key}`");
        }
    }
    let before = scrape(&console, "metrics-1")?;
    let after = scrape(&console, "metrics-2")?;
    if after.series > before.series + 64 {
        bail!(
            "metrics: {} series before 1000 processes pinned, {} after: the labels are not bounded",
            before.series,
            after.series
        );
    }
    if !console.contains("TRACER-EXITED 0") {
        bail!(
            "the tracer did not exit 0 after `q` ({})",
            console.lines().find(|l| l.contains("TRACER-EXITED")).unwrap_or("no exit seen")
        );
    }
    Ok(format!(
        "(pin rate {rate}/s on the overview; call path drill-down, latency, probes, help, export seen; \
         report parses; {} series before and {} after 1000 processes pinned, labels {:?}; screens in {})",
        before.series,
        after.series,
        after.labels,
        dir.display()
    ))
}

fn expect(screen: &str, what: &str, wanted: &[&str]) -> Result<()> {
    for w in wanted {
        if !screen.contains(w) {
            bail!("{what} screen lacks '{w}':\n{screen}");
        }
    }
    Ok(())
}

/// N of "per second (...): N pinned".
fn pinned_per_second(screen: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.contains("per second"))?;
    let after = line.split_once("):")?.1;
    after.split_whitespace().next()?.replace(',', "").parse().ok()
}

/// What a scrape held, as the parser saw it.
struct Scrape {
    series: usize,
    labels: BTreeSet<String>,
}

/// Parses the scrape shipped as `name` with prometheus_client's parser; fails on a parse
/// error or an unbounded label.
fn scrape(console: &str, name: &str) -> Result<Scrape> {
    let text = suite::shipped_file(console, name)?;
    let path = workspace_root().join("target/vm/terminal").join(format!("{name}.txt"));
    std::fs::write(&path, &text)?;
    let program = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        n = 0\n\
        labels = set()\n\
        for family in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   for s in family.samples:\n\
        \x20       n += 1\n\
        \x20       labels.update(s.labels.keys())\n\
        print(n)\n\
        print(' '.join(sorted(labels)))\n";
    let out = Command::new("/usr/bin/python3")
        .args(["-c", program])
        .arg(&path)
        .output()
        .context("running /usr/bin/python3 (python3-prometheus-client: scripts/setup.sh installs it)")?;
    if !out.status.success() {
        bail!("{name}: the exposition-format parser refused the scrape: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let series: usize = lines.next().unwrap_or("0").trim().parse().context("parser output")?;
    let labels: BTreeSet<String> = lines.next().unwrap_or("").split_whitespace().map(str::to_string).collect();
    if series == 0 {
        bail!("{name}: no samples");
    }
    if let Some(bad) = labels.iter().find(|l| UNBOUNDED_LABELS.contains(&l.as_str())) {
        bail!("{name}: label `{bad}` grows with what is traced");
    }
    Ok(Scrape { series, labels })
}
