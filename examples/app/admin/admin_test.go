package admin_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/tenantry/tenantry/examples/app/admin"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestOrdersPerTenant: the report sees the orders of both tenants of the
// pooled schema, which no scoped context can.
func TestOrdersPerTenant(t *testing.T) {
	env := apptest.New(t)
	for i, cents := range []int64{500, 700} {
		if _, err := env.Client.Order.Create().SetNumber(fmt.Sprint("a-", i)).SetTotalCents(cents).Save(apptest.Ctx(apptest.A)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.Client.Order.Create().SetNumber("b-0").SetTotalCents(300).Save(apptest.Ctx(apptest.B)); err != nil {
		t.Fatal(err)
	}
	if n, err := env.Client.Order.Query().Count(apptest.Ctx(apptest.B)); err != nil || n != 1 {
		t.Fatalf("tenant B sees %d orders (err %v), want 1", n, err)
	}

	got, err := (&admin.Reports{Client: env.Client}).OrdersPerTenant(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []admin.TenantOrders{
		{Tenant: apptest.A, Orders: 2, TotalCents: 1200},
		{Tenant: apptest.B, Orders: 1, TotalCents: 300},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("OrdersPerTenant = %v, want %v", got, want)
	}
}
