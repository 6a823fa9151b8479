//! The kernel side seen from userspace: what the running kernel offers (facts), the probe plan,
//! the eBPF programs (`ebpf/`, the only module that imports aya), their counters, /proc/vmstat
//! and /sys names.

pub mod counters;
pub mod ebpf;
pub mod kernel;
pub mod plan;
pub mod preemption;
pub mod symbols;
pub mod sysfs;
pub mod vmstat;
