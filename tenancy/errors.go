package tenancy

import (
	"errors"
	"time"
)

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

// readOnlyRetryAfter is how long Retryable suggests waiting on a fenced
// write: a move's fence lasts tens of milliseconds.
const readOnlyRetryAfter = time.Second

// Retryable reports whether the call that returned err may be retried as
// is, and how long to wait first:
//
//   - the tenant's shard could not be reached and nothing was sent
//     (ErrShardUnavailable). When the connection broke after the statement
//     was sent (ShardUnavailableError.Sent), a write may have been applied:
//     that is not retryable as is;
//   - the tenant's writes are fenced while it moves between shards
//     (a *ReadOnlyError of StateMoving): nothing of the write was applied.
//     A tenant made read-only by an operator is not retryable: its fence
//     stays until the operator lifts it;
//   - an error that says when to retry, through a RetryAfter method with a
//     positive duration: a tenant over its plan's rate (tenancy/ratelimit)
//     or connections (tenancy/admission).
//
// Anything else, including a cancelled or expired context, is not. An
// error inside a transaction ends the transaction on the server: retry the
// whole transaction, not the statement.
func Retryable(err error) (retryAfter time.Duration, ok bool) {
	var unavailable *ShardUnavailableError
	if errors.As(err, &unavailable) {
		return unavailable.RetryAfter(), !unavailable.Sent
	}
	var readOnly *ReadOnlyError
	if errors.As(err, &readOnly) {
		return readOnlyRetryAfter, readOnly.State == StateMoving
	}
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) && ra.RetryAfter() > 0 {
		return ra.RetryAfter(), true
	}
	return 0, false
}
