#!/bin/sh
# Two tracer builds against each other and bpftrace in one boot: each pass of the null_blk and
# collateral jobs of `cargo xtask bench overhead` between untraced ones, ROUNDS times. Lines as
# bench-overhead.sh's (mode=a the build at /root/tracer-a, mode=b the one at /root/tracer-b).
# A change to the kernel side is judged by the two in one boot, since boots under TCG differ
# more than most changes do. Run by `cargo xtask bench ab --a OLD --b NEW [--kernel sid]
# [--rounds 3]`, which prints the tables (or makes them from a console with --from-log).
set -u
ROUNDS=${1:-3}
BENCH_LIB=1
# shellcheck source=bench-overhead.sh
. /root/bench-overhead.sh 5 "$ROUNDS" tracer
bt_script "$BT_SRC" /tmp/bench.bt
echo "BENCH-INFO kernel=$(uname -r) cpus=$(nproc) runtime=$RUNTIME stats_runtime=$STATS_RUNTIME rounds=$ROUNDS" \
    "fio=$(fio --version) bpftrace=$(bpftrace --version | awk '{ print $2 }')" \
    "a=$(/root/tracer-a --version | tr ' ' _) b=$(/root/tracer-b --version | tr ' ' _)"
for r in $(seq 1 "$ROUNDS"); do
    pass none "$r"
    TRACER=/root/tracer-a
    tracer_pass "$r" a
    pass none "$r"
    TRACER=/root/tracer-b
    tracer_pass "$r" b
    pass none "$r"
    bpftrace_pass "$r"
done
pass none $((ROUNDS + 1))
echo "BENCH-DONE"
