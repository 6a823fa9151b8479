#!/bin/sh
# Guest side of the "pins = /proc/vmstat" VM test (run by `cargo xtask vm-test`).
#
# For each device and workload: read /proc/vmstat's FOLL_PIN counters (refreshed), run the
# workload under `tracer run --format json`, read the counters again, and print one line
#   CASE <name> status=<rc> pinned=<P> unpinned=<U> lost=<L> accounting=<measured|unverifiable> vm_acquired=<A> vm_released=<R>
# The host side parses these lines and checks them; this script only measures.
set -u

. /root/cases.sh

# fio, O_DIRECT, 8 MiB in 16 KiB blocks at queue depth 8: fio ... --filename=X --rw=Y --ioengine=Z
FIO="fio --name=t --direct=1 --bs=16k --size=8m --io_size=8m --iodepth=8 --output=/dev/null"

tracer check || echo "CHECK-FAILED"
# The default run (the sys figure's probes are off: --syscall-latency; latency.sh runs them).
tracer_start || echo "TRACER-START-FAILED"

devices=""
for d in /dev/nullb0 /dev/vda /dev/nvme0n1; do
    [ -b "$d" ] && devices="$devices $d" || echo "device $d missing"
done

for dev in $devices; do
    n=$(basename "$dev")
    case_run "$n-dd-read" dd if="$dev" of=/dev/null bs=64k count=103 iflag=direct
    case_run "$n-dd-write" dd if=/dev/zero of="$dev" bs=64k count=64 oflag=direct
    case_run "$n-fio-randread-libaio" $FIO --filename="$dev" --rw=randread --ioengine=libaio
    case_run "$n-fio-randwrite-psync" $FIO --filename="$dev" --rw=randwrite --ioengine=psync
    case_run "$n-fio-randrw-io_uring" $FIO --filename="$dev" --rw=randrw --ioengine=io_uring
done

# Owners: a workload in a cgroup of its own. Every process of the case must show that cgroup's
# id (the inode number of its directory) and the comm fio: a record's owner is read from the
# current task in the kernel. io_uring's registered buffers: FOLL_PIN|FOLL_LONGTERM pins on every
# kernel (6.1's DIO takes references, which process figures do not count); the ring, and with it
# the buffers, is torn down by a kworker after fio exits: a second for that.
cg=/sys/fs/cgroup/tracer-case
grep -q " /sys/fs/cgroup cgroup2 " /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
if mkdir -p "$cg" && [ -f "$cg/cgroup.procs" ]; then
    CASE_NOTE="path=longterm owner=fio cgroup=$(stat -c %i "$cg")"
    # shellcheck disable=SC2016
    case_run nullb0-fio-fixedbufs-in-cgroup sh -c 'echo $$ > /sys/fs/cgroup/tracer-case/cgroup.procs && "$@"; rc=$?; sleep 1; exit $rc' sh \
        $FIO --filename=/dev/nullb0 --rw=randread --ioengine=io_uring --fixedbufs
    CASE_NOTE=
else
    echo "CASE nullb0-fio-fixedbufs-in-cgroup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
fi

# iomap DIO on xfs and btrfs (files laid out by fio first). btrfs falls back to buffered I/O for
# O_DIRECT writes to files with data checksums: no pins, which the host check accepts for it.
fs_cases() { # fs_cases FS DEV
    fs=$1; dev=$2; n=$(basename "$dev"); mnt=/mnt/$n-$fs
    mkdir -p "$mnt"
    if mkfs."$fs" -f "$dev" > /dev/null 2>&1 && mount -t "$fs" "$dev" "$mnt"; then
        case_run "$n-$fs-fio-randread-libaio" $FIO --filename="$mnt/f" --rw=randread --ioengine=libaio
        [ "$fs" = btrfs ] && CASE_NOTE=note=may_buffer
        case_run "$n-$fs-fio-randwrite-io_uring" $FIO --filename="$mnt/f" --rw=randwrite --ioengine=io_uring
        CASE_NOTE=
        umount "$mnt"
    else
        echo "CASE $n-$fs-setup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
    fi
}
[ -b /dev/nvme0n1 ] && fs_cases xfs /dev/nvme0n1
[ -b /dev/vda ] && fs_cases btrfs /dev/vda

# A memory-backed null_blk device (configfs) can hold a file system: nullb1, 256 MiB.
nb=/sys/kernel/config/nullb/nullb1
if [ -d /sys/kernel/config/nullb ] && mkdir -p "$nb" && echo 256 > "$nb/size" && echo 1 > "$nb/memory_backed" \
    && echo 1 > "$nb/power"; then
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/nullb1 ] && break; sleep 0.2; done
fi
[ -b /dev/nullb1 ] || echo "memory-backed null_blk (nullb1) not available"

for dev in /dev/vda /dev/nvme0n1 /dev/nullb1; do
    [ -b "$dev" ] || continue
    n=$(basename "$dev")
    mnt=/mnt/$n
    mkdir -p "$mnt"
    if mkfs.ext4 -q -F "$dev" && mount -t ext4 "$dev" "$mnt"; then
        case_run "$n-ext4-dd-write" dd if=/dev/zero of="$mnt/f" bs=64k count=128 oflag=direct
        case_run "$n-ext4-dd-read" dd if="$mnt/f" of=/dev/null bs=64k iflag=direct
        case_run "$n-ext4-fio-randread-libaio" $FIO --filename="$mnt/f" --rw=randread --ioengine=libaio
        case_run "$n-ext4-fio-randwrite-io_uring" $FIO --filename="$mnt/f" --rw=randwrite --ioengine=io_uring
        umount "$mnt"
    else
        echo "CASE $n-ext4-setup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
    fi
done
tracer_stop
echo "TRACER-EXIT status=$?"
echo "CASES-DONE"
