#!/bin/sh
# Guest side of `cargo xtask bench ablation`: what each part of a page record costs. The
# tracer runs once per ablation (TRACER_BENCH_SKIP: tracer_common::bench_skip), each pass
# between untraced ones, in one boot; the per-program run time (BENCH-PROG) says what the pin
# and unpin programs cost without the part. Measures only; the host sums up.
#
# usage: sh bench-ablation.sh RUNTIME ROUNDS TRACER [JOB...]
# Lines: those of bench-overhead.sh, with mode=tracer-PARTS for a pass without PARTS
# (mode=tracer: nothing left out).
set -u
BENCH_LIB=1
# shellcheck source=bench-overhead.sh
. /root/bench-overhead.sh "$1" "$2" "$3"
shift 3
JOBS=${*:-randread-libaio-qd32 read64k-libaio-qd8}
ABLATIONS="none owner stack checks frames pages output record"

echo "BENCH-INFO kernel=$(uname -r) cpus=$(nproc) runtime=$RUNTIME stats_runtime=$STATS_RUNTIME rounds=$ROUNDS" \
    "fio=$(fio --version) ablations=$(echo $ABLATIONS | tr ' ' ,) jobs=$(echo $JOBS | tr ' ' ,)"
for r in $(seq 1 "$ROUNDS"); do
    for a in $ABLATIONS; do
        pass none "$r"
        if [ "$a" = none ]; then
            tracer_pass "$r" tracer
        else
            export TRACER_BENCH_SKIP="$a"
            tracer_pass "$r" "tracer-$a"
            unset TRACER_BENCH_SKIP
        fi
    done
done
pass none $((ROUNDS + 1))
rm -f /tmp/bench-tmpfs.fio
echo "BENCH-DONE"
