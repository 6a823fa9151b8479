#!/bin/sh
# Guest side of the "pin paths" VM test (run by `cargo xtask test`): one case per pin path of
# the seed series that the DIO cases (dio-pins.sh: iomap DIO on ext4/xfs/btrfs, raw block
# devices, libaio, psync, io_uring, dd) do not reach. Each case prints a CASE line (cases.sh)
# with a `path=` note that tells the host which expectation applies:
#   longterm            io_uring registered buffers: FOLL_PIN|FOLL_LONGTERM at registration
#   passthrough_aligned SG_IO / NVMe passthrough, page-aligned buffer: the pages are mapped
#                       (pinned on 6.2+, FOLL_GET references before); expect=<pages>
#   passthrough_copy    the same, one byte off: bounce-buffer copy, no pages taken
#   foll_get            vmsplice: FOLL_GET references on every kernel; expect=<pages>
#   legacy_dio          fs/direct-io.c (vfat)
#   fuse                FUSE direct I/O (pin-workload fuse: FOPEN_DIRECT_IO); expect=<pages of
#                       the client's buffers>. The server's own reads and writes of /dev/fuse
#                       take FOLL_GET references of its buffer on top.
set -u

. /root/cases.sh

tracer_start || echo "TRACER-START-FAILED"

note() { CASE_NOTE="path=$1${2:+ expect=$2}"; }

# io_uring registered buffers. The ring (and with it the buffers) is torn down by a kworker
# after fio exits: the case waits a second for it.
note longterm
case_run nullb0-io_uring-fixedbufs sh -c "fio --name=t --direct=1 --bs=16k --size=4m --iodepth=4 \
    --rw=randread --ioengine=io_uring --fixedbufs --filename=/dev/nullb0 --output=/dev/null; sleep 1"

# SG_IO (scsi_debug /dev/sda) and NVMe passthrough (/dev/nvme0n1): 64 commands of 64 KiB, so
# 1024 pages when mapped.
for dev in /dev/sda /dev/nvme0n1; do
    [ -b "$dev" ] || { echo "device $dev missing"; continue; }
    n=$(basename "$dev")
    how=sgio; [ "$n" = nvme0n1 ] && how=nvme
    for op in read write; do
        note passthrough_aligned 1024
        case_run "$n-$how-$op-aligned" pin-workload "$how" "$dev" --buffer aligned --op "$op" --count 64 --bytes 65536
        note passthrough_copy
        case_run "$n-$how-$op-unaligned" pin-workload "$how" "$dev" --buffer unaligned --op "$op" --count 64 --bytes 65536
    done
done

# vmsplice: 64 rounds of 16 pages.
note foll_get 1024
case_run vmsplice pin-workload vmsplice --pages 16 --rounds 64

# Legacy fs/direct-io.c: vfat still uses it (blockdev_direct_IO).
mkdir -p /mnt/vfat
if mkfs.vfat /dev/vda > /dev/null 2>&1 && mount -t vfat /dev/vda /mnt/vfat; then
    # fat does O_DIRECT writes only inside the allocated size (it falls back to buffered I/O
    # to extend a file): lay the file out first, then overwrite it.
    dd if=/dev/zero of=/mnt/vfat/f bs=64k count=64 2> /dev/null && sync
    note legacy_dio
    case_run vda-vfat-dd-write dd if=/dev/zero of=/mnt/vfat/f bs=64k count=64 oflag=direct conv=notrunc
    case_run vda-vfat-dd-read dd if=/mnt/vfat/f of=/dev/null bs=64k iflag=direct
    case_run vda-vfat-fio-randrw-psync fio --name=t --direct=1 --bs=16k --size=4m --rw=randrw \
        --ioengine=psync --filename=/mnt/vfat/f --output=/dev/null
    umount /mnt/vfat
else
    echo "CASE vda-vfat-setup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
fi
# FUSE direct I/O: 4 MiB written and read back with O_DIRECT, in 1 MiB requests (2048 pages).
mkdir -p /mnt/fuse
modprobe fuse 2> /dev/null
pin-workload fuse /mnt/fuse --size-mib 16 > /tmp/fuse.out 2>&1 &
FUSE_PID=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do grep -q " /mnt/fuse fuse" /proc/mounts && break; sleep 0.5; done
if grep -q " /mnt/fuse fuse" /proc/mounts; then
    note fuse 2048
    case_run fuse-dd-write-read sh -c "dd if=/dev/urandom of=/tmp/fuse.in bs=1M count=4 2> /dev/null && \
        dd if=/tmp/fuse.in of=/mnt/fuse/data bs=1M count=4 oflag=direct conv=notrunc && \
        dd if=/mnt/fuse/data of=/tmp/fuse.back bs=1M count=4 iflag=direct && cmp /tmp/fuse.in /tmp/fuse.back"
    umount /mnt/fuse
else
    echo "CASE fuse-setup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
fi
wait $FUSE_PID; cat /tmp/fuse.out
CASE_NOTE=
tracer_stop
echo "TRACER-EXIT status=$?"
echo "CASES-DONE"
