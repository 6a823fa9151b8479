//! Where the registers the programs read lie in x86-64's `struct pt_regs` (the ptrace ABI's
//! register numbers times 8): the one place the programs and userspace take them from.

/// `di`: a system call's first argument.
pub const DI: u32 = 14 * 8;
/// `orig_ax`: the number of the system call the task is in.
pub const ORIG_AX: u32 = 15 * 8;
/// `sp`: the stack pointer (at a kprobe on a function's first instruction, it points at the
/// return address into the caller).
pub const SP: u32 = 19 * 8;
