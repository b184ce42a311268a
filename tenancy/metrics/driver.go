package metrics

import (
	"context"
	stdsql "database/sql"
	"errors"

	"entgo.io/ent/dialect"

	"github.com/tenantry/tenantry/tenancy"
)

// Driver wraps an Ent driver (normally a *tenancy.Driver) so that every
// statement and transaction of a tenant is counted, timed and, when it
// fails, counted as an error, under the tenant's plan. res finds the plan
// of a tenant the recorder has not seen at the gate yet; it may be nil.
func (r *Recorder) Driver(d dialect.Driver, res tenancy.Resolver) dialect.Driver {
	return &driver{Driver: d, r: r, res: res}
}

type driver struct {
	dialect.Driver
	r   *Recorder
	res tenancy.Resolver
}

func (d *driver) Exec(ctx context.Context, query string, args, v any) error {
	start := monotonic()
	err := d.Driver.Exec(ctx, query, args, v)
	d.r.statement(ctx, d.res, start, err)
	return err
}

func (d *driver) Query(ctx context.Context, query string, args, v any) error {
	start := monotonic()
	err := d.Driver.Query(ctx, query, args, v)
	d.r.statement(ctx, d.res, start, err)
	return err
}

func (d *driver) Tx(ctx context.Context) (dialect.Tx, error) {
	return d.BeginTx(ctx, nil)
}

var errNoBeginTx = errors.New("tenancy/metrics: the wrapped driver has no BeginTx")

// BeginTx starts a transaction on the wrapped driver (with options when it
// supports them); the transaction's statements are recorded one by one.
func (d *driver) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (dialect.Tx, error) {
	start := monotonic()
	var (
		tx  dialect.Tx
		err error
	)
	if b, ok := d.Driver.(interface {
		BeginTx(context.Context, *stdsql.TxOptions) (dialect.Tx, error)
	}); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else if opts == nil {
		tx, err = d.Driver.Tx(ctx)
	} else {
		err = errNoBeginTx
	}
	if err != nil {
		d.r.statement(ctx, d.res, start, err)
		return nil, err
	}
	return &txWrap{Tx: tx, d: d, ctx: ctx}, nil
}

type txWrap struct {
	dialect.Tx
	d   *driver
	ctx context.Context
}

func (t *txWrap) Exec(ctx context.Context, query string, args, v any) error {
	start := monotonic()
	err := t.Tx.Exec(ctx, query, args, v)
	t.d.r.statement(ctx, t.d.res, start, err)
	return err
}

func (t *txWrap) Query(ctx context.Context, query string, args, v any) error {
	start := monotonic()
	err := t.Tx.Query(ctx, query, args, v)
	t.d.r.statement(ctx, t.d.res, start, err)
	return err
}

func (t *txWrap) Commit() error {
	start := monotonic()
	err := t.Tx.Commit()
	t.d.r.statement(t.ctx, t.d.res, start, err)
	return err
}

func (t *txWrap) Rollback() error {
	start := monotonic()
	err := t.Tx.Rollback()
	t.d.r.statement(t.ctx, t.d.res, start, err)
	return err
}
