package admission_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// countingLimiter counts the calls that reach the real limiter.
type countingLimiter struct {
	admission.RateLimiter
	calls atomic.Int64
}

func (c *countingLimiter) Allow(ctx context.Context, p *tenancy.Placement) error {
	c.calls.Add(1)
	return c.RateLimiter.Allow(ctx, p)
}

func TestCheckRepeatsTheLimitersRefusal(t *testing.T) {
	lim := &countingLimiter{RateLimiter: ratelimit.NewLocal()}
	g := admission.New(admission.Config{Capacity: fixedCapacity(4), RateLimiter: lim})
	shard := &tenancy.Shard{Name: "s0"}
	// 1/s: the refusal stands for a second, which the checks below need
	// to fit in even on a loaded machine (at 10/s it stood for 100 ms).
	noisy := placement(shard, tenancy.Limits{RatePerSec: 1, Burst: 2, Plan: "free"})
	quiet := placement(shard, tenancy.Limits{RatePerSec: 1, Burst: 2, Plan: "free"})
	ctx := context.Background()

	if err := g.Check(noisy.Tenant); err != nil {
		t.Fatalf("Check before any refusal: %v", err)
	}
	for range 2 {
		if err := g.Enter(ctx, noisy); err != nil {
			t.Fatal(err)
		}
		g.Leave(noisy)
	}
	err := g.Enter(ctx, noisy)
	var te *ratelimit.ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("third Enter at once: %v, want a ThrottledError", err)
	}
	calls := lim.calls.Load()

	if err := g.Check(noisy.Tenant); !errors.Is(err, ratelimit.ErrThrottled) {
		t.Fatalf("Check after the refusal: %v, want ErrThrottled", err)
	}
	if err := g.Enter(ctx, noisy); !errors.Is(err, ratelimit.ErrThrottled) {
		t.Fatalf("Enter while refused: %v, want ErrThrottled", err)
	}
	if got := lim.calls.Load(); got != calls {
		t.Fatalf("the limiter was asked %d more times while its refusal stood", got-calls)
	}
	if err := g.Check(quiet.Tenant); err != nil {
		t.Fatalf("Check of another tenant: %v", err)
	}
	if err := g.Enter(ctx, quiet); err != nil {
		t.Fatalf("Enter of another tenant: %v", err)
	}
	g.Leave(quiet)

	time.Sleep(te.RetryAfter() + 5*time.Millisecond)
	if err := g.Check(noisy.Tenant); err != nil {
		t.Fatalf("Check after the retry-after: %v", err)
	}
	if err := g.Enter(ctx, noisy); err != nil {
		t.Fatalf("Enter after the retry-after: %v", err)
	}
	g.Leave(noisy)
}

func TestCheckWithoutRateLimiter(t *testing.T) {
	g := admission.New(admission.Config{})
	if err := g.Check(tenancy.NewID()); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkCheck(b *testing.B) {
	g := admission.New(admission.Config{Capacity: fixedCapacity(4), RateLimiter: ratelimit.NewLocal()})
	shard := &tenancy.Shard{Name: "s0"}
	throttled := placement(shard, tenancy.Limits{RatePerSec: 0.001, Burst: 1})
	_ = g.Enter(context.Background(), throttled)
	g.Leave(throttled)
	if err := g.Enter(context.Background(), throttled); err == nil {
		b.Fatal("not throttled")
	}
	other := tenancy.NewID()
	b.Run("throttled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if g.Check(throttled.Tenant) == nil {
				b.Fatal("not refused")
			}
		}
	})
	b.Run("not_throttled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if g.Check(other) != nil {
				b.Fatal("refused")
			}
		}
	})
}
