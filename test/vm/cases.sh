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
# ledger_int NAME FILE: a top-level integer of the ledger record
ledger_int() { grep '"type":"ledger"' "$2" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" | tail -1; }
# procs FILE: the case's processes, "comm/tgid/cgroup:pinned:unpinned,..." (by the owner of each pin)
procs() { grep '"type":"process"' "$1" | sed -n 's/.*"tgid":\([0-9]*\),"comm":"\([^"]*\)","cgroup":\([0-9]*\),"pages_pinned":\([0-9]*\),"pages_unpinned":\([0-9]*\).*/\2\/\1\/\3:\4:\5/p' | tr ' ' _ | paste -sd, -; }
# The releases of every path of the page ledger, as "variant<-caller" names, unique, comma-separated.
released_by() { grep '"type":"pages"' "$1" | grep -o '"released_by":{[^}]*}' | sed 's/"released_by":{//; s/}$//' \
    | tr ',' '\n' | sed -n 's/^"\([^"]*\)":[0-9]*$/\1/p' | sed 's/ <- /<-/' | sort -u | paste -sd, -; }
ledger_verdict() { grep '"type":"ledger"' "$1" | sed -n 's/.*"verdict":"\([a-z ]*\)".*/\1/p' | tr ' ' _ | tail -1; }

# One tracer for all the cases of a script (loading the probes takes tens of seconds under
# TCG): `tracer run --segments` prints the end-of-run records of a segment and starts a new
# one on SIGUSR1. tracer_start, then case_run per case, then tracer_stop.
SEGMENTS=0
# Waits count seconds of the clock, not loop turns: under TCG a turn of these loops takes
# anything from 0.1 s to a second.
wait_summaries() { # wait_summaries N: until the trace has N summaries (120 s at most)
    t0=$(date +%s)
    while [ "$(grep -c '"type":"summary"' /tmp/trace.json)" -lt "$1" ]; do
        if [ $(($(date +%s) - t0)) -gt 120 ] || ! kill -0 "$TRACER_PID" 2>/dev/null; then
            echo "tracer stopped or silent (segment $1):"; tail -5 /tmp/trace.err; return 1
        fi
        sleep 0.1
    done
}
tracer_start() { # tracer_start [TRACER-RUN-ARGS...]
    # TRACER_DEBUG_CHAINS: the chains' counters go to stderr at every interval; tracer_stop
    # prints the last line of each chain (CHAIN ...) so that a console shows what they did.
    TRACER_DEBUG_CHAINS=1 tracer run --format json --segments "$@" > /tmp/trace.json 2> /tmp/trace.err &
    TRACER_PID=$!
    # Loading and verifying every program takes minutes under TCG (2.5 on sid).
    t0=$(date +%s)
    until grep -q '"type":"probe"' /tmp/trace.json 2>/dev/null; do
        if [ $(($(date +%s) - t0)) -gt 900 ] || ! kill -0 "$TRACER_PID" 2>/dev/null; then
            echo "tracer did not start:"; tail -5 /tmp/trace.err
            kill -INT "$TRACER_PID" 2>/dev/null
            return 1
        fi
        sleep 0.2
    done
    echo "TRACER-STARTED after $(($(date +%s) - t0)) s"
    # A first segment covers the start itself; the cases begin after it.
    sleep 1
    kill -USR1 "$TRACER_PID"
    SEGMENTS=1
    wait_summaries 1
}
tracer_stop() {
    kill -INT "$TRACER_PID" 2>/dev/null
    # A tracer that does not exit within 5 minutes of SIGINT is a failure: its threads' kernel
    # stacks go to the console, then SIGKILL (exit 137), so the step fails with the evidence
    # instead of hanging until the VM's timeout.
    t0=$(date +%s)
    while kill -0 "$TRACER_PID" 2>/dev/null && [ $(($(date +%s) - t0)) -lt 300 ]; do sleep 1; done
    if kill -0 "$TRACER_PID" 2>/dev/null; then
        echo "TRACER-HUNG after SIGINT: pid $TRACER_PID"
        for t in /proc/"$TRACER_PID"/task/*; do
            echo "TRACER-HUNG thread ${t##*/} $(cat "$t/comm") state $(sed -n 's/^State:[[:space:]]*//p' "$t/status") wchan $(cat "$t/wchan")"
            sed 's/^/TRACER-HUNG   /' "$t/stack" 2>/dev/null
        done
        tail -5 /tmp/trace.err | sed 's/^/TRACER-HUNG stderr /'
        kill -KILL "$TRACER_PID"
    fi
    wait "$TRACER_PID"
    rc=$?
    # The tracer's errors and warnings (a backup acting out of order, a probe that could not
    # attach) go to the console, so that a failed case can be told apart afterwards.
    grep -E "ERROR|WARN" /tmp/trace.err | grep -v ' chain ' | head -20 | sed 's/^/TRACER-STDERR /'
    grep ' chain ' /tmp/trace.err | sed 's/.* chain /CHAIN /' \
        | awk '{ last[$2] = $0 } END { for (k in last) print last[k] }' | sort
    return $rc
}

# segment_begin: what ran since the last segment (mkfs, mount: mkfs.xfs writes with O_DIRECT)
# is cut off into a segment of its own. segment_end: ends the segment begun last and puts its
# records (the end-of-segment records, its summary last) in /tmp/case.json; 125 when the
# tracer stopped or fell silent.
segment_begin() {
    SEGMENTS=$((SEGMENTS + 1))
    kill -USR1 "$TRACER_PID"
    wait_summaries $SEGMENTS
}
segment_end() {
    SEGMENTS=$((SEGMENTS + 1))
    kill -USR1 "$TRACER_PID"
    wait_summaries $SEGMENTS || return 125
    awk -v k=$SEGMENTS '/"type":"summary"/ { n++; if (n == k) { print; exit } next } n == k - 1 { print }' \
        /tmp/trace.json > /tmp/case.json
}

# case_run NAME COMMAND...: one measured case, one segment.
case_run() {
    name=$1; shift
    segment_begin
    refresh
    a0=$(vmstat_field nr_foll_pin_acquired); r0=$(vmstat_field nr_foll_pin_released)
    "$@" > /tmp/workload.out 2>&1
    rc=$?
    segment_end || rc=125
    refresh
    a1=$(vmstat_field nr_foll_pin_acquired); r1=$(vmstat_field nr_foll_pin_released)
    if [ $rc -ne 0 ]; then
        echo "case $name failed (exit $rc):"; tail -5 /tmp/workload.out
    fi
    case_print "$name" $rc /tmp/case.json $((a1 - a0)) $((r1 - r0))
}


# case_print NAME STATUS JSON VM_ACQUIRED VM_RELEASED: the CASE line of a case whose tracer
# records are in JSON (the host's checks read it: xtask/src/suite.rs).
case_print() {
    j=$3
    echo "CASE $1 status=$2 pinned=$(json_int pages_pinned "$j")" \
        "unpinned=$(json_int pages_unpinned "$j") lost=$(json_int lost_events "$j")" \
        "accounting=$(json_str pin_accounting "$j")" \
        "vm_acquired=$4 vm_released=$5" \
        "ledger=$(ledger_verdict "$j") ledger_pinned=$(ledger_pages pinned "$j")" \
        "ledger_referenced=$(ledger_pages referenced "$j") ledger_matched=$(ledger_pages matched "$j")" \
        "ledger_acquired=$(ledger_pages acquired "$j")" \
        "pl_pinned=$(page_total pinned "$j") pl_with_bio=$(page_total pinned_with_bio "$j")" \
        "pl_longterm=$(page_total pinned_longterm "$j") pl_large=$(page_total pinned_large_folio "$j")" \
        "ledger_truncated=$(ledger_int truncated_bios "$j") procs=$(procs "$j")" \
        "pl_unpinned=$(page_total unpinned "$j") pl_matched=$(page_total unpinned_matched "$j")" \
        "pl_unknown=$(page_total unpinned_unknown_origin "$j") pl_unlisted=$(page_total unlisted "$j")" \
        "pl_outstanding=$(page_total outstanding "$j") pl_suspect=$(page_total suspect "$j")" \
        "pl_owner_exited=$(page_total outstanding_owner_exited "$j")" \
        "pl_referenced=$(page_total referenced "$j") pl_ref_with_bio=$(page_total referenced_with_bio "$j")" \
        "pl_ref_put=$(page_total referenced_released_put "$j")" \
        "records_submitted=$(json_int records_submitted "$j") records_read=$(json_int records_read "$j")" \
        "paths_reused=$(json_int reused "$j") paths_rewalked=$(json_int rewalked "$j")" \
        "paths_wrong=$(json_int wrong "$j") paths_walked=$(json_int walked "$j")" \
        "released_by=$(released_by "$j")" \
        "skipped=$(skipped "$j") lost_why=$(lost_why "$j") ${CASE_NOTE:-}"
}
