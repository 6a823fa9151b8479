#!/bin/sh
# Guest side of the replay test (run by `cargo xtask test`): record real workloads with
# `tracer record`, print what the live run concluded, and ship each record file and the live
# run's --report file to the host (base64 between markers). The host replays the files with
# `tracer report` (and `--report`) and compares.
set -u

send() { # send NAME FILE: the file, base64 between markers
    echo "RECORD-BEGIN $1"
    base64 "$2"
    echo "RECORD-END $1"
}

ship() { # ship NAME COMMAND...
    name=$1; shift
    tracer record -o /tmp/$name.rec --report /tmp/$name.report.json --format json -- "$@" \
        > /tmp/$name.json 2> /tmp/$name.err
    echo "RECORDED $name status=$?"
    grep '"type":"ledger"' /tmp/$name.json | sed "s/^/LEDGER $name /"
    grep '"type":"pages"' /tmp/$name.json | sed "s/^/PAGES $name /"
    grep '"type":"summary"' /tmp/$name.json | sed "s/^/SUMMARY $name /"
    send "$name" /tmp/$name.rec
    send "$name-report" /tmp/$name.report.json
}

# One recording of every workload (loading the tracer takes tens of seconds under TCG): direct
# reads, libaio random reads and writes, long-term pins (io_uring registered buffers) and SG_IO
# passthrough (pinned on 6.2+, FOLL_GET references before).
ship workloads sh -c "
    dd if=/dev/vda of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null &&
    fio --name=t --filename=/dev/nvme0n1 --direct=1 --bs=16k --size=4m --io_size=1m \
        --iodepth=4 --ioengine=libaio --rw=randrw --output=/dev/null &&
    fio --name=t --direct=1 --bs=16k --size=2m --iodepth=4 --rw=randread --ioengine=io_uring \
        --fixedbufs --filename=/dev/nullb0 --output=/dev/null && sleep 1 &&
    pin-workload sgio /dev/sda --buffer aligned --op read --count 16 --bytes 65536"
echo "REPLAY-DONE"
