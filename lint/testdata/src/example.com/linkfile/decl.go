// Package linkfile declares a hatch alias whose //go:linkname directive is
// in another file of the package, which the compiler accepts.
package linkfile

import "context"

func wide(ctx context.Context, reason string) context.Context // want `wide is the escape hatch` wide:"reaches"

func Use(ctx context.Context) context.Context { return wide(ctx, "x") } // want Use:"reaches"
