package admission_test

import (
	"database/sql"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
)

// TestPoolsCountedApart: a tenant's read-only transaction on the shard's
// replica and its Unscoped transaction on the admin pool take slots of those
// pools, not of the primary. With the tenant's plan at one connection, both
// held open, its next statement on the primary is admitted at once; a
// second primary transaction still waits and gives up (the cap holds per
// pool), and other tenants are not affected.
func TestPoolsCountedApart(t *testing.T) {
	env := apptest.New(t)
	shard := &tenancy.Shard{Name: "pools", Pool: env.Shards[0].Pool, Admin: env.Shards[0].Admin, Replica: env.Shards[1].Pool}
	limits := tenancy.DefaultLimits
	limits.MaxConns = 1
	limits.QueueTimeout = 300 * time.Millisecond
	c, err := tenancy.NewPlacement(apptest.C, shard, apptest.C.SchemaName(), limits, tenancy.ReplicaReads())
	if err != nil {
		t.Fatal(err)
	}
	a, err := tenancy.NewPlacement(apptest.A, shard, apptest.SharedSchema, limits)
	if err != nil {
		t.Fatal(err)
	}
	gate := admission.New(admission.Config{})
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, c, a), tenancy.WithGate(gate))))
	ctx := apptest.Ctx(apptest.C)

	// A transaction takes its connection, and its slot, at BeginTx.
	onReplica, err := client.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer onReplica.Rollback()
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	uctx := tenancy.Unscoped(ctx, "test: the admin pool is counted apart")
	slog.SetDefault(prev)
	onAdmin, err := client.BeginTx(uctx, nil)
	if err != nil {
		t.Fatalf("Unscoped transaction beside a replica read: %v", err)
	}
	defer onAdmin.Rollback()
	if _, err := client.Customer.Query().Count(ctx); err != nil {
		t.Fatalf("statement on the primary beside a replica read and an Unscoped transaction: %v", err)
	}

	onPrimary, err := client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer onPrimary.Rollback()
	if _, err := client.Customer.Query().Count(ctx); !errors.Is(err, admission.ErrTenantBusy) {
		t.Fatalf("second statement on the primary over the plan's one connection: %v, want ErrTenantBusy", err)
	}
	if _, err := client.Customer.Query().Count(apptest.Ctx(apptest.A)); err != nil {
		t.Fatalf("other tenant: %v", err)
	}

	inFlight := map[string]int{}
	for _, s := range gate.Stats() {
		if s.Shard != "pools" {
			t.Fatalf("stats of shard %q, want only %q", s.Shard, "pools")
		}
		inFlight[s.Pool] += s.InFlight
	}
	want := map[string]int{admission.PoolPrimary: 1, admission.PoolReplica: 1, admission.PoolAdmin: 1}
	for pool, n := range want {
		if inFlight[pool] != n {
			t.Fatalf("in flight per pool = %v, want %v", inFlight, want)
		}
	}
}
