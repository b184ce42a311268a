package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantry/tenantry/tenancy"
)

// gcra is the generic cell rate algorithm on one key holding the tenant's
// theoretical arrival time (TAT, µs on the Redis server's clock).
// ARGV: emission interval (µs per statement), burst tolerance (µs).
// Returns {1, 0} when allowed, {0, retry-after µs} when not.
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
-- A debt larger than the burst was run up under a slower plan: the
-- current plan's burst bounds it, so a raised plan applies at once.
if tat > now + tolerance then tat = now + tolerance end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0}
`)

// RedisOptions configure a Redis limiter. The zero value is usable.
type RedisOptions struct {
	// Prefix of the keys, one per tenant. Default "tenantry:rl:".
	Prefix string
	// Timeout bounds one check against Redis; past it the fallback decides.
	// Default 100 ms.
	Timeout time.Duration
	// Cooldown is how long the fallback decides alone after Redis failed,
	// before one request tries Redis again. Default 1 s.
	Cooldown time.Duration
	// FallbackShare scales each plan's rate and burst in the fallback: with
	// N replicas, 1/N keeps the tenant's total near its plan while Redis is
	// down; 1 (the default) lets each replica allow the whole rate.
	FallbackShare float64
	// Logger reports Redis going away and coming back. Default slog.Default().
	Logger *slog.Logger
}

// Redis is a rate limiter whose budget per tenant lives in Redis and is
// shared by every process that uses the same Redis and prefix. It falls
// back to an in-process limiter while Redis cannot be reached.
//
// Give it a client with few retries and short timeouts, e.g.
// redis.Options{MaxRetries: -1, DialTimeout: 100 * time.Millisecond,
// ContextTimeoutEnabled: true}, or a down Redis costs each request the
// client's retries until the cool-down takes over. (Without
// ContextTimeoutEnabled, go-redis does not stop waiting for a reply at the
// context's deadline: each check then waits in a goroutine of its own, so
// that Timeout still bounds the request.)
type Redis struct {
	client    redis.Scripter
	prefix    string
	timeout   time.Duration
	cooldown  int64
	fallback  *Local
	log       *slog.Logger
	deadlines bool         // the client honours context deadlines (ContextTimeoutEnabled)
	downUntil atomic.Int64 // monotonic ns; 0 while Redis answers
	errors    atomic.Uint64
	fellBack  atomic.Uint64
}

// NewRedis returns a limiter on client (a *redis.Client, *redis.Ring or
// *redis.ClusterClient).
func NewRedis(client redis.Scripter, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = "tenantry:rl:"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 100 * time.Millisecond
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = time.Second
	}
	if opts.FallbackShare <= 0 || opts.FallbackShare > 1 {
		opts.FallbackShare = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Redis{
		client: client, prefix: opts.Prefix, timeout: opts.Timeout, cooldown: int64(opts.Cooldown),
		fallback: newLocal(opts.FallbackShare, monotonic), log: opts.Logger,
	}
	switch c := client.(type) {
	case *redis.Client:
		r.deadlines = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		r.deadlines = c.Options().ContextTimeoutEnabled
	}
	return r
}

// Allow takes one unit of p's tenant's shared budget, or returns an error
// wrapping ErrThrottled. If Redis fails, the in-process fallback decides:
// a Redis failure never fails the request. Only the caller's own context
// ending does.
func (r *Redis) Allow(ctx context.Context, p *tenancy.Placement) error {
	if p.Limits.RatePerSec <= 0 || p.Tenant.IsZero() {
		return nil
	}
	if du := r.downUntil.Load(); du != 0 {
		now := monotonic()
		// While down, the fallback decides; after the cool-down one caller
		// (the one that wins the swap) probes Redis.
		if now < du || !r.downUntil.CompareAndSwap(du, now+r.cooldown) {
			r.fellBack.Add(1)
			return r.fallback.Allow(ctx, p)
		}
	}
	allowed, retry, err := r.check(ctx, p)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("tenancy/ratelimit: %w", ctx.Err())
		}
		r.errors.Add(1)
		if r.downUntil.Swap(monotonic()+r.cooldown) == 0 {
			r.log.Warn("tenancy/ratelimit: Redis unreachable, limiting in process until it answers again", "error", err)
		}
		r.fellBack.Add(1)
		return r.fallback.Allow(ctx, p)
	}
	if r.downUntil.Load() != 0 {
		r.downUntil.Store(0)
		r.log.Info("tenancy/ratelimit: Redis answers again, shared limits back")
	}
	if allowed {
		return nil
	}
	return &ThrottledError{
		Tenant: p.Tenant, Plan: p.Limits.Plan, Rate: p.Limits.RatePerSec, Burst: burstOf(&p.Limits),
		Shared: true, retry: retry,
	}
}

func (r *Redis) check(ctx context.Context, p *tenancy.Placement) (allowed bool, retry time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	interval := 1e6 / p.Limits.RatePerSec
	tolerance := interval * float64(burstOf(&p.Limits))
	run := func() ([]int64, error) {
		return gcra.Run(ctx, r.client, []string{r.prefix + p.Tenant.String()},
			strconv.FormatFloat(interval, 'f', 3, 64), strconv.FormatFloat(tolerance, 'f', 3, 64)).Int64Slice()
	}
	var res []int64
	if r.deadlines {
		res, err = run()
	} else {
		// go-redis ignores the context's deadline on a connection it
		// already has unless ContextTimeoutEnabled: a Redis that accepts
		// and never answers would hold the request for the client's read
		// timeout. Wait in the request for Timeout at most; the late reply
		// is dropped.
		type reply struct {
			res []int64
			err error
		}
		done := make(chan reply, 1)
		go func() {
			res, err := run()
			done <- reply{res, err}
		}()
		select {
		case rep := <-done:
			res, err = rep.res, rep.err
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		return false, 0, err
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("tenancy/ratelimit: unexpected reply %v", res)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Microsecond, nil
}

// RedisStats tell how a Redis limiter has been deciding.
type RedisStats struct {
	Down          bool   // the fallback decides now
	Errors        uint64 // failed Redis checks
	FallbackCalls uint64 // decisions made by the fallback
}

// Stats returns the limiter's counters.
func (r *Redis) Stats() RedisStats {
	return RedisStats{Down: r.downUntil.Load() != 0, Errors: r.errors.Load(), FallbackCalls: r.fellBack.Load()}
}

// Enter implements tenancy.Gate, for use without admission.Gate.
func (r *Redis) Enter(ctx context.Context, p *tenancy.Placement) error { return r.Allow(ctx, p) }

// Leave implements tenancy.Gate; a rate limit has nothing to give back.
func (*Redis) Leave(*tenancy.Placement) {}

var _ tenancy.Gate = (*Redis)(nil)
