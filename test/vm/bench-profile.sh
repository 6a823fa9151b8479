#!/bin/sh
# Guest side of `cargo xtask bench profile`: where the CPU goes on a 4 KiB random read (libaio
# QD32 on null_blk), untraced and under `tracer run`: bpftrace samples every CPU's kernel stack
# and command name at 997 Hz while fio runs (cpu-clock: no PMU under TCG). Measures only; the
# host sorts the samples (xtask/src/bench/profile.rs).
#
# usage: sh bench-profile.sh RUNTIME [TRACER]
#
# Passes: untraced, under the tracer, untraced, under bpftrace with the overhead bench's script
# (bench-overhead.bt: what another tracer of the same places pays, dispatch and bodies alike).
#
# Prints:
#   PROF-INFO kernel=K cpus=N runtime=S
#   PROF-RUN mode=untraced|traced|untraced2|bpftrace status=RC iops=X ios=N
#   PROF-TRACER status=RC pinned=N unpinned=N lost=N
#   PROF <mode> <bpftrace's map lines>   (@s[comm, kstack]: count)
#   PROF-NOTE ... and BENCH-NOTE ...     (what went wrong; bench-overhead.sh's functions note so)
#   PROF-DONE
set -u
RUN_S=${1:-15}
TRACER_BIN=${2:-tracer}
# bench-overhead.sh's functions: fio_job and fio_fig (its 4 KiB randread libaio QD32 job),
# wait_for, bt_script, stop_bpftrace.
BENCH_LIB=1
. /root/bench-overhead.sh 5 1
RUNTIME=$RUN_S
TRACER=$TRACER_BIN
JOB=randread-libaio-qd32
modprobe null_blk 2>/dev/null
# printf: dash's echo would turn the script's \n into a newline.
printf '%s\n' 'profile:hz:997 { @s[comm, kstack(12)] = count(); }' \
    'kfunc:ksys_sync { printf("PROF-READY\n"); }' > /tmp/prof.bt

profile() { # profile MODE: fio under the sampler
    bpftrace /tmp/prof.bt > /tmp/prof.out 2> /tmp/prof.err &
    bp=$!
    # The last probe (ksys_sync) prints when everything is attached: sync until it does.
    if ! wait_for /tmp/prof.out PROF-READY 300 $bp sync; then
        echo "PROF-NOTE $1: bpftrace did not start: $(tail -2 /tmp/prof.err | tr '\n' ' ')"
        return
    fi
    fio_job $JOB "$RUNTIME"
    echo "PROF-RUN mode=$1 status=$? $(fio_fig)"
    stop_bpftrace $bp "$1: the sampler"
    grep -v PROF-READY /tmp/prof.out | sed "s/^/PROF $1 /"
}

echo "PROF-INFO kernel=$(uname -r) cpus=$(nproc) runtime=$RUNTIME"
profile untraced
"$TRACER" run --format json > /tmp/tracer.json 2> /tmp/tracer.err &
pid=$!
wait_for /tmp/tracer.json '"type":"probe"' 900 $pid || echo "PROF-NOTE the tracer did not start: $(tail -1 /tmp/tracer.err)"
sleep 1
profile traced
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
summary=$(grep '"type":"summary"' /tmp/tracer.json | tail -1)
int() { echo "$summary" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
echo "PROF-TRACER status=$rc pinned=$(int pages_pinned) unpinned=$(int pages_unpinned) lost=$(int lost_events)"
profile untraced2
bt_script /root/bench-overhead.bt /tmp/bench.bt
bpftrace /tmp/bench.bt > /tmp/bt.out 2> /tmp/bt.err &
bt=$!
wait_for /tmp/bt.out BENCH-BT-READY 300 $bt sync ||
    echo "PROF-NOTE bpftrace (bench-overhead.bt) did not start: $(tail -2 /tmp/bt.err | tr '\n' ' ')"
profile bpftrace
stop_bpftrace $bt "bpftrace (bench-overhead.bt)"
echo "PROF-DONE"
