#!/usr/bin/env bash
# fuzz-one.sh PKG NAME FUZZTIME: runs one fuzz target for FUZZTIME.
#
# Go 1.26's fuzzing coordinator can report "context deadline exceeded" as a
# failure when -fuzztime runs out, with no failing input
# (https://go.dev/issue/75804, fixed in Go 1.27). A failure with that
# message that wrote no input to testdata/fuzz is run once more; any other
# failure, or the same one twice, fails.
set -u
pkg=$1 name=$2 fuzztime=$3
go=${GO:-go}
corpus="$pkg/testdata/fuzz/$name"
inputs() { find "$corpus" -type f 2>/dev/null | wc -l; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
before=$(inputs)
for try in 1 2; do
	"$go" test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -fuzzminimizetime 100x "$pkg" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	[ "$rc" -eq 0 ] && exit 0
	if [ "$try" -eq 1 ] && [ "$(inputs)" -eq "$before" ] && grep -q '^    context deadline exceeded$' "$log"; then
		echo "fuzz-one: $name stopped with the coordinator's deadline race (go.dev/issue/75804), no failing input written; running it once more"
		continue
	fi
	exit "$rc"
done
