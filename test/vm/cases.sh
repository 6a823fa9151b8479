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
# records are in JSON (the host's checks read it: xtask/src/suite.rs). One awk over the
# records: the ~30 extractions as separate grep | sed pipelines took 1.7 s a case under TCG.
# Each field is the last match in the last record of its type (the summary, the ledger, the
# page ledger; the page ledger's totals and the ledger's groups before their "paths" and
# "owners"); procs and released_by go over every process record and release list.
case_print() {
    # (A missing file gives a line of empty fields, as the pipelines did, not no line.)
    { [ -r "$3" ] && cat "$3"; } | awk -v name="$1" -v status="$2" -v acq="$4" -v rel="$5" -v note="${CASE_NOTE:-}" "$CASE_AWK"
}
CASE_AWK='
# The last match of re in s ("" when none).
function last(s, re,   found) {
    found = ""
    while (match(s, re)) { found = substr(s, RSTART, RLENGTH); s = substr(s, RSTART + 1) }
    return found
}
# What follows the first ":" of a key:value match, quotes dropped.
function val(m) { if (m == "") return ""; m = substr(m, index(m, ":") + 1); gsub(/"/, "", m); return m }
function num(s, key) { return val(last(s, "\"" key "\":[0-9]*")) }
function before(s, cut,   i) { i = index(s, cut); return i ? substr(s, 1, i - 1) : s }
function group(s, g,   m) { m = last(s, "\"" g "\":[{]\"bios\":[0-9]*,\"pages\":[0-9]*[}]"); if (m == "") return ""; m = substr(m, index(m, "\"pages\":") + 8); sub(/[}]$/, "", m); return m }
function add_sorted(name,   i, j) {
    for (i = 1; i <= nrel; i++) { if (rels[i] == name) return; if (rels[i] > name) break }
    for (j = nrel; j >= i; j--) rels[j + 1] = rels[j]
    rels[i] = name; nrel++
}
/"type":"summary"/ { summary = $0 }
/"type":"ledger"/ { ledger = $0 }
/"type":"pages"/ {
    pages = $0
    s = $0
    while (match(s, /"released_by":[{][^}]*[}]/)) {
        list = substr(s, RSTART + 15, RLENGTH - 16); s = substr(s, RSTART + RLENGTH)
        n = split(list, items, ",")
        for (k = 1; k <= n; k++) if (items[k] ~ /^"[^"]*":[0-9]*$/) { r = items[k]; sub(/^"/, "", r); sub(/":[0-9]*$/, "", r); sub(/ <- /, "<-", r); add_sorted(r) }
    }
}
/"type":"process"/ {
    m = last($0, "\"tgid\":[0-9]*,\"comm\":\"[^\"]*\",\"cgroup\":[0-9]*,\"pages_pinned\":[0-9]*,\"pages_unpinned\":[0-9]*")
    if (m != "") {
        comm = substr(m, index(m, "\"comm\":\"") + 8); comm = substr(comm, 1, index(comm, "\"") - 1); gsub(/ /, "_", comm)
        procs = procs (procs == "" ? "" : ",") comm "/" num(m, "tgid") "/" num(m, "cgroup") ":" num(m, "pages_pinned") ":" num(m, "pages_unpinned")
    }
}
END {
    l = before(ledger, ",\"owners\""); p = before(pages, ",\"paths\"")
    skipped = substr(last(summary, "\"probes_skipped\":\\[[^]]*\\]"), 19); sub(/\]$/, "", skipped)
    out = ""
    while (match(skipped, /[{]"target":"[^"]*","runs":[0-9]*[}]/)) {
        o = substr(skipped, RSTART, RLENGTH); head = substr(skipped, 1, RSTART - 1)
        skipped = substr(skipped, RSTART + RLENGTH)
        t = substr(o, 12); t = substr(t, 1, index(t, "\"") - 1)
        out = out head t ":" num(o, "runs")
    }
    skipped = out skipped
    lost = last(summary, "\"lost_by_reason\":[{][^}]*[}]"); lost = substr(lost, 19); sub(/[}]$/, "", lost); gsub(/"/, "", lost)
    verdict = val(last(ledger, "\"verdict\":\"[a-z ]*\"")); gsub(/ /, "_", verdict)
    released = ""; for (i = 1; i <= nrel; i++) released = released (i > 1 ? "," : "") rels[i]
    printf "CASE %s status=%s pinned=%s unpinned=%s lost=%s", name, status, num(summary, "pages_pinned"), num(summary, "pages_unpinned"), num(summary, "lost_events")
    printf " accounting=%s vm_acquired=%s vm_released=%s", val(last(summary, "\"pin_accounting\":\"[a-z]*\"")), acq, rel
    printf " ledger=%s ledger_pinned=%s ledger_referenced=%s ledger_matched=%s", verdict, group(l, "pinned"), group(l, "referenced"), group(l, "matched")
    printf " ledger_acquired=%s pl_pinned=%s pl_with_bio=%s", group(l, "acquired"), num(p, "pinned"), num(p, "pinned_with_bio")
    printf " pl_longterm=%s pl_large=%s ledger_truncated=%s procs=%s", num(p, "pinned_longterm"), num(p, "pinned_large_folio"), num(ledger, "truncated_bios"), procs
    printf " pl_unpinned=%s pl_matched=%s pl_unknown=%s pl_unlisted=%s", num(p, "unpinned"), num(p, "unpinned_matched"), num(p, "unpinned_unknown_origin"), num(p, "unlisted")
    printf " pl_outstanding=%s pl_suspect=%s pl_owner_exited=%s", num(p, "outstanding"), num(p, "suspect"), num(p, "outstanding_owner_exited")
    printf " pl_referenced=%s pl_ref_with_bio=%s pl_ref_put=%s", num(p, "referenced"), num(p, "referenced_with_bio"), num(p, "referenced_released_put")
    printf " records_submitted=%s records_read=%s", num(summary, "records_submitted"), num(summary, "records_read")
    printf " paths_reused=%s paths_rewalked=%s paths_wrong=%s paths_walked=%s", num(summary, "reused"), num(summary, "rewalked"), num(summary, "wrong"), num(summary, "walked")
    printf " released_by=%s skipped=%s lost_why=%s %s\n", released, skipped, lost, note
}'
