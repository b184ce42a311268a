// Package pgxpool is a stub of github.com/jackc/pgx/v5/pgxpool for the analyzer tests.
package pgxpool

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

type Pool struct{}

func New(ctx context.Context, dsn string) (*Pool, error) { return &Pool{}, nil }

func (*Pool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, nil
}
func (*Pool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) { return nil, nil }
func (*Pool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row        { return nil }
func (*Pool) Begin(ctx context.Context) (pgx.Tx, error)                            { return nil, nil }
func (*Pool) Close()                                                               {}
