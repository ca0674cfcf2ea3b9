#!/usr/bin/env bash
# Test of the Debian package (contrib/deb/build.sh): builds it, requires
# lintian to find no error in it, installs it with dpkg -i on this machine
# and checks what a user of it gets: /usr/bin/logpipe --version, the man
# page through man, the bash completion through bash (zsh and fish files
# in their places), the examples without the tests, and a real run of the
# installed binary that gives back its input byte for byte. Then dpkg -r
# must remove every file the package installed. Needs root (dpkg -i); the
# package is removed on the way out even when a check fails.
set -euo pipefail
name=deb

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
installed=
on_fail() {
    [ ! -s "$tmp/lintian" ] || { echo "--- lintian:"; cat "$tmp/lintian"; }
    [ ! -s "$tmp/stderr" ] || { echo "--- logpipe's standard error:"; head -n 20 "$tmp/stderr"; }
}
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
need dpkg-deb dpkg
need lintian lintian
need man man-db
need gzip gzip
need python3 python3
# dpkg_waiting LOG ARG...: dpkg ARG..., its output in LOG, retried for up
# to 5 minutes while another dpkg or apt-get (a test of another recipe
# installing what it needs, say) holds dpkg's lock.
dpkg_waiting() {
    local log=$1 i
    shift
    for ((i = 0; i < 3000; i++)); do
        dpkg "$@" >"$log" 2>&1 && return 0
        grep -q 'locked by another process' "$log" || return 1
        sleep 0.1
    done
    return 1
}
tmp=$(mktemp -d)
cleanup() {
    # The test checked that no logpipe package was there before it.
    if [ -n "$installed" ] && dpkg-query -W logpipe >/dev/null 2>&1; then
        dpkg_waiting "$tmp/cleanup.log" -r logpipe ||
            echo "$name: dpkg -r logpipe failed: $(cat "$tmp/cleanup.log")" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
if ! command -v cargo-deb >/dev/null; then
    echo "$name: installing cargo-deb (cargo install cargo-deb --locked)" >&2
    cargo install --quiet cargo-deb --locked >"$tmp/install.log" 2>&1 ||
        fail "could not install cargo-deb (cargo install cargo-deb --locked): $(tail -n 20 "$tmp/install.log")"
    command -v cargo-deb >/dev/null || fail "cargo installed cargo-deb, but it is not on PATH"
fi
# The test installs and removes the package: it must not take away a
# logpipe that is there for another reason.
! dpkg-query -W -f='${Status}\n' logpipe 2>/dev/null | grep -q ' installed$' ||
    fail "a logpipe package is installed already: the test would remove it"
[ ! -e /usr/bin/logpipe ] || fail "/usr/bin/logpipe exists already: the test would replace it"

version=$(cargo pkgid | sed 's/.*[#@]//')

deb=$(bash contrib/deb/build.sh 2>"$tmp/build.log") ||
    fail "contrib/deb/build.sh failed: $(tail -n 20 "$tmp/build.log")"
[ -f "$deb" ] || fail "contrib/deb/build.sh printed $deb, which is not a file"

# lintian: no error (its exit status says so too: it fails on errors by
# default). Warnings and notes are shown, the overridden tags with them.
lintian --pedantic --display-info --show-overrides "$deb" >"$tmp/lintian" 2>/dev/null ||
    fail "lintian failed on $deb"
! grep -q '^E:' "$tmp/lintian" || fail "lintian found errors in $deb"
warnings=$(grep -c '^W:' "$tmp/lintian" || true)

# What the package holds, before installing it.
dpkg-deb -I "$deb" >"$tmp/info"
! grep -q '^ Depends:' "$tmp/info" || fail "the package depends on something: $(grep '^ Depends:' "$tmp/info")"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$tmp/contents"
for f in /usr/bin/logpipe /usr/share/man/man1/logpipe.1.gz \
    /usr/share/bash-completion/completions/logpipe /usr/share/zsh/vendor-completions/_logpipe \
    /usr/share/fish/vendor_completions.d/logpipe.fish /usr/share/doc/logpipe/copyright \
    /usr/share/doc/logpipe/changelog.Debian.gz /usr/share/doc/logpipe/changelog.gz \
    /usr/share/doc/logpipe/examples/systemd/app-with-logpipe.service \
    /usr/share/doc/logpipe/examples/runit/log/run /usr/share/doc/logpipe/examples/docker/Dockerfile; do
    grep -qx "$f" "$tmp/contents" || fail "the package has no $f"
done
! grep -E '/examples/.*(test\.sh|guest\.sh|harness|lib\.sh)' "$tmp/contents" || fail "the examples hold the tests"

installed=1
dpkg_waiting "$tmp/dpkg.log" -i "$deb" || fail "dpkg -i $deb: $(cat "$tmp/dpkg.log")"
dpkg -L logpipe >"$tmp/files"
got=$(/usr/bin/logpipe --version)
[ "$got" = "logpipe $version" ] || fail "/usr/bin/logpipe --version says '$got', not 'logpipe $version'"

# The man page, found and shown by man (another copy, in /usr/local say,
# may come first for man -w alone).
man -aw logpipe 2>/dev/null | grep -qx /usr/share/man/man1/logpipe.1.gz ||
    fail "man -w logpipe does not find /usr/share/man/man1/logpipe.1.gz (it says: $(man -aw logpipe 2>&1))"
man logpipe >"$tmp/man" 2>&1 || fail "man logpipe failed: $(head -n 5 "$tmp/man")"
tr -s ' ' <"$tmp/man" | grep -q 'logpipe - Write standard input to a log file' ||
    fail "man logpipe does not show the page's NAME line: $(head -n 5 "$tmp/man")"

# The bash completion loads and completes an option.
[ -f /usr/share/bash-completion/completions/logpipe ] || fail "no bash completion file"
# shellcheck disable=SC2016 # expanded by that bash
completed=$(bash -c 'source /usr/share/bash-completion/completions/logpipe &&
    complete -p logpipe && COMP_WORDS=(logpipe --shut) && COMP_CWORD=1 &&
    _logpipe logpipe --shut logpipe && echo "${COMPREPLY[*]}"') ||
    fail "bash could not load the completion: $completed"
grep -q '^complete .*-F _logpipe logpipe$' <<<"$completed" ||
    fail "complete -p logpipe says: $completed"
[ "$(tail -n 1 <<<"$completed")" = --shutdown-timeout ] ||
    fail "bash completes 'logpipe --shut' to '$(tail -n 1 <<<"$completed")'"

# A real run of the installed binary: rotated, compressed, byte for byte.
input=$tmp/input
{
    seq 1 60000
    printf 'caf\xc3\xa9 \xff\xfe not UTF-8\0 a NUL\r\n'
    seq 60001 120000
} >"$input"
# shellcheck disable=SC2002 # through a pipe, as it is used
cat "$input" | /usr/bin/logpipe --size 64K "$tmp/logs/" 2>"$tmp/stderr" ||
    fail "the installed logpipe exited $?"
[ ! -s "$tmp/stderr" ] || fail "the installed logpipe wrote to standard error"
check "$tmp/logs/" --compressed --min-segments 3 --output "$tmp/output"
[ "$(sha256sum <"$tmp/output")" = "$(sha256sum <"$input")" ] ||
    fail "the installed logpipe's output is not its input"
run=$result

# Removal: nothing of the package is left (its directories stay only
# where another package owns them or something else is in them).
dpkg_waiting "$tmp/dpkg.log" -r logpipe || fail "dpkg -r logpipe: $(cat "$tmp/dpkg.log")"
installed=
! dpkg-query -W -f='${Status}\n' logpipe 2>/dev/null | grep -q ' installed$' ||
    fail "dpkg -r left logpipe installed"
while read -r path; do
    if [ -d "$path" ] && [ ! -L "$path" ]; then
        [ -n "$(ls -A "$path")" ] || dpkg -S "$path" >/dev/null 2>&1 ||
            fail "dpkg -r left the empty directory $path"
    elif [ -e "$path" ] || [ -L "$path" ]; then
        fail "dpkg -r left $path"
    fi
done <"$tmp/files"

echo "PASS $name: $(basename "$deb") ($(stat -c %s "$deb") bytes, $(grep -c . "$tmp/files") paths)," \
    "lintian: no errors, $warnings warnings; installed, man, bash completion, a run ($run), removed cleanly"
