package tenancy

import (
	"context"
	"log/slog"
	"runtime"
)

type scopeKey struct{}

// scope is the single context value the package stores; one lookup on the
// request path answers both "which tenant" and "is this unscoped".
type scope struct {
	tenant   ID
	unscoped bool
	reason   string
}

// WithTenant returns a context scoped to the tenant. A zero id gives a context
// on which every scoped operation fails with ErrNoTenant. WithTenant also ends
// an Unscoped section: the returned context is scoped again.
func WithTenant(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, scopeKey{}, &scope{tenant: id})
}

// FromContext returns the tenant of a scoped context. ok is false when the
// context carries no tenant (or the zero ID).
func FromContext(ctx context.Context) (id ID, ok bool) {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	if s == nil || s.tenant.IsZero() {
		return ID{}, false
	}
	return s.tenant, true
}

// Unscoped returns a context on which tenant filtering is off: queries see
// every tenant's rows (through the admin role, which bypasses row-level
// security) and mutations are not stamped. It is the only escape hatch, meant
// for migration and admin code; tenantlint reports it anywhere else. A tenant
// already in ctx is kept for routing. Each call is logged with its reason and
// caller. reason must say why the bypass is needed; an empty reason panics.
//
// Raw SQL on an Unscoped context is not vetted (CheckRawSQL). Prefer SET
// LOCAL to SET: a statement that reports SET, RESET, DISCARD, LISTEN or LOAD
// makes the driver close its connection on release rather than hand the
// changed session to the next user, which costs a reconnect.
func Unscoped(ctx context.Context, reason string) context.Context {
	if reason == "" {
		panic("tenancy.Unscoped: a reason is required")
	}
	s := &scope{unscoped: true, reason: reason}
	if id, ok := FromContext(ctx); ok {
		s.tenant = id
	}
	attrs := []any{slog.String("reason", reason)}
	if _, file, line, ok := runtime.Caller(1); ok {
		attrs = append(attrs, slog.String("file", file), slog.Int("line", line))
	}
	if ok := !s.tenant.IsZero(); ok {
		attrs = append(attrs, slog.String("tenant", s.tenant.String()))
	}
	slog.WarnContext(ctx, "tenancy: unscoped access", attrs...)
	return context.WithValue(ctx, scopeKey{}, s)
}

// UnscopedReason reports whether ctx was made by Unscoped, and why.
func UnscopedReason(ctx context.Context) (reason string, ok bool) {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	if s == nil || !s.unscoped {
		return "", false
	}
	return s.reason, true
}

// lookup returns the scope of ctx, nil if none.
func lookup(ctx context.Context) *scope {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	return s
}
