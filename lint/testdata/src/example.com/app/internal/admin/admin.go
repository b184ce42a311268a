// Package admin is allowed by the default allow-list (a path under
// internal/admin): nothing here is reported, but its functions that reach
// the hatch carry facts, so callers elsewhere are.
package admin

import (
	"context"
	"database/sql"

	"example.com/app/ent"
	"github.com/tenantry/tenantry/tenancy"
)

// CountAll counts orders of every tenant.
func CountAll(ctx context.Context, c *ent.Client) (int, error) { // want CountAll:"reaches tenancy.Unscoped via admin.CountAll → tenancy.Unscoped"
	return c.Order.Query().Count(tenancy.Unscoped(ctx, "admin: fleet-wide count"))
}

// Report reaches the hatch through CountAll.
func Report(ctx context.Context, c *ent.Client) string { // want Report:"via admin.Report → admin.CountAll → tenancy.Unscoped"
	n, _ := CountAll(ctx, c)
	if n == 0 {
		return "none"
	}
	return "some"
}

// Scoped does not reach the hatch: no fact.
func Scoped(ctx context.Context, c *ent.Client, id tenancy.ID) (int, error) {
	return c.Order.Query().Count(tenancy.WithTenant(ctx, id))
}

// Ctx is a package-level variable holding a function that reaches the hatch.
var Ctx = func(ctx context.Context) context.Context { // want Ctx:"reaches tenancy.Unscoped"
	return tenancy.Unscoped(ctx, "admin: context for jobs")
}

// Each is a generic wrapper.
func Each[T any](ctx context.Context, items []T, f func(context.Context, T)) { // want Each:"reaches tenancy.Unscoped"
	u := tenancy.Unscoped(ctx, "admin: per-item job")
	for _, it := range items {
		f(u, it)
	}
}

// Jobs is a generic type with a method that reaches the hatch.
type Jobs[T any] struct{ items []T }

func (j *Jobs[T]) Run(ctx context.Context) context.Context { // want Run:"via \\(\\*admin.Jobs\\).Run → tenancy.Unscoped"
	return tenancy.Unscoped(ctx, "admin: jobs")
}

// Service has a method that reaches the hatch, used as a method value.
type Service struct{ Client *ent.Client }

func (s *Service) Purge(ctx context.Context) error { // want Purge:"reaches tenancy.Unscoped"
	_, err := s.Client.ExecContext(tenancy.Unscoped(ctx, "admin: purge"), "DELETE FROM orders WHERE deleted")
	return err
}

// raw SQL, Background and a hatch are all fine in an allowed package.
func maintenance(db *sql.DB, c *ent.Client) { // want maintenance:"reaches tenancy.Unscoped"
	_, _ = db.Exec("VACUUM orders")
	_, _ = c.Order.Query().All(context.Background())
	_ = tenancy.Unscoped
}

// Late is a package-level variable that init sets to a function reaching
// the hatch: it reaches the hatch as if that were its initializer.
var Late func(context.Context) context.Context // want Late:"reaches tenancy.Unscoped via admin.Late → tenancy.Unscoped"

// Registry holds the hatch in a field, set by init.
var Registry struct { // want Registry:"reaches tenancy.Unscoped via admin.Registry → tenancy.Unscoped"
	Wide func(context.Context, string) context.Context
}

func init() {
	Late = func(ctx context.Context) context.Context { return tenancy.Unscoped(ctx, "admin: set by init") }
	Registry.Wide = tenancy.Unscoped
}
