//! The only module that talks to aya: loads the embedded eBPF object, attaches each probe of
//! the plan by the first method the kernel accepts, and reads the counter maps.

use std::{
    collections::HashSet,
    os::fd::{AsFd, AsRawFd, RawFd},
};

mod active;
mod attach;
mod counter_map;
mod kload;
mod paths;
mod preload;

use self::attach::{attach_chain, backups_needed, describe, explain};

use aya::{
    maps::{MapData, MapError, RingBuf},
    Btf, Ebpf, EbpfError, EbpfLoader,
};
use tracer_common::{
    counters as slots, names, PagesHeader, ProbeDef, ProbeId, RecordType, LOST_REASONS, PAGES_STACK_FRAMES, PROBE_COUNT,
};

use super::{
    counters::{chain_losses, ChainCounts, Counters},
    kernel::Facts,
    plan::{acquisitions_at_queue, Method, PlannedProbe, ProbeOutcome, ACQUIRED_AT_QUEUE},
    symbols::KernelSymbols,
};
use crate::model::{symbols_bytes, SymbolsRecord};

/// The eBPF object built by build.rs (empty in stub mode).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer.bpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this tracer binary was built without its eBPF programs (stub mode: bpf-linker or /usr/bin/rustc was missing at build time); run scripts/setup.sh and rebuild")]
    Stub,
    #[error("loading the eBPF object needs root (CAP_BPF and CAP_PERFMON): {0}")]
    Permission(String),
    #[error("loading the eBPF object failed: {0}")]
    Object(String),
    #[error("no probe could attach on this kernel; `tracer check` lists each probe with the reason")]
    NothingAttached,
    #[error("starting the backup programs: {0}")]
    Arm(#[from] ReadError),
    #[error("the counters: {0}")]
    Counters(#[from] counter_map::CounterMapError),
    #[error("counting possible CPUs ({0}): {1}")]
    Cpus(&'static str, std::io::Error),
    #[error("TRACER_BENCH_SKIP: unknown part '{0}' (known: {known})", known = bench_skip_parts())]
    BenchSkip(String),
}

/// The names `TRACER_BENCH_SKIP` knows, for its error.
fn bench_skip_parts() -> String {
    tracer_common::bench_skip::PARTS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// The parts of page records a benchmark's ablation leaves out (`TRACER_BENCH_SKIP`, a comma
/// list of tracer_common::bench_skip::PARTS; `cargo xtask bench ablation`), 0 when unset. Said
/// out loud when set: the records are incomplete and the ledger no longer adds up.
fn bench_skip() -> Result<u64, LoadError> {
    let Some(list) = std::env::var_os("TRACER_BENCH_SKIP") else { return Ok(0) };
    let list = list.to_string_lossy();
    let mask = tracer_common::bench_skip::parse(&list).map_err(|name| LoadError::BenchSkip(name.to_string()))?;
    if mask != 0 {
        log::warn!(
            "TRACER_BENCH_SKIP={list}: page records leave out {list}, for a benchmark; pins, unpins and verdicts of this run are not exact"
        );
    }
    Ok(mask)
}

#[derive(Debug, thiserror::Error)]
#[error("reading map {map}: {source}")]
pub struct ReadError {
    map: &'static str,
    #[source]
    source: MapError,
}

/// Loaded programs and their maps; dropping it detaches everything.
pub struct Tracer {
    ebpf: Ebpf,
    /// COUNTERS, mapped (the mapping keeps the map alive on its own).
    counter_map: counter_map::CounterMap,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub outcomes: Vec<ProbeOutcome>,
    /// The primaries' recursion misses when the backups began to act (see [`Tracer::arm_chains`]).
    skipped_base: [u64; PROBE_COUNT as usize],
    /// The primaries' recursion misses when every program of the chains was attached.
    complete_base: [u64; PROBE_COUNT as usize],
    /// The backups attached for each probe (see [`chain_losses`]).
    backups: Vec<Vec<&'static str>>,
    /// Probes whose backups were found acting out of order (reported once each).
    doubled_warned: HashSet<usize>,
}

impl Tracer {
    /// Loads the object with a ring buffer of `ring_bytes` (a power of two multiple of the
    /// page size) and attaches every probe it can, each with at most `max_backups` backups
    /// (see [`attach::backups_needed`]). Errors only when nothing can run.
    pub fn load(
        facts: &Facts,
        plan: &[PlannedProbe],
        ring_bytes: u32,
        max_backups: usize,
    ) -> Result<Tracer, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::Stub);
        }
        raise_memlock_limit();
        let btf = Btf::from_sys_fs().ok();
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| LoadError::Cpus(what, e))?;
        // Decided once: the queue program is told by a global, the attach step by this flag.
        let at_queue = acquisitions_at_queue(facts, plan);
        let mut ebpf = open(facts, plan, (at_queue, max_backups), ring_bytes, btf.as_ref(), cpus)?;
        // Kept alive for as long as the programs: dropping it closes the log map.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                // The programs have no log statements today, so the object has no log map: the usual case.
                log::debug!("eBPF log forwarding off: {e}");
                None
            }
        };
        let threads_preemptible = facts.preemption.in_programs();
        // Where the queueing streams the acquisitions, their own probe's programs are verified
        // only if it has to attach after all (block_bio_queue did not).
        let preloaded: Vec<PlannedProbe> =
            plan.iter().filter(|p| !(at_queue && p.def.id == ProbeId::BioIovIterGetPages)).cloned().collect();
        let backups_of = |def: &ProbeDef| backups_needed(def, threads_preemptible, max_backups);
        preload::preload(&mut ebpf, btf.as_ref(), &preloaded, |p| backups_of(&p.def));
        let (outcomes, backups) = attach_all(&mut ebpf, btf.as_ref(), plan, backups_of, at_queue);
        if outcomes.iter().all(|o| o.attached.is_none()) {
            return Err(LoadError::NothingAttached);
        }
        if let Some(btf) = btf.as_ref() {
            read_kernel_counts(&mut ebpf, btf, &outcomes, &backups, cpus);
        }
        let counter_map = counter_map::CounterMap::new(ebpf.map(names::COUNTERS), names::COUNTERS, cpus)?;
        let listed = releases_can_list_unpins(&outcomes, facts);
        if listed {
            set_cover_stage(&mut ebpf, 1)?;
        }
        let mut tracer = Tracer {
            ebpf,
            counter_map,
            logger,
            outcomes,
            skipped_base: [0; PROBE_COUNT as usize],
            complete_base: [0; PROBE_COUNT as usize],
            backups,
            doubled_warned: HashSet::new(),
        };
        tracer.arm_chains()?;
        if listed {
            set_cover_stage(&mut tracer.ebpf, 2)?;
        }
        Ok(tracer)
    }

    /// The record stream (once; later calls return None).
    pub fn take_events(&mut self) -> Option<EventStream> {
        let paths = self.ebpf.take_map(names::STACK_PATHS).and_then(|m| match aya::maps::HashMap::try_from(m) {
            Ok(map) => Some(map),
            Err(e) => {
                log::warn!("learned call paths unusable (every pin record walks its stack): {e}");
                None
            }
        });
        let map = self.ebpf.take_map(names::EVENTS)?;
        match RingBuf::try_from(map) {
            Ok(ring) => {
                let stacks = Stacks { symbols: KernelSymbols::read(), seen: HashSet::new() };
                Some(EventStream { ring, stacks, paths: paths::PathLearner::new(paths), read: 0 })
            }
            Err(e) => {
                log::warn!("event ring buffer unusable: {e}");
                None
            }
        }
    }

    /// Reads every counter map, summed over CPUs.
    pub fn counters(&mut self) -> Result<Counters, ReadError> {
        if let Some(logger) = self.logger.as_mut() {
            logger.flush();
        }
        // Through the shared mapping: no bpf() call (tracer_common::counters says why).
        let map = &self.counter_map;
        let mut snap = Counters::default();
        for (i, stat) in (0..PROBE_COUNT).zip(snap.probes.iter_mut()) {
            stat.hits = map.sum(slots::HITS + i);
            stat.amount = map.sum(slots::AMOUNT + i);
        }
        snap.lost.copy_from_slice(&map.sums(slots::LOST, LOST_REASONS));
        let rescued = map.sums(slots::RESCUED, PROBE_COUNT);
        snap.records_submitted = map.sum(slots::SUBMITTED);
        snap.stack_paths.copy_from_slice(&map.sums(slots::PATHS, slots::PATH_COUNTS));
        if debug_chains() {
            self.debug_chains(&rescued);
        }
        for o in &self.outcomes {
            let id = o.def.id as usize;
            let Some(fd) = self.primary_fd(o) else { continue };
            match recursion_misses(fd.as_fd()) {
                Ok(skipped) => {
                    let backup_skips = self.backups[id]
                        .iter()
                        .filter_map(|name| recursion_misses(self.ebpf.program(name)?.fd().ok()?.as_fd()).ok())
                        .min();
                    let (missed, doubled) = chain_losses(ChainCounts {
                        primary_skips: skipped,
                        skipped_before_armed: self.skipped_base[id],
                        rescued: rescued[id],
                        skipped_before_complete: self.complete_base[id],
                        backup_skips,
                        filters_first: o.def.filters_first(),
                    });
                    if doubled > 0 && self.doubled_warned.insert(id) {
                        log::error!(
                            "{}: backups acted for {doubled} invocations the primary also took care of \
                             (the kernel ran them out of order?): counted as lost",
                            o.def.target
                        );
                    }
                    snap.missed[id] = missed;
                }
                Err(e) => log::debug!("recursion_misses of {}: {e}", o.def.target),
            }
        }
        Ok(snap)
    }

    /// Lets the backups of the chains act, once every program is attached (tracer-ebpf/src/
    /// chain.rs, CHAIN_STAGE). The primaries' skips so far are read first: none of them was
    /// rescued, so they count as lost (see [`Tracer::counters`]); a skip between the read and
    /// the switch counts as lost too, never as rescued twice.
    fn arm_chains(&mut self) -> Result<(), ReadError> {
        for o in &self.outcomes {
            let Some(fd) = self.primary_fd(o) else { continue };
            let skipped = recursion_misses(fd.as_fd()).unwrap_or(0);
            // Every program is attached by now (a loss after this read is a skip of every
            // backup, so each backup's count covers it).
            self.complete_base[o.def.id as usize] = skipped;
            // Chains that filter first act from the moment they attach (tracer-ebpf/src/
            // chain.rs): their skips so far were rescued like the later ones.
            if !o.def.filters_first() {
                self.skipped_base[o.def.id as usize] = skipped;
            }
        }
        let err = |source| ReadError { map: names::CHAIN_STAGE, source };
        let map = self
            .ebpf
            .map_mut(names::CHAIN_STAGE)
            .ok_or(err(MapError::InvalidName { name: names::CHAIN_STAGE.into() }))?;
        let mut stage = aya::maps::Array::<_, u64>::try_from(map).map_err(err)?;
        stage.set(0, 2, 0).map_err(err)?;
        Ok(())
    }

    /// The attached program that runs first for each invocation of the probe of `o`.
    fn primary_fd(&self, o: &ProbeOutcome) -> Option<aya::programs::ProgramFd> {
        self.ebpf.program(primary_name(o)?)?.fd().ok()?.try_clone().ok()
    }

    /// Diagnostics of the chains (TRACER_DEBUG_CHAINS): each program's recursion misses, the
    /// rescues and the chain counters (tracer_common::chain::ChainDebug).
    fn debug_chains(&self, rescued: &[u64]) {
        use tracer_common::chain::{ChainDebug, CHAIN_DEBUG_KINDS};
        let debug = self.counter_map.sums(slots::CHAIN_DEBUG, PROBE_COUNT * CHAIN_DEBUG_KINDS);
        for o in &self.outcomes {
            if o.attached.is_none() {
                continue;
            }
            let def = o.def;
            let misses: Vec<String> = primary_name(o)
                .into_iter()
                .chain(def.backups.iter().copied())
                .filter_map(|name| {
                    let fd = self.ebpf.program(name)?.fd().ok()?;
                    Some(format!("{}", recursion_misses(fd.as_fd()).ok()?))
                })
                .collect();
            let id = def.id as usize;
            let d = |k: ChainDebug| debug.get(id * CHAIN_DEBUG_KINDS as usize + k as usize).copied().unwrap_or(0);
            if d(ChainDebug::OwnCountWrong) > 0 {
                log::error!(
                    "{}: {} runs found their own kernel recursion count not taken at the address the loader found \
                     (the backups' decisions are wrong; report this with the kernel version)",
                    def.target,
                    d(ChainDebug::OwnCountWrong)
                );
            }
            if rescued[id] == 0 && misses.iter().all(|m| m == "0") && d(ChainDebug::OwnCountSeen) == 0 {
                continue;
            }
            log::warn!(
                "chain {}: recursion misses {} (primary/backups), before armed {}, rescued {} \
                 (cpu rule {}, word rule {}), no word {}, context unknown {}, count unreadable {}, \
                 own kernel count taken {} / not taken {}",
                def.target,
                misses.join("/"),
                self.skipped_base[id],
                rescued[id],
                d(ChainDebug::RescuedByCpuRule),
                d(ChainDebug::RescuedByWordRule),
                d(ChainDebug::NoWord),
                d(ChainDebug::ContextUnknown),
                d(ChainDebug::CountUnreadable),
                d(ChainDebug::OwnCountSeen),
                d(ChainDebug::OwnCountWrong),
            );
        }
    }
}

/// Records streamed by the eBPF programs. Poll its fd for readability, then [`Self::drain`].
pub struct EventStream {
    ring: RingBuf<MapData>,
    stacks: Stacks,
    /// Takes the stack samples out of the stream.
    paths: paths::PathLearner,
    /// Records taken out of the ring buffer so far.
    read: u64,
}

impl EventStream {
    /// Hands the bytes of every available record to `f` (but the stack samples, which teach the
    /// programs call paths); returns how many were read. A page
    /// record with return addresses not described yet is preceded by a symbols record (see
    /// [`crate::model::symbols_bytes`]), so the stream, and a record file of it, is complete.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            n += 1;
            if self.paths.take(&item, &self.stacks.symbols) {
                continue;
            }
            if let Some(stack) = self.stacks.describe(&item) {
                f(&stack);
            }
            f(&item);
        }
        self.read += n as u64;
        n
    }

    /// Records taken out of the ring buffer since it was made (the symbols records the stream
    /// adds not counted).
    pub fn records_read(&self) -> u64 {
        self.read
    }
}

/// The kernel symbols of the return addresses page records carry, each resolved once from
/// /proc/kallsyms, read when the stream is taken: after the programs are loaded and attached
/// (their own frames and their trampolines' are named `bpf_*` only from then on, and the call
/// paths leave those out), before the records flow (done at the first page record, it held the
/// reader up while the ring buffer filled).
struct Stacks {
    symbols: KernelSymbols,
    seen: HashSet<u64>,
}

impl Stacks {
    /// A symbols record for the addresses of `record` not described yet, if it is a page record
    /// that has any.
    fn describe(&mut self, record: &[u8]) -> Option<Vec<u8>> {
        let word = |at: usize| record.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes);
        if word(0)? != RecordType::Pages as u32 {
            return None;
        }
        let n = (word(std::mem::offset_of!(PagesHeader, nr_frames))? as usize).min(PAGES_STACK_FRAMES);
        let at = std::mem::offset_of!(PagesHeader, frames);
        let new: Vec<u64> = (0..n)
            .filter_map(|i| record.get(at + 8 * i..at + 8 * i + 8)?.try_into().ok().map(u64::from_ne_bytes))
            .filter(|ip| !self.seen.contains(ip))
            .collect();
        if new.is_empty() {
            return None;
        }
        let mut described = Vec::with_capacity(new.len());
        for ip in new {
            if self.seen.insert(ip) {
                described.push((ip, self.symbols.symbolize(ip)));
            }
        }
        Some(symbols_bytes(&SymbolsRecord { symbols: described }))
    }
}

impl AsRawFd for EventStream {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// Lets the backups of every attached chain read the kernel's recursion counts of the programs
/// before them (active.rs); a chain whose counts cannot be found keeps counting itself, which
/// is logged.
fn read_kernel_counts(
    ebpf: &mut Ebpf,
    btf: &Btf,
    outcomes: &[ProbeOutcome],
    backups: &[Vec<&'static str>],
    cpus: usize,
) {
    let chains: Vec<(ProbeId, Vec<&'static str>)> = outcomes
        .iter()
        .filter(|o| !o.def.filters_first())
        .filter_map(|o| {
            let attached = &backups[o.def.id as usize];
            let backups = o.def.backups.iter().take_while(|b| attached.contains(b)).copied();
            let programs: Vec<&'static str> = std::iter::once(primary_name(o)?).chain(backups).collect();
            (programs.len() > 1).then_some((o.def.id, programs))
        })
        .collect();
    if chains.is_empty() {
        return;
    }
    match active::learn(ebpf, btf, &chains, cpus) {
        Ok(n) if n == chains.len() => log::debug!("{n} chains read the kernel's recursion counts"),
        Ok(n) => log::info!(
            "{n} of {} chains read the kernel's recursion counts; the others count themselves (calls skipped in the kernel's few instructions around a program are then lost, and counted)",
            chains.len()
        ),
        Err(e) => log::info!(
            "the kernel's recursion counts are unknown ({e}): the chains count themselves (calls skipped in the kernel's few instructions around a program are then lost, and counted)"
        ),
    }
}

/// Whether the chains' diagnostics are on (TRACER_DEBUG_CHAINS, docs/probes.md).
fn debug_chains() -> bool {
    std::env::var_os("TRACER_DEBUG_CHAINS").is_some()
}

/// Whether pinned bios' releases can list their unpins (tracer-ebpf/src/bio.rs): the release
/// probe and `unpin_user_folio`'s are both attached, in a form that tells an unpin's caller, and
/// the release function's text is known.
fn releases_can_list_unpins(outcomes: &[ProbeOutcome], facts: &Facts) -> bool {
    let attached = |id: ProbeId| outcomes.iter().any(|o| o.def.id == id && o.attached.is_some());
    facts.bio_release_text.is_some() && attached(ProbeId::BioReleasePages) && attached(ProbeId::UnpinUserFolio)
}

/// Moves releases' listing of their unpins to `stage` (names::BIO_COVER).
fn set_cover_stage(ebpf: &mut Ebpf, stage: u64) -> Result<(), ReadError> {
    let err = |source| ReadError { map: names::BIO_COVER, source };
    let map = ebpf.map_mut(names::BIO_COVER).ok_or(err(MapError::InvalidName { name: names::BIO_COVER.into() }))?;
    let mut cover = aya::maps::Array::<_, u64>::try_from(map).map_err(err)?;
    cover.set(0, stage, 0).map_err(err)
}

/// The name of the program that runs first for each invocation of the probe of `o`.
fn primary_name(o: &ProbeOutcome) -> Option<&'static str> {
    Some(match o.attached? {
        Method::Kprobe | Method::Kretprobe => o.def.kprobe_program.unwrap_or(o.def.btf_program),
        Method::RawTracepoint => o.def.raw_syscall_program().unwrap_or(o.def.btf_program),
        _ => o.def.btf_program,
    })
}

fn load_error(e: EbpfError) -> LoadError {
    let text = describe(&e);
    let denied = text.contains("Operation not permitted") || text.contains("Permission denied");
    if denied {
        LoadError::Permission(text)
    } else {
        LoadError::Object(text)
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones to the memcg, so a
/// failure here (no CAP_SYS_RESOURCE) is harmless on them.
fn raise_memlock_limit() {
    let limit = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid pointer to a local struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
    if rc != 0 {
        log::debug!("cannot raise RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error());
    }
}

/// `bpf_prog_info.recursion_misses` of a loaded program: runs the kernel skipped because the
/// program was already running on that CPU. aya 0.14 does not expose the field, so this asks
/// the kernel directly (BPF_OBJ_GET_INFO_BY_FD).
fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u64> {
    prog_info(fd).map(|info| info.recursion_misses)
}

/// The kernel's bpf_prog_info of a loaded program.
pub(super) fn prog_info(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<aya_obj::generated::bpf_prog_info> {
    use std::os::fd::AsRawFd as _;
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // SAFETY: bpf_prog_info is plain integers; all zeroes is a valid value.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let attr = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: &mut info as *mut _ as u64,
    };
    // SAFETY: the kernel writes at most info_len bytes into `info`, which outlives the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr as *const InfoByFd, std::mem::size_of::<InfoByFd>())
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info)
}

/// Opens the object with the facts and the plan written into its globals (`at_queue`:
/// [`acquisitions_at_queue`]; `max_backups`: see [`Tracer::load`]).
fn open(
    facts: &Facts,
    plan: &[PlannedProbe],
    (at_queue, max_backups): (bool, usize),
    ring_bytes: u32,
    btf: Option<&Btf>,
    cpus: usize,
) -> Result<Ebpf, LoadError> {
    let patched = kload::patch(OBJECT, btf);
    EbpfLoader::new()
        .btf(btf)
        .override_global(names::KLOAD_TYPE, &patched.cast_type, true)
        .map_max_entries(names::COUNTERS, u32::try_from(cpus).unwrap_or(u32::MAX).saturating_mul(slots::SLOTS))
        .override_global(names::OFFSETS, &facts.offsets, true)
        .override_global(names::TASK_PREEMPTION, &u64::from(facts.preemption.in_programs()), true)
        .override_global(names::WORD_CHAIN_BACKUPS, &(max_backups.min(tracer_common::MAX_BACKUPS) as u64), true)
        .override_global(names::LEARNED_PATHS, &u64::from(facts.learned_paths()), true)
        .override_global(names::DEBUG_CHAINS, &u64::from(debug_chains()), true)
        .override_global(names::BENCH_SKIP, &bench_skip()?, true)
        .override_global(
            names::SYSCALL_LATENCY,
            &u64::from(plan.iter().any(|p| p.def.id == ProbeId::SysEnter && !p.off)),
            true,
        )
        .map_max_entries(names::EVENTS, ring_bytes)
        // The word rule is used only where threads are preempted inside programs.
        .map_max_entries(
            names::CHAIN_WORDS,
            if facts.preemption.in_programs() { tracer_common::chain::WORD_SLOTS } else { 1 },
        )
        .override_global(names::EVENTS_WAKE_AT, &u64::from(ring_bytes / 4), true)
        .override_global(names::BIO_RELEASE_START, &facts.bio_release_text.map_or(0, |r| r.0), true)
        .override_global(names::BIO_RELEASE_END, &facts.bio_release_text.map_or(0, |r| r.1), true)
        .override_global(names::ACQUIRE_AT_QUEUE, &u64::from(at_queue), true)
        .override_global(names::PER_CPU_OFFSET_AT, &active::per_cpu_offset_address(), true)
        .override_global(names::POSSIBLE_CPUS, &(cpus as u64), true)
        .load(patched.bytes(OBJECT))
        .map_err(load_error)
}

/// Attaches each planned probe by its first candidate method that works; returns the outcomes
/// and the backups attached per probe.
fn attach_all(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    plan: &[PlannedProbe],
    backups_of: impl Fn(&ProbeDef) -> usize,
    acquisitions_at_queue: bool,
) -> (Vec<ProbeOutcome>, Vec<Vec<&'static str>>) {
    let mut outcomes: Vec<ProbeOutcome> = Vec::with_capacity(plan.len());
    let mut backups = vec![Vec::new(); PROBE_COUNT as usize];
    for planned in plan {
        let mut outcome =
            ProbeOutcome { def: planned.def, off: planned.off, attached: None, failures: planned.ruled_out.clone() };
        // The queueing streams the acquisitions once its program is attached (it comes first
        // in the catalogue); if it is not, the acquisition's own probe does.
        let queue_attached = || outcomes.iter().any(|o| o.def.id == ProbeId::BlockBioQueue && o.attached.is_some());
        if planned.def.id == ProbeId::BioIovIterGetPages && acquisitions_at_queue && queue_attached() {
            outcome.off = true;
            outcome.failures = vec![(Method::Fexit, ACQUIRED_AT_QUEUE.to_string())];
            outcomes.push(outcome);
            continue;
        }
        for &(method, program) in &planned.candidates {
            match attach_chain(ebpf, btf, method, program, &planned.def, backups_of(&planned.def)) {
                Ok(attached) => {
                    backups[planned.def.id as usize] = attached;
                    outcome.attached = Some(method);
                    break;
                }
                Err(why) => outcome.failures.push((method, explain(method, why))),
            }
        }
        outcome.failures.sort_by_key(|(m, _)| planned.preference(*m));
        outcomes.push(outcome);
    }
    (outcomes, backups)
}

/// The embedded object against the probe catalogue (tracer-common): every program a probe
/// names (its BTF program, its kprobe fallback, each backup of its chain) is in the object, and
/// every program of the object belongs to a probe. Compiled only when the object is real (not
/// in stub mode, which has no programs).
#[cfg(all(test, not(tracer_ebpf_stub)))]
mod object_tests {
    use std::collections::BTreeSet;

    use tracer_common::PROBES;

    #[test]
    fn the_object_has_the_programs_of_the_catalogue_and_no_others() {
        let obj = aya_obj::Object::parse(super::OBJECT).expect("the embedded eBPF object parses");
        let in_object: BTreeSet<&str> = obj.programs.keys().map(String::as_str).collect();
        // The one program that belongs to no probe: the loader's iterator (active.rs).
        let mut named = BTreeSet::from([tracer_common::names::CHAIN_ACTIVE_ITER]);
        for def in PROBES.iter() {
            named.insert(def.btf_program);
            named.extend(def.kprobe_program);
            named.extend(def.raw_syscall_program());
            named.extend(def.backups.iter().copied());
            assert!(def.backups.len() <= tracer_common::MAX_BACKUPS, "{}: {} backups", def.target, def.backups.len());
        }
        let missing: Vec<_> = named.difference(&in_object).collect();
        assert!(missing.is_empty(), "programs the catalogue names but the object lacks: {missing:?}");
        let unknown: Vec<_> = in_object.difference(&named).collect();
        assert!(unknown.is_empty(), "programs of the object no probe names: {unknown:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one parse of /proc/kallsyms names every address as aya's parser (which the record
    /// stream used before) does: checked on this machine's own symbols when they are readable.
    #[test]
    fn kallsyms_parsed_once_names_addresses_as_aya_did() {
        let (Ok(text), Ok(aya_symbols)) = (std::fs::read_to_string("/proc/kallsyms"), aya::util::kernel_symbols())
        else {
            return;
        };
        let ours = KernelSymbols::parse(text);
        let aya_name = |ip: u64| match aya_symbols.range(..=ip).next_back() {
            Some((start, name)) => format!("{name}+{:#x}", ip - start),
            None => format!("{ip:#x}"),
        };
        for (&addr, _) in aya_symbols.iter().step_by(97) {
            for ip in [addr, addr + 0x1d, addr.saturating_sub(1)] {
                assert_eq!(ours.symbolize(ip), aya_name(ip), "{ip:#x}");
            }
        }
    }
}
