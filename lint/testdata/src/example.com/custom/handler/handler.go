// Package handler uses hatches configured in addition to tenancy.Unscoped:
// a function of another package and the generated client's method.
package handler

import (
	"context"

	"example.com/app/ent"
	"example.com/custom/legacy"
	"example.com/custom/ops"
)

func Handle(ctx context.Context, c *ent.Client) { // want Handle:"reaches"
	_ = legacy.SkipTenant(ctx) // want `legacy.SkipTenant used in package example.com/custom/handler`
	_ = c.Unscoped(ctx, "x")   // want `\(\*ent.Client\).Unscoped used in package example.com/custom/handler`
	_ = ops.Fleet(ctx, c)      // want `ops.Fleet reaches the escape hatch`
	f := legacy.SkipTenant     // want `legacy.SkipTenant used`
	_ = f
}
