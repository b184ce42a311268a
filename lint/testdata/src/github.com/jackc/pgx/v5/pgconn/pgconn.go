// Package pgconn is a stub of github.com/jackc/pgx/v5/pgconn for the analyzer tests.
package pgconn

import "context"

type CommandTag struct{}

type MultiResultReader struct{}

type PgConn struct{}

func (*PgConn) Exec(ctx context.Context, sql string) *MultiResultReader { return nil }
