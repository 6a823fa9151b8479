#!/bin/sh
# The demo behind `./x run --vm`: `tracer run` (the live dashboard when the host runs it in a
# terminal, DEMO_ROWS x DEMO_COLS; else figures every 2 s) while fio does Direct I/O
# on the virtio and NVMe disks, and a second fio registers io_uring fixed buffers
# (FOLL_LONGTERM pins) and keeps them pinned after the trace ends, which the summary shows as
# a positive net of pinned pages held by that process.
set -u
D=${DEMO_SECONDS:-20}
echo "demo: tracing for about $D s: fio O_DIRECT on /dev/vda and /dev/nvme0n1, plus a fio that"
echo "demo: registers io_uring fixed buffers (long-term pins) and holds them past the end"
# The guest's init runs this with stdin from /dev/null: the dashboard reads its keys from the
# serial console, which QEMU connects to the host's terminal.
if [ -n "${DEMO_COLS:-}" ] && [ -c /dev/ttyS0 ]; then
    exec < /dev/ttyS0
fi
if [ -n "${DEMO_COLS:-}" ] && [ -t 0 ] && [ -t 1 ]; then
    stty rows "$DEMO_ROWS" cols "$DEMO_COLS"
    # Kernel messages on the console would scroll the screen under the dashboard.
    echo 1 > /proc/sys/kernel/printk
    VIEW="--format tui"
else
    VIEW="--interval 2"
fi
tracer run $VIEW -- sh -c "
    fio --name=holder --filename=/dev/nullb0 --ioengine=io_uring --fixedbufs --direct=1 \
        --rw=read --bs=64k --iodepth=16 --time_based --runtime=3600 --rate_iops=1 \
        --eta=never --output=/dev/null &
    fio --name=vda --filename=/dev/vda --name=nvme --filename=/dev/nvme0n1 --direct=1 \
        --rw=randrw --bs=16k --ioengine=libaio --iodepth=8 --time_based --runtime=$D \
        --eta=never --output=/dev/null
"
status=$?
echo
echo "demo: 'net +N' above is the fixed buffers the holder fio still has pinned (see its row in"
echo "demo: the process table); every Direct I/O bio was matched to its release (pin ledger)."
exit $status
