#!/bin/busybox sh
# /init of the blk-resize guest (busybox only): waits for /dev/vda, reports its size, says READY,
# then polls /sys/block/vda/size until the host grows the disk, reads the new tail with O_DIRECT
# and reports its sha256. Markers '@@PEERS KEY value' go to the serial console.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
. /params

say() { echo "@@PEERS $*"; }
finish() { say END "$1"; sync; poweroff -f; sleep 5; }

say BOOTED
for m in $(cat /modules.list); do insmod "/modules/$m" || say WARN insmod "$m" failed; done
say MODULES_LOADED
i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1)); [ $i -gt 300 ] && { say ERROR "no /dev/vda after 30 s"; finish FAIL; }
    usleep 100000
done
BEFORE=$(cat /sys/block/vda/size)
say SIZE_BEFORE "$BEFORE"
say READY
i=0
while [ "$(cat /sys/block/vda/size)" = "$BEFORE" ]; do
    i=$((i + 1)); [ $i -gt $((WAIT_SECS * 10)) ] && { say ERROR "size still $BEFORE after ${WAIT_SECS} s"; finish FAIL; }
    usleep 100000
done
AFTER=$(cat /sys/block/vda/size)
say SIZE_AFTER "$AFTER"
# The grown part, read with O_DIRECT: the back-end must serve sectors beyond the old end.
TAIL=$(dd if=/dev/vda bs=512 skip="$BEFORE" count=$((AFTER - BEFORE)) iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
say TAIL_SHA256 "$TAIL"
dmesg | grep -i -E 'I/O error|capacity change' | while read -r line; do say DMESG "$line"; done
finish OK
