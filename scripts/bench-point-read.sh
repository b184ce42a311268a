#!/usr/bin/env bash
# Issue 2's figure: tenancy / ent_stdlib ns/op of BenchmarkPointRead and
# BenchmarkPointReadParallel, measured the way BENCHMARKS.md reports it.
# Every round is one test process that runs every variant once (a fresh
# cluster each time), so the variants of a round meet the same minutes of
# a machine whose speed drifts; `go test -count N` would instead repeat
# each variant N times in a row. It prints each round's ratios, then their
# median and the ratio of the variants' median ns/op, for both benchmarks.
#
#   scripts/bench-point-read.sh            # 8 rounds of 20000 reads per variant
#   ROUNDS=4 READS=10000 scripts/bench-point-read.sh
#   OUT=pr.txt scripts/bench-point-read.sh # also keep the raw lines (benchstat pr.txt)
#
# On a virtual machine whose guest halts idle vCPUs at once (cpuidle
# driver haltpoll with guest_halt_poll_ns = 0), the sequential figures
# carry the wake-up from a halt in every round trip, and most of the
# noise; BENCHMARKS.md ("Stop 13") measures it both ways.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-8}"
reads="${READS:-20000}"
out="${OUT:-$(mktemp)}"
bin="$(mktemp -d)/tenancy.test"
go test -c -o "$bin" ./tenancy
: >"$out"
for i in $(seq "$rounds"); do
  (cd tenancy && "$bin" -test.run '^$' -test.bench '^BenchmarkPointRead(Parallel)?$' \
    -test.benchtime "${reads}x" -test.benchmem) | grep -E '^(Benchmark|goos|goarch|pkg|cpu)' | tee -a "$out" |
    awk -v round="$i" '/^Benchmark/ { split($1, n, "/"); sub(/-[0-9]+$/, "", n[2]); ns[n[1] "/" n[2]] = $3 }
      END { printf "round %d: sequential %.3f  parallel %.3f\n", round,
        ns["BenchmarkPointRead/tenancy"] / ns["BenchmarkPointRead/ent_stdlib"],
        ns["BenchmarkPointReadParallel/tenancy"] / ns["BenchmarkPointReadParallel/ent_stdlib"] }'
done
awk '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  /^Benchmark/ {
    split($1, n, "/"); sub(/-[0-9]+$/, "", n[2]); k = n[1] "/" n[2]
    if (n[2] == "tenancy" || n[2] == "ent_stdlib") { c[k]++; v[k, c[k]] = $3 }
  }
  END {
    split("BenchmarkPointRead BenchmarkPointReadParallel", bs, " ")
    for (b = 1; b <= 2; b++) {
      t = bs[b] "/tenancy"; e = bs[b] "/ent_stdlib"
      for (i = 1; i <= c[t]; i++) { r[i] = v[t, i] / v[e, i]; tv[i] = v[t, i]; ev[i] = v[e, i] }
      printf "%-27s median of the rounds %.3f, ratio of the medians %.3f (%d rounds; target <= 1.15)\n",
        bs[b], median(r, c[t]), median(tv, c[t]) / median(ev, c[e]), c[t]
    }
  }' "$out"
