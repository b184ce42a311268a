package ratelimit_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantry/tenantry/internal/redistest"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// TestRedisPlanUpgradeAppliesAtOnce: a plan raised at runtime applies at
// once, with Redis as with Local, give or take one interval of the new
// plan (the debt run up under the old, slow interval used to keep the
// tenant throttled for up to the old burst's length, ~99 s here).
func TestRedisPlanUpgradeAppliesAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	rl := ratelimit.NewRedis(newClient(t, srv.Addr()), ratelimit.RedisOptions{Timeout: checkTimeout})
	loc := ratelimit.NewLocal()
	ctx := context.Background()
	for name, l := range map[string]limiter{"local": loc, "redis": rl} {
		p := placement(tenancy.Limits{Plan: "free", RatePerSec: 1, Burst: 100})
		for i := range 100 {
			if err := l.Allow(ctx, p); err != nil {
				t.Fatalf("%s: burst call %d: %v", name, i, err)
			}
		}
		// Upgrade: 1000/s with bursts of 1000.
		p.Limits.Plan, p.Limits.RatePerSec, p.Limits.Burst = "pro", 1000, 1000
		time.Sleep(20 * time.Millisecond) // 20 units at the new rate
		err := l.Allow(ctx, p)
		// The debt is bounded by the new plan's burst: at most one of its
		// intervals (1 ms) to wait.
		var te *ratelimit.ThrottledError
		if errors.As(err, &te) && te.RetryAfter() > 2*time.Millisecond {
			t.Errorf("%s: after upgrading to 1000/s the tenant is throttled for %s", name, te.RetryAfter())
		}
	}
}

// TestRedisHungServerDoesNotHoldRequests: RedisOptions.Timeout bounds one
// check even on a Redis that accepts connections and never answers (hung,
// stopped, a network black hole), with a client without
// ContextTimeoutEnabled, whose requests otherwise waited for its
// ReadTimeout (3 s).
func TestRedisHungServerDoesNotHoldRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // never answer
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond, DisableIdentity: true})
	defer c.Close()
	l := ratelimit.NewRedis(c, ratelimit.RedisOptions{}) // Timeout 100 ms
	p := placement(tenancy.Limits{RatePerSec: 10, Burst: 10})
	var wg sync.WaitGroup
	durs := make([]time.Duration, 4)
	for i := range durs { // concurrent requests of a replica
		wg.Go(func() {
			start := time.Now()
			_ = l.Allow(context.Background(), p)
			durs[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, d := range durs {
		if d > 500*time.Millisecond {
			t.Errorf("request %d blocked %s with Timeout 100ms", i, d.Round(time.Millisecond))
		}
	}
}
