// Package tenancy is a stub of github.com/tenantry/tenantry/tenancy for the
// analyzer tests: the same path and names, no behaviour.
package tenancy

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

type ID uuid.UUID

func WithTenant(ctx context.Context, id ID) context.Context { return ctx }

func Unscoped(ctx context.Context, reason string) context.Context { return ctx }

type Shard struct {
	Name  string
	Pool  *pgxpool.Pool
	Admin *pgxpool.Pool
}

type Driver struct{ shard *Shard }

// Exec uses the raw pool: the tenancy package is the mechanism and is never
// reported.
func (d *Driver) Exec(ctx context.Context, query string, args, v any) error {
	_, err := d.shard.Pool.Exec(ctx, query)
	return err
}

func (d *Driver) Query(ctx context.Context, query string, args, v any) error { return nil }

func (d *Driver) Tx(ctx context.Context) (*Tx, error) { return &Tx{}, nil }

type Tx struct{}

func (*Tx) Exec(ctx context.Context, query string, args, v any) error  { return nil }
func (*Tx) Query(ctx context.Context, query string, args, v any) error { return nil }
func (*Tx) Commit() error                                              { return nil }
