//! A bio's user pages as a [`BioRecord`] names them: one span per bio vec.

use tracer_common::{BioRecord, BIO_MAX_VECS};

/// A record's vecs (at most [`BIO_MAX_VECS`], inline: a list is made per bio record, as a copy
/// of the record's two arrays) and the bio's vec count. Vec `i` starts at struct page
/// `firsts[i]` and covers `pages[i]` pages.
#[derive(Clone, Copy, Debug)]
pub struct PageList {
    firsts: [u64; BIO_MAX_VECS],
    pages: [u16; BIO_MAX_VECS],
    /// Vecs recorded (what lies beyond in the arrays is not part of the list).
    len: usize,
    /// bi_vcnt; more than `len` when the record was truncated.
    nr_vecs: u32,
}

impl Default for PageList {
    fn default() -> PageList {
        PageList { firsts: [0; BIO_MAX_VECS], pages: [0; BIO_MAX_VECS], len: 0, nr_vecs: 0 }
    }
}

impl PartialEq for PageList {
    fn eq(&self, other: &PageList) -> bool {
        self.nr_vecs == other.nr_vecs && self.len == other.len && self.first_difference(other).is_none()
    }
}

impl Eq for PageList {}

/// Lists with more pages than this are counted but not followed page by page (a record with
/// nonsense vec sizes must not fill memory).
const MAX_PAGES_FOLLOWED: u64 = 1 << 16;

impl PageList {
    pub fn of(rec: &BioRecord) -> PageList {
        let len = (rec.nr_vecs as usize).min(BIO_MAX_VECS);
        PageList { firsts: rec.pages, pages: rec.vec_pages, len, nr_vecs: rec.nr_vecs }
    }

    /// The recorded vecs: (first struct page, pages).
    fn spans(&self) -> impl Iterator<Item = (u64, u16)> + '_ {
        self.firsts[..self.len].iter().copied().zip(self.pages[..self.len].iter().copied())
    }

    /// Pages across the recorded vecs.
    pub fn pages(&self) -> u64 {
        self.pages[..self.len].iter().map(|&n| n as u64).sum()
    }

    pub fn nr_vecs(&self) -> u32 {
        self.nr_vecs
    }

    /// The bio had more vecs than a record holds: pages beyond them are not counted.
    pub fn truncated(&self) -> bool {
        self.nr_vecs as usize > self.len
    }

    /// Whether `self` is `earlier` with pages added, as a bio that is filled in several calls
    /// grows: bio_add_page appends vecs or extends the last one, and never changes the others.
    pub fn extends(&self, earlier: &PageList) -> bool {
        let grew =
            self.nr_vecs > earlier.nr_vecs || (self.nr_vecs == earlier.nr_vecs && self.pages() > earlier.pages());
        if !grew || self.len < earlier.len {
            return false;
        }
        earlier.spans().zip(self.spans()).enumerate().all(|(i, (old, new))| {
            let last = i + 1 == earlier.nr_vecs as usize;
            old.0 == new.0 && (old.1 == new.1 || (last && new.1 > old.1))
        })
    }

    /// Index of the first recorded vec where the two lists differ (a missing vec counts).
    pub fn first_difference(&self, other: &PageList) -> Option<usize> {
        let common = self.len.min(other.len);
        self.spans().zip(other.spans()).position(|(a, b)| a != b).or_else(|| (self.len != other.len).then_some(common))
    }

    /// The struct page address of the first page of the first vec (0 if none).
    pub fn first_page(&self) -> u64 {
        self.spans().next().map_or(0, |(first, _)| first)
    }

    /// Every page followed one by one: a vec of n pages starting at struct page P covers
    /// P, P + S, ..., P + (n-1)·S where S is the size of struct page (the pages of a bio vec are
    /// physically contiguous, so their struct pages are adjacent in the vmemmap). Vecs whose
    /// page could not be read (0) are skipped, and so are implausibly large lists.
    pub fn each_page(&self, struct_page_size: u64) -> impl Iterator<Item = u64> + '_ {
        let follow = self.pages() <= MAX_PAGES_FOLLOWED;
        self.spans().filter(move |&(first, _)| follow && first != 0).flat_map(move |(first, n)| {
            (0..n as u64).map(move |k| first.wrapping_add(k.wrapping_mul(struct_page_size)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(spans: &[(u64, u16)], nr_vecs: u32) -> PageList {
        let mut l = PageList { len: spans.len(), nr_vecs, ..PageList::default() };
        for (i, &(first, pages)) in spans.iter().enumerate() {
            (l.firsts[i], l.pages[i]) = (first, pages);
        }
        l
    }

    #[test]
    fn growth_is_appending_or_extending_the_last_vec() {
        let one = list(&[(0x1000, 2)], 1);
        assert!(list(&[(0x1000, 2), (0x9000, 1)], 2).extends(&one), "appended vec");
        assert!(list(&[(0x1000, 3)], 1).extends(&one), "last vec grew");
        assert!(list(&[(0x1000, 3), (0x9000, 1)], 2).extends(&one), "grew and appended");
        assert!(!one.extends(&one), "the same list is no growth");
        assert!(!list(&[(0x2000, 3)], 1).extends(&one), "another first page");
        assert!(!list(&[(0x1000, 1), (0x9000, 4)], 2).extends(&one), "a vec shrank");
        let two = list(&[(0x1000, 2), (0x9000, 1)], 2);
        assert!(!list(&[(0x1000, 3), (0x9000, 1)], 2).extends(&two), "only the last vec may grow");
        assert!(list(&[(0x1000, 1)], 1).extends(&PageList::default()));
    }

    #[test]
    fn pages_are_followed_by_struct_page_stride() {
        let l = list(&[(0x1000, 2), (0, 5), (0x9000, 1)], 3);
        assert_eq!(l.pages(), 8);
        assert_eq!(l.each_page(64).collect::<Vec<_>>(), vec![0x1000, 0x1040, 0x9000]);
        assert_eq!(l.first_difference(&l), None);
        assert_eq!(l.first_difference(&list(&[(0x1000, 2), (0, 4)], 2)), Some(1));
        assert_eq!(l.first_difference(&list(&[(0x1000, 2)], 1)), Some(1));
    }

    #[test]
    fn truncation_and_huge_lists() {
        let t = list(&[(0x1000, 1)], 40);
        assert!(t.truncated());
        let huge = list(&[(0x1000, u16::MAX), (0x100_0000, u16::MAX)], 2);
        assert_eq!(huge.each_page(64).count(), 0);
        assert_eq!(huge.pages(), 2 * u16::MAX as u64);
    }
}
