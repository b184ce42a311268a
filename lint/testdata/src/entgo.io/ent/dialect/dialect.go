// Package dialect is a stub of entgo.io/ent/dialect for the analyzer tests.
package dialect

import "context"

type ExecQuerier interface {
	Exec(ctx context.Context, query string, args, v any) error
	Query(ctx context.Context, query string, args, v any) error
}

type Driver interface {
	ExecQuerier
	Close() error
}
