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
#   PROF-DONE
set -u
RUN_S=${1:-15}
TRACER_BIN=${2:-tracer}
# bt_script (the bpftrace script without probes of functions this kernel lacks).
BENCH_LIB=1
. /root/bench-overhead.sh 5 1
RUNTIME=$RUN_S
TRACER=$TRACER_BIN
modprobe null_blk 2>/dev/null
cat > /tmp/prof.bt <<'EOF'
profile:hz:997 { @s[comm, kstack(12)] = count(); }
kfunc:ksys_sync { printf("PROF-READY\n"); }
EOF

fio_run() { # fio_run MODE
    fio --name=p --filename=/dev/nullb0 --direct=1 --rw=randread --bs=4k --ioengine=libaio --iodepth=32 \
        --runtime="$RUNTIME" --time_based --norandommap --randrepeat=0 --output-format=json --output=/tmp/fio.json \
        > /tmp/fio.err 2>&1
    rc=$?
    echo "PROF-RUN mode=$1 status=$rc $(awk '/"read" : \{/ { r = 1 } r && $1 == "\"iops\"" { v = $3; sub(",", "", v); i = v }
        r && $1 == "\"total_ios\"" { v = $3; sub(",", "", v); n = v; r = 0 } END { printf "iops=%.1f ios=%.0f", i, n }' /tmp/fio.json)"
}

profile() { # profile MODE: fio under the sampler
    bpftrace /tmp/prof.bt > /tmp/prof.out 2> /tmp/prof.err &
    bp=$!
    t0=$(date +%s)
    # The last probe (ksys_sync) prints when everything is attached: sync until it does.
    until grep -q PROF-READY /tmp/prof.out; do
        if [ $(($(date +%s) - t0)) -gt 300 ] || ! kill -0 $bp 2>/dev/null; then
            echo "PROF-NOTE $1: bpftrace did not start: $(tail -2 /tmp/prof.err | tr '\n' ' ')"
            return
        fi
        sync
        sleep 0.2
    done
    fio_run "$1"
    kill -INT $bp
    t0=$(date +%s)
    while kill -0 $bp 2>/dev/null && [ $(($(date +%s) - t0)) -lt 120 ]; do sleep 1; done
    if kill -0 $bp 2>/dev/null; then
        echo "PROF-NOTE $1: bpftrace did not exit 120 s after SIGINT: killed"
        kill -KILL $bp 2>/dev/null
    fi
    grep -v PROF-READY /tmp/prof.out | sed "s/^/PROF $1 /"
}

echo "PROF-INFO kernel=$(uname -r) cpus=$(nproc) runtime=$RUNTIME"
profile untraced
"$TRACER" run --format json > /tmp/tracer.json 2> /tmp/tracer.err &
pid=$!
t0=$(date +%s)
until grep -q '"type":"probe"' /tmp/tracer.json 2>/dev/null; do
    if [ $(($(date +%s) - t0)) -gt 900 ] || ! kill -0 $pid 2>/dev/null; then
        echo "PROF-NOTE the tracer did not start: $(tail -1 /tmp/tracer.err)"
        break
    fi
    sleep 0.5
done
sleep 1
profile traced
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
summary=$(grep '"type":"summary"' /tmp/tracer.json | tail -1)
int() { echo "$summary" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
echo "PROF-TRACER status=$rc pinned=$(int pages_pinned) unpinned=$(int pages_unpinned) lost=$(int lost_events)"
profile untraced2
bt_script /root/bench-overhead.bt /tmp/bench.bt | sed 's/^BENCH-NOTE/PROF-NOTE/'
bpftrace /tmp/bench.bt > /tmp/bt.out 2> /tmp/bt.err &
bt=$!
t0=$(date +%s)
until grep -q BENCH-BT-READY /tmp/bt.out; do
    if [ $(($(date +%s) - t0)) -gt 300 ] || ! kill -0 $bt 2>/dev/null; then
        echo "PROF-NOTE bpftrace (bench-overhead.bt) did not start: $(tail -2 /tmp/bt.err | tr '\n' ' ')"
        break
    fi
    sync
    sleep 0.2
done
profile bpftrace
kill -INT $bt 2>/dev/null
t0=$(date +%s)
while kill -0 $bt 2>/dev/null && [ $(($(date +%s) - t0)) -lt 120 ]; do sleep 1; done
kill -KILL $bt 2>/dev/null
echo "PROF-DONE"
