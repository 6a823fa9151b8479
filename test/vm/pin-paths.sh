#!/bin/sh
# Guest side of the "pin paths" VM test (run by `cargo xtask test`): one case per pin path of
# the seed series that the DIO cases (dio-pins.sh: iomap DIO on ext4/xfs/btrfs, raw block
# devices, libaio, psync, io_uring, dd) do not reach. Each case prints a CASE line (cases.sh)
# with a `path=` note that tells the host which expectation applies:
#   longterm            io_uring registered buffers: FOLL_PIN|FOLL_LONGTERM at registration
#   passthrough_aligned SG_IO / NVMe passthrough, page-aligned buffer: the pages are mapped
#                       (pinned on 6.2+, FOLL_GET references before); expect=<pages>
#   passthrough_copy    the same, one byte off: bounce-buffer copy, no pages taken
#   foll_get            vmsplice: FOLL_GET references on every kernel; expect=<pages>
#   legacy_dio          fs/direct-io.c (vfat)
#   fuse                FUSE direct I/O (pin-workload fuse: FOPEN_DIRECT_IO); expect=<pages of
#                       the client's buffers>. The server's own reads and writes of /dev/fuse
#                       take FOLL_GET references of its buffer on top.
#   nfs                 NFS direct I/O over loopback (the guest's kernel nfsd and NFSv4 client):
#                       FOLL_GET references on every kernel (nfs_direct_*_schedule_iovec ->
#                       iov_iter_get_pages_alloc2 -> get_user_pages_fast, dropped by put_page),
#                       no pins; expect=<pages of dd's buffers>
#   orphan              io_uring registered buffers whose ring a forked child keeps after the
#                       registering process exits (pin-workload uring-orphan): at the end of
#                       the case the pins outlive their process by more than the grace period,
#                       suspects; expect=<pages>. Last case: the child releases them later.
set -u

. /root/cases.sh

# The NFS client and FUSE modules first: their functions can only be probed once loaded.
modprobe nfsv4 2> /dev/null
modprobe fuse 2> /dev/null
tracer_start || echo "TRACER-START-FAILED"

note() { CASE_NOTE="path=$1${2:+ expect=$2}"; }

# io_uring registered buffers. The ring (and with it the buffers) is torn down by a kworker
# after fio exits: the case waits a second for it.
note longterm
case_run nullb0-io_uring-fixedbufs sh -c "fio --name=t --direct=1 --bs=16k --size=4m --iodepth=4 \
    --rw=randread --ioengine=io_uring --fixedbufs --filename=/dev/nullb0 --output=/dev/null; sleep 1"

# SG_IO (scsi_debug /dev/sda) and NVMe passthrough (/dev/nvme0n1): 64 commands of 64 KiB, so
# 1024 pages when mapped.
for dev in /dev/sda /dev/nvme0n1; do
    [ -b "$dev" ] || { echo "device $dev missing"; continue; }
    n=$(basename "$dev")
    how=sgio; [ "$n" = nvme0n1 ] && how=nvme
    for op in read write; do
        note passthrough_aligned 1024
        case_run "$n-$how-$op-aligned" pin-workload "$how" "$dev" --buffer aligned --op "$op" --count 64 --bytes 65536
        note passthrough_copy
        case_run "$n-$how-$op-unaligned" pin-workload "$how" "$dev" --buffer unaligned --op "$op" --count 64 --bytes 65536
    done
done

# vmsplice: 64 rounds of 16 pages.
note foll_get 1024
case_run vmsplice pin-workload vmsplice --pages 16 --rounds 64

# Legacy fs/direct-io.c: vfat still uses it (blockdev_direct_IO).
mkdir -p /mnt/vfat
if mkfs.vfat /dev/vda > /dev/null 2>&1 && mount -t vfat /dev/vda /mnt/vfat; then
    # fat does O_DIRECT writes only inside the allocated size (it falls back to buffered I/O
    # to extend a file): lay the file out first, then overwrite it.
    dd if=/dev/zero of=/mnt/vfat/f bs=64k count=64 2> /dev/null && sync
    note legacy_dio
    case_run vda-vfat-dd-write dd if=/dev/zero of=/mnt/vfat/f bs=64k count=64 oflag=direct conv=notrunc
    case_run vda-vfat-dd-read dd if=/mnt/vfat/f of=/dev/null bs=64k iflag=direct
    case_run vda-vfat-fio-randrw-psync fio --name=t --direct=1 --bs=16k --size=4m --rw=randrw \
        --ioengine=psync --filename=/mnt/vfat/f --output=/dev/null
    umount /mnt/vfat
else
    echo "CASE vda-vfat-setup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
fi
# FUSE direct I/O: 4 MiB written and read back with O_DIRECT, in 1 MiB requests (2048 pages).
mkdir -p /mnt/fuse
modprobe fuse 2> /dev/null
pin-workload fuse /mnt/fuse --size-mib 16 > /tmp/fuse.out 2>&1 &
FUSE_PID=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do grep -q " /mnt/fuse fuse" /proc/mounts && break; sleep 0.5; done
if grep -q " /mnt/fuse fuse" /proc/mounts; then
    note fuse 2048
    case_run fuse-dd-write-read sh -c "dd if=/dev/urandom of=/tmp/fuse.in bs=1M count=4 2> /dev/null && \
        dd if=/tmp/fuse.in of=/mnt/fuse/data bs=1M count=4 oflag=direct conv=notrunc && \
        dd if=/mnt/fuse/data of=/tmp/fuse.back bs=1M count=4 iflag=direct && cmp /tmp/fuse.in /tmp/fuse.back"
    umount /mnt/fuse
else
    echo "CASE fuse-setup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
fi
wait $FUSE_PID; cat /tmp/fuse.out

# NFS direct I/O: the guest's kernel nfsd exports a tmpfs and the kernel NFS client mounts it
# over loopback; 4 MiB written and read back with O_DIRECT in 1 MiB requests (2048 pages).
# NFSv4 only, so no rpcbind and no lockd/statd. rpc.mountd (with no MOUNT listeners: -N 2
# -N 3) is still needed: nfsd asks it through the sunrpc cache upcalls which client may see
# which export. nfsdcld keeps nfsd's client records: with none to reclaim, nfsd skips the
# NFSv4 grace period, during which OPEN is refused (NFS4ERR_GRACE) for 10 s at least (sid
# has no other client tracking, and /proc/fs/nfsd/v4_end_grace needs one). No mount.nfs:
# util-linux mount passes the options to the kernel, which needs addr=. A 1 MiB
# max_block_size (the default is smaller with this little RAM) and wsize/rsize make one RPC
# per dd block; two nfsd threads are enough for one client.
nfs_up() {
    ip link set lo up && modprobe nfsd && modprobe nfsv4 || return 1
    mount -t nfsd nfsd /proc/fs/nfsd || return 1
    mkdir -p /var/lib/nfs/rpc_pipefs /var/lib/nfs/nfsdcld /srv/nfs /mnt/nfs
    mount -t rpc_pipefs rpc_pipefs /var/lib/nfs/rpc_pipefs || return 1
    # nfsd waits only 1 s for nfsdcld to open its pipe (rpc_pipefs nfsd/cld, made when nfsd
    # starts): nfsdcld must be watching for it by then, which its -d log tells (below).
    nfsdcld -F -d > /tmp/nfsdcld.out 2>&1 &
    NFSDCLD_PID=$!
    mount -t tmpfs -o size=64m tmpfs /srv/nfs || return 1
    # The file is laid out on the server's side, so that the case only overwrites it.
    dd if=/dev/zero of=/srv/nfs/data bs=1M count=4 2> /dev/null || return 1
    # mountd resolves the client's address to a name to match it against the exports.
    echo '127.0.0.1 localhost' > /etc/hosts
    # fsid=: tmpfs has no UUID to build file handles from; 0 makes the export the NFSv4 root.
    echo '/srv/nfs 127.0.0.1(rw,sync,no_subtree_check,no_root_squash,insecure,fsid=0)' > /etc/exports
    exportfs -ra || return 1
    rpc.mountd -F -N 2 -N 3 > /tmp/mountd.out 2>&1 &
    MOUNTD_PID=$!
    i=0
    until grep -q 'Starting event dispatch' /tmp/nfsdcld.out; do
        i=$((i + 1)); [ $i -gt 50 ] && { echo "nfsdcld not ready after 5 s"; break; }
        sleep 0.1
    done
    # versions, grace time and max_block_size are refused once the server exists, which
    # writing portlist makes it: they come first.
    echo -3 > /proc/fs/nfsd/versions && echo 10 > /proc/fs/nfsd/nfsv4gracetime &&
        echo 1048576 > /proc/fs/nfsd/max_block_size && echo 'tcp 2049' > /proc/fs/nfsd/portlist &&
        echo 2 > /proc/fs/nfsd/threads || return 1
    mount -t nfs4 -o vers=4.2,sec=sys,addr=127.0.0.1,clientaddr=127.0.0.1,rsize=1048576,wsize=1048576 \
        127.0.0.1:/ /mnt/nfs || return 1
    # Without nfsdcld the grace period would run its course: wait for it rather than fail.
    i=0
    until grep -q Y /proc/fs/nfsd/v4_end_grace; do
        i=$((i + 1)); [ $i -gt 300 ] && { echo "NFSv4 grace period still on after 30 s"; return 1; }
        sleep 0.1
    done
}
MOUNTD_PID= NFSDCLD_PID=
if nfs_up > /tmp/nfs.out 2>&1; then
    note nfs 2048
    case_run nfs-dd-write-read sh -c "dd if=/dev/urandom of=/tmp/nfs.in bs=1M count=4 2> /dev/null && \
        dd if=/tmp/nfs.in of=/mnt/nfs/data bs=1M count=4 oflag=direct conv=notrunc && \
        dd if=/mnt/nfs/data of=/tmp/nfs.back bs=1M count=4 iflag=direct && cmp /tmp/nfs.in /tmp/nfs.back"
else
    cat /tmp/nfs.out /tmp/nfsdcld.out 2> /dev/null
    echo "CASE nfs-setup status=1 pinned= unpinned= lost= accounting= vm_acquired=0 vm_released=0"
fi
# The client first: a hard mount would wait for a server that is gone.
umount /mnt/nfs 2> /dev/null
echo 0 > /proc/fs/nfsd/threads 2> /dev/null
for pid in $MOUNTD_PID $NFSDCLD_PID; do kill "$pid"; wait "$pid"; done
cat /tmp/mountd.out 2> /dev/null

# Pins outliving their process: the registering process exits at once, the child holds the
# ring 4 s, the case ends after 2.5 s (the grace period is 1 s).
note orphan 16
case_run uring-orphan sh -c "pin-workload uring-orphan --pages 16 --hold-secs 4 && sleep 2.5"
CASE_NOTE=
tracer_stop
echo "TRACER-EXIT status=$?"

# Direct I/O already running when the tracer starts, through the probes' attachment (one by
# one, tens of seconds under TCG) and a few seconds of trace: a tracer of its own, not the
# segments above. Whatever was pinned or acquired before the trace began is not the trace's:
# nothing may look leaked, held or orphaned, and every pin the trace saw is matched. fio stops
# (SIGINT: it completes its I/O) before the tracer, which waits out the grace period first.
fio --name=bg --filename=/dev/vda --direct=1 --rw=randrw --bs=16k --ioengine=libaio --iodepth=8 \
    --rate_iops=200 --time_based --runtime=900 --size=64m --output=/dev/null > /tmp/bg.out 2>&1 &
BG_PID=$!
sleep 2
tracer run --format json > /tmp/before.json 2> /tmp/before.err &
TRACER_PID=$!
t0=$(date +%s)
until grep -q '"type":"probe"' /tmp/before.json 2>/dev/null; do
    if [ $(($(date +%s) - t0)) -gt 900 ] || ! kill -0 "$TRACER_PID" 2>/dev/null; then
        echo "tracer did not start:"; tail -5 /tmp/before.err; break
    fi
    sleep 0.2
done
sleep 4
kill -INT "$BG_PID"; wait "$BG_PID"; bg_rc=$?
sleep 2
kill -INT "$TRACER_PID"; wait "$TRACER_PID"; rc=$?
# (fio exits 128 when a signal ended its jobs.)
[ $bg_rc -eq 0 ] || [ $bg_rc -eq 128 ] || { echo "background fio exited with $bg_rc:"; tail -5 /tmp/bg.out; rc=$bg_rc; }
grep -E "ERROR|WARN" /tmp/before.err | head -5 | sed 's/^/TRACER-STDERR /'
CASE_NOTE="path=running_before owner=fio"
case_print vda-fio-running-before $rc /tmp/before.json - -
CASE_NOTE=

# Forced overload: a ring buffer of one page (4 KiB, a dozen records) against 4k random reads
# at queue depth 32 on null_blk. Records are lost, each counted by its reason; every record
# the programs did submit is read (so the loss reported is the loss that happened), and the
# ledger's verdict is unverifiable, not clean.
tracer run --format json --ring-buffer 4 -- fio --name=t --filename=/dev/nullb0 --direct=1 --rw=randread \
    --bs=4k --ioengine=libaio --iodepth=32 --size=64m --io_size=16m --output=/dev/null \
    > /tmp/overload.json 2> /tmp/overload.err
rc=$?
grep -E "ERROR" /tmp/overload.err | head -5 | sed 's/^/TRACER-STDERR /'
CASE_NOTE="path=overload"
case_print nullb0-fio-overload $rc /tmp/overload.json - -
CASE_NOTE=
echo "CASES-DONE"
