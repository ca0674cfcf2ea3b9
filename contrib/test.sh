#!/usr/bin/env bash
# Runs every recipe's end-to-end test (contrib/*/test.sh) against one fresh
# release build, in turn, and fails if any fails. Each test installs the
# real programs it needs (apt-get, pip) and fails loudly if it cannot.
# Needs root: the tests install packages and run services as other users.
#
#   bash contrib/test.sh              # all recipes (and the harness's own test)
#   bash contrib/test.sh runit s6     # some of them
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

cargo build --release --locked || { echo "FAIL contrib: cargo build --release"; exit 1; }
LOGPIPE=$PWD/target/release/logpipe
export LOGPIPE

# `cargo install` puts a working binary, man page generator included,
# where PATH finds it (into a scratch root, reusing the build above).
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
if cargo install --quiet --locked --path . --root "$root" --target-dir target &&
    PATH="$root/bin:$PATH" logpipe --version | grep -qx "logpipe $(cargo pkgid | sed 's/.*[#@]//')" &&
    PATH="$root/bin:$PATH" logpipe --generate man | grep -q '^\.TH LOGPIPE 1' &&
    seq 1 300000 | PATH="$root/bin:$PATH" logpipe --size 1M "$root/demo/" &&
    [ "$(cat "$root"/demo/current.*.gz | gzip -dc | cat - "$root/demo/current" | sha256sum)" = \
      "$(seq 1 300000 | sha256sum)" ]; then
    echo "PASS install: cargo install --path . gives a logpipe on PATH that runs"
else
    echo "FAIL install: cargo install --path . did not give a working logpipe"
    exit 1
fi

if [ "$#" -gt 0 ]; then
    recipes=("$@")
else
    recipes=(harness static gunicorn runit s6 supervisor systemd docker deb prometheus rsyslog)
fi
failed=()
for recipe in "${recipes[@]}"; do
    echo "== contrib/$recipe"
    start=$SECONDS
    if bash "contrib/$recipe/test.sh"; then
        echo "== contrib/$recipe: passed in $((SECONDS - start)) s"
    else
        echo "== contrib/$recipe: FAILED after $((SECONDS - start)) s"
        failed+=("$recipe")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAIL contrib: ${failed[*]}"
    exit 1
fi
echo "PASS contrib: ${recipes[*]}"
