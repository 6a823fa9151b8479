#!/bin/sh
# Guest side of the "oversubscribed chains" VM test (run by `cargo xtask test` on sid): more
# threads doing Direct I/O than CPUs (12 fio jobs on 2 vCPUs: io_uring on NVMe, psync and libaio
# on null_blk), so that threads are preempted inside the tracer's programs and the kernel skips
# programs for other threads on that CPU, all the time. The chains must rescue what they can,
# report what they lose, and never take an invocation twice (a double pin record is a false
# leak). Two passes in one boot: the tracer as a user runs it (one backup per probe), then with
# `--backups 3`, which must lose fewer calls. The host checks each pass's summary: the pin and
# unpin entry points' pages never exceed the kernel's counts (/proc/vmstat), and any shortfall
# is covered by reported skips; and the CHAIN and TRACER-STDERR lines tracer_stop prints
# (cases.sh). Each pass's lines follow its OVERSUB-PASS line.
set -u

. /root/cases.sh

modprobe null_blk 2>/dev/null
RT=${OVERSUB_RUNTIME:-20}
for backups in default 3; do
    echo "OVERSUB-PASS backups=$backups"
    if [ "$backups" = default ]; then
        tracer_start || echo "TRACER-START-FAILED"
    else
        tracer_start --backups "$backups" || echo "TRACER-START-FAILED"
    fi
    fio --name=n --filename=/dev/nvme0n1 --direct=1 --rw=randread --bs=4k --ioengine=io_uring --iodepth=16 \
            --runtime="$RT" --time_based \
        --name=p --filename=/dev/nullb0 --direct=1 --rw=randread --bs=4k --ioengine=psync --numjobs=8 \
            --runtime="$RT" --time_based \
        --name=l --filename=/dev/nullb0 --direct=1 --rw=read --bs=64k --ioengine=libaio --iodepth=8 --numjobs=2 \
            --runtime="$RT" --time_based >/dev/null 2>&1
    echo "OVERSUB-FIO status=$?"
    sleep 2
    tracer_stop
    echo "OVERSUB-TRACER status=$?"
    grep '"type":"summary"' /tmp/trace.json | tail -1 | sed 's/^/OVERSUB-SUMMARY /'
done
