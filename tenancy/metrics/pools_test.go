package metrics_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/metrics"
)

// TestShardPools: a tenant with statements on a shard's primary, on its
// replica (the gate counts the pools apart) and on a primary pool the
// router has since replaced is collected once per shard gauge and pool, and
// once in the top-tenant gauges with all summed: a registry refuses a
// series collected twice.
func TestShardPools(t *testing.T) {
	ctx := context.Background()
	// Pools connect on first use only: these never do.
	primary, err := pgxpool.New(ctx, "host=127.0.0.1 port=1 user=nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()
	replica, err := pgxpool.New(ctx, "host=127.0.0.1 port=1 user=nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	// The pool the router replaced when the shard's DSN changed: the gate
	// still holds its state.
	replaced, err := pgxpool.New(ctx, "host=127.0.0.1 port=1 user=nobody")
	if err != nil {
		t.Fatal(err)
	}
	replaced.Close()
	rec := metrics.New(metrics.Options{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(rec)
	gate := admission.New(admission.Config{Observer: rec})
	rec.WatchGate(gate)
	tenant := tenancy.NewID()
	onPrimary := &tenancy.Placement{Tenant: tenant, Shard: &tenancy.Shard{Name: "s0", Pool: primary, Replica: replica}, Limits: tenancy.Limits{Plan: "pro"}}
	onReplica := &tenancy.Placement{Tenant: tenant, Shard: &tenancy.Shard{Name: "s0", Pool: replica, Replica: replica}, Limits: tenancy.Limits{Plan: "pro"}}
	before := &tenancy.Placement{Tenant: tenant, Shard: &tenancy.Shard{Name: "s0", Pool: replaced}, Limits: tenancy.Limits{Plan: "pro"}}
	for _, p := range []*tenancy.Placement{before, onPrimary, onReplica, onReplica} {
		if err := gate.Enter(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	mfs := gather(t, reg)
	for pool, want := range map[string]float64{admission.PoolPrimary: 2, admission.PoolReplica: 2} {
		m := find(mfs, "tenantry_shard_in_flight", "shard=s0", "pool="+pool)
		if m.GetGauge().GetValue() != want {
			t.Errorf("tenantry_shard_in_flight{shard=s0,pool=%s} = %v, want %v", pool, m.GetGauge().GetValue(), want)
		}
	}
	if m := find(mfs, "tenantry_top_tenant_in_flight", "tenant="+tenant.String(), "shard=s0"); m.GetGauge().GetValue() != 4 {
		t.Errorf("tenantry_top_tenant_in_flight of the tenant on s0 = %v, want 4 (every pool)", m.GetGauge().GetValue())
	}
}
