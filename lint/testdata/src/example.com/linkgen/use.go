// Package linkgen declares a hatch alias in a generated file, where
// nothing is reported: its callers in the package are.
package linkgen

import "context"

func Use(ctx context.Context) context.Context { return wide(ctx, "x") } // want `wide reaches the escape hatch` Use:"reaches"
