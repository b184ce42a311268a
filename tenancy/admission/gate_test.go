package admission_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
)

// placement builds a placement for gate-only tests: the gate reads Tenant,
// Shard and Limits, and never touches the pool.
func placement(shard *tenancy.Shard, limits tenancy.Limits) *tenancy.Placement {
	return &tenancy.Placement{Tenant: tenancy.NewID(), Shard: shard, Schema: "s", Limits: limits}
}

func fixedCapacity(n int) func(*tenancy.Shard) int { return func(*tenancy.Shard) int { return n } }

func TestUncontendedEnterLeave(t *testing.T) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: fixedCapacity(4)})
	p := placement(shard, tenancy.Limits{MaxConns: 2})
	ctx := context.Background()
	for range 2 {
		if err := g.Enter(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	st := g.Stats()
	if len(st) != 1 || st[0].InFlight != 2 || st[0].Tenants[0].InFlight != 2 || st[0].Tenants[0].MaxConns != 2 {
		t.Fatalf("stats = %+v", st)
	}
	g.Leave(p)
	g.Leave(p)
	if st := g.Stats(); st[0].InFlight != 0 || len(st[0].Tenants) != 0 {
		t.Fatalf("stats after leave = %+v", st)
	}
}

func TestTenantCapAndQueueTimeout(t *testing.T) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: fixedCapacity(10)})
	p := placement(shard, tenancy.Limits{MaxConns: 1, QueueTimeout: 30 * time.Millisecond, Plan: "free"})
	other := placement(shard, tenancy.Limits{MaxConns: 1})
	ctx := context.Background()
	if err := g.Enter(ctx, p); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := g.Enter(ctx, p)
	if !errors.Is(err, admission.ErrTenantBusy) {
		t.Fatalf("second Enter over the cap: %v, want ErrTenantBusy", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("gave up after %s, before the queue timeout", d)
	}
	var be *admission.BusyError
	if !errors.As(err, &be) || be.RetryAfter() <= 0 || be.Tenant != p.Tenant || be.Plan != "free" || be.Reason != "queue timeout" {
		t.Fatalf("error = %#v", err)
	}
	t.Log(err)
	// Another tenant is not affected.
	if err := g.Enter(ctx, other); err != nil {
		t.Fatalf("other tenant: %v", err)
	}
	g.Leave(other)

	// A waiter is admitted when the slot frees. It waits with the same
	// tenant and cap but a long queue timeout: with p's 30 ms, a loaded
	// machine could time it out before the slot is given back.
	patient := &tenancy.Placement{Tenant: p.Tenant, Shard: shard, Schema: p.Schema,
		Limits: tenancy.Limits{MaxConns: 1, QueueTimeout: 10 * time.Second, Plan: "free"}}
	done := make(chan error)
	go func() { done <- g.Enter(ctx, patient) }()
	waitQueued(t, g, 1)
	g.Leave(p)
	if err := <-done; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	g.Leave(patient)
	if st := g.Stats(); st[0].InFlight != 0 || st[0].Queued != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestMaxQueue(t *testing.T) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: fixedCapacity(1), MaxQueue: 1})
	p := placement(shard, tenancy.Limits{QueueTimeout: time.Second})
	ctx := context.Background()
	if err := g.Enter(ctx, p); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- g.Enter(ctx, p) }()
	waitQueued(t, g, 1)
	var be *admission.BusyError
	if err := g.Enter(ctx, p); !errors.As(err, &be) || be.Reason != "queue full" {
		t.Fatalf("Enter with a full queue: %v", err)
	}
	g.Leave(p)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	g.Leave(p)
}

func TestContextCancelledWhileQueued(t *testing.T) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: fixedCapacity(1)})
	p := placement(shard, tenancy.Limits{})
	if err := g.Enter(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Enter(ctx, p) }()
	waitQueued(t, g, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Enter = %v, want context.Canceled", err)
	}
	if st := g.Stats(); st[0].Queued != 0 || st[0].InFlight != 1 {
		t.Fatalf("stats = %+v", st)
	}
	g.Leave(p)
}

func waitQueued(t *testing.T, g *admission.Gate, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		q := 0
		for _, s := range g.Stats() {
			q += s.Queued
		}
		if q >= n {
			return
		}
	}
	t.Fatalf("fewer than %d waiters after 5s", n)
}

// TestFairQueue: with one slot and a tenant that queued 100 statements, a
// second tenant's statement is admitted at the next release, not after the
// 100.
func TestFairQueue(t *testing.T) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: fixedCapacity(1)})
	aggressor := placement(shard, tenancy.Limits{QueueTimeout: 10 * time.Second})
	victim := placement(shard, tenancy.Limits{QueueTimeout: 10 * time.Second})
	ctx := context.Background()
	if err := g.Enter(ctx, aggressor); err != nil {
		t.Fatal(err)
	}
	var order []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	admitted := make(chan struct{}, 200)
	enter := func(p *tenancy.Placement, name string) {
		defer wg.Done()
		if err := g.Enter(ctx, p); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		order = append(order, name)
		mu.Unlock()
		admitted <- struct{}{}
	}
	for range 100 {
		wg.Add(1)
		go enter(aggressor, "a")
	}
	waitQueued(t, g, 100)
	wg.Add(1)
	go enter(victim, "v")
	waitQueued(t, g, 101)
	// Release one at a time, in the admitted tenant's name.
	g.Leave(aggressor)
	for i := 0; i < 101; i++ {
		<-admitted
		mu.Lock()
		last := order[len(order)-1]
		mu.Unlock()
		if last == "v" {
			g.Leave(victim)
		} else {
			g.Leave(aggressor)
		}
	}
	wg.Wait()
	pos := -1
	for i, n := range order {
		if n == "v" {
			pos = i
		}
	}
	if pos < 0 || pos > 1 {
		t.Fatalf("victim admitted at position %d of %d, want 0 or 1", pos, len(order))
	}
}

// TestConnectionTimeFairness: two tenants with deep queues, one holding
// connections 10x longer per statement, get about the same connection time,
// not the same number of admissions.
func TestConnectionTimeFairness(t *testing.T) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: fixedCapacity(2), Quantum: 100 * time.Microsecond})
	slow := placement(shard, tenancy.Limits{QueueTimeout: 10 * time.Second})
	fast := placement(shard, tenancy.Limits{QueueTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	var busy [2]atomic.Int64
	var wg sync.WaitGroup
	for i, p := range []*tenancy.Placement{slow, fast} {
		hold := []time.Duration{5 * time.Millisecond, 500 * time.Microsecond}[i]
		for range 8 {
			wg.Go(func() {
				for ctx.Err() == nil {
					if err := g.Enter(ctx, p); err != nil {
						return
					}
					start := time.Now()
					time.Sleep(hold)
					busy[i].Add(int64(time.Since(start)))
					g.Leave(p)
				}
			})
		}
	}
	wg.Wait()
	s, f := time.Duration(busy[0].Load()), time.Duration(busy[1].Load())
	t.Logf("connection time: slow tenant %s, fast tenant %s", s, f)
	if ratio := float64(s) / float64(f); ratio > 2 || ratio < 0.5 {
		t.Fatalf("connection time ratio slow/fast = %.2f, want within [0.5, 2]", ratio)
	}
}

// TestStress checks the invariants under concurrency (run with -race):
// never more than the capacity in flight, never more than a tenant's cap.
func TestStress(t *testing.T) {
	shard := &tenancy.Shard{Name: "s0"}
	const capacity = 5
	g := admission.New(admission.Config{Capacity: fixedCapacity(capacity)})
	ps := make([]*tenancy.Placement, 6)
	for i := range ps {
		ps[i] = placement(shard, tenancy.Limits{MaxConns: 1 + i%3, QueueTimeout: time.Duration(1+i) * time.Millisecond})
	}
	var total atomic.Int64
	per := make([]atomic.Int64, len(ps))
	var admitted, busy, cancelled atomic.Int64
	var wg sync.WaitGroup
	for w := range 48 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 300 {
				i := r.IntN(len(ps))
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.IntN(3000))*time.Microsecond)
				err := g.Enter(ctx, ps[i])
				cancel()
				switch {
				case err == nil:
					admitted.Add(1)
					if n := total.Add(1); n > capacity {
						t.Errorf("%d in flight, capacity %d", n, capacity)
					}
					if n := per[i].Add(1); n > int64(ps[i].Limits.MaxConns) {
						t.Errorf("tenant %d: %d in flight, cap %d", i, n, ps[i].Limits.MaxConns)
					}
					time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond)
					per[i].Add(-1)
					total.Add(-1)
					g.Leave(ps[i])
				case errors.Is(err, admission.ErrTenantBusy):
					busy.Add(1)
				case errors.Is(err, context.DeadlineExceeded):
					cancelled.Add(1)
				default:
					t.Errorf("Enter: %v", err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("admitted %d, busy %d, cancelled %d", admitted.Load(), busy.Load(), cancelled.Load())
	for _, s := range g.Stats() {
		if s.InFlight != 0 || s.Queued != 0 || len(s.Tenants) != 0 {
			t.Fatalf("state left behind: %+v", s)
		}
	}
}

func TestUnscopedWithoutTenantPasses(t *testing.T) {
	g := admission.New(admission.Config{Capacity: fixedCapacity(1)})
	p := &tenancy.Placement{Shard: &tenancy.Shard{Name: "s0"}}
	for range 3 {
		if err := g.Enter(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		g.Leave(p)
	}
}

func BenchmarkEnterLeaveUncontended(b *testing.B) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: fixedCapacity(8)})
	p := placement(shard, tenancy.Limits{MaxConns: 4})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Enter(ctx, p); err != nil {
			b.Fatal(err)
		}
		g.Leave(p)
	}
}

// BenchmarkEnterLeaveParallel: many tenants, each goroutine under its cap
// (no waiting): the cost of the shard lock under parallel use.
func BenchmarkEnterLeaveParallel(b *testing.B) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: fixedCapacity(1 << 20)})
	ctx := context.Background()
	var n atomic.Int64
	ps := make([]*tenancy.Placement, 64)
	for i := range ps {
		ps[i] = placement(shard, tenancy.Limits{})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		p := ps[int(n.Add(1))%len(ps)]
		for pb.Next() {
			if err := g.Enter(ctx, p); err != nil {
				b.Fatal(err)
			}
			g.Leave(p)
		}
	})
}

// BenchmarkEnterLeaveContended: more goroutines than slots, every Enter of
// some of them waits; pooled waiters keep allocations low.
func BenchmarkEnterLeaveContended(b *testing.B) {
	shard := &tenancy.Shard{Name: "s0"}
	g := admission.New(admission.Config{Capacity: fixedCapacity(2)})
	ctx := context.Background()
	var n atomic.Int64
	ps := make([]*tenancy.Placement, 4)
	for i := range ps {
		ps[i] = placement(shard, tenancy.Limits{QueueTimeout: time.Minute})
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		p := ps[int(n.Add(1))%len(ps)]
		for pb.Next() {
			if err := g.Enter(ctx, p); err != nil {
				b.Fatal(err)
			}
			g.Leave(p)
		}
	})
}

// TestIdleStateSwept: the gate drops a pool's state on its own once the
// pool has been idle for IdleTTL (here a pool a router replaced), while
// statements keep entering other pools, and the pools still in use keep
// their counts under sweeps as frequent as they get.
func TestIdleStateSwept(t *testing.T) {
	g := admission.New(admission.Config{Capacity: fixedCapacity(4), IdleTTL: 5 * time.Millisecond})
	ctx := context.Background()
	replaced := placement(&tenancy.Shard{Name: "replaced"}, tenancy.Limits{})
	if err := g.Enter(ctx, replaced); err != nil {
		t.Fatal(err)
	}
	g.Leave(replaced)

	cur := &tenancy.Shard{Name: "cur"}
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	for range 8 {
		p := placement(cur, tenancy.Limits{MaxConns: 2})
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := g.Enter(ctx, p); err != nil {
					t.Error(err)
					return
				}
				g.Leave(p)
				if names := shardNames(g); !slices.Contains(names, "replaced") {
					return
				}
			}
			t.Error("the replaced pool's state was never swept")
		})
	}
	wg.Wait()
	for _, s := range g.Stats() {
		if s.InFlight != 0 || s.Queued != 0 {
			t.Fatalf("after every Leave: %+v", s)
		}
	}
}

func shardNames(g *admission.Gate) []string {
	var out []string
	for _, s := range g.Stats() {
		out = append(out, s.Shard)
	}
	return out
}
