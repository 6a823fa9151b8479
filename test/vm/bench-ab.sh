#!/bin/sh
# Two tracer builds against each other and bpftrace in one boot: each pass of the null_blk and
# collateral jobs of `cargo xtask bench overhead` between untraced ones, ROUNDS times. Lines as
# bench-overhead.sh's (mode=a the build at /root/tracer-a, mode=b the one at /root/tracer-b);
# medians by hand. A change to the kernel side is judged by the two in one boot, since boots
# under TCG differ more than most changes do. From the workspace, with the two binaries built:
#   cargo xtask vm --kernel sid --no-build --mem 3072 --timeout 2800 --add test/vm/bench-overhead.sh \
#     --add test/vm/bench-overhead.bt --add test/vm/bench-ab.sh --add OLD:/root/tracer-a \
#     --add NEW:/root/tracer-b --add /usr/bin/bpftrace:/usr/bin/bpftrace \
#     --add /usr/sbin/bpftool:/usr/sbin/bpftool -- sh /root/bench-ab.sh 3
set -u
ROUNDS=${1:-3}
BENCH_LIB=1
# shellcheck source=bench-overhead.sh
. /root/bench-overhead.sh 5 "$ROUNDS" tracer
bt_script "$BT_SRC" /tmp/bench.bt
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
