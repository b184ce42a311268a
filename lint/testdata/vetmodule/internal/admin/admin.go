// Package admin is allowed by tenantlint's default allow-list (a path under
// internal/admin): it may use the escape hatch.
package admin

import (
	"context"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/tenancy"
)

// CountOrders counts the orders of every tenant.
func CountOrders(ctx context.Context, client *ent.Client) (int, error) {
	return client.Order.Query().Count(tenancy.Unscoped(ctx, "admin: fleet-wide order count"))
}
