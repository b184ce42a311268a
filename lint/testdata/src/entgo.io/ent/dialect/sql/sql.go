// Package sql is a stub of entgo.io/ent/dialect/sql for the analyzer tests.
package sql

import (
	"context"
	"database/sql"
)

type Result = sql.Result

type Rows struct{ *sql.Rows }

type ExecQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type Conn struct{ ExecQuerier }

func (c Conn) Exec(ctx context.Context, query string, args, v any) error  { return nil }
func (c Conn) Query(ctx context.Context, query string, args, v any) error { return nil }

type Driver struct {
	Conn
	dialect string
}

func OpenDB(dialect string, db *sql.DB) *Driver { return &Driver{Conn{db}, dialect} }

func (d Driver) DB() *sql.DB { return d.ExecQuerier.(*sql.DB) }

func (d *Driver) Close() error { return nil }
