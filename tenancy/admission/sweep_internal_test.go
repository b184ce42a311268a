package admission

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tenantry/tenantry/tenancy"
)

type throttled struct{}

func (throttled) Error() string             { return "throttled" }
func (throttled) RetryAfter() time.Duration { return time.Second }

// TestSweep: a sweep drops the tenants and pools idle for longer than
// IdleTTL and the expired refusals, and keeps everything a statement is
// running or waiting on, so that its Leave still finds what Enter counted.
func TestSweep(t *testing.T) {
	const ttl = int64(time.Minute)
	g := New(Config{Capacity: func(*tenancy.Shard) int { return 1 }, IdleTTL: time.Minute})
	old, cur := &tenancy.Shard{Name: "old"}, &tenancy.Shard{Name: "cur"}
	place := func(s *tenancy.Shard) *tenancy.Placement {
		return &tenancy.Placement{Tenant: tenancy.NewID(), Shard: s, Schema: "s"}
	}
	gone, running, waiting := place(old), place(cur), place(cur)
	ctx := context.Background()
	if err := g.Enter(ctx, gone); err != nil {
		t.Fatal(err)
	}
	g.Leave(gone)
	if err := g.Enter(ctx, running); err != nil {
		t.Fatal(err)
	}
	queued := make(chan error, 1)
	go func() { queued <- g.Enter(ctx, waiting) }()
	for g.shardOf(cur).queuedLocked() == 0 {
		time.Sleep(time.Millisecond)
	}
	g.refused.note(gone.Tenant, throttled{}, nanotime())

	g.sweep(nanotime() + 2*ttl)

	if _, ok := g.shards.Load(old); ok {
		t.Error("the idle pool's state was kept")
	}
	c := g.shardOf(cur)
	c.mu.Lock()
	n := len(c.tenants)
	c.mu.Unlock()
	if n != 2 {
		t.Errorf("pool in use keeps %d tenants, want the running and the waiting one", n)
	}
	if err := g.refused.get(gone.Tenant, nanotime()); err != nil {
		t.Errorf("expired refusal kept: %v", err)
	}
	if c.dropped {
		t.Fatal("the pool in use was dropped")
	}

	g.Leave(running)
	if err := <-queued; err != nil {
		t.Fatalf("waiter after the sweep: %v", err)
	}
	g.Leave(waiting)
	if st := g.Stats(); len(st) != 1 || st[0].Shard != "cur" || st[0].InFlight != 0 || st[0].Queued != 0 {
		t.Fatalf("stats after every Leave: %+v, want cur idle", st)
	}
	g.sweep(nanotime() + 2*ttl)
	if st := g.Stats(); len(st) != 0 {
		t.Fatalf("stats after the pools went idle: %+v, want none", st)
	}
	if !c.dropped {
		t.Fatal("dropped state not marked")
	}

	// A pool comes back: its state is rebuilt, with its capacity.
	if err := g.Enter(ctx, running); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := g.Enter(ctx2, waiting); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second statement on a rebuilt pool of capacity 1: %v, want it to wait", err)
	}
	g.Leave(running)
	if st := g.Stats(); len(st) != 1 || st[0].InFlight != 0 {
		t.Fatalf("stats of the rebuilt pool: %+v", st)
	}
}

func (sh *shard) queuedLocked() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.queued
}
