package loadtest_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantry/tenantry/internal/loadtest"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
)

// TestTenantBusyHTTP maps admission.ErrTenantBusy end to end: a tenant
// whose plan allows one connection and a 50 ms queue, with that connection
// held by a transaction, gets 429 tenant_busy with a Retry-After from the
// example app (the request waited its queue timeout in the gate of the
// registry-routed stack); a tenant on the same shard is served meanwhile;
// once the transaction ends, the tenant is served again.
func TestTenantBusyHTTP(t *testing.T) {
	f, tenants, _ := fleet(t)
	ctx := context.Background()
	one := registry.Plan{Name: "loadtest-one-conn", Limits: tenancy.DefaultLimits}
	one.Limits.MaxConns = 1
	one.Limits.QueueTimeout = 50 * time.Millisecond
	if err := f.Store.PutPlan(ctx, one); err != nil {
		t.Fatal(err)
	}
	tn, err := f.Store.CreateTenant(ctx, registry.NewTenant{Slug: "lt-one-" + uuid.NewString()[:8], Plan: one.Name,
		Mode: registry.ModeShared, Shard: loadtest.ShardName(0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	neighbour := tenants[2] // a victim on shard0, like tn
	if neighbour.Shard != loadtest.ShardName(0) {
		t.Fatalf("tenant 2 is on %s, want shard0", neighbour.Shard)
	}
	tg, s := target(t, viaHTTP, f, []loadtest.Tenant{{ID: tn.ID, Shard: tn.Placement.Shard}, neighbour}, loadtest.StackConfig{})
	read := func(id tenancy.ID, seq uint64) error {
		return tg.Do(ctx, loadtest.Request{Tenant: id, Op: loadtest.Read, Seq: seq})
	}
	if err := read(tn.ID, 0); err != nil {
		t.Fatalf("before the transaction: %v", err)
	}

	// The app's own client (the handlers' gate): the transaction holds the
	// tenant's one connection until it ends.
	tx, err := s.Client.Tx(tenancy.WithTenant(ctx, tn.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, op := range []loadtest.Op{loadtest.Read, loadtest.Write} {
		start := time.Now()
		err := tg.Do(ctx, loadtest.Request{Tenant: tn.ID, Op: op, Seq: 1})
		waited := time.Since(start)
		var he *loadtest.HTTPError
		switch {
		case !errors.As(err, &he):
			t.Fatalf("%s while the tenant's connection is held: got %v, want HTTP 429 tenant_busy", op, err)
		case he.Status != http.StatusTooManyRequests || he.Code != "tenant_busy":
			t.Errorf("%s: HTTP %d %s, want 429 tenant_busy", op, he.Status, he.Code)
		case he.RetryAfterDuration() < time.Second:
			t.Errorf("%s: Retry-After %q, want whole seconds ≥ 1", op, he.RetryAfter)
		case !errors.Is(err, admission.ErrTenantBusy) || loadtest.Classify(err) != loadtest.Busy:
			t.Errorf("%s: %v does not classify as busy", op, err)
		}
		if waited < one.Limits.QueueTimeout {
			t.Errorf("%s: answered after %s, before the plan's queue timeout %s", op, waited, one.Limits.QueueTimeout)
		}
		if err := read(neighbour.ID, 1); err != nil {
			t.Errorf("the neighbour on the same shard while the tenant is busy: %v", err)
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := read(tn.ID, 2); err != nil {
		t.Errorf("after the transaction ended: %v", err)
	}
}
