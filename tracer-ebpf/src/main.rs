//! Kernel side of tracer: eBPF programs on the pin entry points, the unpin variants and the
//! block layer (the kernel's FOLL_PIN totals come from /proc/vmstat, read in userspace).
//!
//! Every entry point is a one-line wrapper over a `try_*` function. Each kernel function has a
//! BTF program (fentry/fexit) and a kprobe/kretprobe fallback; userspace picks what the running
//! kernel accepts (see tracer/src/probes/plan.rs).
#![no_std]
// Atomic fetch-or/and on map values (the BPF target has no CAS, so core::sync::atomic offers
// only loads and stores; the instructions themselves exist since BPF v3).
#![feature(core_intrinsics)]
#![allow(internal_features, reason = "core_intrinsics: atomic fetch-add and compare-exchange on map values")]
#![no_main]

mod maps;
#[macro_use]
mod typed;
#[macro_use]
mod chain;
mod active;
mod bio;
mod exit;
mod kload;
mod latency;
mod owner;
mod pages;
mod pin;
mod put;
mod stack;
mod stamps;
mod unpin;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; an infinite loop satisfies `!`.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
