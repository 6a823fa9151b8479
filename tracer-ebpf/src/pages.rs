//! Page records: the pages one pin, reference or unpin call names, each with its folio (head
//! page), the owner and the kernel stack of the call, streamed as [`PagesWire`] records.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::StackTrace,
    programs::tracing::StackIdContext,
};
use tracer_common::{
    LostReason, Owner, PageEvent, PagesWire, ProbeId, RecordType, COMM_LEN, OFFSET_UNKNOWN, PAGES_FLAG_TRUNCATED,
    PAGES_FLAG_UNLISTED, PAGES_MAX_RECORDS, PAGES_PER_RECORD,
};

use crate::maps::{lost, offsets, read_at, submit_flags, EVENTS};

/// Kernel stacks of the calls (deduplicated by the kernel; ids are stable while the map lives).
#[map(name = "STACKS")]
static STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);

/// Where a call's entries are.
#[derive(Clone, Copy)]
pub enum Source {
    /// `struct page **pages`, `n` of them.
    PageArray(u64),
    /// `n` contiguous pages starting at this struct page.
    Range(u64),
    /// `struct folio **folios`, `n` of them.
    FolioArray(u64),
    /// One folio (`n` = 1).
    Folio(u64),
    /// The entries cannot be seen (a kretprobe sees only the count).
    Unlisted,
}

/// One call.
#[derive(Clone, Copy)]
pub struct Call {
    pub event: PageEvent,
    pub probe: ProbeId,
    pub source: Source,
    /// Entries.
    pub n: u32,
    /// References per entry.
    pub refs: u32,
    pub gup_flags: u32,
    pub flags: u32,
}

/// The folio of `page`: its head page (a tail page's compound_head is the head's address + 1).
#[inline(always)]
fn folio_of(page: u64, compound_head: u32) -> u64 {
    match read_at::<u64>(page, compound_head) {
        Some(head) if head & 1 == 1 => head - 1,
        _ => page,
    }
}

/// Streams the call in records of up to [`PAGES_PER_RECORD`] entries.
#[inline(always)]
pub fn emit<C: EbpfContext + StackIdContext>(ctx: &C, call: Call) {
    if call.n == 0 {
        return;
    }
    let off = offsets();
    let stack = match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as i32,
        Err(e) => {
            lost(LostReason::StackLost);
            e.min(-1)
        }
    };
    // SAFETY: helpers without preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let owner = Owner {
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        // SAFETY: helper without preconditions.
        cgroup: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    let listed = !matches!(call.source, Source::Unlisted);
    let mut flags = call.flags;
    if !listed {
        flags |= PAGES_FLAG_UNLISTED;
    } else if call.n > PAGES_MAX_RECORDS * PAGES_PER_RECORD as u32 {
        flags |= PAGES_FLAG_TRUNCATED;
    }
    let page_size = off.struct_page_size as u64;
    let mut first: u32 = 0;
    for _ in 0..PAGES_MAX_RECORDS {
        if first >= call.n || (!listed && first > 0) {
            break;
        }
        let Some(mut entry) = EVENTS.reserve::<PagesWire>(0) else {
            lost(LostReason::RingFull);
            return;
        };
        let left = call.n - first;
        let n = if !listed { 0 } else if left > PAGES_PER_RECORD as u32 { PAGES_PER_RECORD as u32 } else { left };
        let w = entry.as_mut_ptr();
        // SAFETY: `w` is the reserved, exclusively owned slot of a PagesWire; every field is
        // written before submit (entries past `n` are zeroed).
        unsafe {
            (*w).record = RecordType::Pages as u32;
            (*w).event = call.event as u32;
            (*w).ts_ns = ts_ns;
            (*w).probe = call.probe as u32;
            (*w).gup_flags = call.gup_flags;
            (*w).nr = call.n;
            (*w).first = first;
            (*w).n = n;
            (*w).refs = call.refs;
            (*w).stack = stack;
            (*w).flags = flags;
            (*w).owner = owner;
            for i in 0..PAGES_PER_RECORD {
                let (mut page, mut folio) = (0u64, 0u64);
                if (i as u32) < n {
                    let k = (first + i as u32) as u64;
                    match call.source {
                        Source::PageArray(array) => {
                            page = read_at::<u64>(array + 8 * k, 0).unwrap_or(0);
                            folio = folio_of(page, off.page_compound_head);
                        }
                        Source::Range(start) if off.struct_page_size != OFFSET_UNKNOWN => {
                            page = start + k * page_size;
                            folio = folio_of(page, off.page_compound_head);
                        }
                        Source::FolioArray(array) => folio = read_at::<u64>(array + 8 * k, 0).unwrap_or(0),
                        Source::Folio(f) => folio = f,
                        _ => {}
                    }
                }
                (*w).pages[i] = page;
                (*w).folios[i] = folio;
            }
        }
        entry.submit(submit_flags());
        first += PAGES_PER_RECORD as u32;
    }
}
