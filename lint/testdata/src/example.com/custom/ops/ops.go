// Package ops is allowed by the custom allow-list.
package ops

import (
	"context"

	"example.com/app/ent"
	"example.com/custom/legacy"
	"github.com/tenantry/tenantry/tenancy"
)

func Fleet(ctx context.Context, c *ent.Client) context.Context { // want Fleet:"reaches"
	_ = legacy.SkipTenant(ctx)
	_ = c.Unscoped(ctx, "ops")
	return tenancy.Unscoped(ctx, "ops")
}
