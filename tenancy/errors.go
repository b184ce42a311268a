package tenancy

import "errors"

var (
	// ErrNoTenant is returned by every scoped query, mutation and driver call
	// whose context carries no tenant. Wrap the request context with
	// WithTenant (or, in admin and migration code only, Unscoped).
	ErrNoTenant = errors.New("tenancy: no tenant in context: wrap the context with tenancy.WithTenant(ctx, id); admin code may use tenancy.Unscoped(ctx, reason)")

	// ErrInvalidTenantID is wrapped by ParseID for input that is not a
	// canonical, non-nil UUID.
	ErrInvalidTenantID = errors.New("tenancy: invalid tenant id")

	// ErrTenantMismatch is returned when a mutation sets tenant_id to a tenant
	// other than the one in the context, or when a transaction begun for one
	// tenant is used with a context of another.
	ErrTenantMismatch = errors.New("tenancy: tenant mismatch: the operation names a tenant other than the one in the context")

	// ErrUnknownTenant is returned by a Resolver that has no placement for the
	// tenant: provision it first, or check the id.
	ErrUnknownTenant = errors.New("tenancy: unknown tenant: no placement for this tenant; provision it first")
)
