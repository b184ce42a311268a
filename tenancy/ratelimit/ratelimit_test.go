package ratelimit_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/internal/redistest"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// checkTimeout bounds a Redis check in the tests that want Redis to decide
// (the default, 100 ms, is for production: a loaded test machine can stall
// that long, and the check would fall back).
const checkTimeout = 5 * time.Second

func placement(limits tenancy.Limits) *tenancy.Placement {
	return &tenancy.Placement{Tenant: tenancy.NewID(), Shard: &tenancy.Shard{Name: "s0"}, Schema: "s", Limits: limits}
}

// limiter is what both limiters offer.
type limiter interface {
	Allow(ctx context.Context, p *tenancy.Placement) error
}

// burstThenThrottle takes n units of p's budget, expecting each to pass,
// then one more that must be throttled with a plausible retry-after.
func burstThenThrottle(t *testing.T, l limiter, p *tenancy.Placement, n int, shared bool) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if err := l.Allow(ctx, p); err != nil {
			t.Fatalf("call %d of the burst: %v", i+1, err)
		}
	}
	err := l.Allow(ctx, p)
	if !errors.Is(err, ratelimit.ErrThrottled) {
		t.Fatalf("call after the burst: %v, want ErrThrottled", err)
	}
	var te *ratelimit.ThrottledError
	if !errors.As(err, &te) || te.Tenant != p.Tenant || te.Shared != shared {
		t.Fatalf("error = %#v", err)
	}
	interval := time.Duration(float64(time.Second) / p.Limits.RatePerSec)
	if ra := te.RetryAfter(); ra <= 0 || ra > interval {
		t.Fatalf("RetryAfter = %s, want in (0, %s]", ra, interval)
	}
	t.Log(err)
}

func TestLocal(t *testing.T) {
	l := ratelimit.NewLocal()
	limited := placement(tenancy.Limits{Plan: "free", RatePerSec: 2, Burst: 3})
	other := placement(tenancy.Limits{Plan: "free", RatePerSec: 2, Burst: 3})
	unlimited := placement(tenancy.Limits{})
	burstThenThrottle(t, l, limited, 3, false)
	// Others are unaffected.
	burstThenThrottle(t, l, other, 3, false)
	for range 1000 {
		if err := l.Allow(context.Background(), unlimited); err != nil {
			t.Fatal(err)
		}
	}
	// The bucket refills at the rate.
	time.Sleep(600 * time.Millisecond)
	if err := l.Allow(context.Background(), limited); err != nil {
		t.Fatalf("after refill: %v", err)
	}
}

// newClient returns a go-redis client that fails fast when the server is
// gone, as RedisOptions asks: without retries (a stopped local server
// refuses connections at once). Its timeouts are generous: a running
// server must answer, however busy the machine, or a test that wants
// Redis's decisions gets the fallback's.
func newClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: checkTimeout,
		ReadTimeout: checkTimeout, WriteTimeout: checkTimeout, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisSharedBudget: two limiters with two clients share one budget
// per tenant; other tenants keep theirs.
func TestRedisSharedBudget(t *testing.T) {
	srv := redistest.Start(t)
	l1 := ratelimit.NewRedis(newClient(t, srv.Addr()), ratelimit.RedisOptions{Timeout: checkTimeout})
	l2 := ratelimit.NewRedis(newClient(t, srv.Addr()), ratelimit.RedisOptions{Timeout: checkTimeout})
	p := placement(tenancy.Limits{Plan: "pro", RatePerSec: 1, Burst: 10})
	ctx := context.Background()
	for i := range 10 { // 5 units through each limiter
		l := []*ratelimit.Redis{l1, l2}[i%2]
		if err := l.Allow(ctx, p); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	for _, l := range []*ratelimit.Redis{l1, l2} {
		err := l.Allow(ctx, p)
		var te *ratelimit.ThrottledError
		if !errors.As(err, &te) || !te.Shared || te.RetryAfter() <= 0 || te.RetryAfter() > time.Second {
			t.Fatalf("11th call: %v, want a shared ThrottledError", err)
		}
	}
	other := placement(tenancy.Limits{Plan: "pro", RatePerSec: 1, Burst: 10})
	burstThenThrottle(t, l2, other, 10, true)
	for _, l := range []*ratelimit.Redis{l1, l2} {
		if s := l.Stats(); s.Down || s.Errors != 0 || s.FallbackCalls != 0 {
			t.Fatalf("stats = %+v", s)
		}
	}
}

// TestRedisSharedBudgetConcurrent: many goroutines on two limiters never
// get more than the budget in total.
func TestRedisSharedBudgetConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	ls := []*ratelimit.Redis{
		ratelimit.NewRedis(newClient(t, srv.Addr()), ratelimit.RedisOptions{Timeout: checkTimeout}),
		ratelimit.NewRedis(newClient(t, srv.Addr()), ratelimit.RedisOptions{Timeout: checkTimeout}),
	}
	p := placement(tenancy.Limits{RatePerSec: 0.001, Burst: 50}) // no refill during the test
	var allowed, throttled atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for range 20 {
				err := ls[i%2].Allow(context.Background(), p)
				switch {
				case err == nil:
					allowed.Add(1)
				case errors.Is(err, ratelimit.ErrThrottled):
					throttled.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 50 || throttled.Load() != 16*20-50 {
		t.Fatalf("allowed %d, throttled %d: want exactly 50 allowed", allowed.Load(), throttled.Load())
	}
}

// TestRedisFallback: with Redis stopped, no request fails because of it;
// the in-process fallback keeps limiting; when Redis is back, the shared
// budget is used again.
func TestRedisFallback(t *testing.T) {
	srv := redistest.Start(t)
	l := ratelimit.NewRedis(newClient(t, srv.Addr()), ratelimit.RedisOptions{Cooldown: 200 * time.Millisecond, Timeout: checkTimeout})
	ctx := context.Background()
	unlimitedRate := placement(tenancy.Limits{RatePerSec: 1e12, Burst: 1 << 30})
	if err := l.Allow(ctx, unlimitedRate); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	// A stream of requests over the cool-down and a probe or two: none fails.
	start := time.Now()
	n := 0
	for time.Since(start) < 500*time.Millisecond {
		if err := l.Allow(ctx, unlimitedRate); err != nil {
			t.Fatalf("request %d with Redis down: %v", n, err)
		}
		n++
	}
	s := l.Stats()
	if !s.Down || s.Errors == 0 || s.FallbackCalls == 0 {
		t.Fatalf("stats with Redis down = %+v", s)
	}
	t.Logf("%d requests in 500ms with Redis down, %d Redis errors (probes), %d fallback decisions", n, s.Errors, s.FallbackCalls)
	if s.Errors > 5 {
		t.Fatalf("%d Redis attempts in 500ms: the cool-down should limit probes", s.Errors)
	}
	// The fallback still limits.
	limited := placement(tenancy.Limits{RatePerSec: 1, Burst: 2})
	burstThenThrottle(t, l, limited, 2, false)

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// After the cool-down the next request probes Redis and succeeds.
	time.Sleep(250 * time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().Down {
		if time.Now().After(deadline) {
			t.Fatalf("still down after Redis came back: %+v", l.Stats())
		}
		if err := l.Allow(ctx, unlimitedRate); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Shared again: a fresh tenant's budget is in Redis.
	shared := placement(tenancy.Limits{RatePerSec: 1, Burst: 2})
	burstThenThrottle(t, l, shared, 2, true)
}

// TestThrottledThroughClient: through the generated client, the driver and
// the admission gate, tenant A over its rate gets ErrThrottled while C
// (same shard, another plan) is unaffected; with a shared Redis budget too.
func TestThrottledThroughClient(t *testing.T) {
	env := apptest.New(t)
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name string
		rl   admission.RateLimiter
	}{
		{"local", ratelimit.NewLocal()},
		{"redis", ratelimit.NewRedis(newClient(t, srv.Addr()), ratelimit.RedisOptions{Timeout: checkTimeout})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A token every 10 s: A must still be over its rate after C's
			// 50 queries, however long a loaded machine takes for them
			// (at 0.5/s, 2 s was the margin).
			free := tenancy.DefaultLimits
			free.Plan, free.RatePerSec, free.Burst = "free", 0.1, 5
			pa, err := tenancy.NewPlacement(apptest.A, env.Shards[0], apptest.SharedSchema, free)
			if err != nil {
				t.Fatal(err)
			}
			pc := env.Placements[apptest.C]
			gate := admission.New(admission.Config{RateLimiter: tc.rl})
			client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, pa, pc), tenancy.WithGate(gate))))
			ctxA, ctxC := apptest.Ctx(apptest.A), apptest.Ctx(apptest.C)
			for i := range 5 {
				if _, err := client.Customer.Query().Count(ctxA); err != nil {
					t.Fatalf("A, query %d: %v", i+1, err)
				}
			}
			_, err = client.Customer.Query().Count(ctxA)
			var te *ratelimit.ThrottledError
			if !errors.As(err, &te) || !errors.Is(err, ratelimit.ErrThrottled) || te.RetryAfter() <= 0 {
				t.Fatalf("A over its rate: %v, want ErrThrottled", err)
			}
			t.Log(err)
			for i := range 50 {
				if _, err := client.Customer.Query().Count(ctxC); err != nil {
					t.Fatalf("C, query %d: %v", i+1, err)
				}
			}
			if _, err := client.Customer.Query().Count(ctxA); !errors.Is(err, ratelimit.ErrThrottled) {
				t.Fatalf("A still over its rate: %v", err)
			}
		})
	}
}

// TestRedisDownThroughClient: with Redis stopped, the generated client's
// queries go on (none fails because of Redis) and the fallback still
// throttles the tenant over its rate, in process.
func TestRedisDownThroughClient(t *testing.T) {
	env := apptest.New(t)
	srv := redistest.Start(t)
	rl := ratelimit.NewRedis(newClient(t, srv.Addr()), ratelimit.RedisOptions{})
	free := tenancy.DefaultLimits
	free.Plan, free.RatePerSec, free.Burst = "free", 0.5, 5
	pa, err := tenancy.NewPlacement(apptest.A, env.Shards[0], apptest.SharedSchema, free)
	if err != nil {
		t.Fatal(err)
	}
	pro := tenancy.DefaultLimits
	pro.Plan, pro.RatePerSec, pro.Burst = "pro", 1000, 1000
	pc, err := tenancy.NewPlacement(apptest.C, env.Shards[0], apptest.C.SchemaName(), pro)
	if err != nil {
		t.Fatal(err)
	}
	gate := admission.New(admission.Config{RateLimiter: rl})
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, pa, pc), tenancy.WithGate(gate))))
	ctxA, ctxC := apptest.Ctx(apptest.A), apptest.Ctx(apptest.C)
	if _, err := client.Customer.Query().Count(ctxC); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	for i := range 100 {
		if _, err := client.Customer.Query().Count(ctxC); err != nil {
			t.Fatalf("C, query %d with Redis down: %v", i+1, err)
		}
	}
	t.Logf("100 queries of C with Redis down in %s", time.Since(start).Round(time.Millisecond))
	for i := range 5 {
		if _, err := client.Customer.Query().Count(ctxA); err != nil {
			t.Fatalf("A, query %d with Redis down: %v", i+1, err)
		}
	}
	var te *ratelimit.ThrottledError
	if _, err := client.Customer.Query().Count(ctxA); !errors.As(err, &te) || te.Shared {
		t.Fatalf("A over its rate with Redis down: %v, want an in-process ThrottledError", err)
	}
	if s := rl.Stats(); !s.Down || s.FallbackCalls < 100 {
		t.Fatalf("stats = %+v", s)
	}
}

func BenchmarkLocalAllow(b *testing.B) {
	l := ratelimit.NewLocal()
	p := placement(tenancy.Limits{RatePerSec: 1e12, Burst: 1 << 30})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Allow(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGateWithLocalLimiter: admission gate plus in-process limiter,
// uncontended: the whole Gate of the request path.
func BenchmarkGateWithLocalLimiter(b *testing.B) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: func(*tenancy.Shard) int { return 8 }, RateLimiter: ratelimit.NewLocal()})
	p := &tenancy.Placement{Tenant: tenancy.NewID(), Shard: shard, Limits: tenancy.Limits{MaxConns: 4, RatePerSec: 1e12, Burst: 1 << 30}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Enter(ctx, p); err != nil {
			b.Fatal(err)
		}
		g.Leave(p)
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	srv := redistest.Start(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	l := ratelimit.NewRedis(c, ratelimit.RedisOptions{})
	p := placement(tenancy.Limits{RatePerSec: 1e9, Burst: 1 << 30})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Allow(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}
