#!/usr/bin/env bash
# The half of contrib/systemd/test.sh that runs inside the booted Debian
# guest, as the oneshot unit logpipe-test.service, once systemd has reached
# multi-user.target. test.sh installs it as
# /usr/local/lib/logpipe-test/contrib/systemd/guest.sh, beside lib.sh and
# the harness, and bind-mounts its results directory on /shared. It
# drives the recipe's units with systemctl, copies what logpipe wrote to
# /shared for check.py on the host, and says `FAIL systemd-guest: …` on
# its standard output (/shared/driver.log) at the first thing wrong.
# systemd powers the guest off when it ends, passed or failed.
#
#   guest.sh           the whole run
#   guest.sh hook SEG  the --on-rotate hook of the hardening check: tries
#                      to write where the unit must not let logpipe write
set -euo pipefail

# Places that user app may write to without the unit's hardening (made
# mode 1777 below), each refused inside app-log.service: ProtectSystem=
# strict (/srv, /var/lib), ReadOnlyPaths=/run (which ProtectSystem=strict
# leaves writable) and ProtectHome=yes (/home).
escapes=(/srv/open /run/open /var/lib/open /home/open)

if [ "${1:-}" = hook ]; then
    report=$(dirname "$2")/hook-report
    refused=0
    for d in "${escapes[@]}"; do
        # The shell's error (on stderr) is what logpipe relays to the journal.
        if echo escaped >"$d/escaped"; then
            echo "$d written" >>"$report"
        else
            echo "$d refused" >>"$report"
            refused=$((refused + 1))
        fi
    done
    echo "hook done for $2" >>"$report"
    [ "$refused" -eq 0 ]
    exit
fi

name=systemd-guest
runs=3
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
tmp=/shared      # for lib.sh's fail: run on_fail
logdir=/var/log/app
lp_exe=/usr/local/bin/logpipe
on_fail() {
    systemctl --no-pager list-units --all 'app*' || true
    journalctl --no-pager -n 40 || true
    tail -n 5 "$logdir/current" 2>/dev/null || true
}
say() { printf '%(%T)T %s\n' -1 "$*"; }

# Type=notify: `systemctl start` (or restart) of unit $1 has returned, so
# logpipe must have sent READY=1: the unit is active/running and its main
# process, logpipe, holds the lock. Then STATUS=writing shows in
# `systemctl status`. Sets lp, as new_logpipe does.
started_ready() {
    local unit=$1 state
    state=$(systemctl show -P ActiveState "$unit")/$(systemctl show -P SubState "$unit")
    [ "$state" = active/running ] || fail "$unit is $state right after systemctl start"
    lp=$(systemctl show -P MainPID "$unit")
    [ "$(cat "$logdir/.current.lock" 2>/dev/null)" = "$lp" ] ||
        fail "$unit: systemctl start returned before logpipe ($lp) held the lock"
    status_writing() { systemctl status --no-pager "$unit" | grep -q '^ *Status: "writing"$'; }
    wait_for -t 10 "$unit: Status: \"writing\" in systemctl status" status_writing
}

# The pids of logpipe, its hooks and the producer, wherever they run.
ours() {
    local p exe cmd
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        case "$exe $cmd" in
        "$lp_exe "* | *produce.py* | *"guest.sh hook"*) echo "${p#/proc/}: $cmd" ;;
        esac
    done
}
# The unit $1 was stopped cleanly and left nothing behind: inactive with
# Result=success, no process of logpipe or the producer anywhere, none of
# its PrivateTmp directories, and in $logdir only logpipe's own files.
stopped_clean() {
    local unit=$1 left
    [ "$(systemctl show -P ActiveState "$unit")" = inactive ] ||
        fail "$unit: $(systemctl show -P ActiveState "$unit") after systemctl stop"
    [ "$(systemctl show -P Result "$unit")" = success ] ||
        fail "$unit: Result=$(systemctl show -P Result "$unit") after systemctl stop"
    left=$(ours)
    [ -z "$left" ] || fail "$unit stopped, but still running: $left"
    left=$(find /tmp /var/tmp -maxdepth 1 -name "systemd-private-*-$unit-*")
    [ -z "$left" ] || fail "$unit stopped, but its private /tmp is left: $left"
    left=$(find "$logdir" -mindepth 1 -regextype posix-extended \
        ! -regex "$logdir/(\.current\.lock|\.current\.state|current(\.[0-9]{4}-[0-9]{2}-[0-9]{2}\.[0-9]+\.gz)?)" \
        ! -name hook-report)
    [ -z "$left" ] || fail "$unit stopped, but left in $logdir: $left"
}
# What the processes of unit $1 wrote to the journal (not systemd's own
# lines about the unit).
said() {
    journalctl --sync
    journalctl --no-pager -q -o cat _SYSTEMD_UNIT="$1"
}
# The FIFO of app-log.socket holds no data (systemd holds it open).
fifo_empty() {
    python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
try:
    data = os.read(fd, 200)
except BlockingIOError:
    data = b""
sys.exit(f"bytes left in the FIFO: {data!r}" if data else 0)' "$1"
}

say "systemd: $(systemctl --version | head -n 1)"
systemctl --version | head -n 1 >/shared/version
id app >/dev/null 2>&1 || useradd --system --no-create-home app

# 1. The one unit, started, restarted twice, stopped.
say "app-with-logpipe.service"
state=/shared/single/state old_lp=
install -d -o app -g app "$state"
systemctl enable app-with-logpipe.service 2>/dev/null
[ -L /etc/systemd/system/multi-user.target.wants/app-with-logpipe.service ] ||
    fail "systemctl enable app-with-logpipe made no link"
for run in $(seq "$runs"); do
    if [ "$run" -eq 1 ]; then
        systemctl start app-with-logpipe
    else
        systemctl restart app-with-logpipe
    fi
    wait_for "logpipe to start (run $run)" new_logpipe
    old_lp=$lp
    [ "$(systemctl show -P MainPID app-with-logpipe)" != "$lp" ] ||
        fail "logpipe is the unit's main process: the shell should be"
    more_lines 2000
    kill -USR1 "$lp"   # roll now: each run leaves a finished segment
    more_lines 2000
    say "  run $run: logpipe $lp, $(written) lines written"
done
systemctl stop app-with-logpipe
stopped_clean app-with-logpipe.service
out=$(said app-with-logpipe.service)
[ -z "$out" ] || fail "app-with-logpipe said: $out"
systemctl disable app-with-logpipe.service 2>/dev/null
cp -a "$logdir" /shared/single/log
rm -rf "$logdir"

# 2. The FIFO pair: logpipe restarted twice while the application writes,
# then the application stopped (it writes $tail_lines lines on its way
# out: app.service), then logpipe, then the socket.
say "app-log.socket, app-log.service, app.service"
state=/shared/pair/state old_lp=
install -d -o app -g app "$state"
systemctl enable --now app-log.socket 2>/dev/null
[ -p /run/app-log.fifo ] || fail "app-log.socket made no FIFO /run/app-log.fifo"
systemctl start app-log.service
started_ready app-log.service
systemctl start app   # After= app-log.service, which is running
wait_for "logpipe to start" new_logpipe
old_lp=$lp
for run in $(seq "$runs"); do
    more_lines 2000
    systemctl kill -s USR1 app-log
    more_lines 1000
    say "  run $run: logpipe $lp, $(written) lines written"
    [ "$run" -eq "$runs" ] && break
    systemctl restart app-log
    started_ready app-log.service
    [ "$lp" != "$old_lp" ] || fail "systemctl restart app-log left logpipe $lp running"
    old_lp=$lp
done
# The watchdog (WatchdogSec=2s from test.sh's drop-in; logpipe pings every
# second) must not fire during a normal run: let 3 intervals pass while
# the application writes, then logpipe must be the same, never restarted,
# and systemd must have said nothing of a watchdog.
[ "$(systemctl show -P WatchdogUSec app-log)" = 2s ] ||
    fail "app-log: WatchdogUSec=$(systemctl show -P WatchdogUSec app-log), want 2s"
sleep 6
[ "$(systemctl show -P MainPID app-log)" = "$lp" ] || fail "app-log: logpipe $lp was replaced"
[ "$(systemctl show -P NRestarts app-log)" = 0 ] ||
    fail "app-log: NRestarts=$(systemctl show -P NRestarts app-log)"
journalctl --sync
! journalctl --no-pager -q -u app-log.service | grep -i watchdog ||
    fail "systemd speaks of the watchdog of app-log"
systemctl stop app
[ "$(systemctl show -P Result app)" = success ] || fail "app: Result=$(systemctl show -P Result app)"
systemctl stop app-log.service
stopped_clean app-log.service
out=$(fifo_empty /run/app-log.fifo) || fail "$out"
systemctl stop app-log.socket
[ ! -e /run/app-log.fifo ] || fail "app-log.socket stopped, but /run/app-log.fifo is left"
out=$(said app-log.service)
[ -z "$out" ] || fail "app-log said: $out"
cp -a "$logdir" /shared/pair/log
rm -rf "$logdir"

# 3. Hardening and the journal. Data written into the FIFO starts
# app-log.service; logpipe runs, through a drop-in, with an --on-rotate
# hook that tries to write outside /var/log/app, where user app can write
# outside the unit. The hook's errors and its failure must be refused,
# and reach the journal through logpipe's warnings.
say "hardening of app-log.service"
for d in "${escapes[@]}"; do
    mkdir -p "$d"
    chmod 1777 "$d"
done
install -d -o app -g app /shared/control
setpriv --reuid=app --regid=app --init-groups "$0" hook /shared/control/segment ||
    fail "user app cannot write where the hook tries, even outside the unit: $(cat /shared/control/hook-report)"
rm -f "${escapes[@]/%//escaped}"
mkdir -p /etc/systemd/system/app-log.service.d
cat >/etc/systemd/system/app-log.service.d/hook.conf <<EOF
[Service]
ExecStart=
ExecStart=$lp_exe --size 64M --on-rotate '$0 hook' $logdir/
EOF
systemctl daemon-reload
systemctl start app-log.socket
old_lp=
seq 1 1000 >/run/app-log.fifo   # socket activation
wait_for "app-log.socket to start logpipe" new_logpipe
grep -qx 'NoNewPrivs:[[:space:]]*1' "/proc/$lp/status" || fail "logpipe runs without NoNewPrivs"
grep -qx 'CapBnd:[[:space:]]*0*' "/proc/$lp/status" || fail "logpipe has a capability bounding set"
systemctl show -p ProtectSystem,ProtectHome,PrivateTmp,PrivateDevices,NoNewPrivileges,LogsDirectory,CapabilityBoundingSet,RestrictAddressFamilies app-log >/shared/hardening
grep -qx ProtectSystem=strict /shared/hardening || fail "ProtectSystem is not strict"
grep -qx ProtectHome=yes /shared/hardening || fail "ProtectHome is not yes"
systemctl kill -s USR1 app-log
hook_done() { grep -q '^hook done' "$logdir/hook-report" 2>/dev/null; }
wait_for "the --on-rotate hook" hook_done
for d in "${escapes[@]}"; do
    grep -qx "$d refused" "$logdir/hook-report" ||
        fail "logpipe's hook could write to $d: $(cat "$logdir/hook-report")"
    [ ! -e "$d/escaped" ] || fail "$d/escaped was written"
done
in_journal() {
    journalctl --sync
    journalctl --no-pager -q -o cat -u app-log.service >/shared/journal
    grep -q "^logpipe: warning: --on-rotate for $logdir/current\.[0-9-]*\.1\.gz: .*/srv/open/escaped: Read-only file system" /shared/journal &&
        grep -q "^logpipe: warning: --on-rotate for $logdir/current\.[0-9-]*\.1\.gz: .*/run/open/escaped: Read-only file system" /shared/journal &&
        grep -q "^logpipe: warning: --on-rotate for $logdir/current\.[0-9-]*\.1\.gz: .*/home/open/escaped: \(Permission denied\|No such file or directory\)" /shared/journal &&
        grep -q "^logpipe: warning: --on-rotate for $logdir/current\.[0-9-]*\.1\.gz: .* failed: exit status: 1" /shared/journal
}
wait_for -t 10 "logpipe's warnings in journalctl -u app-log" in_journal
# systemctl stop of the service first: with only the socket stopped, the
# service would go on running.
systemctl stop app-log.service app-log.socket
stopped_clean app-log.service
[ ! -e /run/app-log.fifo ] || fail "app-log.socket stopped, but /run/app-log.fifo is left"
rm -f /etc/systemd/system/app-log.service.d/hook.conf
say "done"
touch /shared/done
