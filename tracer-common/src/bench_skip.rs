//! Benchmark ablation: parts of a page record the kernel side leaves out when the loader is
//! told to (`TRACER_BENCH_SKIP`, for `cargo xtask bench ablation` only), to measure what each
//! part costs. Never set in a user's run: a record without its pages or its output breaks the
//! ledger, and the tracer says so when it is set.

/// The owner: pid and tgid, cgroup, command name (three helper calls).
pub const OWNER: u64 = 1;
/// The kernel stack (learned path or walk).
pub const STACK: u64 = 1 << 1;
/// The page list: the array's copy and each page's folio.
pub const PAGES: u64 = 1 << 2;
/// The copy into the ring buffer.
pub const OUTPUT: u64 = 1 << 3;
/// The whole record: the program only counts (and runs its chain).
pub const RECORD: u64 = 1 << 4;
/// A learned path's checks of the stack (taken as holding): what is left of the stack's cost
/// is the path's lookup, the frames' copy and the rewalks.
pub const CHECKS: u64 = 1 << 5;
/// A learned path's frames' copy into the record (the record says as many frames, unwritten).
pub const FRAMES: u64 = 1 << 6;

/// Names of the parts, as `TRACER_BENCH_SKIP` lists them.
pub const PARTS: [(&str, u64); 7] = [
    ("owner", OWNER),
    ("stack", STACK),
    ("pages", PAGES),
    ("output", OUTPUT),
    ("record", RECORD),
    ("checks", CHECKS),
    ("frames", FRAMES),
];

/// The mask of a comma-separated list of part names ("" is none); the first unknown name is
/// the error.
pub fn parse(list: &str) -> Result<u64, &str> {
    let mut mask = 0;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match PARTS.iter().find(|(n, _)| *n == name) {
            Some((_, bit)) => mask |= bit,
            None => return Err(name),
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_parts() {
        assert_eq!(parse(""), Ok(0));
        assert_eq!(parse("stack"), Ok(STACK));
        assert_eq!(parse("owner, pages,output"), Ok(OWNER | PAGES | OUTPUT));
        assert_eq!(parse("record,stack,"), Ok(RECORD | STACK));
        assert_eq!(parse("checks,frames"), Ok(CHECKS | FRAMES));
        assert_eq!(parse("stack,walk"), Err("walk"));
    }
}
