//! Kernel struct member offsets, read from BTF in userspace and handed to the programs.

use crate::{BioWire, BIO_WIRE_VEC_BYTES};

/// Kernel struct member offsets (bytes) read from BTF in userspace and passed to the programs
/// as the global `OFFSETS` (Rust eBPF has no CO-RE). [`OFFSET_UNKNOWN`] marks a member this
/// kernel does not have; figures that need it are then not produced.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// struct request: part (struct block_device *), cmd_flags, bio, __data_len.
    pub rq_part: u32,
    pub rq_cmd_flags: u32,
    pub rq_bio: u32,
    pub rq_data_len: u32,
    /// struct block_device: bd_dev.
    pub bdev_dev: u32,
    /// struct bio: bi_next, bi_bdev, bi_opf, bi_iter.bi_size.
    pub bio_next: u32,
    pub bio_bdev: u32,
    pub bio_opf: u32,
    pub bio_size: u32,
    /// struct kiocb: ki_filp; struct file: f_inode; struct inode: i_sb; struct super_block: s_dev.
    pub kiocb_filp: u32,
    pub file_inode: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
    /// struct iov_iter: data_source (true for writes), count.
    pub iter_data_source: u32,
    pub iter_count: u32,
    /// struct bio: bi_io_vec, bi_vcnt, bi_flags, bi_status.
    pub bio_io_vec: u32,
    pub bio_vcnt: u32,
    pub bio_flags: u32,
    pub bio_status: u32,
    /// struct bio_vec: bv_page, bv_len, bv_offset; and its size.
    pub bvec_page: u32,
    pub bvec_len: u32,
    pub bvec_offset: u32,
    pub bvec_size: u32,
    /// Bit number of BIO_PAGE_PINNED in bi_flags ([`OFFSET_UNKNOWN`] on kernels whose bios hold
    /// FOLL_GET references instead: they have BIO_NO_PAGE_REF).
    pub bio_pinned_bit: u32,
    /// Bit number of BIO_NO_PAGE_REF in bi_flags (kernels before the FOLL_PIN conversion; a bio
    /// with it set holds no page references, e.g. one built over a bvec iterator).
    pub bio_no_page_ref_bit: u32,
    /// struct page: compound_head (compound_info from 7.0). A tail page stores its folio's head
    /// page address + 1, or (7.0+ with HugeTLB vmemmap optimization) a mask + 1 that gives the
    /// head page from the tail page's own address.
    pub page_compound_head: u32,
    /// sizeof(struct page): the distance between the struct pages of adjacent pages.
    pub struct_page_size: u32,
    /// struct task_struct: signal; struct signal_struct: live (threads not yet exited).
    pub task_signal: u32,
    pub signal_live: u32,
    /// struct pipe_buffer: page; struct page: mapping.
    pub pipe_buffer_page: u32,
    pub page_mapping: u32,
    /// struct task_struct: stack (the base of the task's kernel stack).
    pub task_stack: u32,
    /// struct task_struct: files; struct files_struct: fdt; struct fdtable: fd; struct file:
    /// f_flags (whether a read or write system call's file is open with O_DIRECT).
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub file_f_flags: u32,
    /// struct task_struct: pid, tgid, comm, cgroups; struct css_set: dfl_cgrp; struct cgroup:
    /// kn; struct kernfs_node: id (a record's owner, read from the current task by BTF-typed
    /// loads instead of three helper calls).
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// struct bpf_prog: aux, active; struct bpf_prog_aux: id (the chains' programs' own
    /// recursion counts, found by the loader's iterator: tracer_common::chain::active).
    pub prog_aux: u32,
    pub prog_active: u32,
    pub prog_aux_id: u32,
    /// Bytes from the start of struct bio that hold bi_bdev, bi_opf, bi_flags, bi_iter.bi_size,
    /// bi_vcnt and bi_io_vec, rounded up to 8 ([`bio_head_bytes`]): a bio record reads them in
    /// one read. [`OFFSET_UNKNOWN`] when one is unknown or they reach past
    /// [`BIO_HEAD_BYTES_MAX`] (then one read each).
    pub bio_head_bytes: u32,
}

/// The most bytes of a bio's start read at once (below `BioWire::vecs`, which holds them
/// until the vec array is read over them).
pub const BIO_HEAD_BYTES_MAX: u32 = 248;
const _: () = assert!(BIO_HEAD_BYTES_MAX as usize <= BIO_WIRE_VEC_BYTES && BIO_HEAD_BYTES_MAX & 7 == 0);
const _: () = assert!(core::mem::offset_of!(BioWire, vecs) & 7 == 0);

/// [`Offsets::bio_head_bytes`] for these member offsets: each (offset, size) must be known and
/// end within [`BIO_HEAD_BYTES_MAX`].
pub fn bio_head_bytes(members: &[(u32, u32)]) -> u32 {
    let mut end = 0u32;
    for &(off, size) in members {
        if off == OFFSET_UNKNOWN || off.checked_add(size).is_none_or(|e| e > BIO_HEAD_BYTES_MAX) {
            return OFFSET_UNKNOWN;
        }
        end = end.max(off + size);
    }
    end.div_ceil(8) * 8
}

/// An offset this kernel does not have.
pub const OFFSET_UNKNOWN: u32 = u32::MAX;

impl Offsets {
    pub const UNKNOWN: Offsets = Offsets {
        rq_part: OFFSET_UNKNOWN,
        rq_cmd_flags: OFFSET_UNKNOWN,
        rq_bio: OFFSET_UNKNOWN,
        rq_data_len: OFFSET_UNKNOWN,
        bdev_dev: OFFSET_UNKNOWN,
        bio_next: OFFSET_UNKNOWN,
        bio_bdev: OFFSET_UNKNOWN,
        bio_opf: OFFSET_UNKNOWN,
        bio_size: OFFSET_UNKNOWN,
        kiocb_filp: OFFSET_UNKNOWN,
        file_inode: OFFSET_UNKNOWN,
        inode_sb: OFFSET_UNKNOWN,
        sb_dev: OFFSET_UNKNOWN,
        iter_data_source: OFFSET_UNKNOWN,
        iter_count: OFFSET_UNKNOWN,
        bio_io_vec: OFFSET_UNKNOWN,
        bio_vcnt: OFFSET_UNKNOWN,
        bio_flags: OFFSET_UNKNOWN,
        bio_status: OFFSET_UNKNOWN,
        bvec_page: OFFSET_UNKNOWN,
        bvec_len: OFFSET_UNKNOWN,
        bvec_offset: OFFSET_UNKNOWN,
        bvec_size: OFFSET_UNKNOWN,
        bio_pinned_bit: OFFSET_UNKNOWN,
        bio_no_page_ref_bit: OFFSET_UNKNOWN,
        page_compound_head: OFFSET_UNKNOWN,
        struct_page_size: OFFSET_UNKNOWN,
        task_signal: OFFSET_UNKNOWN,
        signal_live: OFFSET_UNKNOWN,
        pipe_buffer_page: OFFSET_UNKNOWN,
        page_mapping: OFFSET_UNKNOWN,
        task_stack: OFFSET_UNKNOWN,
        task_files: OFFSET_UNKNOWN,
        files_fdt: OFFSET_UNKNOWN,
        fdt_fd: OFFSET_UNKNOWN,
        file_f_flags: OFFSET_UNKNOWN,
        task_pid: OFFSET_UNKNOWN,
        task_tgid: OFFSET_UNKNOWN,
        task_comm: OFFSET_UNKNOWN,
        task_cgroups: OFFSET_UNKNOWN,
        css_set_dfl_cgrp: OFFSET_UNKNOWN,
        cgroup_kn: OFFSET_UNKNOWN,
        kernfs_node_id: OFFSET_UNKNOWN,
        prog_aux: OFFSET_UNKNOWN,
        prog_active: OFFSET_UNKNOWN,
        prog_aux_id: OFFSET_UNKNOWN,
        bio_head_bytes: OFFSET_UNKNOWN,
    };
}

#[cfg(test)]
mod bio_head_tests {
    use super::{bio_head_bytes, BIO_HEAD_BYTES_MAX, OFFSET_UNKNOWN};

    #[test]
    fn the_span_of_the_members_rounded_up_or_unknown() {
        // 6.12's struct bio: bi_bdev 8, bi_opf 16, bi_flags 20, bi_iter.bi_size 40, bi_vcnt 98, bi_io_vec 104.
        let members = [(8, 8), (16, 4), (20, 2), (40, 4), (98, 2), (104, 8)];
        assert_eq!(bio_head_bytes(&members), 112);
        assert_eq!(bio_head_bytes(&[(8, 8), (100, 2)]), 104, "rounded up to 8");
        assert_eq!(bio_head_bytes(&[(8, 8), (OFFSET_UNKNOWN, 4)]), OFFSET_UNKNOWN, "one unknown");
        assert_eq!(bio_head_bytes(&[(BIO_HEAD_BYTES_MAX - 4, 8)]), OFFSET_UNKNOWN, "past the most read at once");
        assert_eq!(bio_head_bytes(&[(BIO_HEAD_BYTES_MAX - 8, 8)]), BIO_HEAD_BYTES_MAX);
    }
}
