package fleetbench_test

import (
	"testing"
	"time"

	"github.com/tenantry/tenantry/internal/fleetbench"
)

// TestNoisyNeighborFleetSmoke runs BenchmarkNoisyNeighborFleet's three
// phases briefly on a small fleet, to keep the benchmark working in
// `go test ./...`. It checks the mechanics (every request is accounted for,
// the aggressor is throttled in (c) and not in (b), no errors), not the
// figures: those need the benchmark's 20 s per phase.
func TestNoisyNeighborFleetSmoke(t *testing.T) {
	p := noisyFlags()
	p.name, p.own, p.shared = "smoke", 4, 2
	p.slice, p.warmup, p.rounds = 600*time.Millisecond, 200*time.Millisecond, 1
	p.orders = 2000
	e := newNoisyEnv(t, p)
	res := e.measure(t.Logf, "abc")
	e.report(t.Logf, res)
	victimOps := int(p.rate * float64(p.own+p.shared) * p.slice.Seconds())
	for i, r := range res {
		name := noisyPhases[i].name
		if len(r.victim) < victimOps*9/10 || len(r.victim) > victimOps*11/10+len(e.victims) {
			t.Errorf("%s: %d victim operations measured, want about %d", name, len(r.victim), victimOps)
		}
		if r.victimErrs > 0 || r.aggErrs > 0 {
			t.Errorf("%s: %d victim errors (first: %v), %d aggressor errors (first: %v)", name, r.victimErrs, r.firstErr, r.aggErrs, r.aggFirstErr)
		}
		if got := r.completed + r.throttled + r.busy + r.shed + r.timeouts + r.aggErrs; got != r.offered {
			t.Errorf("%s: aggressor requests offered %d, accounted for %d", name, r.offered, got)
		}
	}
	if res[0].offered != 0 {
		t.Errorf("(a) ran the aggressor")
	}
	if res[1].completed == 0 || res[1].throttled != 0 {
		t.Errorf("(b): aggressor completed %d, throttled %d; want some completed, none throttled", res[1].completed, res[1].throttled)
	}
	if res[2].throttled == 0 {
		t.Errorf("(c): the aggressor at %gx was never throttled", p.factor)
	}
}

// TestFleetThroughputSmoke runs BenchmarkFleetThroughput briefly on a small
// fleet: pgbench's output and logs parse, the scoped client serves every
// tenant without errors.
func TestFleetThroughputSmoke(t *testing.T) {
	p := tpParams{
		spec:    fleetbench.Spec{Name: "tpsmoke", Own: 3, Shared: 3, SharedSchemas: 1, Customers: 5},
		configs: []tpConfig{{4, 4}},
		clients: 4, modes: []string{"simple", "prepared"}, scale: 1,
		slice: time.Second, warmup: 200 * time.Millisecond, rounds: 1,
	}
	pgs, res := measureThroughput(t, p)
	reportThroughput(t.Logf, p, pgs, res)
	for _, pg := range pgs {
		if pg.ops == 0 || len(pg.lat) == 0 || pg.lat.Quantile(0.99) <= 0 {
			t.Errorf("%s: %d transactions, %d latencies", pg.name, pg.ops, len(pg.lat))
		}
	}
	for _, r := range res {
		if r.ops == 0 || r.errors > 0 {
			t.Errorf("%s: %d operations, %d errors (first: %v)", r.name, r.ops, r.errors, r.firstErr)
		}
		if r.writes == 0 {
			t.Errorf("%s: no writes among %d operations", r.name, r.ops)
		}
	}
}
