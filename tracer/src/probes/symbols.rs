//! Kernel symbols from /proc/kallsyms, for the names of the call paths the records carry: read
//! once the programs are attached (their frames then have `bpf_*` names), parsed without
//! copying any name out of the text (parsing takes seconds under emulation).

use std::{fmt, fs, ops::Range};

/// Every line of /proc/kallsyms: its address and its name (with a module's `\t[module]` suffix),
/// by address; of several at one address, the last line's.
#[derive(Default)]
pub struct KernelSymbols {
    text: String,
    /// (address, the name's place in `text`), sorted by address.
    index: Vec<(u64, Range<u32>)>,
}

impl fmt::Debug for KernelSymbols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KernelSymbols({} symbols)", self.index.len())
    }
}

impl KernelSymbols {
    /// /proc/kallsyms now; none when it cannot be read (logged: call paths stay addresses).
    pub fn read() -> KernelSymbols {
        match fs::read_to_string("/proc/kallsyms") {
            Ok(text) => KernelSymbols::parse(text),
            Err(e) => {
                log::warn!("/proc/kallsyms unreadable, call paths stay addresses: {e}");
                KernelSymbols::default()
            }
        }
    }

    /// The symbols of /proc/kallsyms' `text` ("address type name [module]" per line); none at
    /// all when a line does not read so (then call paths stay addresses, and that is logged).
    pub fn parse(text: String) -> KernelSymbols {
        let mut index = Vec::new();
        for line in text.lines() {
            let mut parts = line.splitn(4, ' ');
            let parsed = (|| {
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let _kind = parts.next()?;
                let name = parts.next()?;
                let start = name.as_ptr() as usize - text.as_ptr() as usize;
                Some((addr, u32::try_from(start).ok()?..u32::try_from(start + name.len()).ok()?))
            })();
            match parsed {
                Some(symbol) => index.push(symbol),
                None => {
                    log::warn!("/proc/kallsyms line unreadable ({line:?}), call paths stay addresses");
                    return KernelSymbols::default();
                }
            }
        }
        // The last line of an address wins: reversed, a stable sort puts it first.
        index.reverse();
        index.sort_by_key(|(addr, _)| *addr);
        index.dedup_by_key(|(addr, _)| *addr);
        KernelSymbols { text, index }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The symbol at or below `ip`: its address and name.
    pub fn at(&self, ip: u64) -> Option<(u64, &str)> {
        let i = self.index.partition_point(|(addr, _)| *addr <= ip).checked_sub(1)?;
        let (addr, name) = &self.index[i];
        Some((*addr, &self.text[name.start as usize..name.end as usize]))
    }

    /// "function+0xoff" for a kernel address, or the address in hex.
    pub fn symbolize(&self, ip: u64) -> String {
        match self.at(ip) {
            Some((start, name)) => format!("{name}+{:#x}", ip - start),
            None => format!("{ip:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "ffffffff81000000 T _stext\n\
                        ffffffff81000100 t pin_user_pages_fast\n\
                        ffffffff81000100 T pin_alias\n\
                        ffffffff81000200 D some_data\n\
                        ffffffffc0001000 t nfs_direct_read_schedule_iovec\t[nfs]\n";

    #[test]
    fn addresses_resolve_to_the_symbol_at_or_below_them() {
        let s = KernelSymbols::parse(TEXT.to_string());
        assert_eq!(s.len(), 4);
        assert_eq!(s.symbolize(0xffff_ffff_8100_0010), "_stext+0x10");
        assert_eq!(s.symbolize(0xffff_ffff_8100_0105), "pin_alias+0x5", "the last line of an address wins");
        assert_eq!(s.symbolize(0xffff_ffff_c000_1004), "nfs_direct_read_schedule_iovec\t[nfs]+0x4");
        assert_eq!(s.symbolize(0x1000), "0x1000", "below every symbol");
    }

    #[test]
    fn an_unreadable_line_leaves_no_symbols() {
        let s = KernelSymbols::parse(format!("{TEXT}not a symbol line\n"));
        assert_eq!(s.len(), 0);
        assert_eq!(s.symbolize(0xffff_ffff_8100_0010), "0xffffffff81000010");
        assert_eq!(KernelSymbols::parse(String::new()).len(), 0);
    }
}
