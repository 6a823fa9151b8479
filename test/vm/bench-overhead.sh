#!/bin/sh
# Guest side of `cargo xtask bench overhead`: fio IOPS untraced, under the tracer, under an
# equivalent bpftrace script (bench-overhead.bt), under empty programs on the tracer's attach
# points (bench-floor.bt) and under as many empty programs as the tracer's chains run there
# (chains_script), alternating in one boot. Measures only; the host computes medians and
# ratios.
#
# usage: sh bench-overhead.sh RUNTIME ROUNDS [TRACER]
#
# Per round: an untraced pass of every job, a pass under `TRACER run --format json` (started
# before the pass, stopped after it), an untraced pass, a pass under bpftrace, an untraced pass,
# a pass under the empty programs ("floor"), an untraced pass, a pass under the empty chains
# ("chains"); one more untraced pass at the end, so that every
# traced pass has untraced neighbours on both sides.
# IOPS are measured with BPF run time statistics (kernel.bpf_stats_enabled) off, as a user's
# run has them; each traced run is followed by a shorter one with them on, which the per-program
# figures come from (their two clock reads per program run would otherwise count as the
# tracer's overhead: under TCG they are a good part of a small program's run).
# Lines for the host:
#   BENCH-INFO kernel=... cpus=N mem_kb=N runtime=S rounds=N fio=... bpftrace=... bpftool=...
#   BENCH-RUN job=J mode=none|tracer|bpftrace|floor|chains round=R status=RC iops=X ios=N
#   BENCH-STATS job=J mode=M round=R status=RC iops=X ios=N   (the run with BPF statistics on)
#   BENCH-PROG job=J mode=M round=R id=ID name=NAME:TARGET run_ns=N run_cnt=N (programs that ran in it)
#   BENCH-TRACER round=R status=RC ...        BENCH-BT|BENCH-FLOOR|BENCH-CHAINS round=R status=RC ...
#   BENCH-NOTE ...                            BENCH-DONE
set -u
export PATH=$PATH:/usr/sbin:/sbin
RUNTIME=${1:-5}
ROUNDS=${2:-3}
# Seconds of each run with BPF statistics on.
STATS_RUNTIME=$(( RUNTIME > 4 ? RUNTIME / 2 : 2 ))
TRACER=${3:-tracer}
BT_SRC=/root/bench-overhead.bt
FLOOR_SRC=/root/bench-floor.bt

JOBS="randread-libaio-qd32 randread-psync-qd1 read64k-libaio-qd8 randwrite-uring-fixed-qd32 syscall-zero-512 tmpfs-write-4k"

job_args() {
    case $1 in
    randread-libaio-qd32) echo "--filename=/dev/nullb0 --direct=1 --rw=randread --bs=4k --ioengine=libaio --iodepth=32" ;;
    randread-psync-qd1) echo "--filename=/dev/nullb0 --direct=1 --rw=randread --bs=4k --ioengine=psync --iodepth=1" ;;
    read64k-libaio-qd8) echo "--filename=/dev/nullb0 --direct=1 --rw=read --bs=64k --ioengine=libaio --iodepth=8" ;;
    randwrite-uring-fixed-qd32) echo "--filename=/dev/nullb0 --direct=1 --rw=randwrite --bs=4k --ioengine=io_uring --iodepth=32 --fixedbufs" ;;
    syscall-zero-512) echo "--filename=/dev/zero --size=1g --rw=read --bs=512 --ioengine=psync" ;;
    tmpfs-write-4k) echo "--filename=/tmp/bench-tmpfs.fio --size=64m --rw=write --bs=4k --ioengine=psync" ;;
    esac
}

# targets: "prog_id target" of every attached program, into /tmp/targets: links (fentry,
# fexit, raw tracepoints) from their fds' fdinfo (prog_id, and tp_name or target_btf_id: bpftool
# 7.1's `link show` gives no target for tracing links), then perf events (kprobes, perf
# tracepoints) from `bpftool perf show`; each program once. Program names are cut at 15
# characters and the backups of a chain share them, so the report names each program's target.
BTF_FUNCS=/tmp/btf-funcs
targets() {
    [ -s $BTF_FUNCS ] || bpftool btf dump file /sys/kernel/btf/vmlinux 2>/dev/null |
        awk -v q="'" '$2 == "FUNC" { id = $1; sub(/^\[/, "", id); sub(/\]$/, "", id); n = $3; gsub(q, "", n); print id, n }' > $BTF_FUNCS
    echo "0 none" > /tmp/targets
    # shellcheck disable=SC2016 # awk's own variables
    awk -v funcs=$BTF_FUNCS '
        function flush() { if (prog != "" && t != "") print prog, t; prog = ""; t = "" }
        BEGIN { while ((getline l < funcs) > 0) { split(l, a, " "); fn[a[1]] = a[2] } }
        FNR == 1 { flush() }
        $1 == "prog_id:" { prog = $2 }
        $1 == "tp_name:" { t = $2 }
        $1 == "target_btf_id:" { t = ($2 in fn) ? fn[$2] : "btf_id_" $2 }
        END { flush() }' /proc/[0-9]*/fdinfo/* 2>/dev/null | sort -u -k1,1n >> /tmp/targets
    bpftool perf show 2>/dev/null | awk 'NR == FNR { seen[$1] = 1; next }
        $1 == "pid" { p = ""; t = $NF
            for (i = 1; i < NF; i++) { if ($i == "prog_id") p = $(i + 1); if ($i == "func") t = $(i + 1) }
            if (p != "" && !(p in seen)) { seen[p] = 1; print p, t } }' /tmp/targets - > /tmp/targets.perf
    cat /tmp/targets.perf >> /tmp/targets
}

# progs: "id name:target run_time_ns run_cnt" of every BPF program loaded.
progs() {
    bpftool prog show > /tmp/progs.txt 2>/dev/null
    awk 'NR == FNR { t[$1] = $2; next }
        /^[0-9]+:/ {
        id = $1; sub(":", "", id); name = "?"; ns = 0; cnt = 0
        for (i = 2; i < NF; i++) {
            if ($i == "name") name = $(i + 1)
            if ($i == "run_time_ns") ns = $(i + 1)
            if ($i == "run_cnt") cnt = $(i + 1)
        }
        if (id in t) name = name ":" t[id]
        print id, name, ns, cnt
    }' /tmp/targets /tmp/progs.txt
}

# prog_delta JOB MODE ROUND: what each program ran between the snapshots /tmp/p0 and /tmp/p1.
prog_delta() {
    awk -v job="$1" -v mode="$2" -v round="$3" 'NR == FNR { ns[$1] = $3; c[$1] = $4; next }
        { d = $4 - c[$1]; if (d > 0) printf "BENCH-PROG job=%s mode=%s round=%s id=%s name=%s run_ns=%.0f run_cnt=%.0f\n", job, mode, round, $1, $2, $3 - ns[$1], d }' \
        /tmp/p0 /tmp/p1
}

# fio_fig: "iops=X ios=N" of the last fio run, reads and writes added up.
fio_fig() {
    awk '/^ *"(read|write|trim|sync)" : \{/ { dir = $1; gsub(/"/, "", dir) }
        dir == "read" || dir == "write" {
            if ($1 == "\"iops\"") { v = $3; sub(",", "", v); iops += v }
            if ($1 == "\"total_ios\"") { v = $3; sub(",", "", v); ios += v }
        }
        END { printf "iops=%.1f ios=%.0f", iops, ios }' /tmp/fio.json 2>/dev/null
}

fio_job() { # fio_job JOB SECONDS: one fio run into /tmp/fio.json; its exit status
    rm -f /tmp/fio.json
    # shellcheck disable=SC2046 # job_args is a list of options
    fio --name=bench --time_based --runtime="$2" --norandommap --randrepeat=0 \
        --output-format=json --output=/tmp/fio.json $(job_args "$1") > /tmp/fio.err 2>&1
    rc=$?
    [ $rc -eq 0 ] || tail -3 /tmp/fio.err | sed 's/^/BENCH-NOTE fio: /'
    return $rc
}

# run_job JOB MODE ROUND: the measured run, BPF statistics off (they cost two clock reads per
# program run, which a user's run does not pay); then, in a traced mode, a shorter run with
# them on for the programs' run time (BENCH-STATS, and BENCH-PROG per program).
run_job() {
    fio_job "$1" "$RUNTIME"
    echo "BENCH-RUN job=$1 mode=$2 round=$3 status=$? $(fio_fig)"
    [ "$2" = none ] && return
    echo 1 > /proc/sys/kernel/bpf_stats_enabled
    progs > /tmp/p0
    fio_job "$1" "$STATS_RUNTIME"
    rc=$?
    progs > /tmp/p1
    echo 0 > /proc/sys/kernel/bpf_stats_enabled
    prog_delta "$@"
    echo "BENCH-STATS job=$1 mode=$2 round=$3 status=$rc $(fio_fig)"
}

pass() { # pass MODE ROUND: every job once
    for job in $JOBS; do run_job "$job" "$1" "$2"; done
}


# wait_for FILE TEXT SECONDS PID [COMMAND]: until FILE contains TEXT, running COMMAND (if any)
# at every turn; fails when PID exits or time is up.
wait_for() {
    i=0
    until grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt $(($3 * 10)) ] || ! kill -0 "$4" 2>/dev/null; then return 1; fi
        [ -n "${5:-}" ] && $5
        sleep 0.1
    done
}

json_int() { sed -n "s/.*\"type\":\"summary\".*\"$1\":\([0-9]*\).*/\1/p" /tmp/tracer.json | tail -1; }

# utime + stime of a process, in clock ticks (the command name in field 2 has no spaces here).
cpu_ticks() { awk '{ print $14 + $15 }' /proc/"$1"/stat 2>/dev/null || echo 0; }

tracer_pass() { # tracer_pass ROUND [MODE]
    cpu=unknown
    "$TRACER" run --format json > /tmp/tracer.json 2> /tmp/tracer.err &
    pid=$!
    if wait_for /tmp/tracer.json '"type":"probe"' 300 $pid; then
        targets
        sleep 1
        # The tracer's own CPU time over the pass (its userspace reading and matching records;
        # BPF run time is counted apart): utime + stime of /proc/PID/stat, in clock ticks.
        t0=$(date +%s); c0=$(cpu_ticks $pid)
        pass "${2:-tracer}" "$1"
        cpu="$(awk -v t=$(( $(cpu_ticks $pid) - c0 )) -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" 'BEGIN { printf "%.1f", t / hz }')s/$(( $(date +%s) - t0 ))s"
    else
        echo "BENCH-NOTE round $1: the tracer did not start: $(tail -1 /tmp/tracer.err)"
    fi
    kill -INT $pid 2>/dev/null
    wait $pid
    rc=$?
    echo "BENCH-TRACER round=$1 mode=${2:-tracer} status=$rc probes=$(grep -c '"type":"probe"' /tmp/tracer.json) userspace_cpu=$cpu" \
        "pinned=$(json_int pages_pinned) unpinned=$(json_int pages_unpinned) lost=$(json_int lost_events)" \
        "lost_why=$(grep '"type":"summary"' /tmp/tracer.json | sed -n 's/.*"lost_by_reason":{\([^}]*\)}.*/\1/p' | tr -d '"' | tail -1)" \
        "skipped=$(grep '"type":"summary"' /tmp/tracer.json | sed -n 's/.*"probes_skipped":\[\([^]]*\)\].*/\1/p' | sed 's/{"target":"\([^"]*\)","runs":\([0-9]*\)}/\1:\2/g' | tail -1)" \
        "stack_paths=$(grep '"type":"summary"' /tmp/tracer.json | sed -n 's/.*"stack_paths":{\([^}]*\)}.*/\1/p' | tr -d '"' | tail -1)"
    grep -E "ERROR|WARN" /tmp/tracer.err | head -5 | sed 's/^/BENCH-NOTE tracer: /'
}

# stop_bpftrace PID WHAT: SIGINT; bpftrace 0.17 has been seen not to exit after it on sid (the
# boot then idled until the VM's timeout): two minutes, then SIGKILL, noted (its counts are
# then missing).
stop_bpftrace() {
    kill -INT "$1" 2>/dev/null
    t0=$(date +%s)
    while kill -0 "$1" 2>/dev/null && [ $(($(date +%s) - t0)) -lt 120 ]; do sleep 1; done
    if kill -0 "$1" 2>/dev/null; then
        echo "BENCH-NOTE $2 did not exit 120 s after SIGINT: killed"
        kill -KILL "$1" 2>/dev/null
    fi
}

bpftrace_pass() { # bpftrace_pass ROUND [SCRIPT MODE TAG]
    script=${2:-/tmp/bench.bt}
    mode=${3:-bpftrace}
    bpftrace "$script" > /tmp/bt.out 2> /tmp/bt.err &
    pid=$!
    # The script's last probe (ksys_sync) prints when it is attached: sync until it does.
    if wait_for /tmp/bt.out BENCH-BT-READY 300 $pid sync; then
        targets
        sleep 1
        pass "$mode" "$1"
    else
        echo "BENCH-NOTE round $1: bpftrace ($mode) did not start: $(tail -2 /tmp/bt.err | tr '\n' ' ')"
    fi
    stop_bpftrace $pid "round $1: bpftrace ($mode)"
    wait $pid
    rc=$?
    echo "${4:-BENCH-BT} round=$1 status=$rc$(awk '/^@[a-z_]+(\[[^]]*\])?: [0-9]+$/ {
        k = $1; sub(/^@/, "", k); sub(/:$/, "", k); sub(/\]$/, "", k); sub(/\[/, ".", k)
        printf " %s=%s", k, $2 }' /tmp/bt.out)"
}

# The bpftrace script without the probes of functions this kernel lacks.
bt_script() { # bt_script SOURCE COPY
    cp "$1" "$2"
    for f in $(sed -n 's/^k\(ret\)\{0,1\}func:\([a-z_0-9]*\)$/\2/p' "$1"); do
        if ! grep -q " $f\$" /proc/kallsyms; then
            echo "BENCH-NOTE bpftrace: $f is not in this kernel; its probe is left out of $(basename "$1")"
            sed -i "/^k\(ret\)\{0,1\}func:$f\$/,/^}\$/d" "$2"
        fi
    done
}

# chains_script FLOOR COPY: the chains' floor, FLOOR (bench-floor.bt) with each place's empty
# program repeated as many times as the tracer had programs attached there (its primary and its
# chain's backups: /tmp/targets, taken during its pass), which depends on the kernel
# (tracer/src/probes/preemption.rs); one where it had none. Noted on the console.
chains_script() {
    awk -v out="$2" 'NR == FNR { n[$2]++; next }
        /^(k(ret)?func|tracepoint):/ { place = $0; sub(/.*:/, "", place); block = $0 "\n"; open = 1; next }
        open { block = block $0 "\n"
            if ($0 == "}") { open = 0; c = (place in n) ? n[place] : 1
                for (i = 0; i < c; i++) printf "%s\n", block > out
                if (place != "ksys_sync") layout = layout " " place "=" c }
            next }
        { print > out }
        END { print "BENCH-NOTE chains floor, the tracer'"'"'s programs per place in this boot:" layout }' \
        /tmp/targets "$1"
}

# bench-ablation.sh sources the functions above (BENCH_LIB=1) and runs passes of its own.
[ -n "${BENCH_LIB:-}" ] && return 0

echo "BENCH-INFO kernel=$(uname -r) cpus=$(nproc) mem_kb=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)" \
    "runtime=$RUNTIME stats_runtime=$STATS_RUNTIME rounds=$ROUNDS fio=$(fio --version) bpftrace=$(bpftrace --version | awk '{ print $2 }')" \
    "bpftool=$(bpftool version | awk 'NR == 1 { print $2 }')" \
    "nullb_sched=$(sed 's/.*\[\(.*\)\].*/\1/' /sys/block/nullb0/queue/scheduler)" \
    "stats_enabled=$(cat /proc/sys/kernel/bpf_stats_enabled)"
bt_script "$BT_SRC" /tmp/bench.bt
bt_script "$FLOOR_SRC" /tmp/floor.bt
rm -f /tmp/chains.bt
for r in $(seq 1 "$ROUNDS"); do
    pass none "$r"
    tracer_pass "$r"
    [ -s /tmp/chains.bt ] || chains_script /tmp/floor.bt /tmp/chains.bt
    pass none "$r"
    bpftrace_pass "$r"
    pass none "$r"
    bpftrace_pass "$r" /tmp/floor.bt floor BENCH-FLOOR
    pass none "$r"
    bpftrace_pass "$r" /tmp/chains.bt chains BENCH-CHAINS
done
pass none $((ROUNDS + 1))
rm -f /tmp/bench-tmpfs.fio
echo "BENCH-DONE"
