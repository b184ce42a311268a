package admission

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenantry/tenantry/tenancy"
)

// retryAfter is implemented by the rate limiter's errors
// (ratelimit.ThrottledError).
type retryAfter interface{ RetryAfter() time.Duration }

// refusals remembers, per tenant, until when the rate limiter refuses it,
// so that Check can turn a throttled tenant away before the application
// builds its query, and Enter can do so without asking the limiter again
// (which, for a shared Redis limiter, is a network round trip).
type refusals struct {
	parts [32]refusalPart
}

type refusalPart struct {
	n  atomic.Int32 // len(m), read without the lock
	mu sync.Mutex
	m  map[tenancy.ID]refusal
	_  [36]byte // keep parts on their own cache lines
}

type refusal struct {
	until int64 // nanotime
	err   error // the limiter's error, returned again until then
}

func (r *refusals) part(id tenancy.ID) *refusalPart {
	return &r.parts[id[15]%byte(len(r.parts))]
}

// note records the limiter's refusal of id, if it says for how long.
func (r *refusals) note(id tenancy.ID, err error, now int64) {
	ra, ok := err.(retryAfter)
	if !ok || ra.RetryAfter() <= 0 {
		return
	}
	pt := r.part(id)
	pt.mu.Lock()
	if pt.m == nil {
		pt.m = map[tenancy.ID]refusal{}
	}
	pt.m[id] = refusal{until: now + int64(ra.RetryAfter()), err: err}
	pt.n.Store(int32(len(pt.m)))
	pt.mu.Unlock()
}

// get returns the refusal of id still in force at now, or nil.
func (r *refusals) get(id tenancy.ID, now int64) error {
	pt := r.part(id)
	if pt.n.Load() == 0 {
		return nil
	}
	pt.mu.Lock()
	f, ok := pt.m[id]
	if ok && now >= f.until {
		delete(pt.m, id)
		pt.n.Store(int32(len(pt.m)))
		ok = false
	}
	pt.mu.Unlock()
	if !ok {
		return nil
	}
	return f.err
}

// sweep drops the refusals that have expired at now.
func (r *refusals) sweep(now int64) {
	for i := range r.parts {
		pt := &r.parts[i]
		if pt.n.Load() == 0 {
			continue
		}
		pt.mu.Lock()
		for id, f := range pt.m {
			if now >= f.until {
				delete(pt.m, id)
			}
		}
		pt.n.Store(int32(len(pt.m)))
		pt.mu.Unlock()
	}
}

// Check returns the rate limiter's error if tenant was throttled and the
// retry-after it was given has not passed yet, and nil otherwise. It costs
// a map lookup and allocates nothing: call it in middleware, before
// building the request's queries, so that a tenant over its rate is turned
// away for a fraction of what running its request up to the driver costs
// (BenchmarkThrottledRequest in internal/fleetbench measures both). Check
// only repeats refusals the limiter made; Enter still applies every limit.
func (g *Gate) Check(tenant tenancy.ID) error {
	if g.cfg.RateLimiter == nil || tenant.IsZero() {
		return nil
	}
	return g.refused.get(tenant, nanotime())
}
