// Package api is application code outside the allow-list.
package api

import (
	"context"

	"example.com/app/ent"
	"example.com/app/internal/admin"
	"example.com/lib/deeper"
	"github.com/tenantry/tenantry/tenancy"
)

// Rule 1: the hatch itself, called, as a function value, and through the
// generated client method (a wrapper by fact, computed from generated code).

func direct(ctx context.Context, c *ent.Client) { // want direct:"reaches tenancy.Unscoped via api.direct → tenancy.Unscoped"
	_, _ = c.Order.Query().All(tenancy.Unscoped(ctx, "api: quick fix")) // want `tenancy.Unscoped used in package example.com/app/api, which is not allowed to bypass tenant scoping: the returned context turns off the tenant filter`
}

func asValue() func(context.Context, string) context.Context { // want asValue:"reaches"
	return tenancy.Unscoped // want `tenancy.Unscoped used in package example.com/app/api`
}

var hatchVar = tenancy.Unscoped // want `tenancy.Unscoped used` hatchVar:"reaches tenancy.Unscoped"

func clientMethod(ctx context.Context, c *ent.Client) { // want clientMethod:"via api.clientMethod → \\(\\*ent.Client\\).Unscoped → tenancy.Unscoped"
	_ = c.Unscoped(ctx, "api") // want `\(\*ent.Client\).Unscoped reaches the escape hatch tenancy.Unscoped`
}

// localWrapper reaches the hatch; the use inside is reported, its callers in
// this package are not reported again.
func localWrapper(ctx context.Context) context.Context { // want localWrapper:"reaches tenancy.Unscoped"
	return tenancy.Unscoped(ctx, "api: helper") // want `tenancy.Unscoped used`
}

func callsLocal(ctx context.Context) context.Context { // want callsLocal:"via api.callsLocal → api.localWrapper"
	return localWrapper(ctx)
}

// Rule 2: wrappers from other packages, by call, method value, method
// expression, generic instantiation and package-level variable.

func wrappers(ctx context.Context, c *ent.Client) { // want wrappers:"reaches tenancy.Unscoped"
	_, _ = admin.CountAll(ctx, c)                            // want `admin.CountAll reaches the escape hatch tenancy.Unscoped \(admin.CountAll → tenancy.Unscoped\) and is used in package example.com/app/api`
	_ = admin.Report(ctx, c)                                 // want `admin.Report reaches the escape hatch tenancy.Unscoped \(admin.Report → admin.CountAll → tenancy.Unscoped\)`
	_ = deeper.Support(ctx)                                  // want `deeper.Support reaches .* \(deeper.Support → wrap.Twice → wrap.Admin → tenancy.Unscoped\)`
	_ = admin.Ctx(ctx)                                       // want `admin.Ctx reaches the escape hatch`
	_ = admin.Late(ctx)                                      // want `admin.Late reaches the escape hatch tenancy.Unscoped \(admin.Late → tenancy.Unscoped\)`
	_ = admin.Registry.Wide(ctx, "api")                      // want `admin.Registry reaches the escape hatch`
	admin.Each(ctx, []int{1}, func(context.Context, int) {}) // want `admin.Each reaches the escape hatch`
	admin.Each[string](ctx, nil, nil)                        // want `admin.Each reaches`
	var jobs admin.Jobs[int]
	_ = jobs.Run(ctx) // want `\(\*admin.Jobs\).Run reaches the escape hatch`
	svc := &admin.Service{Client: c}
	purge := svc.Purge // want `\(\*admin.Service\).Purge reaches the escape hatch`
	_ = purge(ctx)
	_ = (*admin.Service).Purge(svc, ctx) // want `\(\*admin.Service\).Purge reaches`
}

// Not reported: scoped functions of an allowed package.
func scopedAdmin(ctx context.Context, c *ent.Client, id tenancy.ID) {
	_, _ = admin.Scoped(ctx, c, id)
}

// Suppressions: with a reason on the line or alone on the line above, the
// finding is gone; without a reason the directive is reported and
// suppresses nothing.
func suppressed(ctx context.Context, c *ent.Client) { // want suppressed:"reaches tenancy.Unscoped"
	_, _ = admin.CountAll(ctx, c) //tenantlint:ok status page shows the fleet total, reviewed in SEC-7
	//tenantlint:ok nightly report, reviewed in SEC-8
	_ = admin.Report(ctx, c)
	// want +1 `//tenantlint:ok needs a reason` `admin.Ctx reaches the escape hatch`
	_ = admin.Ctx(ctx) //tenantlint:ok
	// want +1 `//tenantlint:ok needs a reason`
	//tenantlint:ok
	_ = tenancy.Unscoped(ctx, "x") // want `tenancy.Unscoped used`
	//tenantlint:okay is not a directive
	_ = tenancy.Unscoped(ctx, "y") // want `tenancy.Unscoped used`
}
