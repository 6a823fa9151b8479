#!/bin/sh
# Guest side of the latency VM tests (run by `cargo xtask test`). Measures only; the host
# checks. Each tracer NDJSON record is printed as "REC <phase> <json>".
set -u
export PATH=$PATH:/usr/sbin:/sbin
DELAY_MS=${DELAY_MS:-200}

. /root/cases.sh

# One tracer for every phase (loading it takes tens of seconds under TCG): each phase is a
# segment of its own (see cases.sh).
tracer_start --syscall-latency --percentiles 50,99 || echo "TRACER-START-FAILED"
grep '"type":"probe"' /tmp/trace.json | sed 's/^/REC probes /'

rec() { # rec PHASE COMMAND...: run COMMAND in a segment of its own and print its records
    phase=$1; shift
    segment_begin
    "$@" > /tmp/workload.out 2>&1
    rc=$?
    segment_end || rc=125
    [ $rc -eq 0 ] || { echo "phase $phase failed (exit $rc)"; tail -5 /tmp/workload.out; tail -5 /tmp/trace.err; }
    sed "s/^/REC $phase /" /tmp/case.json
    echo "PHASE $phase status=$rc"
}

FIO="fio --direct=1 --bs=4k --rw=randread --ioengine=psync --iodepth=1 --output=/dev/null"

for d in vda nvme0n1; do echo "DEVICES $d=$(cat /sys/block/$d/dev)"; done

# 1. virtio-blk and NVMe in one run: the tracer must report them apart.
rec two-devices $FIO --name=v --filename=/dev/vda --number_ios=300 --size=64m \
    --name=n --filename=/dev/nvme0n1 --number_ios=300 --size=64m

# 2. dm-delay: base latency through a zero-delay table, then a fixed delay.
sectors=$(blockdev --getsz /dev/vda)
modprobe dm-delay 2>/dev/null
echo "0 $sectors delay /dev/vda 0 0" | dmsetup create d0 || echo "dmsetup d0 failed"
echo "0 $sectors delay /dev/vda 0 $DELAY_MS" | dmsetup create dlong || echo "dmsetup dlong failed"
dmsetup mknodes  # no udev in the guest: make /dev/mapper/* ourselves
for n in d0 dlong; do [ -b /dev/mapper/$n ] || { echo "phase dm failed: /dev/mapper/$n is not a block device"; }; done
dm_dev() { dmsetup info -c --noheadings -o major,minor --separator : "$1" | tr -d ' '; }
echo "DEVICES d0=$(dm_dev d0) dlong=$(dm_dev dlong) delay_ms=$DELAY_MS"
rec dm-base $FIO --name=b --filename=/dev/mapper/d0 --number_ios=400 --size=64m
rec dm-delay $FIO --name=d --filename=/dev/mapper/dlong --number_ios=25 --size=64m
dmsetup remove d0; dmsetup remove dlong

# 3. Pin hold time and completion -> unpin lag on an ext4 file (iomap DIO), with the
#    syscall-level and DIO figures alongside.
mkfs.ext4 -q -F /dev/nvme0n1 && mkdir -p /mnt/n && mount /dev/nvme0n1 /mnt/n &&
    rec ext4 $FIO --name=e --filename=/mnt/n/f --size=16m --number_ios=500 &&
    umount /mnt/n
tracer_stop
echo "TRACER-EXIT status=$?"
echo "LATENCY-DONE"
