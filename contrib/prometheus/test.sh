#!/usr/bin/env bash
# End-to-end test of --metrics under a real node_exporter: Debian's
# prometheus-node-exporter runs on a loopback port with only the textfile
# collector, pointed at the directory logpipe writes its metrics file to.
# While logpipe runs, the test scrapes it with curl and finds logpipe's
# series with the right values (lines, bytes, a rotation by SIGUSR1); at
# the end, every line is checked in the output, byte for byte. Also:
# `promtool check metrics` on the file and `promtool check rules` on the
# recipe's alerts.yml.
set -euo pipefail
name=prometheus

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
on_fail() {
    ls -la "$tmp/textfile" "$tmp/log" || true
    cat "$tmp/textfile/logpipe.prom" 2>/dev/null || true
    tail -n 20 "$tmp/node-exporter.log" "$tmp/logpipe.err" 2>/dev/null || true
}
need prometheus-node-exporter prometheus-node-exporter
need promtool prometheus
need curl curl
need gzip gzip
find_logpipe

tmp=$(mktemp -d)
ne_pid=
lp_pid=
cleanup() {
    exec 3>&- 2>/dev/null || true
    [ -z "$ne_pid" ] || kill "$ne_pid" 2>/dev/null || true
    [ -z "$lp_pid" ] || kill "$lp_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

promtool check rules contrib/prometheus/alerts.yml ||
    fail "promtool check rules contrib/prometheus/alerts.yml"

mkdir "$tmp/textfile"
logdir=$tmp/log
target=$logdir/current
mkfifo "$tmp/in"
"$LOGPIPE" --metrics "$tmp/textfile/logpipe.prom" --metrics-interval 1s \
    "$logdir/" <"$tmp/in" 2>"$tmp/logpipe.err" &
lp_pid=$!
exec 3>"$tmp/in"

# A free loopback port: node_exporter exits at once if it is taken, and
# another is tried.
port=
for _ in 1 2 3 4 5; do
    try=$((20000 + RANDOM % 20000))
    prometheus-node-exporter --web.listen-address="127.0.0.1:$try" \
        --collector.disable-defaults --collector.textfile \
        --collector.textfile.directory="$tmp/textfile" \
        >"$tmp/node-exporter.log" 2>&1 3>&- &
    ne_pid=$!
    if wait_for "node_exporter on port $try" \
        sh -c "curl -fs http://127.0.0.1:$try/metrics >/dev/null || ! kill -0 $ne_pid" &&
        kill -0 "$ne_pid" 2>/dev/null; then
        port=$try
        break
    fi
    ne_pid=
done
[ -n "$port" ] || fail "node_exporter did not start on a loopback port"

scrape() { curl -fs "http://127.0.0.1:$port/metrics" | grep '^logpipe_' || true; }
# has SERIES VALUE: the scrape shows SERIES (labels as node_exporter puts
# them, target first) with VALUE.
has() { scrape | grep -qxF "$1 $2"; }
t="target=\"$target\""

seq 1 1000 >&3
wait_for "1000 lines in the scrape" has "logpipe_input_lines_total{$t}" 1000
has "logpipe_input_bytes_total{$t}" 3893 || fail "input bytes in the scrape"
has "logpipe_written_bytes_total{$t}" 3893 || fail "written bytes in the scrape"
has "logpipe_active_file_bytes{$t}" 3893 || fail "active file size in the scrape"
has "logpipe_paused{$t}" 0 || fail "paused in the scrape"

kill -USR1 "$lp_pid"
wait_for "the signal's rotation in the scrape" \
    has "logpipe_rotations_total{reason=\"signal\",$t}" 1
wait_for "the segment compressed, in the scrape" \
    has "logpipe_segments_compressed_total{$t}" 1
seq 1001 2000 >&3
wait_for "2000 lines in the scrape" has "logpipe_input_lines_total{$t}" 2000
has "logpipe_segments_finished_total{$t}" 1 || fail "finished segments in the scrape"
has "logpipe_compression_backlog_segments{$t}" 0 || fail "backlog in the scrape"
has "logpipe_build_info{$t,version=\"$("$LOGPIPE" --version | cut -d' ' -f2)\"}" 1 ||
    fail "build info in the scrape"
echo "node_exporter's scrape, while logpipe runs:"
scrape | sed 's/^/    /'

exec 3>&-
wait "$lp_pid" || fail "logpipe exited with status $?"
lp_pid=
[ ! -s "$tmp/logpipe.err" ] || fail "logpipe said: $(cat "$tmp/logpipe.err")"
promtool check metrics <"$tmp/textfile/logpipe.prom" ||
    fail "promtool check metrics on the metrics file"
[ "$(find "$tmp/textfile" -mindepth 1 | wc -l)" = 1 ] ||
    fail "more than the metrics file in the textfile directory"
[ "$(cat "$logdir"/current.*.gz | gzip -dc | cat - "$target" | sha256sum)" = \
    "$(seq 1 2000 | sha256sum)" ] || fail "the output is not the input"
echo "PASS $name: node_exporter serves logpipe's metrics with the right values"
