package provision_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
)

// BenchmarkProvision is the provisioning benchmark of BENCHMARKS.md. It is
// not part of go test ./... (benchmarks run only with -bench):
//
//	go test ./registry/provision -run '^$' -bench BenchmarkProvision -benchtime 1x -timeout 30m \
//		-provision.tenants 1000 -provision.spares 50 -provision.baseline-every 10
//
// It creates tenants of the example app through the registry
// (Store.CreateTenant: register, place on the least loaded of two shards,
// create the schema, activate), alternating in one run between
//
//   - fast: Provisioner without spares (the cached plan, one round trip);
//   - warm: Provisioner keeping -provision.spares spare schemas per shard
//     (a spare renamed; the spare replaced in the background, so the
//     refill's DDL competes for the same two cores);
//   - baseline, after every -provision.baseline-every fast tenants: today's
//     path, provision.ApplySchema (a connection and Desired.Apply per
//     tenant), at the same catalog size.
//
// -provision.tenants is the number of fast tenants, and of warm ones. It
// reports p50/p90/p99/max of each, end to end and of the schema step
// alone, then checks with a fleet plan that every schema is current.
var (
	benchTenants       = flag.Int("provision.tenants", 1000, "BenchmarkProvision: tenants provisioned by each of the fast and warm paths")
	benchSpares        = flag.Int("provision.spares", 50, "BenchmarkProvision: spare schemas per shard of the warm path (0: no warm path)")
	benchBaselineEvery = flag.Int("provision.baseline-every", 10, "BenchmarkProvision: one tenant the Desired.Apply way after every this many fast ones (0: none)")
)

func BenchmarkProvision(b *testing.B) {
	for range b.N {
		benchProvision(b)
	}
}

func benchProvision(b *testing.B) {
	ctx := b.Context()
	f := newFixture(b)
	slow := provision.ApplySchema(f.desired, f.roles)
	timed := func(apply registry.ApplyFunc, into *[]time.Duration) registry.ApplyFunc {
		return func(ctx context.Context, sh registry.Shard, schema string) error {
			start := time.Now()
			err := apply(ctx, sh, schema)
			*into = append(*into, time.Since(start))
			return err
		}
	}
	var fastE2E, fastSchema, warmE2E, warmSchema, slowE2E, slowSchema []time.Duration
	fastApply, slowApply := timed(f.prov.Apply, &fastSchema), timed(slow, &slowSchema)
	n, every, spares := *benchTenants, *benchBaselineEvery, *benchSpares
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	var warmApply registry.ApplyFunc
	var warm *provision.Provisioner
	if spares > 0 {
		var err error
		if warm, err = provision.New(f.desired, f.roles, provision.Options{Spares: spares}); err != nil {
			b.Fatal(err)
		}
		for _, sh := range []string{"s0", "s1"} {
			if _, err := warm.Warm(ctx, f.shards[sh]); err != nil {
				b.Fatal(err)
			}
		}
		warmApply = timed(warm.Apply, &warmSchema)
	}
	logf("provisioning %d tenants fast and %d warm (%d spares per shard), interleaved, and one baseline tenant every %d fast ones", n, n, spares, every)
	create := func(slug string, apply registry.ApplyFunc, into *[]time.Duration) {
		t0 := time.Now()
		if _, err := f.store.CreateTenant(ctx, registry.NewTenant{Slug: slug}, apply); err != nil {
			b.Fatal(err)
		}
		*into = append(*into, time.Since(t0))
	}
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		create(fmt.Sprintf("fast-%05d", i), fastApply, &fastE2E)
		if warmApply != nil {
			create(fmt.Sprintf("warm-%05d", i), warmApply, &warmE2E)
		}
		if every > 0 && i%every == every-1 {
			create(fmt.Sprintf("slow-%05d", i), slowApply, &slowE2E)
		}
		if (i+1)%200 == 0 {
			logf("%d/%d, last 200 fast p50 %s", i+1, n, pct(fastE2E[len(fastE2E)-200:], 50))
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()

	fmt.Fprintf(os.Stderr, "\n%-34s %6s %9s %9s %9s %9s %9s\n", "path", "n", "p50", "p90", "p99", "max", "mean")
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{
		{"fast: CreateTenant end to end", fastE2E},
		{"fast: schema step (Provisioner)", fastSchema},
		{"warm: CreateTenant end to end", warmE2E},
		{"warm: schema step (spare renamed)", warmSchema},
		{"baseline: CreateTenant end to end", slowE2E},
		{"baseline: schema step (Apply)", slowSchema},
	} {
		if len(r.d) == 0 {
			continue
		}
		fmt.Fprintf(os.Stderr, "%-34s %6d %9s %9s %9s %9s %9s\n", r.name, len(r.d), pct(r.d, 50), pct(r.d, 90), pct(r.d, 99), pct(r.d, 100), mean(r.d))
	}
	b.ReportMetric(ms(pct(fastE2E, 50)), "p50-ms")
	b.ReportMetric(ms(pct(fastE2E, 99)), "p99-ms")
	if len(warmE2E) > 0 {
		b.ReportMetric(ms(pct(warmE2E, 50)), "warm-p50-ms")
		b.ReportMetric(ms(pct(warmE2E, 99)), "warm-p99-ms")
	}
	if len(slowE2E) > 0 {
		b.ReportMetric(ms(pct(slowE2E, 50)), "baseline-p50-ms")
		b.ReportMetric(ms(pct(slowE2E, 99)), "baseline-p99-ms")
		fmt.Fprintf(os.Stderr, "speed-up of the fast path, end to end: p50 %.0fx, p99 %.0fx\n",
			float64(pct(slowE2E, 50))/float64(pct(fastE2E, 50)), float64(pct(slowE2E, 99))/float64(pct(fastE2E, 99)))
	}
	fmt.Fprintf(os.Stderr, "%d tenants in %s, sequential\n", len(fastE2E)+len(warmE2E)+len(slowE2E), elapsed.Round(time.Millisecond))
	if warmApply != nil {
		warm.Close() // stops refills
		claimed := 0
		for _, sh := range []string{"s0", "s1"} {
			claimed += f.count(b, sh, `SELECT count(*) FROM tenantry.schema_migrations WHERE statements = 1 AND schema_name NOT LIKE 'tenant\_spare\_%'`)
		}
		fmt.Fprintf(os.Stderr, "warm path: %d of %d schemas were spares (the others were created: no spare left)\n", claimed, len(warmE2E))
	}

	// Every schema is current for the fleet runner.
	pstart := time.Now()
	fl := f.fleet("s0", "s1")
	plan, err := fl.Plan(ctx, migrate.RunOptions{})
	if err != nil {
		b.Fatal(err)
	}
	total := len(fastE2E) + len(warmE2E) + len(slowE2E) // and the spares left
	if len(plan.UpToDate()) < total || plan.Changes() != 0 || len(plan.Drifted) != 0 {
		b.Fatalf("fleet plan: %d up to date, %d to change, %d drifted; want at least %d up to date and nothing else", len(plan.UpToDate()), plan.Changes(), len(plan.Drifted), total)
	}
	fmt.Fprintf(os.Stderr, "fleet plan afterwards: %d schemas (%d tenants' and %d spares) current, nothing to change (%s)\n",
		len(plan.UpToDate()), total, len(plan.UpToDate())-total, time.Since(pstart).Round(time.Millisecond))
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(min(i, len(s))-1, 0)].Round(10 * time.Microsecond)
}

func mean(d []time.Duration) time.Duration {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return (sum / time.Duration(len(d))).Round(10 * time.Microsecond)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
