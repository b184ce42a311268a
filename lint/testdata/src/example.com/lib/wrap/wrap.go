// Package wrap is a library outside the allow-list whose author reviewed one
// use of the hatch and suppressed it with a reason. The suppression silences
// that line only: Admin and its local callers still reach the hatch, so
// callers in other packages are reported.
package wrap

import (
	"context"

	"github.com/tenantry/tenantry/tenancy"
)

func Admin(ctx context.Context) context.Context { // want Admin:"reaches tenancy.Unscoped via wrap.Admin → tenancy.Unscoped"
	return tenancy.Unscoped(ctx, "wrap: reviewed") //tenantlint:ok the support console needs every tenant; reviewed in SEC-12
}

// Twice reaches the hatch through Admin, a function of this package: the
// use is reported once, inside Admin, not again at each local caller.
func Twice(ctx context.Context) context.Context { // want Twice:"via wrap.Twice → wrap.Admin → tenancy.Unscoped"
	return Admin(Admin(ctx))
}
