//! /proc/vmstat's FOLL_PIN counters, the kernel's own totals that the tracer is checked against.
//!
//! They are per-CPU deltas folded lazily, so they are refreshed (write to
//! /proc/sys/vm/stat_refresh, root only) before every read.

use std::fs;

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FollPin {
    pub nr_foll_pin_acquired: u64,
    pub nr_foll_pin_released: u64,
}

impl FollPin {
    pub fn since(self, earlier: FollPin) -> FollPin {
        FollPin {
            nr_foll_pin_acquired: self.nr_foll_pin_acquired.saturating_sub(earlier.nr_foll_pin_acquired),
            nr_foll_pin_released: self.nr_foll_pin_released.saturating_sub(earlier.nr_foll_pin_released),
        }
    }
}

/// Refreshes and reads the counters; None when this kernel has none (or /proc is unreadable).
pub fn read() -> Option<FollPin> {
    // Fails without root; the figures are then only as fresh as the kernel's last fold.
    let _ = fs::write("/proc/sys/vm/stat_refresh", "1");
    parse(&fs::read_to_string("/proc/vmstat").ok()?)
}

fn parse(text: &str) -> Option<FollPin> {
    let mut acquired = None;
    let mut released = None;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        match (it.next(), it.next().and_then(|v| v.parse().ok())) {
            (Some("nr_foll_pin_acquired"), Some(v)) => acquired = Some(v),
            (Some("nr_foll_pin_released"), Some(v)) => released = Some(v),
            _ => {}
        }
    }
    Some(FollPin { nr_foll_pin_acquired: acquired?, nr_foll_pin_released: released? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_counters() {
        let v = parse("nr_free_pages 1\nnr_foll_pin_acquired 1648\nnr_foll_pin_released 1640\n").unwrap();
        assert_eq!(v, FollPin { nr_foll_pin_acquired: 1648, nr_foll_pin_released: 1640 });
        assert_eq!(parse("nr_free_pages 1\n"), None);
        let d = FollPin { nr_foll_pin_acquired: 2000, nr_foll_pin_released: 2000 }.since(v);
        assert_eq!(d, FollPin { nr_foll_pin_acquired: 352, nr_foll_pin_released: 360 });
    }
}
