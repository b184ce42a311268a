package api

import (
	"context"
	"database/sql"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"example.com/app/ent"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenantry/tenantry/tenancy"
)

// Rule 4: raw SQL on handles that bypass the tenant-scoped driver.

func raw(ctx context.Context, db *sql.DB, pool *pgxpool.Pool, conn *pgx.Conn, shard *tenancy.Shard) error {
	if _, err := db.ExecContext(ctx, "DELETE FROM orders"); err != nil { // want `raw SQL through \(\*sql.DB\).ExecContext bypasses the tenant-scoped driver`
		return err
	}
	_ = db.QueryRow("SELECT count(*) FROM orders")                           // want `raw SQL through \(\*sql.DB\).QueryRow`
	if _, err := pool.Exec(ctx, "UPDATE orders SET note = ''"); err != nil { // want `raw SQL through \(\*pgxpool.Pool\).Exec`
		return err
	}
	_ = shard.Pool.QueryRow(ctx, "SELECT * FROM orders") // want `raw SQL through \(\*pgxpool.Pool\).QueryRow`
	_, _ = conn.Exec(ctx, "TRUNCATE orders")             // want `raw SQL through \(\*pgx.Conn\).Exec`
	_ = conn.PgConn().Exec(ctx, "DELETE FROM orders")    // want `raw SQL through \(\*pgconn.PgConn\).Exec`
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	_ = tx.QueryRow(ctx, "SELECT * FROM orders") // want `raw SQL through \(pgx.Tx\).QueryRow`
	return tx.Commit(ctx)
}

// Ent's plain SQL driver wraps a *sql.DB: no tenant scoping either.
func entDriver(ctx context.Context, db *sql.DB) {
	drv := entsql.OpenDB("postgres", db)
	_ = drv.Exec(ctx, "DELETE FROM orders", []any{}, nil) // want `raw SQL through \(\*sql.Driver\).Exec`
	_, _ = drv.DB().Exec("DELETE FROM orders")            // want `raw SQL through \(\*sql.DB\).Exec`
}

// Method values and expressions of raw handles.
func rawValues(ctx context.Context, db *sql.DB) {
	exec := db.ExecContext // want `raw SQL through \(\*sql.DB\).ExecContext`
	_, _ = exec(ctx, "DELETE FROM orders")
	_, _ = (*sql.DB).Exec(db, "DELETE FROM orders") // want `raw SQL through \(\*sql.DB\).Exec`
}

// A generic helper over raw handles.
func rawGeneric[DB interface{ *sql.DB }](ctx context.Context, db DB) {
	_, _ = (*sql.DB)(db).ExecContext(ctx, "DELETE FROM orders") // want `raw SQL through \(\*sql.DB\).ExecContext`
}

// Not reported: the scoped paths, and the ent dialect.Driver interface (the
// tenancy driver implements it too).
func scopedSQL(ctx context.Context, c *ent.Client, d dialect.Driver, td *tenancy.Driver, db *sql.DB, id tenancy.ID) {
	ctx = tenancy.WithTenant(ctx, id)
	_, _ = c.ExecContext(ctx, "UPDATE orders SET note = ''")
	_ = d.Exec(ctx, "SELECT 1", []any{}, nil)
	_ = td.Exec(ctx, "SELECT 1", nil, nil)
	_ = db.PingContext(ctx)
	_, _ = db.Exec("SELECT count(*) FROM orders") //tenantlint:ok capacity metric, reviewed in SEC-9
}

// Not reported: constant statements that touch no table (advisory locks,
// notifications, settings) or only system catalogs.
func tableless(ctx context.Context, db *sql.DB, pool *pgxpool.Pool, conn *pgx.Conn) {
	_, _ = db.ExecContext(ctx, "SELECT pg_advisory_lock($1)", 42)
	_, _ = db.Exec("SELECT pg_notify($1, '*')", "registry")
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", "app")
	_, _ = conn.Exec(ctx, "LISTEN registry")
	_, _ = (*sql.DB).Exec(db, "SELECT 1")
	const health = "SELECT 1"
	_ = db.QueryRowContext(ctx, health)
}

// Reported: statements the linter cannot read.
func dynamic(ctx context.Context, db *sql.DB, table string) {
	_, _ = db.ExecContext(ctx, "DELETE FROM "+table) // want `raw SQL through \(\*sql.DB\).ExecContext`
	q := "SELECT 1"
	_ = db.QueryRow(q) // want `raw SQL through \(\*sql.DB\).QueryRow`
}

// DBTX is the interface sqlc generates: whatever runs through it is raw SQL
// when a raw handle stands behind it.
type DBTX interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

// Queries is sqlc's query set.
type Queries struct{ db DBTX }

func newQueries(db DBTX) *Queries { return &Queries{db: db} }

// PgxDBTX is sqlc's interface for pgx.
type PgxDBTX interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}

// Reported: raw handles that become such an interface, whatever way.
func rawBehindInterfaces(db *sql.DB, pool *pgxpool.Pool) (DBTX, *Queries) {
	_ = newQueries(db)   // want `raw database handle \*sql.DB used as api.DBTX: statements run through its ExecContext bypass the tenant-scoped driver`
	q := Queries{db: db} // want `raw database handle \*sql.DB used as api.DBTX`
	var p PgxDBTX = pool // want `raw database handle \*pgxpool.Pool used as api.PgxDBTX: statements run through its Exec`
	var d DBTX
	d = db // want `raw database handle \*sql.DB used as api.DBTX`
	_, _ = p, d
	_ = func() DBTX { return db } // want `raw database handle \*sql.DB used as api.DBTX`
	return db, &q                 // want `raw database handle \*sql.DB used as api.DBTX`
}

func useDriver(dialect.Driver) {}

// Not reported: interfaces without exec or query methods, Ent's dialect
// interfaces (the tenancy driver implements them too), and values that are
// interfaces already.
func notRawBehindInterfaces(db *sql.DB, d DBTX) {
	var pinger interface{ PingContext(context.Context) error } = db
	_ = pinger
	var anyDB any = db
	_ = anyDB
	useDriver(entsql.OpenDB("postgres", db))
	_ = newQueries(d)
	_ = Queries{db: d}
}
