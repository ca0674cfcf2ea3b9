#!/bin/sh
# Builds logpipe as one static executable, for any image or machine
# (Debian, Alpine, distroless, FROM scratch): no libc to match, no zone
# database needed (one is built in). Run from anywhere in the repository:
#
#   sh contrib/build-static.sh
#
# It prints the path of the binary it made. glibc's static link works
# for logpipe, which resolves no user or host names (it uses no NSS).
set -eu
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" >&2
out="${CARGO_TARGET_DIR:-target}/$target/release/logpipe"
# Refuse to call it static unless it is.
if ldd "$out" 2>&1 | grep -q '=>'; then
    echo "build-static: $out is dynamically linked" >&2
    exit 1
fi
echo "$out"
