//! The object's direct-load placeholders (tracer_common::kload, tracer-ebpf/src/kload.rs)
//! turned into calls of the `bpf_rdonly_cast` kfunc where the running kernel has it.

use aya::Btf;
use aya_obj::btf::BtfKind;
use object::{Object, ObjectSection, SectionKind};
use tracer_common::kload::{self, CAST_TYPE, KFUNC};

/// The object as the loader hands it to aya, and the value of the `KLOAD_TYPE` global
/// (0: placeholders left as they are, the programs use the read helper).
pub(super) struct Patched {
    /// The patched object, 8-aligned (the ELF reader wants its structs aligned), or None for
    /// the object as embedded.
    words: Option<Vec<u64>>,
    pub cast_type: u64,
}

impl Patched {
    /// The object's bytes.
    pub fn bytes<'a>(&'a self, original: &'a [u8]) -> &'a [u8] {
        match &self.words {
            // SAFETY: a u64 slice read as its bytes (u8 has no alignment or validity needs);
            // it holds at least original.len() bytes (patched_words).
            Some(words) => unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, original.len()) },
            None => original,
        }
    }
}

/// The BTF ids of the kfunc and of the cast's type in the kernel's BTF; None when the kernel
/// has no such kfunc (before 6.2) or no BTF.
fn kernel_ids(btf: Option<&Btf>) -> Option<(u32, u32)> {
    let btf = btf?;
    let kfunc = btf.id_by_type_name_kind(KFUNC, BtfKind::Func).ok()?;
    let cast = btf.id_by_type_name_kind(CAST_TYPE, BtfKind::Struct).ok()?;
    Some((kfunc, cast))
}

/// `object` with its placeholders turned into calls of the kfunc of id `kfunc_id`: every
/// placeholder call in the object's code sections (and nothing outside them). None when the
/// object cannot be read as ELF or has no placeholder.
pub(super) fn patched_words(object: &[u8], kfunc_id: u32) -> Option<Vec<u64>> {
    let file = object::File::parse(object).ok()?;
    let mut words: Vec<u64> = vec![0; object.len().div_ceil(8)];
    // SAFETY: the vector holds at least object.len() bytes, and any byte value is a valid u64 part.
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, object.len()) };
    bytes.copy_from_slice(object);
    let placeholder = kload::placeholder_insn();
    let call = kload::kfunc_insn(kfunc_id);
    let mut patched = 0usize;
    for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
        let Some((start, size)) = section.file_range() else { continue };
        let (start, size) = (start as usize, size as usize);
        let Some(code) = bytes.get_mut(start..start + size) else { continue };
        for insn in code.chunks_exact_mut(8).filter(|insn| **insn == placeholder) {
            insn.copy_from_slice(&call);
            patched += 1;
        }
    }
    (patched > 0).then_some(words)
}

/// The object as the kernel should get it: placeholders turned into kfunc calls when the
/// kernel has the kfunc (and `KLOAD_TYPE` set), else as it is.
pub(super) fn patch(object: &[u8], btf: Option<&Btf>) -> Patched {
    let Some((kfunc, cast)) = kernel_ids(btf) else {
        log::debug!(
            "direct loads off: no {KFUNC} kfunc or no {CAST_TYPE} in the kernel's BTF (the read helper does them)"
        );
        return Patched { words: None, cast_type: 0 };
    };
    match patched_words(object, kfunc) {
        Some(words) => {
            log::debug!("direct loads on: {KFUNC} is BTF id {kfunc}, {CAST_TYPE} {cast}");
            Patched { words: Some(words), cast_type: u64::from(cast) }
        }
        None => {
            log::warn!("direct loads off: the object has no {KFUNC} placeholder to patch (the read helper does them)");
            Patched { words: None, cast_type: 0 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_in_code_becomes_the_kfunc_call_and_nothing_else_changes() {
        let object = super::super::OBJECT;
        if object.is_empty() {
            return; // stub build without the eBPF object
        }
        let words = patched_words(object, 0x1234).expect("the object has placeholders");
        let patched = Patched { words: Some(words), cast_type: 1 };
        let bytes = patched.bytes(object);
        assert_eq!(bytes.len(), object.len());
        let placeholder = kload::placeholder_insn();
        let call = kload::kfunc_insn(0x1234);
        let file = object::File::parse(bytes).expect("still an ELF object");
        let mut calls = 0;
        for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
            let data = section.data().unwrap();
            assert!(!data.chunks_exact(8).any(|i| i == placeholder), "{:?} keeps a placeholder", section.name());
            calls += data.chunks_exact(8).filter(|i| *i == call).count();
        }
        assert!(calls > 0);
        let changed = object.chunks_exact(8).zip(bytes.chunks_exact(8)).filter(|(a, b)| a != b).count();
        assert_eq!(changed, calls, "only the placeholders change");
    }

    #[test]
    fn the_kfunc_call_names_the_kernel_function_by_its_btf_id() {
        assert_eq!(kload::kfunc_insn(0x0102_0304), [0x85, 0x20, 0, 0, 4, 3, 2, 1]);
        assert_eq!(kload::placeholder_insn()[1], 0, "a helper call: no source register");
    }
}
