//! `cargo xtask bench ledger`: the userspace engine on one core, from record files.
//!
//! - Throughput: a record file captured in a VM (tracer/tests/fixtures; by default the suite's
//!   replay workloads on 6.12: pin, unpin, bio, block and symbols records) is replicated until it
//!   holds `--events` records (each copy's timestamps moved past the previous copy's), and
//!   `tracer report` replays it pinned to one CPU: decode, both ledgers, latency histograms,
//!   everything a live run does with the records. Events per second = the kernel events the
//!   records carry / wall time: a record each, and each start the kernel side's stamp table kept
//!   for a completion (which the records carried as one more record before: the request's issue,
//!   a bio's queueing), so that the figure stays comparable when records carry more.
//! - Memory per outstanding pinned page: synthetic files of FOLL_PIN|FOLL_LONGTERM pin records
//!   (io_uring registered buffers: 512 distinct pages per call, never unpinned) holding 1e5 and
//!   1e6 pages, replayed through a pipe (a named file is mapped, and its pages would count in
//!   max RSS); (max RSS - max RSS of an empty file) / pages. The
//!   kernel side keeps nothing per outstanding page (pins are streamed, not kept in maps).
//!
//! Prints a Markdown table for docs/benchmarks.md.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use tracer_common::{
    block::{BlockHeader, RqBio},
    Owner, PageEntry, PageEvent, PagesHeader, ProbeId, RecordType, COMM_LEN, PAGES_STACK_FRAMES,
};

use crate::workspace_root;

#[derive(clap::Args, Debug)]
pub struct LedgerBenchArgs {
    /// Record file to replicate for the throughput figure.
    #[arg(long, default_value = "tracer/tests/fixtures/6.12-workloads.rec")]
    pub stream: PathBuf,
    /// Records in the replicated stream.
    #[arg(long, default_value_t = 5_000_000)]
    pub events: u64,
    /// Outstanding pinned pages of the memory figures.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub pages: Vec<u64>,
}

const MAGIC: &[u8; 8] = b"TRACEREC";
const FRAME_RECORD: u8 = 1;
const FRAME_TRAILER: u8 = 2;

/// A record file: its metadata JSON and its record payloads.
struct RecordFile {
    metadata: serde_json::Value,
    records: Vec<Vec<u8>>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(b.get(at..at + 4).context("short file")?.try_into()?))
}

fn read_file(path: &Path) -> Result<RecordFile> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if b.get(..8) != Some(MAGIC) {
        bail!("{}: not a record file", path.display());
    }
    let m = u32_at(&b, 12)? as usize;
    let metadata = serde_json::from_slice(b.get(16..16 + m).context("short metadata")?)?;
    let mut at = 16 + m;
    let mut records = Vec::new();
    while at < b.len() {
        let kind = b[at];
        let len = u32_at(&b, at + 1)? as usize;
        let payload = b.get(at + 5..at + 5 + len).context("short frame")?;
        at += 5 + len;
        if kind == FRAME_TRAILER {
            break;
        }
        records.push(payload.to_vec());
    }
    Ok(RecordFile { metadata, records })
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

fn write_file(
    path: &Path,
    metadata: &serde_json::Value,
    records: impl Iterator<Item = Vec<u8>>,
    end_ns: u64,
) -> Result<u64> {
    let json = serde_json::to_vec(metadata)?;
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    let mut n = 0u64;
    for r in records {
        frame(&mut out, FRAME_RECORD, &r);
        n += 1;
    }
    let trailer = serde_json::json!({ "records": n, "end_monotonic_ns": end_ns });
    frame(&mut out, FRAME_TRAILER, &serde_json::to_vec(&trailer)?);
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(n)
}

/// Offsets of the timestamps in each record type (tracer-common layouts).
fn timestamps(record: u32) -> &'static [usize] {
    match record {
        r if r == RecordType::Latency as u32 => &[24, 32],
        r if r == RecordType::Bio as u32
            || r == RecordType::Pages as u32
            || r == RecordType::Exit as u32
            || r == RecordType::Block as u32 =>
        {
            &[8]
        }
        _ => &[],
    }
}

/// Offsets of the starts a block record carries (kept by the stamp table; 0 where none was):
/// the header's, and each listed bio's queueing.
fn carried_starts(rec: &[u8]) -> Vec<usize> {
    if u32_at(rec, 0).ok() != Some(RecordType::Block as u32) {
        return Vec::new();
    }
    let head = core::mem::size_of::<BlockHeader>();
    let nr_bios = u32_at(rec, core::mem::offset_of!(BlockHeader, nr_bios)).unwrap_or(0) as usize;
    let bios = (0..nr_bios)
        .map(|i| head + i * core::mem::size_of::<RqBio>() + core::mem::offset_of!(RqBio, queued_ns))
        .take_while(|at| at + 8 <= rec.len());
    std::iter::once(core::mem::offset_of!(BlockHeader, start_ns)).chain(bios).collect()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
}

/// Offsets of the starts `rec` carries: [`carried_starts`] that were kept (not 0).
fn kept_starts(rec: &[u8]) -> Vec<usize> {
    carried_starts(rec).into_iter().filter(|&at| u64_at(rec, at) != 0).collect()
}

/// The starts `rec` carries (each an event of its own: a record before the stamp table).
fn starts_in(rec: &[u8]) -> u64 {
    kept_starts(rec).len() as u64
}

/// `rec` with its timestamps `by` later (a carried start of 0, none kept, stays 0).
fn shift(mut rec: Vec<u8>, by: u64) -> Vec<u8> {
    let kind = u32_at(&rec, 0).unwrap_or(0);
    for at in timestamps(kind).iter().copied().chain(kept_starts(&rec)) {
        let ts = u64_at(&rec, at);
        if let Some(b) = rec.get_mut(at..at + 8) {
            b.copy_from_slice(&ts.saturating_add(by).to_le_bytes());
        }
    }
    rec
}

fn last_ts(records: &[Vec<u8>]) -> u64 {
    records
        .iter()
        .filter_map(|r| {
            let kind = u32::from_le_bytes(r.get(..4)?.try_into().ok()?);
            let at = *timestamps(kind).last()?;
            Some(u64::from_le_bytes(r.get(at..at + 8)?.try_into().ok()?))
        })
        .max()
        .unwrap_or(0)
}

/// How `tracer report` gets the file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    /// By its name: mapped, as a user's replay does (the throughput figure).
    Named,
    /// Through a pipe: read into the reader's buffer, so that max RSS counts the engine's memory
    /// and not the mapped file's pages (the memory figures: a live run has no file).
    Piped,
}

/// Seconds, max RSS (KiB) and pages pinned (the page ledger's last "pages" line) of `tracer
/// report FILE --format json` on CPU 0.
fn replay(tracer: &Path, file: &Path, input: Input) -> Result<(f64, u64, u64)> {
    let started = Instant::now();
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "MAXRSS %M", "taskset", "-c", "0"]).arg(tracer).args(["report", "--format", "json"]);
    let out = if input == Input::Piped {
        let mut child = cmd
            .arg("/dev/stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running /usr/bin/time (Debian package time) and taskset")?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        let mut src = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let feeder = std::thread::spawn(move || std::io::copy(&mut src, &mut stdin));
        let out = child.wait_with_output()?;
        feeder.join().map_err(|_| anyhow::anyhow!("the pipe's writer panicked"))??;
        out
    } else {
        cmd.arg(file).output().context("running /usr/bin/time (Debian package time) and taskset")?
    };
    let secs = started.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("tracer report {} failed: {err}", file.display());
    }
    let rss =
        err.lines().find_map(|l| l.strip_prefix("MAXRSS ")).and_then(|v| v.trim().parse().ok()).context("no MAXRSS")?;
    let pinned = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "pages")
        .and_then(|v| v["pinned"].as_u64())
        .unwrap_or(0);
    Ok((secs, rss, pinned))
}

/// A pin record of `n` pages starting at struct page `first`, FOLL_LONGTERM.
fn longterm_pin(ts: u64, first: u64, n: usize, longterm: u32) -> Vec<u8> {
    let header = PagesHeader {
        record: RecordType::Pages as u32,
        event: PageEvent::Pin as u32,
        ts_ns: ts,
        probe: ProbeId::PinUserPagesFast as u32,
        gup_flags: longterm | 1,
        nr: n as u32,
        n: n as u32,
        refs: 1,
        nr_frames: 0,
        flags: 0,
        _pad: 0,
        owner: Owner { tgid: 42, pid: 42, cgroup: 1, comm: *b"uring-holder\0\0\0\0" },
        frames: [0; PAGES_STACK_FRAMES],
    };
    const _: () = assert!(COMM_LEN == 16);
    let mut out = Vec::with_capacity(std::mem::size_of::<PagesHeader>() + n * 16);
    // SAFETY: PagesHeader is #[repr(C)] plain data with no padding holes left uninitialised
    // (tracer-common asserts its layout); its bytes are what the kernel side writes.
    out.extend_from_slice(unsafe {
        std::slice::from_raw_parts(&header as *const PagesHeader as *const u8, std::mem::size_of::<PagesHeader>())
    });
    for i in 0..n as u64 {
        let page = first + 64 * i;
        let e = PageEntry { page, folio: page };
        out.extend_from_slice(&e.page.to_le_bytes());
        out.extend_from_slice(&e.folio.to_le_bytes());
    }
    out
}

pub fn ledger(args: &LedgerBenchArgs) -> Result<i32> {
    let root = workspace_root();
    let status = Command::new("cargo").args(["build", "--release", "-p", "tracer"]).current_dir(&root).status()?;
    if !status.success() {
        bail!("building the tracer failed");
    }
    let tracer = root.join("target/release/tracer");
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let src = read_file(&root.join(&args.stream))?;
    if src.records.is_empty() {
        bail!("{}: no records", args.stream.display());
    }
    let span = last_ts(&src.records) + 1_000_000_000;
    let copies = args.events.div_ceil(src.records.len() as u64);
    let stream = dir.join("ledger-throughput.rec");
    let records = (0..copies).flat_map(|c| src.records.iter().map(move |r| shift(r.clone(), c * span)));
    let n = write_file(&stream, &src.metadata, records, copies * span)?;
    let events = n + copies * src.records.iter().map(|r| starts_in(r)).sum::<u64>();
    let (secs, _, _) = replay(&tracer, &stream, Input::Named)?;
    println!(
        "| stream | records | events (records + starts they carry) | seconds (1 core) | records/s | events/s |\n|---|---|---|---|---|---|"
    );
    println!(
        "| {} x {copies} | {n} | {events} | {secs:.2} | {:.2} M | {:.2} M |",
        args.stream.display(),
        n as f64 / secs / 1e6,
        events as f64 / secs / 1e6
    );

    let longterm = src.metadata["foll"]["longterm"].as_u64().unwrap_or(1 << 8) as u32;
    let mut meta = src.metadata.clone();
    meta["folio_heads"] = serde_json::Value::Bool(true);
    let empty = dir.join("ledger-memory-0.rec");
    write_file(&empty, &meta, std::iter::empty(), 1)?;
    let (_, base, _) = replay(&tracer, &empty, Input::Piped)?;
    // The trace's start: records stamped before it are left out of a replay.
    let start = meta["start_monotonic_ns"].as_u64().unwrap_or(0);
    println!(
        "\n| outstanding pinned pages | max RSS (KiB) | above an empty replay | bytes per page |\n|---|---|---|---|"
    );
    println!("| 0 | {base} | - | - |");
    for &pages in &args.pages {
        let file = dir.join(format!("ledger-memory-{pages}.rec"));
        let calls = pages.div_ceil(512);
        let recs =
            (0..calls).map(|c| longterm_pin(start + 1000 + c, 0xffff_ea00_0000_0000 + c * 512 * 64, 512, longterm));
        write_file(&file, &meta, recs, start + 2000 + calls)?;
        let (_, rss, pinned) = replay(&tracer, &file, Input::Piped)?;
        if pinned != calls * 512 {
            bail!("{}: the replay pinned {pinned} pages, not the {} written", file.display(), calls * 512);
        }
        let per = (rss.saturating_sub(base) * 1024) as f64 / (calls * 512) as f64;
        println!("| {} | {rss} | {} | {per:.0} |", calls * 512, rss.saturating_sub(base));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use tracer_common::block::BlockEvent;

    use super::*;

    /// A request completion of two bios whose issue and first bio's queueing were kept.
    fn completion(ts: u64, start: u64, queued: [u64; 2]) -> Vec<u8> {
        let head = core::mem::size_of::<BlockHeader>();
        let mut rec = vec![0u8; head + 2 * core::mem::size_of::<RqBio>()];
        let put = |rec: &mut Vec<u8>, at: usize, v: u64| rec[at..at + 8].copy_from_slice(&v.to_le_bytes());
        rec[..4].copy_from_slice(&(RecordType::Block as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&(BlockEvent::RqComplete as u32).to_le_bytes());
        put(&mut rec, core::mem::offset_of!(BlockHeader, ts_ns), ts);
        put(&mut rec, core::mem::offset_of!(BlockHeader, start_ns), start);
        let nr = core::mem::offset_of!(BlockHeader, nr_bios);
        rec[nr..nr + 4].copy_from_slice(&2u32.to_le_bytes());
        for (i, q) in queued.into_iter().enumerate() {
            put(&mut rec, head + i * core::mem::size_of::<RqBio>() + core::mem::offset_of!(RqBio, queued_ns), q);
        }
        rec
    }

    /// A copy moves the completion and the starts it carries, not the starts it lacks; each
    /// carried start counts as an event.
    #[test]
    fn copies_move_the_starts_a_completion_carries() {
        let rec = completion(500, 300, [200, 0]);
        assert_eq!(starts_in(&rec), 2);
        assert_eq!(shift(rec, 1000), completion(1500, 1300, [1200, 0]));
        assert_eq!(starts_in(&completion(500, 0, [0, 0])), 0);
        // A record cut short lists no bio past its end.
        let cut = completion(500, 300, [200, 100]);
        assert_eq!(starts_in(&cut[..cut.len() - 24]), 2);
    }
}
