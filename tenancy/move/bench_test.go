package move_test

import (
	"context"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/move"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkCutoverWindow moves one tenant back and forth between two shards,
// one move per iteration (run it with -benchtime=20x or more), while a
// writer writes it through the router and a bystander tenant is served on
// each shard. It reports the write-unavailability window, from the
// registry fence to the router serving the target (router-ms), and to the
// registry flip (flip-ms), p50 and p99; and, interleaved, the baseline of
// the same router seeing a registry state change (notify-ms): the floor
// of any cutover through the registry.
func BenchmarkCutoverWindow(b *testing.B) {
	f := newFleet(b, twoShards(b)...)
	r := f.router(b)
	client := clientOf(r)
	tn := f.tenant(b, "s0")
	seed(b, client, tn.ID, 50)
	o0, o1 := f.tenant(b, "s0"), f.tenant(b, "s1")
	ctx, stop := context.WithCancel(context.Background())
	w := newWriter(client, tn.ID)
	var wg sync.WaitGroup
	wg.Go(func() { w.run(ctx) })
	errs := make(chan error, 2)
	for _, o := range []tenancy.ID{o0.ID, o1.ID} {
		wg.Go(func() { bystander(ctx, client, o, new(atomic.Int64), errs) })
	}
	var fenceAt time.Time
	m := f.mover(b, move.Config{CatchupLag: lagFromEnv(), OnPhase: func(_ context.Context, _ tenancy.ID, p move.Phase) error {
		if p == move.PhaseFence {
			fenceAt = time.Now()
		}
		return nil
	}})
	var router, flip, notify []time.Duration
	shards := []string{"s1", "s0"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Baseline: a registry state change, as the router sees it.
		start := time.Now()
		_, err := f.store.SetState(context.Background(), tn.ID, registry.ReadOnly)
		require.NoError(b, err)
		for p, err := r.Resolve(ctx, tn.ID); err != nil || !fenced(p); p, err = r.Resolve(ctx, tn.ID) {
			time.Sleep(100 * time.Microsecond)
		}
		notify = append(notify, time.Since(start))
		_, err = f.store.SetState(context.Background(), tn.ID, registry.Active)
		require.NoError(b, err)
		for p, err := r.Resolve(ctx, tn.ID); err != nil || fenced(p); p, err = r.Resolve(ctx, tn.ID) {
			time.Sleep(100 * time.Microsecond)
		}

		to := shards[i%2]
		seen := make(chan time.Time, 1)
		go func() { seen <- watchFlip(ctx, r, tn.ID, to) }()
		res, err := m.Move(context.Background(), move.Request{Tenant: tn.Slug, Shard: to})
		require.NoError(b, err)
		require.True(b, res.Verified)
		router = append(router, (<-seen).Sub(fenceAt))
		flip = append(flip, res.Window)
	}
	b.StopTimer()
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Errorf("a bystander saw an error: %v", err)
	}
	require.Empty(b, w.others)
	b.ReportMetric(ms(percentile(router, .5)), "router-p50-ms")
	b.ReportMetric(ms(percentile(router, .99)), "router-p99-ms")
	b.ReportMetric(ms(percentile(flip, .5)), "flip-p50-ms")
	b.ReportMetric(ms(percentile(flip, .99)), "flip-p99-ms")
	b.ReportMetric(ms(percentile(notify, .5)), "notify-p50-ms")
	b.ReportMetric(ms(percentile(notify, .99)), "notify-p99-ms")
	b.ReportMetric(float64(w.retryable)/float64(b.N), "refused-writes/move")
	b.Logf("%d moves; router-observed windows: %v", b.N, router)
}

func fenced(p *tenancy.Placement) bool { _, ok := p.Fenced(); return ok }

// BenchmarkCutoverWindowShared is BenchmarkCutoverWindow for tenants
// leaving a shared schema: each iteration moves a new shared tenant (50
// customers, a writer through the router) from s0 into its own schema on
// s1, while a neighbour in the same shared schema creates, updates and
// deletes rows and a bystander is served on s1.
func BenchmarkCutoverWindowShared(b *testing.B) {
	f := newFleet(b, twoShards(b)...)
	r := f.router(b)
	client := clientOf(r)
	nb, other := f.sharedTenant(b, "s0"), f.tenant(b, "s1")
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	var ops atomic.Int64
	wg.Go(func() { neighbour(ctx, client, nb.ID, &ops, errs) })
	wg.Go(func() { bystander(ctx, client, other.ID, &ops, errs) })
	var fenceAt time.Time
	m := f.mover(b, move.Config{OnPhase: func(_ context.Context, _ tenancy.ID, p move.Phase) error {
		if p == move.PhaseFence {
			fenceAt = time.Now()
		}
		return nil
	}})
	var router, flip []time.Duration
	refused := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tn := f.sharedTenant(b, "s0")
		seed(b, client, tn.ID, 50)
		wctx, wstop := context.WithCancel(ctx)
		w := newWriter(client, tn.ID)
		var ww sync.WaitGroup
		ww.Go(func() { w.run(wctx) })
		b.StartTimer()
		seen := make(chan time.Time, 1)
		go func() { seen <- watchFlip(ctx, r, tn.ID, "s1") }()
		res, err := m.Move(context.Background(), move.Request{Tenant: tn.Slug, Shard: "s1"})
		require.NoError(b, err)
		require.True(b, res.Verified)
		router = append(router, (<-seen).Sub(fenceAt))
		flip = append(flip, res.Window)
		b.StopTimer()
		wstop()
		ww.Wait()
		require.Empty(b, w.others)
		refused += w.retryable
	}
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Errorf("another tenant saw an error: %v", err)
	}
	b.ReportMetric(ms(percentile(router, .5)), "router-p50-ms")
	b.ReportMetric(ms(percentile(router, .99)), "router-p99-ms")
	b.ReportMetric(ms(percentile(flip, .5)), "flip-p50-ms")
	b.ReportMetric(ms(percentile(flip, .99)), "flip-p99-ms")
	b.ReportMetric(float64(refused)/float64(b.N), "refused-writes/move")
	b.Logf("%d moves; router-observed windows: %v", b.N, router)
}

// BenchmarkCopy moves a large tenant (TENANTRY_MOVE_BENCH_MB of customer
// rows, default 200) from s0 to s1 and reports the snapshot copy's MB/s
// (table bytes on the source over the copy phase), next to the baseline of
// one COPY TO | COPY FROM stream of the same rows between the same
// shards, measured in the same run.
func BenchmarkCopy(b *testing.B) {
	size := 200
	if v := os.Getenv("TENANTRY_MOVE_BENCH_MB"); v != "" {
		var err error
		size, err = strconv.Atoi(v)
		require.NoError(b, err)
	}
	f := newFleet(b, twoShards(b)...)
	ctx := context.Background()
	src, dst := f.super(b, "s0"), f.super(b, "s1")
	var moveMBs, baseMBs []float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tn := f.tenant(b, "s0")
		// ~330 bytes per row with its indexes' share left out.
		rows := size * 1_000_000 / 330
		_, err := src.Exec(ctx, `INSERT INTO `+pgx.Identifier{tn.Placement.Schema, "customers"}.Sanitize()+
			` (id, tenant_id, name, email, created_at)
			SELECT gen_random_uuid(), $1, 'customer ' || i || ' ' || md5(i::text) || md5((i+1)::text) || md5((i+2)::text) || md5((i+3)::text),
			'c' || i || '@example.com', now() FROM generate_series(1, $2) i`, tn.ID, rows)
		require.NoError(b, err)
		_, err = src.Exec(ctx, "VACUUM ANALYZE "+pgx.Identifier{tn.Placement.Schema, "customers"}.Sanitize())
		require.NoError(b, err)

		// Baseline: one COPY stream into a schema of the same shape.
		base := "bench_base_" + strconv.Itoa(i) + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
		require.NoError(b, f.apply(ctx, mustShard(b, f, "s1"), base))
		b.StartTimer()
		start := time.Now()
		pr, pw := io.Pipe()
		go func() {
			_, err := src.PgConn().CopyTo(ctx, pw, "COPY "+pgx.Identifier{tn.Placement.Schema, "customers"}.Sanitize()+" (id, tenant_id, name, email, created_at) TO STDOUT")
			pw.CloseWithError(err)
		}()
		_, err = dst.PgConn().CopyFrom(ctx, pr, "COPY "+pgx.Identifier{base, "customers"}.Sanitize()+" (id, tenant_id, name, email, created_at) FROM STDIN")
		require.NoError(b, err)
		baseDur := time.Since(start)

		res, err := f.mover(b, move.Config{}).Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
		require.NoError(b, err)
		b.StopTimer()
		require.True(b, res.Verified)
		moveMBs = append(moveMBs, float64(res.Bytes)/1e6/res.Copy.Seconds())
		baseMBs = append(baseMBs, float64(res.Bytes)/1e6/baseDur.Seconds())
		b.Logf("tenant of %.0f MB (%d rows): move copy %s (%.1f MB/s), baseline COPY stream %s (%.1f MB/s), window %s",
			float64(res.Bytes)/1e6, res.Rows, res.Copy.Round(time.Millisecond), moveMBs[i], baseDur.Round(time.Millisecond), baseMBs[i], res.Window)
		_, err = dst.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{base}.Sanitize()+" CASCADE")
		require.NoError(b, err)
		_, err = dst.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{tn.Placement.Schema}.Sanitize()+" CASCADE")
		require.NoError(b, err)
		_, err = src.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{res.Retired}.Sanitize()+" CASCADE")
		require.NoError(b, err)
	}
	b.ReportMetric(mean(moveMBs), "move-MB/s")
	b.ReportMetric(mean(baseMBs), "baseline-MB/s")
	b.ReportMetric(mean(moveMBs)/mean(baseMBs), "move/baseline")
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(max(len(xs), 1))
}

func mustShard(b *testing.B, f *fleet, name string) registry.Shard {
	sh, err := f.store.Shard(context.Background(), name)
	require.NoError(b, err)
	return sh
}

func lagFromEnv() int64 {
	n, _ := strconv.ParseInt(os.Getenv("TENANTRY_MOVE_BENCH_LAG"), 10, 64)
	return n
}
