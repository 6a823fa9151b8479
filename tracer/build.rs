//! Builds the eBPF object (tracer-ebpf) and embeds it in the tracer binary.
//!
//! The eBPF crate is compiled by Debian's rustc-web (/usr/bin/rustc, which ships a prebuilt
//! `core` for bpfel-unknown-none) and linked by bpf-linker; see scripts/setup.sh.
//!
//! - `TRACER_EBPF_OBJECT=/path/to/obj`: embed that object instead of building one.
//! - `TRACER_EBPF_STUB=1`, or no /usr/bin/rustc or bpf-linker: embed nothing (stub mode) so that
//!   `cargo check`, clippy and the host-only tests work without the BPF toolchain. A stub
//!   binary says so and exits non-zero when asked to load programs.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const BPF_TARGET: &str = "bpfel-unknown-none";
const BPF_RUSTC: &str = "/usr/bin/rustc";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let ebpf_dir = manifest.parent().expect("tracer is in the workspace").join("tracer-ebpf");
    let common_dir = manifest.parent().expect("tracer is in the workspace").join("tracer-common");
    for dir in [&ebpf_dir.join("src"), &common_dir.join("src")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    println!("cargo:rerun-if-changed={}", ebpf_dir.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", ebpf_dir.join("Cargo.lock").display());
    println!("cargo:rerun-if-env-changed=TRACER_EBPF_OBJECT");
    println!("cargo:rerun-if-env-changed=TRACER_EBPF_STUB");
    println!("cargo:rustc-check-cfg=cfg(tracer_ebpf_stub)");

    let dest = out.join("tracer.bpf.o");
    if let Some(obj) = env::var_os("TRACER_EBPF_OBJECT") {
        println!("cargo:rerun-if-changed={}", PathBuf::from(&obj).display());
        std::fs::copy(&obj, &dest).unwrap_or_else(|e| panic!("copy TRACER_EBPF_OBJECT: {e}"));
        return;
    }
    if let Some(why) = stub_reason() {
        println!("cargo:warning=tracer: building WITHOUT eBPF programs (stub mode): {why}");
        // Watch where the missing tools will be installed (scripts/setup.sh): cargo reruns a
        // build script while a watched file is missing, so the first build after the set-up
        // embeds the programs instead of keeping the stub.
        println!("cargo:rerun-if-changed={BPF_RUSTC}");
        if let Some(home) =
            env::var_os("CARGO_HOME").or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into()))
        {
            println!("cargo:rerun-if-changed={}", Path::new(&home).join("bin").join("bpf-linker").display());
        }
        println!("cargo:rustc-cfg=tracer_ebpf_stub");
        std::fs::write(&dest, []).expect("write stub object");
        return;
    }
    // One target dir for every profile and command (check, clippy, test, build --release):
    // the BPF object is the same for all of them, and cargo rebuilds it only when its sources
    // change (it was built from scratch per profile: three times per suite run).
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("ebpf"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ebpf"),
    };
    build_ebpf(&ebpf_dir, &target_dir);
    let built = target_dir.join(BPF_TARGET).join("release").join("tracer");
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
}

fn stub_reason() -> Option<String> {
    if env::var_os("TRACER_EBPF_STUB").is_some_and(|v| v != "0") {
        return Some("TRACER_EBPF_STUB is set".into());
    }
    if !Path::new(BPF_RUSTC).exists() {
        return Some(format!("{BPF_RUSTC} (Debian rustc-web) not found; run scripts/setup.sh"));
    }
    if which("bpf-linker").is_none() {
        return Some("bpf-linker not on PATH; run scripts/setup.sh".into());
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?).map(|d| d.join(tool)).find(|p| p.is_file())
}

fn build_ebpf(ebpf_dir: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(ebpf_dir)
        .args(["build", "--release", "--locked", "--target", BPF_TARGET, "--target-dir"])
        .arg(target_dir);
    // Do not leak the outer build's compiler, flags or wrappers into the BPF build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTFLAGS")
            || key == "RUSTDOC"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.env("RUSTC", BPF_RUSTC).env("RUSTC_BOOTSTRAP", "1");
    let status = cmd.status().unwrap_or_else(|e| panic!("run cargo for tracer-ebpf: {e}"));
    if !status.success() {
        panic!("building tracer-ebpf failed ({status}); see the errors above");
    }
}
