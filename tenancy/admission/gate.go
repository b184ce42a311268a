package admission

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenantry/tenantry/tenancy"
)

// RateLimiter is consulted by Enter before a tenant queues for a slot. It
// returns nil or a typed error (tenancy/ratelimit's ErrThrottled); it must
// not allocate when it allows.
type RateLimiter interface {
	Allow(ctx context.Context, p *tenancy.Placement) error
}

// Observer is told what the gate decides, for metrics (tenancy/metrics).
// Its methods run on the request path, some under the shard's lock: they
// must be fast, must not block and must not call back into the gate.
type Observer interface {
	// Admitted: p's statement or transaction may take a connection after
	// waiting wait in the queue (0 when it did not queue).
	Admitted(p *tenancy.Placement, wait time.Duration)
	// Rejected: Enter failed with err (ErrTenantBusy, the rate limiter's
	// error or the context's) after waiting wait.
	Rejected(p *tenancy.Placement, err error, wait time.Duration)
	// Released: p's statement or transaction gave its connection back.
	Released(p *tenancy.Placement)
}

// Config configures a Gate. The zero value is usable.
type Config struct {
	// Capacity returns how many statements and transactions may hold
	// connections of the shard's pool s.Pool at once. Default: that pool's
	// MaxConns, read once per pool. Other users of the same pool must be
	// counted in. The driver admits replica reads and Unscoped work with
	// the replica or admin pool as s.Pool (tenancy.Gate): tell the pools
	// apart by s.Pool, not by s.Name, which they share.
	Capacity func(*tenancy.Shard) int
	// DefaultMaxConns caps the connections of a tenant whose plan sets no
	// MaxConns. 0: no cap beyond the shard's capacity (fairness still holds).
	DefaultMaxConns int
	// DefaultQueueTimeout bounds the wait of a tenant whose plan sets no
	// QueueTimeout. 0: 5 s. The context's deadline applies too.
	DefaultQueueTimeout time.Duration
	// MaxQueue is how many statements of one tenant may wait on one shard;
	// more fail at once with ErrTenantBusy. 0: no limit.
	MaxQueue int
	// Quantum is the connection time a waiting tenant earns per round of
	// the fair queue. 0: 1 ms. It only sets the granularity of fairness.
	Quantum time.Duration
	// RateLimiter, when set, runs before the queue.
	RateLimiter RateLimiter
	// Observer, when set, is told every decision.
	Observer Observer
	// IdleTTL is how long the gate keeps the state of a tenant on a pool,
	// and of a pool, after its last statement left. 0: 10 minutes. Dropped
	// state is rebuilt on the next statement; what is lost is the tenant's
	// recent connection hold times, which a tenant idle that long no longer
	// has. This bounds the gate's memory by the tenants and pools in recent
	// use: a fleet's tenants come and go, and a router replaces a shard's
	// pools at every failover.
	IdleTTL time.Duration
}

// Gate is the admission controller of a set of shards. It implements
// tenancy.Gate and is safe for concurrent use. Placements without a tenant
// (Unscoped contexts that name none; they run on the admin pool) pass
// without admission.
type Gate struct {
	cfg       Config
	quantum   int64
	shards    sync.Map // keyOf(*tenancy.Shard) -> *shard
	mu        sync.Mutex
	refused   refusals
	nextSweep atomic.Int64 // nanotime after which Enter starts a sweep
}

var _ tenancy.Gate = (*Gate)(nil)

// New returns a gate.
func New(cfg Config) *Gate {
	if cfg.DefaultQueueTimeout <= 0 {
		cfg.DefaultQueueTimeout = 5 * time.Second
	}
	if cfg.Quantum <= 0 {
		cfg.Quantum = time.Millisecond
	}
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = 10 * time.Minute
	}
	g := &Gate{cfg: cfg, quantum: int64(cfg.Quantum)}
	g.nextSweep.Store(nanotime() + int64(cfg.IdleTTL)/2)
	return g
}

// ErrTenantBusy is wrapped by the *BusyError that Enter returns when a
// tenant's statement could not get a connection slot in time: the tenant
// runs as many statements as its plan allows, or the shard is saturated.
// Retry after BusyError.RetryAfter, make fewer concurrent calls, or raise
// the plan's MaxConns or QueueTimeout.
var ErrTenantBusy = errors.New("tenancy/admission: tenant busy")

// ErrWaitCancelled is wrapped, with the context's error, by the error of
// Enter when the caller's context ended while its statement waited for a
// slot: the statement never ran.
var ErrWaitCancelled = errors.New("tenancy/admission: cancelled while waiting for a connection slot")

// BusyError says why a tenant was not admitted. errors.Is(err,
// ErrTenantBusy) holds for it.
type BusyError struct {
	Tenant   tenancy.ID
	Shard    string
	Pool     string // of the shard: PoolPrimary, PoolReplica or PoolAdmin
	Plan     string
	Reason   string        // "queue timeout" or "queue full"
	InFlight int           // the tenant's statements running on the pool
	MaxConns int           // the tenant's cap on the pool
	Queued   int           // the tenant's statements waiting for the pool
	Waited   time.Duration // how long this one waited
	retry    time.Duration
}

func (e *BusyError) Error() string {
	pool := ""
	if e.Pool != "" && e.Pool != PoolPrimary {
		pool = " " + e.Pool + " pool"
	}
	return fmt.Sprintf("tenancy/admission: tenant %s busy on shard %q%s (%s): %d of %d connections in use, %d waiting, waited %s: retry after %s, make fewer concurrent calls or raise the plan's MaxConns/QueueTimeout",
		e.Tenant, e.Shard, pool, e.Reason, e.InFlight, e.MaxConns, e.Queued, e.Waited.Round(time.Microsecond), e.retry.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrTenantBusy) true.
func (e *BusyError) Is(target error) bool { return target == ErrTenantBusy }

// RetryAfter is how long the caller should wait before trying again (an
// estimate from the tenant's recent connection hold times).
func (e *BusyError) RetryAfter() time.Duration { return e.retry }

// epoch anchors the monotonic clock of the gate.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// shard is the admission state of one shard.
type shard struct {
	name     string
	pool     string // which of the shard's pools: PoolPrimary, PoolReplica or PoolAdmin
	mu       sync.Mutex
	capacity int
	inflight int
	queued   int
	tenants  map[tenancy.ID]*tenant
	ring     *tenant // next tenant to visit in the ring of tenants with waiters
	nactive  int
	lastUsed int64 // nanotime of the last admission or release
	dropped  bool  // swept out of Gate.shards: look the pool up again
}

// tenant is the admission state of one tenant on one shard.
type tenant struct {
	id       tenancy.ID
	cap      int
	inflight int

	head, tail *waiter // FIFO of this tenant's waiters
	qlen       int

	// ring of tenants with waiters
	next, prev *tenant
	active     bool
	deficit    int64 // connection time (ns) the tenant may still spend this round

	// connection time accounting, for the cost of an admission
	busy       int64 // ∫ inflight dt (ns), decayed
	done       int64 // completions, decayed alongside busy
	lastChange int64
}

type waiter struct {
	t          *tenant
	next, prev *waiter
	ready      chan struct{}
	timer      *time.Timer
	admitted   bool
}

var waiterPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{ready: make(chan struct{}, 1), timer: t}
}}

// keyOf identifies the admission state of a shard by its pool, which the
// connections come from: a router that rebuilds Shard values for the same
// pool keeps one state, and one capacity.
func keyOf(s *tenancy.Shard) any {
	if s.Pool != nil {
		return s.Pool
	}
	return s
}

func (g *Gate) shardOf(s *tenancy.Shard) *shard {
	key := keyOf(s)
	if v, ok := g.shards.Load(key); ok {
		return v.(*shard)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.shards.Load(key); ok {
		return v.(*shard)
	}
	capacity := 0
	if g.cfg.Capacity != nil {
		capacity = g.cfg.Capacity(s)
	} else if s.Pool != nil {
		capacity = int(s.Pool.Config().MaxConns)
	}
	sh := &shard{name: s.Name, pool: poolKind(s), capacity: max(capacity, 1), tenants: map[tenancy.ID]*tenant{}, lastUsed: nanotime()}
	g.shards.Store(key, sh)
	return sh
}

// lockShard returns the state of s's pool, locked and still in g.shards.
func (g *Gate) lockShard(s *tenancy.Shard) *shard {
	for {
		sh := g.shardOf(s)
		sh.mu.Lock()
		if !sh.dropped {
			return sh
		}
		sh.mu.Unlock()
	}
}

// maybeSweep starts a sweep when one is due, at most every IdleTTL/2.
func (g *Gate) maybeSweep(now int64) {
	next := g.nextSweep.Load()
	if now < next || !g.nextSweep.CompareAndSwap(next, now+int64(g.cfg.IdleTTL)/2) {
		return
	}
	go g.sweep(now)
}

// sweep drops the state of tenants and pools idle for longer than IdleTTL
// at now, and the rate limiter's refusals that have expired. State with
// statements running or waiting is never dropped, so that every Leave finds
// the state its Enter counted in.
func (g *Gate) sweep(now int64) {
	idle := int64(g.cfg.IdleTTL)
	g.shards.Range(func(k, v any) bool {
		sh := v.(*shard)
		sh.mu.Lock()
		for id, t := range sh.tenants {
			if t.inflight == 0 && t.qlen == 0 && now-t.lastChange > idle {
				delete(sh.tenants, id)
			}
		}
		if sh.inflight == 0 && sh.queued == 0 && now-sh.lastUsed > idle {
			sh.dropped = true
			g.shards.CompareAndDelete(k, v)
		}
		sh.mu.Unlock()
		return true
	})
	g.refused.sweep(now)
}

func (g *Gate) capOf(p *tenancy.Placement, sh *shard) int {
	c := p.Limits.MaxConns
	if c <= 0 {
		c = g.cfg.DefaultMaxConns
	}
	if c <= 0 || c > sh.capacity {
		c = sh.capacity
	}
	return c
}

// Enter implements tenancy.Gate: it returns when p's statement or
// transaction may take a connection, or with an error wrapping
// ErrTenantBusy, the rate limiter's error or the context's.
func (g *Gate) Enter(ctx context.Context, p *tenancy.Placement) error {
	if p.Tenant.IsZero() {
		return nil
	}
	if g.cfg.RateLimiter != nil {
		now := nanotime()
		err := g.refused.get(p.Tenant, now)
		if err == nil {
			if err = g.cfg.RateLimiter.Allow(ctx, p); err != nil {
				g.refused.note(p.Tenant, err, now)
			}
		}
		if err != nil {
			if g.cfg.Observer != nil {
				g.cfg.Observer.Rejected(p, err, 0)
			}
			return err
		}
	}
	sh := g.lockShard(p.Shard)
	now := nanotime()
	t := sh.tenants[p.Tenant]
	if t == nil {
		t = &tenant{id: p.Tenant, lastChange: now}
		sh.tenants[p.Tenant] = t
	}
	oldCap := t.cap
	t.cap = g.capOf(p, sh)
	if t.qlen == 0 && t.inflight < t.cap && sh.inflight < sh.capacity {
		sh.admit(t, now)
		if g.cfg.Observer != nil {
			g.cfg.Observer.Admitted(p, 0)
		}
		sh.mu.Unlock()
		g.maybeSweep(now)
		return nil
	}
	if g.cfg.MaxQueue > 0 && t.qlen >= g.cfg.MaxQueue {
		err := g.busy(sh, t, p, "queue full", 0)
		sh.mu.Unlock()
		if g.cfg.Observer != nil {
			g.cfg.Observer.Rejected(p, err, 0)
		}
		return err
	}
	w := waiterPool.Get().(*waiter)
	w.t, w.admitted = t, false
	sh.enqueue(t, w)
	if t.cap > oldCap {
		sh.dispatch(g.quantum, nanotime())
	}
	sh.mu.Unlock()

	start := nanotime()
	timeout := p.Limits.QueueTimeout
	if timeout <= 0 {
		timeout = g.cfg.DefaultQueueTimeout
	}
	w.timer.Reset(timeout)
	var cause error
	select {
	case <-w.ready:
	case <-w.timer.C:
	case <-ctx.Done():
		cause = ctx.Err()
	}
	w.timer.Stop()
	waited := time.Duration(nanotime() - start)

	sh.mu.Lock()
	var err error
	switch {
	case w.admitted && cause == nil:
	case w.admitted: // admitted as the context ended: give the slot back
		sh.release(t, nanotime())
		sh.dispatch(g.quantum, nanotime())
		err = fmt.Errorf("%w on shard %q: %w", ErrWaitCancelled, sh.name, cause)
	default:
		sh.dequeue(w)
		if cause != nil {
			err = fmt.Errorf("%w on shard %q: %w", ErrWaitCancelled, sh.name, cause)
		} else {
			err = g.busy(sh, t, p, "queue timeout", waited)
		}
	}
	if w.admitted {
		select { // the signal was sent under the lock; drain it before reuse
		case <-w.ready:
		default:
		}
	}
	w.t = nil
	waiterPool.Put(w)
	if g.cfg.Observer != nil {
		if err == nil {
			g.cfg.Observer.Admitted(p, waited)
		} else {
			g.cfg.Observer.Rejected(p, err, waited)
		}
	}
	sh.mu.Unlock()
	return err
}

// Leave implements tenancy.Gate.
func (g *Gate) Leave(p *tenancy.Placement) {
	if p.Tenant.IsZero() {
		return
	}
	v, ok := g.shards.Load(keyOf(p.Shard))
	if !ok {
		return
	}
	sh := v.(*shard)
	sh.mu.Lock()
	if t := sh.tenants[p.Tenant]; t != nil && t.inflight > 0 {
		now := nanotime()
		sh.release(t, now)
		sh.dispatch(g.quantum, now)
	}
	if g.cfg.Observer != nil {
		g.cfg.Observer.Released(p)
	}
	sh.mu.Unlock()
}

// busy builds the error for a tenant that cannot be admitted. Called with
// sh.mu held.
func (g *Gate) busy(sh *shard, t *tenant, p *tenancy.Placement, reason string, waited time.Duration) error {
	retry := time.Duration(t.cost()) * time.Duration(t.qlen+1) / time.Duration(max(t.cap, 1))
	retry = min(max(retry, 10*time.Millisecond), 5*time.Second)
	return &BusyError{
		Tenant: t.id, Shard: sh.name, Pool: sh.pool, Plan: p.Limits.Plan, Reason: reason,
		InFlight: t.inflight, MaxConns: t.cap, Queued: t.qlen, Waited: waited, retry: retry,
	}
}

// account adds the connection time spent since the last change.
func (t *tenant) account(now int64) {
	t.busy += int64(t.inflight) * (now - t.lastChange)
	t.lastChange = now
}

// cost is the tenant's recent average connection hold time per admission.
func (t *tenant) cost() int64 {
	if t.done == 0 {
		return int64(time.Millisecond)
	}
	return max(t.busy/t.done, 1)
}

func (sh *shard) admit(t *tenant, now int64) {
	sh.lastUsed = now
	t.account(now)
	t.inflight++
	sh.inflight++
}

func (sh *shard) release(t *tenant, now int64) {
	sh.lastUsed = now
	t.account(now)
	t.inflight--
	sh.inflight--
	t.done++
	if t.done >= 64 { // exponential decay: recent behaviour counts most
		t.done /= 2
		t.busy /= 2
	}
}

func (sh *shard) enqueue(t *tenant, w *waiter) {
	w.next, w.prev = nil, t.tail
	if t.tail != nil {
		t.tail.next = w
	} else {
		t.head = w
	}
	t.tail = w
	t.qlen++
	sh.queued++
	if !t.active {
		t.active = true
		t.deficit = 0
		if sh.ring == nil {
			t.next, t.prev = t, t
			sh.ring = t
		} else { // at the end of the current round
			last := sh.ring.prev
			t.prev, t.next = last, sh.ring
			last.next = t
			sh.ring.prev = t
		}
		sh.nactive++
	}
}

// dequeue unlinks a waiter that gave up.
func (sh *shard) dequeue(w *waiter) {
	t := w.t
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		t.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		t.tail = w.prev
	}
	w.next, w.prev = nil, nil
	t.qlen--
	sh.queued--
	if t.qlen == 0 {
		sh.deactivate(t)
	}
}

func (sh *shard) deactivate(t *tenant) {
	if !t.active {
		return
	}
	t.active = false
	t.deficit = 0
	sh.nactive--
	if sh.nactive == 0 {
		sh.ring = nil
	} else {
		t.prev.next = t.next
		t.next.prev = t.prev
		if sh.ring == t {
			sh.ring = t.next
		}
	}
	t.next, t.prev = nil, nil
}

// dispatch admits waiters while slots are free, by deficit round robin
// over the tenants with waiters: visiting a tenant under its cap, it
// admits while the tenant's deficit covers its cost, then moves on. When no
// eligible tenant can pay, every eligible tenant earns the fewest whole
// quanta that lets one of them pay (the rounds in which nothing would
// happen are skipped at once).
func (sh *shard) dispatch(quantum, now int64) {
	for sh.inflight < sh.capacity && sh.nactive > 0 {
		t := sh.ring
		var paid *tenant
		rounds := int64(-1)
		for range sh.nactive {
			if t.inflight < t.cap {
				c := t.cost()
				if t.deficit >= c {
					paid = t
					break
				}
				if k := (c - t.deficit + quantum - 1) / quantum; rounds < 0 || k < rounds {
					rounds = k
				}
			}
			t = t.next
		}
		if paid == nil {
			if rounds < 0 { // every tenant with waiters is at its cap
				return
			}
			t = sh.ring
			for range sh.nactive {
				if t.inflight < t.cap {
					t.deficit += rounds * quantum
				}
				t = t.next
			}
			continue
		}
		t = paid
		t.deficit -= t.cost()
		w := t.head
		t.head = w.next
		if t.head != nil {
			t.head.prev = nil
		} else {
			t.tail = nil
		}
		w.next = nil
		t.qlen--
		sh.queued--
		sh.admit(t, now)
		w.admitted = true
		w.ready <- struct{}{}
		switch {
		case t.qlen == 0:
			sh.ring = t.next
			sh.deactivate(t)
		case t.deficit < t.cost() || t.inflight >= t.cap:
			sh.ring = t.next
		default:
			sh.ring = t
		}
	}
}

// The pools of a shard, as ShardStats.Pool names them.
const (
	PoolPrimary = "primary"
	PoolReplica = "replica"
	PoolAdmin   = "admin"
)

// poolKind tells which of its shard's pools s.Pool is: the driver admits
// replica reads and Unscoped work with a view of the shard whose Pool is
// its Replica or Admin pool (tenancy.Gate).
func poolKind(s *tenancy.Shard) string {
	switch {
	case s.Pool == nil:
		return PoolPrimary
	case s.Pool == s.Replica:
		return PoolReplica
	case s.Pool == s.Admin:
		return PoolAdmin
	}
	return PoolPrimary
}

// ShardStats is a snapshot of the admission state of one pool of a shard.
type ShardStats struct {
	Shard    string
	Pool     string // PoolPrimary, PoolReplica or PoolAdmin
	Capacity int
	InFlight int
	Queued   int
	Tenants  []TenantStats // tenants with statements running or waiting
}

// TenantStats is a snapshot of one tenant's admission state on a shard.
type TenantStats struct {
	Tenant   tenancy.ID
	InFlight int
	Queued   int
	MaxConns int
}

// Stats returns a snapshot of every shard the gate has seen. It allocates;
// call it from scrapes and status pages, not per request.
func (g *Gate) Stats() []ShardStats {
	var out []ShardStats
	g.shards.Range(func(_, v any) bool {
		sh := v.(*shard)
		sh.mu.Lock()
		s := ShardStats{Shard: sh.name, Pool: sh.pool, Capacity: sh.capacity, InFlight: sh.inflight, Queued: sh.queued}
		for _, t := range sh.tenants {
			if t.inflight > 0 || t.qlen > 0 {
				s.Tenants = append(s.Tenants, TenantStats{Tenant: t.id, InFlight: t.inflight, Queued: t.qlen, MaxConns: t.cap})
			}
		}
		sh.mu.Unlock()
		out = append(out, s)
		return true
	})
	return out
}
