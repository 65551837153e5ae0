#!/usr/bin/env bash
# make test-stress: run the test suite several times beside a CPU load, as
# on a busy CI machine, to show that no test depends on the machine's speed.
#
#   STRESS_RUNS    how many runs (default 3)
#   STRESS_LOAD    how many busy loops beside them (default 2: both cores of
#                  the CI machine)
#   STRESS_TARGET  the make target each run makes (default unit)
#   MAKE           the make to run it with
#
# It prints each run as it goes, then each run's duration and the tests
# that failed in it, and exits 1 if any run failed. The busy loops are
# stopped when it ends, however it ends (a failure, Ctrl-C, SIGTERM).
set -uo pipefail

runs=${STRESS_RUNS:-3}
load=${STRESS_LOAD:-2}
target=${STRESS_TARGET:-unit}
make=${MAKE:-make}

loops=()
logs=()
stop() {
	if [ ${#loops[@]} -gt 0 ]; then
		kill "${loops[@]}" 2>/dev/null
		wait "${loops[@]}" 2>/dev/null
	fi
	rm -f "${logs[@]}"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 1 "$load"); do
	sh -c 'while :; do :; done' &
	loops+=($!)
done

summary=()
failed=0
for run in $(seq 1 "$runs"); do
	echo "== test-stress run $run of $runs: $make $target beside $load busy loop(s)"
	log=$(mktemp)
	logs+=("$log")
	start=$SECONDS
	$make --no-print-directory "$target" 2>&1 | tee "$log"
	status=${PIPESTATUS[0]}
	took=$((SECONDS - start))
	if [ "$status" -eq 0 ]; then
		summary+=("run $run: passed in ${took}s")
		continue
	fi
	failed=$((failed + 1))
	# The failed tests (go test's --- FAIL lines) and the failed packages
	# (a build failure, a panic or a timeout ends a package with FAIL).
	tests=$(sed -nE 's/^ *--- FAIL: ([^ ]+).*/\1/p' "$log" | sort -u | tr '\n' ' ')
	pkgs=$(sed -nE 's/^FAIL\t([^ \t]+).*/\1/p' "$log" | sort -u | tr '\n' ' ')
	summary+=("run $run: FAILED (exit $status) in ${took}s; failed tests: ${tests:-none named}; failed packages: ${pkgs:-none}")
done

echo
echo "== test-stress: $runs run(s) of $make $target beside $load busy loop(s)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -gt 0 ]; then
	echo "== test-stress: $failed of $runs run(s) failed"
	exit 1
fi
echo "== test-stress: every run passed"
