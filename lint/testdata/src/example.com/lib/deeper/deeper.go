// Package deeper wraps package wrap: a chain across three packages.
package deeper

import (
	"context"

	"example.com/lib/wrap"
)

func Support(ctx context.Context) context.Context { // want Support:"via deeper.Support → wrap.Twice → wrap.Admin → tenancy.Unscoped"
	return wrap.Twice(ctx) // want `wrap.Twice reaches the escape hatch tenancy.Unscoped \(wrap.Twice → wrap.Admin → tenancy.Unscoped\) and is used in package example.com/lib/deeper`
}
