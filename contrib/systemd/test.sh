#!/usr/bin/env bash
# Test of contrib/systemd/ under a real systemd, booted as PID 1 of a
# Debian bookworm container with systemd-nspawn.
# 1. `systemd-analyze verify` on the host must accept every unit without
#    a word.
# 2. A Debian root (debootstrap --variant=minbase, with systemd, dbus and
#    python3 for the producer: python3-minimal lacks json) is made once and cached in
#    target/systemd-root; each run boots it read-only under an overlay of
#    its own, with the static logpipe (contrib/build-static.sh), the
#    recipe's units as shipped in /etc/systemd/system, a test application
#    (contrib/harness/produce.py) and contrib/systemd/guest.sh, which the
#    guest runs as a oneshot unit after boot. That script drives the units
#    with systemctl (see it for the steps): the one unit started and
#    restarted, the FIFO pair with logpipe restarted under a running
#    application (Type=notify: ready as each start returns, STATUS= in
#    systemctl status, a 2 s watchdog that never fires), `systemctl
#    stop` leaving nothing behind, the hardening refusing writes outside
#    /var/log/app, logpipe's warnings in `journalctl -u`. Then it powers the guest off.
# 3. On the host, check.py checks each pipeline's output byte for byte.
# Every wait is bounded; the container is stopped by its pid and the
# overlay unmounted whatever happens.
set -euo pipefail
name=systemd
runs=3
tail_lines=300   # as in guest.sh
boot_limit=300   # seconds for the whole guest run, boot to power-off
dir=contrib/systemd
single=$dir/app-with-logpipe.service
packages=systemd,systemd-sysv,dbus,python3

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp='' nspawn='' mounted=''
on_fail() {
    echo "--- guest driver (/shared/driver.log):"
    grep -v " systemd\[1\]: " "$tmp/shared/driver.log" 2>/dev/null | tail -n 60 || true
    echo "--- guest console:"
    tail -n 30 "$tmp/console.log" 2>/dev/null || true
}
need systemd-analyze systemd
need python3 python3
need gzip gzip
need debootstrap debootstrap
need systemd-nspawn systemd-container
start_time=$SECONDS

# The static logpipe: it runs in any root. LOGPIPE_STATIC to use one made.
if [ -z "${LOGPIPE_STATIC:-}" ]; then
    LOGPIPE_STATIC=$(sh contrib/build-static.sh 2>"${TMPDIR:-/tmp}/logpipe-build-static.$$") ||
        fail "contrib/build-static.sh: $(tail -n 20 "${TMPDIR:-/tmp}/logpipe-build-static.$$")"
    rm -f "${TMPDIR:-/tmp}/logpipe-build-static.$$"
fi
[ -x "$LOGPIPE_STATIC" ] || fail "no static logpipe at $LOGPIPE_STATIC"
LOGPIPE_STATIC=$(realpath "$LOGPIPE_STATIC")

tmp=$(mktemp -d)
cleanup() {
    local i
    if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
        # SIGTERM asks nspawn for an orderly shutdown of the guest.
        kill -TERM "$nspawn" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$nspawn" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$nspawn" 2>/dev/null || true
        wait "$nspawn" 2>/dev/null || true
    fi
    if [ -n "$mounted" ] && ! umount "$mounted"; then
        echo "$name: could not unmount $mounted: $tmp left" >&2
        return
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# 1. Verify. Warnings do not change verify's exit status: any output fails.
verify() {
    local out
    out=$(systemd-analyze verify "$@" 2>&1) || fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
}
mkdir -p "$tmp/units/single" "$tmp/units/pair"
cp "$single" "$tmp/units/single/"
verify "$tmp/units/single/${single##*/}"
sed "s|/usr/local/bin/logpipe|$LOGPIPE_STATIC|" "$dir/app-log.service" >"$tmp/units/pair/app-log.service"
cp -r "$dir/app-log.socket" "$dir/app.service.d" "$tmp/units/pair/"
printf '[Service]\nExecStart=%s\n' "$(command -v python3)" >"$tmp/units/pair/app.service"
verify "$tmp/units/pair/app-log.socket" "$tmp/units/pair/app-log.service" "$tmp/units/pair/app.service"

# 2. The Debian root, made once. The mirror is the one apt uses here.
mirror() {
    local m
    m=$(cat /etc/apt/sources.list /dev/null 2>/dev/null |
        sed 's/\[[^]]*\]//' | awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }') || true
    if [ -z "$m" ]; then
        # deb822 .sources: the first URI of a paragraph whose Suites has bookworm.
        m=$(cat /etc/apt/sources.list.d/*.sources /dev/null 2>/dev/null | awk -v RS= '
            /(^|\n)Suites:([^\n]*[ \t])?bookworm([ \t]|\n|$)/ {
                if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) {
                    u = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", u); print u; exit
                }
            }') || true
    fi
    [ -n "$m" ] || fail "no bookworm mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"
    echo "$m"
}
cache=${CARGO_TARGET_DIR:-$repo/target}/systemd-root
stamp="debootstrap --variant=minbase --include=$packages bookworm"
root_time=cached
if [ "$(cat "$cache/.logpipe-root" 2>/dev/null)" != "$stamp" ]; then
    t=$SECONDS
    rm -rf "$cache" "$cache.new"
    mkdir -p "$(dirname "$cache")"
    m=$(mirror)
    echo "$name: $stamp $m (once, cached in $cache)" >&2
    debootstrap --variant=minbase --include="$packages" bookworm "$cache.new" "$m" \
        >"$tmp/debootstrap.log" 2>&1 ||
        fail "debootstrap failed: $(tail -n 20 "$tmp/debootstrap.log")"
    echo "$stamp" >"$cache.new/.logpipe-root"
    mv "$cache.new" "$cache"
    root_time="debootstrap $((SECONDS - t)) s"
fi

# This run's root: the cache, unchanged, under an overlay.
mkdir -p "$tmp/upper" "$tmp/work" "$tmp/root" "$tmp/shared"
chmod 0755 "$tmp" "$tmp/shared"
mount -t overlay overlay -o "lowerdir=$cache,upperdir=$tmp/upper,workdir=$tmp/work" "$tmp/root" ||
    fail "could not mount an overlay on $cache"
mounted=$tmp/root
r=$tmp/root
etc=$r/etc/systemd/system
# The binary and the units, where the units expect them.
install -D -m 0755 "$LOGPIPE_STATIC" "$r/usr/local/bin/logpipe"
install -m 0644 "$single" "$dir/app-log.service" "$dir/app-log.socket" "$etc/"
install -D -m 0644 "$dir/app.service.d/logpipe.conf" "$etc/app.service.d/logpipe.conf"
# The test's application. In the one unit: produce.py, its state kept in
# /shared, which ProtectSystem=strict makes read-only unless told.
lib=/usr/local/lib/logpipe-test
install -D -m 0644 contrib/lib.sh "$r$lib/contrib/lib.sh"
install -D -m 0644 contrib/harness/produce.py "$r$lib/contrib/harness/produce.py"
install -D -m 0755 "$dir/guest.sh" "$r$lib/contrib/systemd/guest.sh"
printf '#!/bin/sh\nexec /usr/bin/python3 %s --state /shared/single/state\n' \
    "$lib/contrib/harness/produce.py" >"$r/usr/local/bin/app"
chmod 0755 "$r/usr/local/bin/app"
install -D -m 0644 /dev/stdin "$etc/app-with-logpipe.service.d/test-state.conf" <<'EOF'
[Service]
ReadWritePaths=/shared/single/state
EOF
# A watchdog short enough that the pair's run lasts several intervals.
install -D -m 0644 /dev/stdin "$etc/app-log.service.d/test-watchdog.conf" <<'EOF'
[Service]
WatchdogSec=2s
EOF
# The pair's application: the drop-in sends its output into the FIFO.
cat >"$etc/app.service" <<EOF
[Unit]
Description=the test's application, writing numbered lines
[Service]
User=app
ExecStart=/usr/bin/python3 $lib/contrib/harness/produce.py --state /shared/pair/state --graceful $tail_lines
EOF
# The driver, run once the guest is up; it powers the guest off.
cat >"$etc/logpipe-test.service" <<EOF
[Unit]
Description=contrib/systemd/guest.sh
After=multi-user.target
SuccessAction=poweroff
FailureAction=poweroff
[Service]
Type=oneshot
ExecStart=$lib/contrib/systemd/guest.sh
StandardOutput=append:/shared/driver.log
StandardError=inherit
TimeoutStartSec=$((boot_limit - 60))
[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$etc/multi-user.target.wants"
ln -s ../logpipe-test.service "$etc/multi-user.target.wants/logpipe-test.service"
# No login prompt on the console (its standard input is /dev/null).
ln -sf /dev/null "$etc/console-getty.service"

t=$SECONDS
systemd-nspawn --quiet --directory="$r" --machine="logpipe-test-$$" --boot --register=no --keep-unit \
    --private-network --console=pipe --bind="$tmp/shared:/shared" \
    </dev/null >"$tmp/console.log" 2>&1 &
nspawn=$!
wait_for -t "$boot_limit" "the guest to run its test and power off" exited "$nspawn"
status=0
wait "$nspawn" || status=$?
nspawn=
guest_time=$((SECONDS - t))
if grep -q '^FAIL ' "$tmp/shared/driver.log" 2>/dev/null; then
    fail "in the guest: $(grep -m 1 '^FAIL ' "$tmp/shared/driver.log")"
fi
[ -e "$tmp/shared/done" ] || fail "the guest stopped (systemd-nspawn status $status) before its test ended"
[ "$status" -eq 0 ] || fail "systemd-nspawn exited $status"
version=$(cat "$tmp/shared/version")

# 3. The output, byte for byte. The one unit: every line the producer
# wrote, once, in order, but for a line it was writing when killed.
logdir=$tmp/shared/single/log state=$tmp/shared/single/state
check "$logdir/" --state "$state" --killed --starts "$runs" --segments "$runs" --compressed
single_result=$result
# The pair: every line, the $tail_lines shutdown lines included.
logdir=$tmp/shared/pair/log state=$tmp/shared/pair/state
check "$logdir/" --state "$state" --starts 1 --after-term "$tail_lines" --segments "$runs" --compressed
pair_result=$result
hook_line=$(grep -m 1 'Read-only file system' "$tmp/shared/journal")

echo "PASS $name: verify clean; $version booted by systemd-nspawn (root: $root_time; guest run $guest_time s, test $((SECONDS - start_time)) s); app-with-logpipe started, restarted $((runs - 1)) times, stopped: $single_result; socket pair, app-log restarted $((runs - 1)) times, then app stopped, then app-log: $pair_result; app-log (Type=notify) active/running holding the lock as each start returned, Status: \"writing\", no watchdog firing at WatchdogSec=2s; stop left nothing; writes outside /var/log/app refused; journalctl -u app-log: $hook_line"
