//! A task's command name as the kernel's `bpf_get_current_comm` gives it, from the raw bytes of
//! `task_struct.comm` (the eBPF side loads them as two words instead of calling the helper).

/// The word `w` (8 bytes of a comm, in memory order) up to its first NUL byte, the bytes from
/// there on zero; and whether it had a NUL. Branch-free but for the answer, for the verifier:
/// a zero byte gets its high bit set by the borrow trick, and the lowest byte so flagged is the
/// first NUL (a byte above it can be flagged wrongly, one below it never is).
#[inline(always)]
pub fn comm_word_below_nul(w: u64) -> (u64, bool) {
    let zeros = w.wrapping_sub(0x0101_0101_0101_0101) & !w & 0x8080_8080_8080_8080;
    if zeros == 0 {
        return (w, false);
    }
    let first = zeros & zeros.wrapping_neg();
    (w & (first >> 7).wrapping_sub(1), true)
}

/// The comm of `raw` (16 bytes) as the helper gives it: up to the first NUL, zero-padded.
#[inline(always)]
pub fn comm_below_nul(raw: [u64; 2]) -> [u64; 2] {
    let (first, ended) = comm_word_below_nul(raw[0]);
    let second = if ended { 0 } else { comm_word_below_nul(raw[1]).0 };
    [first, second]
}

#[cfg(test)]
mod tests {
    use super::comm_below_nul;
    use proptest::prelude::*;

    /// What strscpy_pad into a 16-byte buffer leaves: the bytes before the first NUL, then zeros.
    fn reference(bytes: [u8; 16]) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (o, &b) in out.iter_mut().zip(bytes.iter().take_while(|&&b| b != 0)) {
            *o = b;
        }
        out
    }

    fn words(b: [u8; 16]) -> [u64; 2] {
        [u64::from_le_bytes(b[..8].try_into().unwrap()), u64::from_le_bytes(b[8..].try_into().unwrap())]
    }

    #[test]
    fn names_and_what_follows_them() {
        let mut b = *b"fio\0garbage\0\0\0\0\0";
        assert_eq!(comm_below_nul(words(b)), words(*b"fio\0\0\0\0\0\0\0\0\0\0\0\0\0"));
        b = *b"kworker/u8:3\0\x01\x01\x01";
        assert_eq!(comm_below_nul(words(b)), words(*b"kworker/u8:3\0\0\0\0"));
        b = *b"fifteen-chars-x\0";
        assert_eq!(comm_below_nul(words(b)), words(b));
        b = [0x80; 16];
        assert_eq!(comm_below_nul(words(b)), words(b), "no NUL: all of it");
        b = *b"\0\x01abcdefghijklmn";
        assert_eq!(comm_below_nul(words(b)), [0, 0]);
    }

    proptest! {
        #[test]
        fn as_the_helper_pads_it(bytes in proptest::array::uniform16(any::<u8>())) {
            prop_assert_eq!(comm_below_nul(words(bytes)), words(reference(bytes)));
        }

        #[test]
        fn with_few_distinct_bytes(bytes in proptest::array::uniform16(prop_oneof![Just(0u8), Just(1u8), Just(0x80u8), Just(0xffu8), Just(b'a')])) {
            prop_assert_eq!(comm_below_nul(words(bytes)), words(reference(bytes)));
        }
    }
}
