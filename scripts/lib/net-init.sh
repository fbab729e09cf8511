#!/bin/busybox sh
# /init of the vhost-user-net test guests (runs inside the VM, busybox only). /params sets:
#   ADDR (this guest, CIDR), PEER (address to ping), ROLE (send | receive), BYTES, WAIT_SECS,
#   and optionally PACE_US (send: 64 KiB chunks, this many microseconds apart, so the transfer
#   lasts long enough to live-migrate a guest during it) and HEARTBEAT_US (receive: report the
#   bytes received so far this often: '@@PEERS HB bytes=N').
# send: pings PEER, then sends BYTES of random data to PEER:5001 (retrying until it listens), and
#   powers off only once the connection's data and FIN were acknowledged.
# receive: listens on 5001 and reports the sha256 of everything received.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
. /params

say() { echo "@@PEERS $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
finish() { say END "$1"; poweroff -f; sleep 5; }

say BOOTED uptime=$(up)
for m in $(cat /modules.list); do
    insmod "/modules/$m" || say WARN insmod "$m" failed
done
say MODULES_LOADED uptime=$(up)

i=0
while [ ! -e /sys/class/net/eth0 ]; do
    i=$((i + 1))
    [ $i -gt $((WAIT_SECS * 10)) ] && { say ERROR "no eth0 after ${WAIT_SECS}s"; finish FAIL; }
    usleep 100000
done
FEAT=$(cat /sys/class/net/eth0/device/features 2>/dev/null)
say FEATURES bits=$FEAT packed=$(echo "$FEAT" | cut -c35) mrg_rxbuf=$(echo "$FEAT" | cut -c16) csum=$(echo "$FEAT" | cut -c1)
ip link set lo up
ip link set eth0 up
ip addr add "$ADDR" dev eth0

# Ping until the peer answers (it may still be booting), then count a clean round.
i=0
until ping -c 1 -W 1 "$PEER" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -gt "$WAIT_SECS" ] && { say ERROR "no ping reply from $PEER within ${WAIT_SECS}s"; finish FAIL; }
done
say PING "$(ping -c 3 -W 2 "$PEER" | tail -n 2 | tr '\n' ' ')"

# The data to send: the whole file at once, or paced in 64 KiB chunks (PACE_US).
stream() {
    if [ -z "${PACE_US:-}" ]; then
        cat /tmp/data
        return
    fi
    n=$(((BYTES + 65535) / 65536))
    c=0
    while [ $c -lt $n ]; do
        dd if=/tmp/data bs=65536 skip=$c count=1 2>/dev/null || return 1
        c=$((c + 1))
        usleep "$PACE_US"
    done
}

if [ "$ROLE" = send ]; then
    head -c "$BYTES" /dev/urandom > /tmp/data
    say SENT_SHA256 $(sha256sum /tmp/data | cut -d' ' -f1)
    t0=$(up)
    i=0
    until stream | nc "$PEER" 5001; do
        i=$((i + 1))
        [ $i -gt "$WAIT_SECS" ] && { say ERROR "cannot connect to $PEER:5001"; finish FAIL; }
        sleep 1
    done
    t1=$(up)
    say SENT bytes=$BYTES seconds=$(dt $t0 $t1)
    # nc exits at its input's end with data still unacknowledged in the socket (the receiver may
    # be paused by a migration): powering off now would lose it. Wait while a connection to 5001
    # is ESTABLISHED (01), FIN_WAIT1 (04) or CLOSING (0B) in /proc/net/tcp.
    i=0
    while awk '$3 ~ /:1389$/ && ($4 == "01" || $4 == "04" || $4 == "0B") { found = 1 } END { exit !found }' \
        /proc/net/tcp; do
        i=$((i + 1))
        [ $i -gt $((WAIT_SECS * 10)) ] && { say ERROR "data to $PEER:5001 unacknowledged after ${WAIT_SECS}s"; finish FAIL; }
        usleep 100000
    done
else
    # nc exits at EOF on its standard input: hold a fifo open so it receives the whole stream.
    mkfifo /tmp/hold
    exec 3<> /tmp/hold
    t0=$(up)
    nc -l -p 5001 < /tmp/hold > /tmp/received &
    listener=$!
    if [ -n "${HEARTBEAT_US:-}" ]; then
        while kill -0 $listener 2>/dev/null; do
            say HB bytes=$(stat -c %s /tmp/received) uptime=$(up)
            usleep "$HEARTBEAT_US"
        done
    fi
    wait $listener
    t1=$(up)
    say RECEIVED bytes=$(stat -c %s /tmp/received) seconds=$(dt $t0 $t1)
    say RECEIVED_SHA256 $(sha256sum /tmp/received | cut -d' ' -f1)
fi
finish OK
