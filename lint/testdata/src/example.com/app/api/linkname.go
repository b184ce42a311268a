package api

import (
	"context"
	_ "unsafe" // go:linkname
)

// wide is the hatch under another name: reported at its declaration, and
// it carries the fact, so callers in other packages are reported too.
//
//go:linkname wide github.com/tenantry/tenantry/tenancy.Unscoped
func wide(ctx context.Context, reason string) context.Context // want `wide is the escape hatch github.com/tenantry/tenantry/tenancy.Unscoped under another name \(go:linkname\)` wide:"reaches github.com/tenantry/tenantry/tenancy.Unscoped via api.wide"

// linkedOther names a function that is not a hatch: nothing to report.
//
//go:linkname linkedOther github.com/tenantry/tenantry/tenancy.WithTenant
func linkedOther(ctx context.Context, id [16]byte) context.Context
