package metrics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/metrics"
)

// gateDriver does what tenancy.Driver does before a statement: Enter the
// gate, return its error as is (tenancy/driver.go:192), Leave after.
type gateDriver struct {
	dialect.Driver
	g *admission.Gate
	p *tenancy.Placement
}

func (d gateDriver) Exec(ctx context.Context, _ string, _, _ any) error {
	if err := d.g.Enter(ctx, d.p); err != nil {
		return err
	}
	d.g.Leave(d.p)
	return nil
}

// TestCancelledAtGateCountedOnce: a statement whose context ends while it
// queues at the gate counts as rejected{reason=cancelled}, and not also as
// a query and a query error (query_errors_total excludes admission
// rejections, as for throttled and busy ones). The driver here is a stand-
// in that does what tenancy.Driver does around a statement: Enter, return
// the gate's error as is, Leave.
func TestCancelledAtGateCountedOnce(t *testing.T) {
	rec := metrics.New(metrics.Options{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(rec)
	g := admission.New(admission.Config{Capacity: func(*tenancy.Shard) int { return 1 }, Observer: rec, DefaultQueueTimeout: time.Minute})
	p := &tenancy.Placement{Tenant: tenancy.NewID(), Shard: &tenancy.Shard{Name: "s0"}, Limits: tenancy.Limits{Plan: "pro", MaxConns: 1}}
	// Hold the tenant's only slot.
	if err := g.Enter(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	drv := rec.Driver(gateDriver{g: g, p: p}, nil)
	ctx, cancel := context.WithTimeout(tenancy.WithTenant(context.Background(), p.Tenant), 50*time.Millisecond)
	defer cancel()
	err := drv.Exec(ctx, "SELECT 1", []any{}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	mfs := gather(t, reg)
	rej := find(mfs, "tenantry_admission_rejected_total", "plan=pro", "reason=cancelled").GetCounter().GetValue()
	qe := find(mfs, "tenantry_query_errors_total", "plan=pro")
	q := find(mfs, "tenantry_queries_total", "plan=pro")
	t.Logf("rejected{cancelled}=%v queries=%v errors=%v", rej, q.GetCounter().GetValue(), qe.GetCounter().GetValue())
	if rej != 1 || qe.GetCounter().GetValue() != 0 || q.GetCounter().GetValue() != 0 {
		t.Errorf("a statement refused at the gate: rejected{cancelled}=%v queries=%v errors=%v, want 1, 0, 0", rej, q.GetCounter().GetValue(), qe.GetCounter().GetValue())
	}
}
