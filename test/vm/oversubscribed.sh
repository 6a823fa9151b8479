#!/bin/sh
# Guest side of the "oversubscribed chains" VM test (run by `cargo xtask test` on sid): more
# threads doing Direct I/O than CPUs (12 fio jobs on 2 vCPUs: io_uring on NVMe, psync and libaio
# on null_blk), so that threads are preempted inside the tracer's programs and the kernel skips
# programs for other threads on that CPU, all the time. The chains must rescue what they can,
# report what they lose, and never take an invocation twice (a double pin record is a false
# leak). The host checks the summary: the pin and unpin entry points' pages never exceed the
# kernel's counts (/proc/vmstat), and any shortfall is covered by reported skips.
set -u
modprobe null_blk 2>/dev/null
RT=${OVERSUB_RUNTIME:-20}
export RUST_LOG=info TRACER_DEBUG_CHAINS=1
tracer run --format json > /tmp/oversub.json 2> /tmp/oversub.err &
T=$!
tries=0
until grep -q '"type":"probe"' /tmp/oversub.json 2>/dev/null; do
    tries=$((tries + 1))
    if [ $tries -gt 600 ]; then echo "OVERSUB-ERROR tracer did not start"; cat /tmp/oversub.err; exit 1; fi
    sleep 1
done
sleep 2
fio --name=n --filename=/dev/nvme0n1 --direct=1 --rw=randread --bs=4k --ioengine=io_uring --iodepth=16 \
        --runtime="$RT" --time_based \
    --name=p --filename=/dev/nullb0 --direct=1 --rw=randread --bs=4k --ioengine=psync --numjobs=8 \
        --runtime="$RT" --time_based \
    --name=l --filename=/dev/nullb0 --direct=1 --rw=read --bs=64k --ioengine=libaio --iodepth=8 --numjobs=2 \
        --runtime="$RT" --time_based >/dev/null 2>&1
echo "OVERSUB-FIO status=$?"
sleep 2
kill -INT $T
wait $T
echo "OVERSUB-TRACER status=$?"
sed 's/^/OVERSUB-LOG /' /tmp/oversub.err | grep -E "chain |backups acted|ERROR" | tail -40
grep '"type":"summary"' /tmp/oversub.json | tail -1 | sed 's/^/OVERSUB-SUMMARY /'
