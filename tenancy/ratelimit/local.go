package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/tenantry/tenantry/tenancy"
)

// ErrThrottled is wrapped by the *ThrottledError a limiter returns when a
// tenant has used up its rate: wait ThrottledError.RetryAfter before trying
// again, spread the calls out, or move the tenant to a plan with a higher
// RatePerSec or Burst.
var ErrThrottled = errors.New("tenancy/ratelimit: tenant throttled")

// ThrottledError says which tenant was throttled and when to retry.
// errors.Is(err, ErrThrottled) holds for it.
type ThrottledError struct {
	Tenant tenancy.ID
	Plan   string
	Rate   float64 // statements and transactions per second
	Burst  int
	Shared bool // the budget is shared across replicas (Redis)
	retry  time.Duration
}

func (e *ThrottledError) Error() string {
	where := "in this process"
	if e.Shared {
		where = "across replicas"
	}
	plan := e.Plan
	if plan == "" {
		plan = "(unnamed)"
	}
	return fmt.Sprintf("tenancy/ratelimit: tenant %s throttled: plan %s allows %g statements/s with bursts of %d (%s): retry after %s, or spread the calls out or raise the plan's rate",
		e.Tenant, plan, e.Rate, e.Burst, where, e.retry.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// RetryAfter is how long until the tenant may start one more statement.
func (e *ThrottledError) RetryAfter() time.Duration { return e.retry }

// burstOf returns the plan's burst, by default one second's worth.
func burstOf(l *tenancy.Limits) int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.RatePerSec)))
}

// Local is an in-process token bucket per tenant. It is safe for concurrent
// use and does not allocate once it has seen a tenant.
type Local struct {
	// scale multiplies every plan's rate and burst (a replica's share when
	// used as the fallback of Redis).
	scale float64
	now   func() int64
	parts [64]part
}

type part struct {
	mu      sync.Mutex
	buckets map[tenancy.ID]*bucket
	_       [48]byte // keep parts on their own cache lines
}

type bucket struct {
	tokens float64
	last   int64 // ns
}

var epoch = time.Now()

func monotonic() int64 { return int64(time.Since(epoch)) }

// NewLocal returns an in-process limiter enforcing each plan's rate.
func NewLocal() *Local { return newLocal(1, monotonic) }

func newLocal(scale float64, now func() int64) *Local {
	l := &Local{scale: scale, now: now}
	for i := range l.parts {
		l.parts[i].buckets = map[tenancy.ID]*bucket{}
	}
	return l
}

// Allow takes one token of p's tenant, or returns an error wrapping
// ErrThrottled.
func (l *Local) Allow(_ context.Context, p *tenancy.Placement) error {
	if p.Limits.RatePerSec <= 0 || p.Tenant.IsZero() {
		return nil
	}
	rate := p.Limits.RatePerSec * l.scale
	burst := max(float64(burstOf(&p.Limits))*l.scale, 1)
	pt := &l.parts[p.Tenant[15]%byte(len(l.parts))]
	now := l.now()
	pt.mu.Lock()
	b := pt.buckets[p.Tenant]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		pt.buckets[p.Tenant] = b
	}
	b.tokens = min(burst, b.tokens+float64(now-b.last)*rate/1e9)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		pt.mu.Unlock()
		return nil
	}
	need := (1 - b.tokens) / rate
	pt.mu.Unlock()
	return &ThrottledError{
		Tenant: p.Tenant, Plan: p.Limits.Plan, Rate: rate, Burst: int(burst),
		retry: time.Duration(need * 1e9),
	}
}

// Enter implements tenancy.Gate, for use without admission.Gate.
func (l *Local) Enter(ctx context.Context, p *tenancy.Placement) error { return l.Allow(ctx, p) }

// Leave implements tenancy.Gate; a rate limit has nothing to give back.
func (*Local) Leave(*tenancy.Placement) {}

var _ tenancy.Gate = (*Local)(nil)
