package fleetbench_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/fleetbench"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
)

var (
	tpOwn     = flag.Int("fleetbench.own", 250, "BenchmarkFleetThroughput: tenants in schemas of their own")
	tpShared  = flag.Int("fleetbench.shared", 750, "BenchmarkFleetThroughput: tenants in shared schemas")
	tpSchemas = flag.Int("fleetbench.sharedschemas", 1, "BenchmarkFleetThroughput: shared schemas")
	tpSlice   = flag.Duration("fleetbench.slice", 10*time.Second, "BenchmarkFleetThroughput: length of one measured slice (whole seconds)")
	tpRounds  = flag.Int("fleetbench.rounds", 2, "BenchmarkFleetThroughput: interleaved rounds; each variant is measured rounds*slice")
	tpConfigs = flag.String("fleetbench.configs", "4x4,8x8,16x8,16x16", "BenchmarkFleetThroughput: tenantry configurations, goroutines x pool connections")
	tpClients = flag.Int("fleetbench.pgbench", 8, "BenchmarkFleetThroughput: pgbench -c (clients); -j is 2")
	tpModes   = flag.String("fleetbench.pgbench.modes", "simple,prepared", "BenchmarkFleetThroughput: pgbench -M query modes to measure (simple is pgbench -S's default; prepared is the stricter ceiling)")
	tpWrites  = flag.Float64("fleetbench.writes", 0.10, "BenchmarkFleetThroughput: share of small writes")
	tpCache   = flag.Int("fleetbench.stmtcache", 0, "BenchmarkFleetThroughput: prepared statements per connection (tenancy.WithStatementCacheSize; 0 keeps the driver's default)")
	tpWarmup  = flag.Duration("fleetbench.warmup", 30*time.Second, "BenchmarkFleetThroughput: unmeasured closed-loop run of each tenantry configuration before its first slice, long enough for every connection to hold a statement for every (schema, SQL) pair it meets (steady state; 2s measures a cold pool)")
)

type tpConfig struct{ goroutines, conns int }

func (c tpConfig) String() string { return fmt.Sprintf("%dx%d", c.goroutines, c.conns) }

func parseConfigs(tb testing.TB, s string) []tpConfig {
	var out []tpConfig
	for part := range strings.SplitSeq(s, ",") {
		g, m, ok := strings.Cut(strings.TrimSpace(part), "x")
		gn, err1 := strconv.Atoi(g)
		mn, err2 := strconv.Atoi(m)
		if !ok || err1 != nil || err2 != nil || gn <= 0 || mn <= 0 {
			tb.Fatalf("-fleetbench.configs: %q is not GOROUTINESxCONNS", part)
		}
		out = append(out, tpConfig{gn, mn})
	}
	return out
}

// tpResult accumulates one variant's measurements over the rounds.
type tpResult struct {
	name     string
	ops      int64
	writes   int64
	errors   int64
	firstErr error
	elapsed  time.Duration
	lat      fleetbench.Latencies
	tps      float64       // pgbench only: its own tps figures, weighted by duration
	cmd      string        // pgbench only: its command line
	client   time.Duration // CPU time of the client (this process, or pgbench)
	server   time.Duration // CPU time of the server processes
}

// cpuPerOp formats the client and server CPU time per operation, in µs.
func (r *tpResult) cpuPerOp() string {
	if r.ops == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f + %.0f", float64(r.client.Microseconds())/float64(r.ops), float64(r.server.Microseconds())/float64(r.ops))
}

// qps is the operations per second; for pgbench, its own "tps (without
// initial connection time)".
func (r *tpResult) qps() float64 {
	if r.tps > 0 {
		return r.tps / r.elapsed.Seconds()
	}
	return float64(r.ops) / r.elapsed.Seconds()
}

// tpRunner is one tenantry configuration: a pool of conns connections, the
// scoped driver with an admission gate (default plans: no caps, no rate
// limit) and one Ent client for every tenant of the fleet.
type tpRunner struct {
	cfg    tpConfig
	f      *fleetbench.Fleet
	w      *workload
	ctxs   []context.Context
	warm   bool
	warmup time.Duration
	close  func()
}

func newTPRunner(tb testing.TB, f *fleetbench.Fleet, cfg tpConfig, warmup time.Duration) *tpRunner {
	ctx := context.Background()
	pool, err := f.AppPool(ctx, int32(cfg.conns))
	if err != nil {
		tb.Fatal(err)
	}
	ps, err := f.Placements(&tenancy.Shard{Name: "fleet", Pool: pool}, func(int, *fleetbench.Tenant) tenancy.Limits { return tenancy.DefaultLimits })
	if err != nil {
		tb.Fatal(err)
	}
	opts := []tenancy.DriverOption{tenancy.WithGate(admission.New(admission.Config{}))}
	if *tpCache > 0 {
		opts = append(opts, tenancy.WithStatementCacheSize(*tpCache))
	}
	drv := tenancy.NewDriver(tenancy.NewStaticResolver(nil, ps...), opts...)
	client := ent.NewClient(ent.Driver(drv))
	return &tpRunner{cfg: cfg, f: f, w: newWorkload(client, *tpWrites), ctxs: tenantContexts(ctx, f), warmup: warmup, close: pool.Close}
}

// run drives the closed loop for d (after a warm-up on first use) and adds
// what it measured to r.
func (tr *tpRunner) run(r *tpResult, d time.Duration) {
	if !tr.warm {
		tr.loop(nil, tr.warmup)
		tr.warm = true
	}
	c0, s0 := fleetbench.SelfCPU(), serverCPU(tr.f)
	tr.loop(r, d)
	r.client += fleetbench.SelfCPU() - c0
	r.server += serverCPU(tr.f) - s0
}

// serverCPU is fleetbench.ServerCPU, 0 when unknown (external servers).
func serverCPU(f *fleetbench.Fleet) time.Duration {
	d, _ := fleetbench.ServerCPU(f.Cluster)
	return d
}

func (tr *tpRunner) loop(r *tpResult, d time.Duration) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for g := range tr.cfg.goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
			lat := make(fleetbench.Latencies, 0, 1<<14)
			var writes, errs int64
			var firstErr error
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				i := rng.IntN(len(tr.f.Tenants))
				write, err := tr.w.op(tr.ctxs[i], rng, &tr.f.Tenants[i])
				lat = append(lat, time.Since(t0))
				if write {
					writes++
				}
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
				}
			}
			if r == nil {
				return
			}
			mu.Lock()
			r.ops += int64(len(lat))
			r.writes += writes
			r.errors += errs
			if r.firstErr == nil {
				r.firstErr = firstErr
			}
			r.lat = append(r.lat, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if r != nil {
		r.elapsed += time.Since(start)
	}
}

// tpParams is one configuration of the throughput benchmark.
type tpParams struct {
	spec          fleetbench.Spec
	configs       []tpConfig
	clients       int      // pgbench -c
	modes         []string // pgbench -M
	scale         int      // pgbench -i -s
	slice, warmup time.Duration
	rounds        int
}

// measureThroughput runs pgbench and every tenantry configuration for
// p.slice each, p.rounds times, in an order rotated by one each round, so
// that all variants meet the same machine noise.
func measureThroughput(tb testing.TB, p tpParams) (pgs []*tpResult, res []*tpResult) {
	f := fleetFor(tb, p.spec)
	ctx := context.Background()
	start := time.Now()
	if err := fleetbench.InitPgbench(ctx, f.Cluster, p.scale); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("pgbench -i -s %d: %s", p.scale, time.Since(start).Round(100*time.Millisecond))
	runners := make([]*tpRunner, len(p.configs))
	res = make([]*tpResult, len(p.configs))
	for i, cfg := range p.configs {
		runners[i] = newTPRunner(tb, f, cfg, p.warmup)
		defer runners[i].close()
		res[i] = &tpResult{name: "tenantry " + cfg.String()}
	}
	for _, mode := range p.modes {
		pgs = append(pgs, &tpResult{name: fmt.Sprintf("pgbench -S -M %s -c %d", mode, p.clients)})
	}
	runPgbench := func(round, i int) {
		pg := pgs[i]
		s0 := serverCPU(f)
		pr, err := fleetbench.RunPgbench(ctx, f.Cluster, p.modes[i], p.clients, 2, p.slice)
		if err != nil {
			tb.Fatal(err)
		}
		pg.server += serverCPU(f) - s0
		pg.client += pr.ClientCPU
		pg.cmd = pr.Command
		pg.ops += pr.Transactions
		pg.tps += pr.TPS * pr.Duration.Seconds()
		pg.elapsed += pr.Duration
		pg.lat = append(pg.lat, pr.Latencies...)
		tb.Logf("round %d: %-26s %8.0f tps (pgbench's own figure; %d transactions logged)", round+1, pg.name, pr.TPS, len(pr.Latencies))
	}
	runTenantry := func(round, i int) {
		before, el := res[i].ops, res[i].elapsed
		runners[i].run(res[i], p.slice)
		tb.Logf("round %d: %-26s %8.0f ops/s", round+1, res[i].name, float64(res[i].ops-before)/(res[i].elapsed-el).Seconds())
	}
	n := len(pgs) + len(runners)
	for round := range p.rounds {
		for k := range n {
			if v := (k + round) % n; v < len(pgs) {
				runPgbench(round, v)
			} else {
				runTenantry(round, v-len(pgs))
			}
		}
	}
	for _, r := range append(pgs, res...) {
		r.lat.Sorted()
	}
	return pgs, res
}

func reportThroughput(logf func(string, ...any), p tpParams, pgs, res []*tpResult) {
	logf("fleet: %d tenants (%d in own schemas, %d in %d shared schemas), %.0f%% small writes; %d rounds x %s per variant",
		p.spec.Own+p.spec.Shared, p.spec.Own, p.spec.Shared, max(1, p.spec.SharedSchemas), 100**tpWrites, p.rounds, p.slice)
	for _, pg := range pgs {
		logf("  %s", pg.cmd)
	}
	head := fmt.Sprintf("%-26s %9s %8s %8s %8s", "variant", "QPS", "p50 ms", "p99 ms", "max ms")
	for i := range pgs {
		head += fmt.Sprintf(" %7s", fmt.Sprintf("/pgb%d", i+1))
	}
	logf("%s %-20s %s", head, "CPU µs/op cli+srv", "writes, errors")
	line := func(r *tpResult) string {
		out := fmt.Sprintf("%-26s %9.0f %8.2f %8.2f %8.2f", r.name, r.qps(), fleetbench.Ms(r.lat.Quantile(0.5)), fleetbench.Ms(r.lat.Quantile(0.99)), fleetbench.Ms(r.lat.Quantile(1)))
		for _, pg := range pgs {
			out += fmt.Sprintf(" %7.2f", r.qps()/pg.qps())
		}
		return out + fmt.Sprintf(" %-20s", r.cpuPerOp())
	}
	for _, pg := range pgs {
		logf("%s", line(pg))
	}
	for _, r := range res {
		logf("%s %d, %d", line(r), r.writes, r.errors)
	}
}

// BenchmarkFleetThroughput is issue 5's fleet throughput benchmark: a
// thousand tenants (own schemas and shared schemas on one shard) doing
// point reads and small writes through the scoped client in a closed loop,
// next to `pgbench -S` on the same cluster, interleaved slice by slice in
// the same run. Target: tenantry QPS ≥ 50% of pgbench's, with p99 < 10 ms.
//
//	go test ./internal/fleetbench -run '^$' -bench FleetThroughput -benchtime 1x -timeout 30m -v
func BenchmarkFleetThroughput(b *testing.B) {
	p := tpParams{
		spec:    fleetbench.Spec{Name: "fleet", Own: *tpOwn, Shared: *tpShared, SharedSchemas: *tpSchemas, Customers: 20},
		configs: parseConfigs(b, *tpConfigs),
		clients: *tpClients, modes: strings.Split(*tpModes, ","), scale: 10,
		slice: *tpSlice, warmup: *tpWarmup, rounds: *tpRounds,
	}
	for b.Loop() {
		p0 := fleetbench.ReadPressure()
		pgs, res := measureThroughput(b, p)
		reportThroughput(b.Logf, p, pgs, res)
		b.Logf("machine pressure during the run (share of time some task waited): %s", fleetbench.ReadPressure().Since(p0))
		for i, pg := range pgs {
			b.ReportMetric(pg.qps(), "pgbench-"+p.modes[i]+"-qps")
			b.ReportMetric(fleetbench.Ms(pg.lat.Quantile(0.99)), "pgbench-"+p.modes[i]+"-p99-ms")
		}
		for i, r := range res {
			if r.errors > 0 {
				b.Errorf("%s: %d errors, first: %v", r.name, r.errors, r.firstErr)
			}
			name := p.configs[i].String()
			b.ReportMetric(r.qps(), "qps-"+name)
			b.ReportMetric(fleetbench.Ms(r.lat.Quantile(0.99)), "p99-ms-"+name)
			for j, pg := range pgs {
				b.ReportMetric(r.qps()/pg.qps(), "ratio-"+name+"-vs-"+p.modes[j])
			}
		}
	}
}
