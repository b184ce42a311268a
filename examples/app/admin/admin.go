package admin

import (
	"cmp"
	"context"
	"slices"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	"github.com/tenantry/tenantry/tenancy"
)

// Reports answers operator questions that span tenants.
type Reports struct {
	Client *ent.Client
}

// TenantOrders is one tenant's line of OrdersPerTenant.
type TenantOrders struct {
	Tenant     tenancy.ID `json:"tenant_id"`
	Orders     int        `json:"orders"`
	TotalCents int64      `json:"total_cents"`
}

// OrdersPerTenant returns the number and value of the orders of every tenant
// that the driver's unscoped placement reaches (a shard's pooled schema),
// largest value first.
func (r *Reports) OrdersPerTenant(ctx context.Context) ([]TenantOrders, error) {
	ctx = tenancy.Unscoped(ctx, "admin: orders per tenant report")
	var rows []TenantOrders
	err := r.Client.Order.Query().
		GroupBy(order.FieldTenantID).
		Aggregate(ent.As(ent.Count(), "orders"), ent.As(ent.Sum(order.FieldTotalCents), "total_cents")).
		Scan(ctx, &rows)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rows, func(a, b TenantOrders) int {
		return cmp.Or(cmp.Compare(b.TotalCents, a.TotalCents), cmp.Compare(a.Tenant.String(), b.Tenant.String()))
	})
	return rows, nil
}
