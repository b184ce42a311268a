// Package pgx is a stub of github.com/jackc/pgx/v5 for the analyzer tests.
package pgx

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"
)

type Row interface{ Scan(dest ...any) error }

type Rows interface{ Close() }

type Conn struct{}

func Connect(ctx context.Context, dsn string) (*Conn, error) { return &Conn{}, nil }

func (*Conn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, nil
}
func (*Conn) Query(ctx context.Context, sql string, args ...any) (Rows, error) { return nil, nil }
func (*Conn) QueryRow(ctx context.Context, sql string, args ...any) Row        { return nil }
func (*Conn) PgConn() *pgconn.PgConn                                           { return nil }

type Tx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) Row
	Commit(ctx context.Context) error
}
