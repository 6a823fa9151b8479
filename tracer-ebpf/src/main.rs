//! Kernel side of tracer: eBPF programs on the pin entry points, the unpin variants, the
//! kernel's FOLL_PIN accounting and the block layer.
//!
//! Every entry point is a one-line wrapper over a `try_*` function. Each kernel function has a
//! BTF program (fentry/fexit) and a kprobe/kretprobe twin; userspace picks what the running
//! kernel accepts (see tracer/src/ebpf/plan.rs).
#![no_std]
// Atomic fetch-or/and on map values (the BPF target has no CAS, so core::sync::atomic offers
// only loads and stores; the instructions themselves exist since BPF v3).
#![feature(core_intrinsics)]
#![allow(internal_features)]
#![no_main]

#[macro_use]
mod maps;
mod accounting;
mod bio;
mod exit;
mod latency;
mod pages;
mod pin;
mod put;
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
