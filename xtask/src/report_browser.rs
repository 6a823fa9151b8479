//! The "HTML report in a browser" host step: a report made by `tracer report` from a record
//! fixture (the sid THP fio case: page ledger, bios, latency) is opened in headless Chromium
//! (Debian's package, which scripts/setup.sh installs). It must load with no console message,
//! the rendered page must hold every chart, and a screenshot is kept for people to look at.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::workspace_root;

const FIXTURE: &str = "tracer/tests/fixtures/sid-thp-fio-qd4.rec";

/// Runs the step; the message names the charts seen and the screenshot.
pub fn run() -> Result<String> {
    let root = workspace_root();
    let dir = root.join("target/report-test");
    std::fs::create_dir_all(&dir)?;
    let html = dir.join("report.html");
    let _ = std::fs::remove_file(&html);
    let out = Command::new(root.join("target/release/tracer"))
        .args(["report", FIXTURE, "--report"])
        .arg(&html)
        .current_dir(&root)
        .output()
        .context("running target/release/tracer")?;
    if !out.status.success() {
        bail!("tracer report {FIXTURE} --report {} failed: {}", html.display(), String::from_utf8_lossy(&out.stderr));
    }
    let url = format!("file://{}", html.display());
    let dom = chromium(&dir, &["--dump-dom", &url])?;
    let shot = dir.join("report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&dir, &["--window-size=1280,4000", &format!("--screenshot={}", shot.display()), &url])?;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    if size < 10_000 {
        bail!("the screenshot {} is missing or blank ({size} bytes)", shot.display());
    }
    let charts = check_dom(&dom)?;
    Ok(format!("({charts} charts drawn, no console message; screenshot {})", shot.display()))
}

/// Runs headless Chromium on a page; fails on any console message of the page.
fn chromium(dir: &Path, args: &[&str]) -> Result<String> {
    let profile = dir.join("chromium-profile");
    let _ = std::fs::remove_dir_all(&profile);
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .context("running chromium (Debian's package; scripts/setup.sh installs it)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    if !console.is_empty() {
        bail!("the page logged to the console:\n{}", console.join("\n"));
    }
    if !out.status.success() {
        bail!("chromium {} failed ({}): {}", args.join(" "), out.status, stderr.lines().last().unwrap_or(""));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks the page as Chromium rendered it: every chart is there and drew something. Returns
/// how many charts there are.
pub fn check_dom(dom: &str) -> Result<usize> {
    for id in ["outstanding-over-time", "pin-ages"] {
        if !dom.contains(&format!("id=\"{id}\"")) {
            bail!("chart {id} missing from the rendered page");
        }
    }
    let figures: Vec<&str> = dom.split("<figure").skip(1).collect();
    if !figures.iter().any(|f| f.contains("class=\"latency\"")) {
        bail!("no latency histogram in the rendered page");
    }
    for f in &figures {
        let id = f.split("id=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
        let body = f.split("</figure>").next().unwrap_or("");
        if !body.contains("<svg") || !(body.contains("<rect") || body.contains("<polyline")) {
            bail!("chart {id} drew nothing");
        }
    }
    Ok(figures.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_without_its_charts_fails() {
        let good = "<figure id=\"outstanding-over-time\"><svg><polyline/></svg></figure>\
                    <figure id=\"pin-ages\"><svg><rect/></svg></figure>\
                    <figure class=\"latency\" id=\"latency-d2c-nullb0-read\"><svg><rect/></svg></figure>";
        assert_eq!(check_dom(good).unwrap(), 3);
        let empty = good.replace("<polyline/>", "");
        assert!(check_dom(&empty).unwrap_err().to_string().contains("outstanding-over-time drew nothing"));
        let no_latency = good.replace("class=\"latency\"", "");
        assert!(check_dom(&no_latency).is_err());
        assert!(check_dom("<html></html>").is_err());
    }
}
