#!/bin/sh
# Guest side of the "large folios" VM test (run by `cargo xtask test`): Direct I/O whose buffers
# are transparent huge pages, where several bios (of one or several threads) pin pages of one
# large folio at once and each bio's release names only the folio and a count
# (unpin_user_folio(folio, npages)). Each case prints a CASE line (cases.sh); the host requires
# what it requires of every DIO case (totals = vmstat, every unpin matched, nothing of unknown
# origin, nothing outstanding, verdict clean), with THP `always` and `never`.
#
# One case is one fio run of 12 jobs one after the other (stonewall): 1 MiB and 2 MiB blocks,
# reads and writes, queue depth 1, 4 and 16; per engine (libaio, io_uring, io_uring with
# registered buffers) and target (raw null_blk, raw NVMe, a file on ext4 and on xfs). fio's
# buffers are 2 MiB-aligned (iomem_align), so that THP `always` backs them with huge pages.
# `pin-workload thp-halves` adds two threads doing O_DIRECT into the two halves of one huge
# page at once.
set -u

. /root/cases.sh

THP=/sys/kernel/mm/transparent_hugepage/enabled
SIZE=${LF_SIZE:-4m}

jobfile() { # jobfile FILENAME ENGINE-OPTIONS
    {
        echo "[global]"
        echo "filename=$1"
        echo "direct=1"
        echo "size=$SIZE"
        echo "iomem_align=2m"
        echo "stonewall"
        for opt in $2; do echo "$opt"; done
        for bs in 1m 2m; do
            for rw in read write; do
                for qd in 1 4 16; do
                    echo "[$rw-$bs-qd$qd]"
                    echo "rw=$rw"
                    echo "bs=$bs"
                    echo "iodepth=$qd"
                done
            done
        done
    } > /tmp/lf.fio
}

thp_faults() { awk '$1 == "thp_fault_alloc" { print $2 }' /proc/vmstat; }

# matrix TARGET-NAME FILENAME: the three engines on one target.
matrix() {
    for engine in libaio io_uring fixedbufs; do
        case $engine in
            libaio) opts="ioengine=libaio"; CASE_NOTE="thp=$mode owner=fio" ;;
            io_uring) opts="ioengine=io_uring"; CASE_NOTE="thp=$mode owner=fio" ;;
            # Registered buffers: FOLL_LONGTERM pins at registration, none per I/O; the ring
            # goes away in a kworker after fio exits (the case waits a second for it).
            fixedbufs) opts="ioengine=io_uring fixedbufs"; CASE_NOTE="thp=$mode path=longterm owner=fio" ;;
        esac
        jobfile "$2" "$opts"
        case_run "$mode-$1-$engine" sh -c "fio --output=/dev/null /tmp/lf.fio && sleep 1"
    done
    CASE_NOTE=
}

[ -w "$THP" ] || echo "THP-MISSING $THP"
tracer_start || echo "TRACER-START-FAILED"

for mode in always never; do
    echo "$mode" > "$THP"
    f0=$(thp_faults)
    [ -b /dev/nullb0 ] && matrix nullb0 /dev/nullb0
    [ -b /dev/nvme0n1 ] && matrix nvme0n1 /dev/nvme0n1
    for fs in ext4 xfs; do
        dev=/dev/vda; force=-F
        [ "$fs" = xfs ] && dev=/dev/nvme0n1 force=-f
        mnt=/mnt/$fs
        mkdir -p "$mnt"
        if mkfs."$fs" -q $force "$dev" > /dev/null 2>&1; then
            if mount -t "$fs" "$dev" "$mnt"; then
                # The file laid out first (fio's writes would otherwise allocate it as they go).
                dd if=/dev/zero of="$mnt/f" bs=1M count=8 2> /dev/null && sync
                matrix "$fs" "$mnt/f"
                umount "$mnt"
            else
                echo "CASE $mode-$fs-setup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
            fi
        else
            echo "CASE $mode-$fs-setup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
        fi
    done
    for op in read write; do
        # 8 rounds of 2 x 1 MiB: 4096 pages.
        CASE_NOTE="thp=$mode path=thp_halves expect=4096"
        case_run "$mode-nullb0-thp-halves-$op" sh -c "pin-workload thp-halves /dev/nullb0 --rounds 8 --op $op > /tmp/halves.out; \
            rc=\$?; cat /tmp/halves.out; exit \$rc"
        echo "THP-HALVES mode=$mode op=$op $(sed -n 's/.*\(huge=[a-z]*\).*/\1/p' /tmp/workload.out)"
    done
    CASE_NOTE=
    echo "THP-FAULTS mode=$mode n=$(( $(thp_faults) - f0 ))"
done

tracer_stop
echo "TRACER-EXIT status=$?"
echo "CASES-DONE"
