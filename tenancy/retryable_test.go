package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

func TestRetryable(t *testing.T) {
	ctx := context.Background()
	tenant := tenancy.NewID()
	shard := &tenancy.Shard{Name: "s0"}

	// Real errors of the gate and the limiter, made in process.
	gate := admission.New(admission.Config{Capacity: func(*tenancy.Shard) int { return 1 }})
	busyP := &tenancy.Placement{Tenant: tenant, Shard: shard, Limits: tenancy.Limits{QueueTimeout: time.Millisecond}}
	if err := gate.Enter(ctx, busyP); err != nil {
		t.Fatal(err)
	}
	busy := gate.Enter(ctx, busyP)
	gate.Leave(busyP)
	limiter := ratelimit.NewLocal()
	slowP := &tenancy.Placement{Tenant: tenant, Shard: shard, Limits: tenancy.Limits{RatePerSec: 0.001, Burst: 1}}
	_ = limiter.Allow(ctx, slowP)
	throttled := limiter.Allow(ctx, slowP)

	for _, c := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"shard unavailable, nothing sent", &tenancy.ShardUnavailableError{Shard: "s0", Tenant: tenant, Err: io.EOF}, true},
		{"shard unavailable, wrapped", fmt.Errorf("list orders: %w", &tenancy.ShardUnavailableError{Shard: "s0", Tenant: tenant, Err: io.EOF}), true},
		{"connection broke after the statement was sent", &tenancy.ShardUnavailableError{Shard: "s0", Tenant: tenant, Sent: true, Err: io.EOF}, false},
		{"write fenced for a move", fmt.Errorf("create order: %w", &tenancy.ReadOnlyError{Tenant: tenant, State: tenancy.StateMoving}), true},
		{"tenant made read-only by an operator", &tenancy.ReadOnlyError{Tenant: tenant, State: "read_only"}, false},
		{"read-only of unknown cause", tenancy.ErrTenantReadOnly, false},
		{"tenant busy", busy, true},
		{"tenant throttled", throttled, true},
		{"no tenant", tenancy.ErrNoTenant, false},
		{"suspended", tenancy.ErrTenantSuspended, false},
		{"unknown tenant", tenancy.ErrUnknownTenant, false},
		{"context cancelled", context.Canceled, false},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{"nil", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			after, ok := tenancy.Retryable(c.err)
			if ok != c.ok {
				t.Fatalf("Retryable(%v) = %v, want %v", c.err, ok, c.ok)
			}
			if ok && after <= 0 {
				t.Fatalf("Retryable(%v): retry after %s, want a positive wait", c.err, after)
			}
		})
	}
	if !errors.Is(&tenancy.ReadOnlyError{Tenant: tenant, State: tenancy.StateMoving}, tenancy.ErrTenantReadOnly) {
		t.Fatal("a ReadOnlyError is not ErrTenantReadOnly")
	}
	if !errors.Is(busy, admission.ErrTenantBusy) || !errors.Is(throttled, ratelimit.ErrThrottled) {
		t.Fatalf("fixtures: busy = %v, throttled = %v", busy, throttled)
	}
}
