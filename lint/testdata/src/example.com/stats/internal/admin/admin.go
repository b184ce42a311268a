// Package admin stores a number it computed unscoped in a package
// variable: data, not a way to run unscoped, so the variable is no wrapper.
package admin

import (
	"context"

	"github.com/tenantry/tenantry/tenancy"
)

var Orders int

func count(ctx context.Context) int { _ = ctx; return 42 }

func Refresh(ctx context.Context) { // want Refresh:"reaches tenancy.Unscoped via admin.Refresh → tenancy.Unscoped"
	Orders = count(tenancy.Unscoped(ctx, "admin: nightly stats"))
}
