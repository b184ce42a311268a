package api

import (
	"context"
	"net/http"
	"time"

	"example.com/app/ent"
	"example.com/app/notent"
	control "example.com/control/ent"
	"github.com/google/uuid"
	"github.com/tenantry/tenantry/tenancy"
)

// Rule 3: contexts without a tenant passed straight into tenant-scoped
// operations of the generated client and of tenancy.Driver.

func background(c *ent.Client) {
	_, _ = c.Order.Query().All(context.Background())                      // want `context.Background\(\) carries no tenant but is passed to \(\*ent.OrderQuery\).All, a tenant-scoped operation: it can only fail at run time with tenancy.ErrNoTenant`
	_, _ = c.Order.Get(context.TODO(), 1)                                 // want `context.TODO\(\) carries no tenant but is passed to \(\*ent.OrderClient\).Get`
	_, _ = c.Order.Create().SetNumber("1").Save(context.Background())     // want `passed to \(\*ent.OrderCreate\).Save`
	_, _ = c.Tx(context.Background())                                     // want `passed to \(\*ent.Client\).Tx`
	_, _ = c.ExecContext(context.Background(), "DELETE FROM orders")      // want `passed to \(\*ent.config\).ExecContext`
	_, _ = c.Order.Query().Select("number").Strings(context.Background()) // want `passed to \(\*ent.selector\).Strings`
}

func derived(c *ent.Client, d *tenancy.Driver) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = c.Order.Query().Count(ctx) // want `ctx \(made by context.Background\(\) on line 28\) carries no tenant but is passed to \(\*ent.OrderQuery\).Count`
	bg := context.WithValue(context.TODO(), struct{}{}, 1)
	_ = d.Exec(bg, "SELECT 1", nil, nil) // want `bg \(made by context.TODO\(\) on line 31\) carries no tenant but is passed to \(\*tenancy.Driver\).Exec`
	_, _ = d.Tx(context.Background())    // want `passed to \(\*tenancy.Driver\).Tx`
}

// A tenant stripped with the zero tenancy.ID.
func stripped(ctx context.Context, c *ent.Client) {
	_, _ = c.Order.Query().All(tenancy.WithTenant(ctx, tenancy.ID{})) // want `tenancy.WithTenant with the zero tenancy.ID carries no tenant`
	var none tenancy.ID
	noTenant := tenancy.WithTenant(ctx, none)
	_, _ = c.Order.Query().All(noTenant)                                      // want `noTenant \(made by tenancy.WithTenant with the zero tenancy.ID on line 40\)`
	_, _ = c.Order.Query().All(tenancy.WithTenant(ctx, tenancy.ID(uuid.Nil))) // want `zero tenancy.ID`
}

// Method values and method expressions.
func methodValues(c *ent.Client) {
	all := c.Order.Query().All
	_, _ = all(context.Background())                                    // want `passed to \(\*ent.OrderQuery\).All`
	_, _ = (*ent.OrderQuery).All(c.Order.Query(), context.Background()) // want `passed to \(\*ent.OrderQuery\).All`
}

// Not reported: scoped, unknown or reassigned contexts, other clients.
func fine(ctx context.Context, r *http.Request, c *ent.Client, cc *control.Client, q *notent.OrderQuery, id tenancy.ID) {
	_, _ = c.Order.Query().All(ctx)
	_, _ = c.Order.Query().All(r.Context())
	_, _ = c.Order.Query().All(tenancy.WithTenant(context.Background(), id))
	scoped, cancel := context.WithCancel(tenancy.WithTenant(context.Background(), id))
	defer cancel()
	_, _ = c.Order.Query().All(scoped)
	bg := context.Background()
	if id != (tenancy.ID{}) {
		bg = tenancy.WithTenant(bg, id)
	}
	_, _ = c.Order.Query().All(bg)
	_, _ = cc.Shard.Query().All(context.Background()) // a global (control-plane) client needs no tenant
	_, _ = q.All(context.Background())                // not a generated client
	_, _ = c.Order.Query().All(tenancy.WithTenant(ctx, tenancy.ID(uuid.UUID{1})))
	_ = c.Order.Query().Where() // no context
}
