#!/bin/sh
# The application of the Docker recipe's test (contrib/docker/test.sh),
# run by busybox sh in the FROM scratch image as /usr/local/bin/app:
#
#   line NNNNNNNN <0 to 149 characters of 0123456789abcdef...>
#
# numbered from 1, about 2000 lines a second, the length of line N being
# (N * 7919) % 150 characters after the number (the test rebuilds every
# line from that). $STATE (default /state, a bind mount) keeps:
#   written     the number of each line, appended once the line is
#               written: its line count is the last number, from which a
#               second start goes on
#   starts      one line a start: the number it went on from
#   after-term  one line per SIGTERM: the lines written after it
#   stopping    there once SIGTERM came
# On SIGTERM to its process group (as tini -g sends it) it writes $TAIL
# (default 300) more lines, then exits 0.
# shellcheck disable=SC3057 # busybox ash has ${var:offset:length}
state=${STATE:-/state}
tail=${TAIL:-300}
pad=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
pad=$pad$pad$pad
n=0
if [ -e "$state/written" ]; then n=$(wc -l <"$state/written"); fi
echo "$n" >>"$state/starts"
# SIGTERM is noticed by a watcher, which leaves $state/stopping; this
# shell ignores it, so that no write of a line is interrupted (busybox
# sh's traps would interrupt a write to a full pipe: EINTR, a line lost).
rm -f "$state/stopping"
(
    trap ': >"$state/stopping"; exit 0' TERM
    while :; do sleep 1; done
) </dev/null >/dev/null 2>&1 &
trap '' TERM

line() {
    n=$((n + 1))
    printf 'line %08d %s\n' "$n" "${pad:0:$((n * 7919 % 150))}"
    echo "$n" >>"$state/written"
}

while [ ! -e "$state/stopping" ]; do
    i=0
    while [ "$i" -lt 100 ]; do
        line
        i=$((i + 1))
    done
    sleep 0.05
done
i=0
while [ "$i" -lt "$tail" ]; do
    line
    i=$((i + 1))
done
echo "$tail" >>"$state/after-term"
exit 0
