#!/usr/bin/env bash
# Test of the recipe tests' harness: every check of check.py that they use
# must pass on what logpipe makes of produce.py's lines, and fail, saying
# why, when that output (or the producer's record of it) is broken in one
# way, on a copy, one break at a time. Also: produce.py refuses a state
# directory of other line options, and dockerfile_argv.py a CMD in shell
# form. Quick, installs nothing but gzip; LOGPIPE overrides the binary.
set -euo pipefail
name=harness
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
need gzip gzip
need python3 python3
find_logpipe

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
mkdir state
produce() { python3 "$repo/contrib/harness/produce.py" --state state --seed 7 --rate 1000000 "$@"; }
run_check() { python3 "$repo/contrib/harness/check.py" "$@" 2>&1; }

# Two runs of the producer (the second continues the numbering) into one
# target, at least 10 segments: (date, N) order is not the names' order.
produce --count 12000 | "$LOGPIPE" --size 64K out/ || fail "produce.py | logpipe failed"
produce --count 20000 | "$LOGPIPE" --size 64K out/ || fail "produce.py | logpipe failed"
opts=(--state s --starts 2 --compressed --max-size 65536 --min-segments 10)
cp -a state s
result=$(run_check out/ "${opts[@]}" --output all --has '^line 00000001 ' --last '^line 00020000 ' \
    --lines '^line [0-9]{8} [0-9a-f]+$') || fail "check.py failed on logpipe's output: $result"
echo "unbroken: $result"
n=$(grep -o 'segments=[0-9]*' <<<"$result") n=${n#segments=}

# seg N: the name of the Nth finished segment in b/, in (date, N) order.
seg() {
    find b -maxdepth 1 -name 'current.*.gz' -printf '%f\n' | sort -t. -k2,2 -k3,3n | sed -n "$1p"
}
# broken WHAT SAYS BREAK [OPTION...]: on fresh copies of the output (b/)
# and of the producer's state (s/), run the shell command BREAK; then
# check.py, with the options above and OPTIONs, must fail and say SAYS.
broken() {
    local what=$1 says=$2 break=$3 out
    shift 3
    rm -rf b s && cp -a out b && cp -a state s
    eval "$break" || fail "$what: could not break it"
    if out=$(run_check b/ "${opts[@]}" "$@"); then
        fail "$what: check.py passed: $out"
    fi
    grep -q -- "$says" <<<"$out" || fail "$what: check.py did not say '$says': $out"
    breaks=$((breaks + 1))
}
breaks=0
broken "a line lost" "missing 1 \[5\]" \
    "gzip -dc b/\$(seg 1) | sed /^line.00000005/d | gzip >x && mv x b/\$(seg 1)"
broken "a line lost" "missing 1" "sed -i 1d b/current"
broken "a line twice" "twice 1" "sed -i 1p b/current"
broken "two lines swapped" "out of order 1" "sed -i '1{h;d};2G' b/current"
broken "a line changed" "broken lines" "sed -i '1s/ /  /' b/current"
broken "a line cut" "does not end with a newline" "truncate -s -1 b/current"
broken "no active file" "no active file" "rm b/current"
broken "segments swapped" "out of order" \
    "s2=\$(seg 2) s3=\$(seg 3) && mv b/\$s2 x && mv b/\$s3 b/\$s2 && mv x b/\$s3"
broken "a segment damaged" "gzip -t" "printf 'xxxx' | dd of=b/\$(seg 1) bs=1 seek=100 conv=notrunc status=none"
broken "a segment cut mid-line" "not whole lines" \
    "gzip -dc b/\$(seg 1) >x && truncate -s 1000 x && gzip -c x >b/\$(seg 1)"
broken "a segment left plain" "left uncompressed" "gzip -d b/\$(seg 1)"
broken "a segment plain and compressed" "both plain and compressed" "gzip -dk b/\$(seg 1)"
broken "a temporary left" "temporary" "touch b/\$(seg 1).tmp"
broken "a segment too large" "over 1000" true --max-size 1000
broken "one segment more wanted" "want $((n + 1))" true --segments $((n + 1))
broken "more segments wanted" "want 1000 or more" true --min-segments 1000
broken "another start" "started 2 times, want 3" true --starts 3
broken "lines after SIGTERM" "0 lines written after SIGTERM, want 5" true --after-term 5
broken "a line attempted, not confirmed" "attempted but not confirmed" "echo 20001 >s/attempted"
broken "a line written, not recorded" "attempted but not confirmed" "sed -i /^5\$/d s/written"
broken "a record with another seed" "not the lines written" "sed -i 's/\"seed\": 7/\"seed\": 8/' s/params"
broken "the --tee copy" "tee copy differs" "sed 1d all >tee" --tee tee
broken "a line of another form" "of none of the expected forms" true --lines '^line [0-9]{8} [0-9]+$'
broken "a line missing" "no line matches" true --has '^line 00020001 '
broken "the last line" "last line does not match" true --last '^line 00000001 '
# The checks that forgive: a line the producer was killed writing may be
# there (--killed); the --tee copy; plain segments without --compressed.
for break in "echo 20001 >s/attempted" "sed -i /^5\$/d s/written" "gzip -d b/\$(seg 1)"; do
    rm -rf b s && cp -a out b && cp -a state s && eval "$break"
    out=$(run_check b/ --state s --killed --tee all) || fail "check.py failed after $break: $out"
done

# The request ids (gunicorn): lines ending in rid=W-N, against the ids
# answered, each W's in increasing order.
mkdir r
printf '%s\n' 1-1 2-1 1-2 2-2 1-3 >r/answered
requests() { # requests LINE-IDS...: r/out/ holds lines with these ids
    rm -rf r/out && printf 'GET / rid=%s\n' "$@" | "$LOGPIPE" r/out/
}
requests 1-1 2-1 1-2 2-2 1-3
out=$(run_check r/out/ --requests r/answered --min-requests 5 --min-workers 2) ||
    fail "check.py --requests failed: $out"
for ids in "1-1 2-1 1-2 2-2" "1-1 2-1 1-2 2-2 1-3 1-3" "1-1 2-1 1-2 2-2 1-3 1-4" \
    "1-1 2-1 2-2 1-3 1-2"; do
    # shellcheck disable=SC2086 # ids is a list
    requests $ids
    if out=$(run_check r/out/ --requests r/answered); then fail "check.py --requests passed ids $ids"; fi
    breaks=$((breaks + 1))
done
requests 1-1 2-1 1-2 2-2 1-3
! out=$(run_check r/out/ --requests r/answered --min-requests 6) || fail "--min-requests 6 passed"
! out=$(run_check r/out/ --requests r/answered --min-workers 3) || fail "--min-workers 3 passed"

# received.py: a central system's copy of the lines (contrib/rsyslog),
# with lines missing or repeated within limits.
rcv() { python3 "$repo/contrib/harness/received.py" rcv.txt --state state "$@" 2>&1; }
passes() { out=$(rcv "$@") || fail "received.py $*: failed: $out"; }
fails() { # fails SAYS OPTION...: received.py fails on r, saying SAYS
    local says=$1
    shift
    if out=$(rcv "$@"); then fail "received.py $* passed on $what: $out"; fi
    grep -q -- "$says" <<<"$out" || fail "received.py $* did not say '$says' on $what: $out"
    breaks=$((breaks + 1))
}
what="the lines written" && cp all rcv.txt
passes --max-lost 0 --max-resumes 0 --max-repeat 0
grep -q ' lost=0 repeated=0 ' <<<"$out" || fail "received.py on the lines written: $out"
what="a resume at 101 after 200" && { head -n 200 all && tail -n +101 all; } >rcv.txt
passes --max-lost 0 --max-resumes 1 --max-repeat 100 --resume-at 101
grep -q ' lost=0 repeated=100 resumes=1 longest_repeat=100 ' <<<"$out" || fail "received.py on $what: $out"
passes --max-lost 0 --resume-at 150 --max-other-repeat 100
fails "lands on no resume point" --max-lost 0 --resume-at 102
fails "lands on no resume point" --max-lost 0 --resume-at 102 --max-other-repeat 99
fails "never arrived" --resume-at 101,30001
fails "1 jumps back, want at most 0" --max-resumes 0
fails "repeats 100 lines, want at most 99" --max-repeat 99
passes --exact-at 201,5
fails "line 101 arrived 2 times" --exact-at 101
fails "line 150 arrived 2 times" --exact-at 150
what="resumes at 101 and 201" && { head -n 200 all && sed -n 101,300p all && tail -n +201 all; } >rcv.txt
passes --max-lost 0 --resume-at 101,201
fails "2 jumps back, want at most 1" --max-lost 0 --max-resumes 1
what="line 5 lost" && sed 5d all >rcv.txt
passes --lost-within 3-6
grep -q ' lost=1 .* lost_ranges=5$' <<<"$out" || fail "received.py on $what: $out"
fails "1 lines lost, want at most 0" --max-lost 0
fails "1 lines lost outside 6-9" --lost-within 6-9
fails "line 6 arrived 1 times, after \[4\]" --exact-at 6
what="lines 1 and 2 swapped" && sed '1{h;d};2G' all >rcv.txt
fails "not in the order written" --max-lost 0
what="a line changed" && sed '1s/ /  /' all >rcv.txt
fails "not lines written" --max-lost 0
what="a line cut" && sed '3s/.$//' all >rcv.txt
fails "not lines written"
what="a line never written" && sed '2s/^line 00000002 /line 99999999 /' all >rcv.txt
fails "not lines written"

# produce.py keeps one sequence of lines per state directory.
! produce --seed 8 --count 20001 >/dev/null 2>&1 || fail "produce.py took another seed's state"
# dockerfile_argv.py: exec form only.
printf 'FROM a\nCMD ["x"]\nFROM b\nENTRYPOINT ["/tini", "--"]\nCMD ["sh", \\\n "-c", "app"]\n' >Dockerfile
[ "$(python3 "$repo/contrib/harness/dockerfile_argv.py" Dockerfile | tr '\0' ' ')" = "/tini -- sh -c app " ] ||
    fail "dockerfile_argv.py misread a Dockerfile"
printf 'FROM a\nENTRYPOINT ["/tini", "--"]\nCMD sh -c app\n' >Dockerfile
! python3 "$repo/contrib/harness/dockerfile_argv.py" Dockerfile >/dev/null 2>&1 ||
    fail "dockerfile_argv.py took a CMD in shell form"

echo "PASS $name: check.py passes logpipe's output and fails on each of $((breaks + 2)) breaks"
