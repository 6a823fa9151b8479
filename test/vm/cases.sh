# Shared by the guest scripts of the VM tests (sourced): one measured run per case.
#
# case_run NAME COMMAND...: reads /proc/vmstat's FOLL_PIN counters (refreshed), runs COMMAND
# under `tracer run --format json`, reads the counters again, and prints one line
#   CASE <name> status=<rc> pinned=<P> unpinned=<U> lost=<L> accounting=<...> vm_acquired=<A>
#        vm_released=<R> ledger=<verdict> ledger_*=<bio ledger pages> pl_*=<page ledger totals>
#        skipped=<probe:runs,...> [CASE_NOTE]
# The host side parses these lines and checks them; the guest only measures.

refresh() { echo 1 > /proc/sys/vm/stat_refresh 2>/dev/null; }
vmstat_field() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }
json_int() { sed -n "s/.*\"type\":\"summary\".*\"$1\":\([0-9]*\).*/\1/p" "$2" | tail -1; }
json_str() { sed -n "s/.*\"type\":\"summary\".*\"$1\":\"\([a-z]*\)\".*/\1/p" "$2" | tail -1; }
# ledger_pages GROUP FILE: pages of a group ("pinned", "matched", ...) of the ledger record
ledger_pages() { grep '"type":"ledger"' "$2" | sed 's/,"owners".*//' | sed -n "s/.*\"$1\":{\"bios\":[0-9]*,\"pages\":\([0-9]*\)}.*/\1/p" | tail -1; }
# page_total NAME FILE: a total of the page ledger record
page_total() { grep '"type":"pages"' "$2" | sed 's/,"paths".*//' | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" | tail -1; }
# skipped FILE: probes the kernel skipped, "target:runs,..." (empty when none)
skipped() { grep '"type":"summary"' "$1" | sed -n 's/.*"probes_skipped":\[\([^]]*\)\].*/\1/p' | sed 's/{"target":"\([^"]*\)","runs":\([0-9]*\)}/\1:\2/g' | tail -1; }
# lost_why FILE: "reason:n,..." of the summary's lost_by_reason (empty when none)
lost_why() { grep '"type":"summary"' "$1" | sed -n 's/.*"lost_by_reason":{\([^}]*\)}.*/\1/p' | tr -d '"' | tail -1; }
ledger_verdict() { grep '"type":"ledger"' "$1" | sed -n 's/.*"verdict":"\([a-z ]*\)".*/\1/p' | tr ' ' _ | tail -1; }

# One tracer for all the cases of a script (loading the probes takes tens of seconds under
# TCG): `tracer run --segments` prints the end-of-run records of a segment and starts a new
# one on SIGUSR1. tracer_start, then case_run per case, then tracer_stop.
SEGMENTS=0
wait_summaries() { # wait_summaries N: until the trace has N summaries (60 s at most)
    i=0
    while [ "$(grep -c '"type":"summary"' /tmp/trace.json)" -lt "$1" ]; do
        i=$((i + 1))
        if [ $i -gt 600 ] || ! kill -0 "$TRACER_PID" 2>/dev/null; then
            echo "tracer stopped or silent (segment $1):"; tail -5 /tmp/trace.err; return 1
        fi
        sleep 0.1
    done
}
tracer_start() {
    tracer run --format json --segments > /tmp/trace.json 2> /tmp/trace.err &
    TRACER_PID=$!
    i=0
    until grep -q '"type":"probe"' /tmp/trace.json 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 1200 ] || ! kill -0 "$TRACER_PID" 2>/dev/null; then
            echo "tracer did not start:"; tail -5 /tmp/trace.err; return 1
        fi
        sleep 0.1
    done
    # A first segment covers the start itself; the cases begin after it.
    sleep 1
    kill -USR1 "$TRACER_PID"
    SEGMENTS=1
    wait_summaries 1
}
tracer_stop() {
    kill -INT "$TRACER_PID" 2>/dev/null
    wait "$TRACER_PID"
    rc=$?
    # The tracer's errors and warnings (a twin acting out of order, a probe that could not
    # attach) go to the console, so that a failed case can be told apart afterwards.
    grep -E "ERROR|WARN" /tmp/trace.err | head -20 | sed 's/^/TRACER-STDERR /'
    return $rc
}

# case_run NAME COMMAND...: one measured case, one segment. What ran since the last case
# (mkfs, mount: mkfs.xfs writes with O_DIRECT) is cut off into a segment of its own first.
case_run() {
    name=$1; shift
    SEGMENTS=$((SEGMENTS + 1))
    kill -USR1 "$TRACER_PID"
    wait_summaries $SEGMENTS
    refresh
    a0=$(vmstat_field nr_foll_pin_acquired); r0=$(vmstat_field nr_foll_pin_released)
    "$@" > /tmp/workload.out 2>&1
    rc=$?
    SEGMENTS=$((SEGMENTS + 1))
    kill -USR1 "$TRACER_PID"
    wait_summaries $SEGMENTS || rc=125
    awk -v k=$SEGMENTS '/"type":"summary"/ { n++; if (n == k) { print; exit } next } n == k - 1 { print }' \
        /tmp/trace.json > /tmp/case.json
    refresh
    a1=$(vmstat_field nr_foll_pin_acquired); r1=$(vmstat_field nr_foll_pin_released)
    if [ $rc -ne 0 ]; then
        echo "case $name failed (exit $rc):"; tail -5 /tmp/workload.out
    fi
    echo "CASE $name status=$rc pinned=$(json_int pages_pinned /tmp/case.json)" \
        "unpinned=$(json_int pages_unpinned /tmp/case.json) lost=$(json_int lost_events /tmp/case.json)" \
        "accounting=$(json_str pin_accounting /tmp/case.json)" \
        "vm_acquired=$((a1 - a0)) vm_released=$((r1 - r0))" \
        "ledger=$(ledger_verdict /tmp/case.json) ledger_pinned=$(ledger_pages pinned /tmp/case.json)" \
        "ledger_referenced=$(ledger_pages referenced /tmp/case.json) ledger_matched=$(ledger_pages matched /tmp/case.json)" \
        "ledger_acquired=$(ledger_pages acquired /tmp/case.json)" \
        "pl_pinned=$(page_total pinned /tmp/case.json) pl_with_bio=$(page_total pinned_with_bio /tmp/case.json)" \
        "pl_longterm=$(page_total pinned_longterm /tmp/case.json)" \
        "pl_unpinned=$(page_total unpinned /tmp/case.json) pl_matched=$(page_total unpinned_matched /tmp/case.json)" \
        "pl_unknown=$(page_total unpinned_unknown_origin /tmp/case.json) pl_unlisted=$(page_total unlisted /tmp/case.json)" \
        "pl_outstanding=$(page_total outstanding /tmp/case.json) pl_suspect=$(page_total suspect /tmp/case.json)" \
        "pl_owner_exited=$(page_total outstanding_owner_exited /tmp/case.json)" \
        "pl_referenced=$(page_total referenced /tmp/case.json) pl_ref_with_bio=$(page_total referenced_with_bio /tmp/case.json)" \
        "pl_ref_put=$(page_total referenced_released_put /tmp/case.json)" \
        "skipped=$(skipped /tmp/case.json) lost_why=$(lost_why /tmp/case.json) ${CASE_NOTE:-}"
}

