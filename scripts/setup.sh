#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 (bookworm) machine: apt suites and packages,
# Debian's rustc-web with the prebuilt BPF core, and bpf-linker built against the
# LLVM major that rustc-web uses. Kernel packages for the VM tests are fetched and
# pinned by `cargo xtask kernels` (see xtask/kernels.toml); nfs-kernel-server's programs
# for the guest are unpacked into the VM cache (nfs_utils below).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

log() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The mirror URI comes from the machine's own Debian source entry; no host is hard-coded.
debian_mirror() {
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' \
            /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file|ftp):/) {print $i; exit}}' \
            /etc/apt/sources.list)
    fi
    if [ -z "$uri" ]; then
        echo "setup: cannot find a Debian mirror in /etc/apt/sources.list(.d); add one and retry" >&2
        exit 1
    fi
    printf '%s\n' "${uri%/}"
}

add_backports() {
    local f=/etc/apt/sources.list.d/tracer-bookworm-backports.sources
    if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 0
    fi
    local uri; uri=$(debian_mirror)
    log "adding bookworm-backports from $uri"
    as_root tee "$f" >/dev/null <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    APT_UPDATED=0
}

APT_UPDATED=${APT_UPDATED:-0}
# apt_install [-t SUITE] PKG...: installs what is not installed yet.
apt_install() {
    local target=()
    if [ "${1:-}" = -t ]; then target=(-t "$2"); shift 2; fi
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "${p%%/*}" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$APT_UPDATED" = 0 ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${target[@]}" "${missing[@]}" >/dev/null
}

# The VM cache of xtask (xtask/src/kernels.rs, vm_dir): $CARGO_TARGET_DIR/vm/cache, relative
# to the workspace root unless absolute.
vm_cache() {
    local t=${CARGO_TARGET_DIR:-target}
    case "$t" in /*) ;; *) t="$ROOT/$t" ;; esac
    printf '%s\n' "$t/vm/cache"
}

# exportfs, rpc.mountd and nfsdcld for the NFS case of the VM tests (test/vm/pin-paths.sh: the
# guest runs the kernel nfsd; mountd answers its export upcalls, nfsdcld its client tracking
# ones). nfs-kernel-server is never installed here, since its postinst would start the NFS
# services on this machine: its .deb comes from the machine's own apt sources (`apt-get
# download`) and is unpacked with `dpkg -x` into the VM cache, where xtask takes the programs
# from (xtask/src/initramfs.rs, NFS_TOOLS). Their shared libraries are plain libraries with
# nothing to start, so they are installed (apt resolves their dependencies; ldd then finds
# them for the guest too). A second run finds the unpacked programs and fetches nothing.
nfs_utils() {
    apt_install libtirpc3 libwrap0 libblkid1 libuuid1 libevent-core-2.1-7 libsqlite3-0 libcap2
    local dest; dest="$(vm_cache)/nfs-utils"
    local sbin="$dest/root/usr/sbin"
    if [ -x "$sbin/rpc.mountd" ] && [ -x "$sbin/exportfs" ] && [ -x "$sbin/nfsdcld" ]; then
        return 0
    fi
    # Package lists may be missing (cleaned images) although every package is installed.
    if ! apt-cache show nfs-kernel-server >/dev/null 2>&1 && [ "$APT_UPDATED" = 0 ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    log "fetching nfs-kernel-server (unpacked into $dest, not installed)"
    # As root, apt downloads as its unprivileged _apt user: give it the download directory
    # (otherwise apt warns and downloads unsandboxed).
    local tmp; tmp=$(mktemp -d)
    if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
    (cd "$tmp" && apt-get download -qq nfs-kernel-server) \
        || { rm -rf "$tmp"; echo "setup: apt-get download nfs-kernel-server failed" >&2; exit 1; }
    # Unpacked beside $dest and renamed into place: an interrupted run leaves no half tree.
    mkdir -p "$(dirname "$dest")"
    rm -rf "$dest.new"
    mkdir -p "$dest.new/root"
    dpkg -x "$tmp"/nfs-kernel-server_*.deb "$dest.new/root"
    dpkg-deb -f "$tmp"/nfs-kernel-server_*.deb Version > "$dest.new/version"
    rm -rf "$tmp"
    local missing
    missing=$(cd "$dest.new/root/usr/sbin" && ldd ./rpc.mountd ./exportfs ./nfsdcld | grep 'not found' || true)
    if [ -n "$missing" ]; then
        echo "setup: libraries of nfs-kernel-server's programs are missing: $missing" >&2
        exit 1
    fi
    rm -rf "$dest"
    mv "$dest.new" "$dest"
}

main() {
    add_backports
    # Debian's rustc-web carries a prebuilt libcore for bpfel-unknown-none (no -Z build-std needed).
    apt_install rustc-web libstd-rust-web-dev-bpf
    local llvm_major
    llvm_major=$(/usr/bin/rustc -vV | awk '/^LLVM version:/ {split($3, v, "."); print v[1]}')
    [ -n "$llvm_major" ] || { echo "setup: cannot read the LLVM version of /usr/bin/rustc" >&2; exit 1; }
    apt_install "llvm-${llvm_major}-dev" "libpolly-${llvm_major}-dev" libzstd-dev zlib1g-dev \
        busybox-static cpio fio e2fsprogs xfsprogs btrfs-progs \
        sg3-utils nvme-cli dosfstools dmsetup kmod xz-utils zstd ca-certificates curl \
        chromium tmux python3-prometheus-client \
        bpftrace bpftool

    # bookworm's qemu 7.2 conflicts with the qemu-utils from backports that the machine has.
    apt_install -t bookworm-backports qemu-system-x86
    nfs_utils

    local want="llvm-${llvm_major}"
    local stamp="$HOME/.cargo/bpf-linker.${want}"
    if ! command -v bpf-linker >/dev/null 2>&1 || [ ! -f "$stamp" ]; then
        log "building bpf-linker against LLVM ${llvm_major}"
        LLVM_PREFIX="/usr/lib/llvm-${llvm_major}" cargo install --locked --force bpf-linker \
            --no-default-features --features "$want" >&2
        mkdir -p "$(dirname "$stamp")" && touch "$stamp"
    fi
    log "toolchain ready (rustc-web LLVM ${llvm_major}, bpf-linker $(bpf-linker --version 2>/dev/null | head -1))"
}

main "$@"
