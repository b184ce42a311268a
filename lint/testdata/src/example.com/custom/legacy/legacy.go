// Package legacy declares a second escape hatch, configured with
// -tenantlint.hatch: the package that declares a hatch is exempt.
package legacy

import "context"

func SkipTenant(ctx context.Context) context.Context { return ctx }

func selfUse(ctx context.Context) context.Context { return SkipTenant(ctx) } // want selfUse:"reaches legacy.SkipTenant"
