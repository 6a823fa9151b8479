//! The folio of a struct page, as the kernel side finds it.

/// The head page (folio) of the struct page at `page`, from the word `info` at its
/// compound_head (compound_info from 7.0). Bit 0 clear: `page` is its own head. Bit 0 set: a
/// tail page, whose word is either its head's address + 1, or (7.0+ kernels with HugeTLB vmemmap
/// optimization and a power-of-two struct page) a mask + 1 with `head = page & mask`, the mask
/// being ones down to bit `order + log2(sizeof(struct page))` and zeros below. The two are told
/// apart by value: no struct page address has that shape (vmemmap lies far below the top of the
/// address space). Branch-free, for the eBPF verifier.
#[inline(always)]
pub fn head_of(page: u64, info: u64) -> u64 {
    let tail = 0u64.wrapping_sub(info & 1);
    let word = info & !1;
    // A mask: its complement is 2^k - 1, so complement & (complement + 1) is 0.
    let below = !word;
    let x = below & below.wrapping_add(1);
    let pointer = 0u64.wrapping_sub((x | x.wrapping_neg()) >> 63);
    let head = (pointer & word) | (!pointer & (page & word));
    (tail & head) | (!tail & page)
}

#[cfg(test)]
mod head_tests {
    use super::head_of;

    const VMEMMAP: u64 = 0xffff_ea00_0000_0000;

    #[test]
    fn heads_pointers_and_masks() {
        let head = VMEMMAP + 0x8000 * 64; // pfn 0x8000: 2 MiB aligned (order 9)
        let tail = head + 300 * 64;
        assert_eq!(head_of(head, 0), head, "a head or small page is its own folio");
        assert_eq!(head_of(head, 0x0000_0000_0000_0400), head, "bit 0 clear: not a tail page");
        assert_eq!(head_of(tail, head + 1), head, "pointer encoding (before 7.0, or without the mask)");
        // Mask encoding: order 9, 64-byte struct page: ones from bit 15 up.
        let mask = !((1u64 << (9 + 6)) - 1);
        assert_eq!(head_of(tail, mask | 1), head, "mask encoding");
        // Another folio of the same order gets the same word and its own head.
        let other = VMEMMAP + 0x40_0000 * 64;
        assert_eq!(head_of(other + 5 * 64, mask | 1), other);
        // Order 1 (the smallest large folio) and a PUD-sized order 18.
        let o1 = !((1u64 << 7) - 1);
        assert_eq!(head_of(VMEMMAP + 3 * 64, o1 | 1), VMEMMAP + 2 * 64);
        let o18 = !((1u64 << 24) - 1);
        assert_eq!(head_of(VMEMMAP + 0x1234 * 64, o18 | 1), VMEMMAP);
        // A failed read (0) leaves the page its own folio.
        assert_eq!(head_of(tail, 0), tail);
    }

    #[test]
    fn randomized_vmemmap_bases_are_read_as_pointers() {
        // x86_64 KASLR moves vmemmap_base in 1 GiB steps between the direct map and vmalloc.
        for base in [0xffff_d4d8_0000_0000u64, 0xffff_c000_0000_0000, VMEMMAP, 0xffff_fe00_0000_0000] {
            for pfn in [0u64, 512, 0x3_ffff_fe00] {
                let head = base + pfn * 64;
                assert_eq!(head_of(head + 64, head + 1), head, "base {base:#x} pfn {pfn:#x}");
            }
        }
    }
}
