#!/bin/sh
# The tracer with its default backups against `--backups 3` and bpftrace, in one boot: each
# pass of the four null_blk jobs of `cargo xtask bench overhead` between untraced ones, ROUNDS
# times. Lines as bench-overhead.sh's (mode=b1 the default, mode=b3 three backups); the medians
# are by hand (docs/benchmarks.md, 2026-12-06 evening). From the workspace, after
# `cargo build --release -p tracer`:
#   cargo xtask vm --kernel sid --no-build --mem 3072 --timeout 2900 --add test/vm/bench-overhead.sh \
#     --add test/vm/bench-overhead.bt --add test/vm/bench-backups.sh --add /usr/bin/bpftrace:/usr/bin/bpftrace \
#     --add /usr/sbin/bpftool:/usr/sbin/bpftool -- sh /root/bench-backups.sh 3
set -u
ROUNDS=${1:-3}
BENCH_LIB=1
# shellcheck source=bench-overhead.sh
. /root/bench-overhead.sh 5 "$ROUNDS" tracer
JOBS="randread-libaio-qd32 randread-psync-qd1 read64k-libaio-qd8 randwrite-uring-fixed-qd32"
printf '#!/bin/sh\nexec tracer "$@" --backups 3\n' > /root/tracer-b3
chmod +x /root/tracer-b3
bt_script "$BT_SRC" /tmp/bench.bt
for r in $(seq 1 "$ROUNDS"); do
    pass none "$r"
    TRACER=tracer
    tracer_pass "$r" b1
    pass none "$r"
    TRACER=/root/tracer-b3
    tracer_pass "$r" b3
    TRACER=tracer
    pass none "$r"
    bpftrace_pass "$r"
done
pass none $((ROUNDS + 1))
echo "BENCH-DONE"
