#!/bin/sh
# Guest side of the dashboard test (run by `cargo xtask test`): `tracer run` in a real terminal
# (tmux, 160x48) with the Prometheus endpoint on, while fio does Direct I/O and a second fio
# keeps io_uring fixed buffers pinned. Keys go in with `tmux send-keys`; the panes, the report
# that `e` writes and two scrapes of the endpoint (the second after 1000 processes each pinned
# a page) are shipped to the host (base64 between markers), which checks them.
set -u

ship() { # ship NAME FILE
    echo "RECORD-BEGIN $1"
    base64 "$2"
    echo "RECORD-END $1"
}
pane() { # pane NAME: the visible screen, shipped
    tmux capture-pane -p -t t > "/tmp/pane-$1.txt"
    ship "pane-$1" "/tmp/pane-$1.txt"
}
wait_pane() { # wait_pane TEXT SECONDS: until the screen shows TEXT
    t0=$(date +%s)
    until tmux capture-pane -p -t t 2>/dev/null | grep -q "$1"; do
        if [ $(($(date +%s) - t0)) -gt "$2" ]; then echo "TERMINAL: '$1' not shown within $2 s"; return 1; fi
        sleep 1
    done
}

# The endpoint is scraped over loopback, which the guest's init leaves down.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
fio --name=load --filename=/dev/vda --direct=1 --rw=randrw --bs=16k --ioengine=libaio \
    --iodepth=8 --time_based --runtime=3600 --rate_iops=200 --eta=never --output=/dev/null &
LOAD=$!

export TERM=screen LC_ALL=C.UTF-8
tmux -u new-session -d -s t -x 160 -y 48 \
    "tracer run --prometheus 9464 --report /tmp/report.json 2> /tmp/tracer.err; echo TRACER-EXITED \$? > /tmp/tracer.exit; sleep 3600"
# Loading the probes takes tens of seconds under TCG; the dashboard shows its tabs then.
wait_pane Overview 900 || { tmux capture-pane -p -t t; tail -5 /tmp/tracer.err; exit 1; }
# Under the tracer: it registers 64 fixed buffers of 256 KiB (4096 pages, long-term pins) and
# keeps them until it is killed, the most outstanding pins of any call path.
fio --name=holder --filename=/dev/nullb0 --ioengine=io_uring --fixedbufs --direct=1 --rw=read \
    --bs=256k --iodepth=64 --time_based --runtime=3600 --rate_iops=1 --eta=never --output=/dev/null &
HOLDER=$!
sleep 10
pane overview
wget -q -O /tmp/metrics-1.txt http://127.0.0.1:9464/metrics && ship metrics-1 /tmp/metrics-1.txt

tmux send-keys -t t 3
sleep 1
tmux send-keys -t t k k k k k k k k
sleep 3
pane callpaths
tmux send-keys -t t Enter
sleep 3
pane callpath-stack
tmux send-keys -t t Escape
tmux send-keys -t t 5
sleep 3
pane latency
tmux send-keys -t t 6
sleep 2
pane probes
tmux send-keys -t t '?'
sleep 2
pane help
tmux send-keys -t t Escape

# 1000 processes that each pin a page (one O_DIRECT read), 50 at a time.
i=0
while [ $i -lt 1000 ]; do
    ( for j in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 \
        31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50; do
        dd if=/dev/nullb0 of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null &
      done; wait )
    i=$((i + 50))
done
echo "TERMINAL: 1000 processes pinned a page each"
sleep 3
wget -q -O /tmp/metrics-2.txt http://127.0.0.1:9464/metrics && ship metrics-2 /tmp/metrics-2.txt

tmux send-keys -t t e
sleep 3
pane export
[ -s /tmp/report.json ] && ship report /tmp/report.json
tmux send-keys -t t q
t0=$(date +%s)
until [ -s /tmp/tracer.exit ] || [ $(($(date +%s) - t0)) -gt 300 ]; do sleep 1; done
cat /tmp/tracer.exit 2>/dev/null || echo "TRACER-EXITED none"
kill "$HOLDER" "$LOAD" 2>/dev/null
grep -E "ERROR|WARN|panick" /tmp/tracer.err | head -5 | sed 's/^/TRACER-STDERR /'
echo "TERMINAL-DONE"
