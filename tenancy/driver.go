package tenancy

import (
	"bytes"
	"context"
	stdsql "database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Driver is an Ent dialect.Driver on pgx that scopes every statement to the
// tenant in its context.
//
// Each statement outside a transaction runs as one implicit transaction: a
// prepared set_config(..., true) statement (search_path = exactly the
// tenant's schema, app.current_tenant_id, the plan's limits, an
// application_name naming the tenant) and the prepared statement itself are
// batched behind one Sync, so they cost one network round trip and leave
// nothing on the connection. In an explicit transaction the settings go with
// the first statement, in the same round trip as BEGIN.
//
// A context without a tenant fails with ErrNoTenant. Unscoped contexts run on
// the shard's admin pool. Read-only transactions of placements made with
// ReplicaReads run on the shard's replica. Every transaction of a placement
// made with FenceWrites is read-only on the server, and a write fails with
// an error wrapping ErrTenantReadOnly.
//
// When the tenant's shard cannot be reached (connection refused, a
// connection broken under the statement, the server shutting down or
// starting up), the error is a *ShardUnavailableError wrapping
// ErrShardUnavailable and the underlying pgconn error: retryable, and an
// HTTP 503. Broken connections are dropped from the pool, so the driver
// serves the shard again as soon as it accepts connections.
type Driver struct {
	resolver   Resolver
	gate       Gate
	cacheSize  int
	maxSchemas int
}

// Gate admits work onto a shard before a connection is taken: per-tenant
// concurrency caps, fair queuing across tenants, rate limits. Enter blocks
// until the work may run or returns a typed error (tenant busy, throttled,
// context done); every successful Enter is followed by exactly one Leave,
// with the same placement, when the statement or transaction has released
// its connection. Both run on the request path: they must not allocate per
// call.
//
// p.Shard.Pool is the pool the connection will come from. For a read-only
// transaction served by the shard's replica, or Unscoped work on its admin
// pool, p is a view of the tenant's placement whose Shard.Pool is that pool
// (same tenant, schema, limits and shard name), so that a gate counting
// connections per pool counts each where it is taken.
type Gate interface {
	Enter(ctx context.Context, p *Placement) error
	Leave(p *Placement)
}

// WithGate puts g in front of every shard pool.
func WithGate(g Gate) DriverOption {
	return func(d *Driver) { d.gate = g }
}

var (
	_ dialect.Driver = (*Driver)(nil)
	_ dialect.Tx     = (*Tx)(nil)
)

// DriverOption configures a Driver.
type DriverOption func(*Driver)

// WithStatementCacheSize sets how many prepared statements the driver keeps
// per connection (default 512). Least recently used ones are deallocated.
// Each one holds its plan in the server's backend: about 31 KB for the
// example app's point read and order insert (internal/fleetbench
// BenchmarkStatementCacheMemory), so 512 statements cost a connection
// about 16 MB of server memory and 4,096 about 128 MB.
func WithStatementCacheSize(n int) DriverOption {
	return func(d *Driver) {
		if n > 0 {
			d.cacheSize = n
		}
	}
}

// WithMaxSchemasPerConn bounds how many schemas one connection serves: a
// connection that has served more than n distinct schemas is closed when
// it is released, and the pool opens a new one. Shared schemas count once,
// however many tenants they hold. There is no bound by default.
//
// A PostgreSQL backend keeps the catalog entries of every table it has
// touched until it exits, so on a shard of thousands of own schemas a
// long-lived connection grows by tens of kilobytes per schema it meets
// (pgxpool's MaxConnLifetime bounds that in time only). The bound trades
// that memory for reloading: a new connection loads each schema's catalog
// entries and statements again on first use. Set it above the number of
// schemas a connection serves in steady state and below what the server's
// memory allows: below the working set, nearly every statement pays the
// reload (internal/fleetbench BenchmarkSchemasPerConn: 600 schemas through
// one connection, bound 150: backend 4 MB instead of 40 MB, each read
// about 0.3 ms slower).
func WithMaxSchemasPerConn(n int) DriverOption {
	return func(d *Driver) { d.maxSchemas = max(n, 0) }
}

// NewDriver returns a driver routing through r. Use one driver, and one Ent
// client on it, for all tenants and shards:
//
//	client := ent.NewClient(ent.Driver(tenancy.NewDriver(resolver)))
func NewDriver(r Resolver, opts ...DriverOption) *Driver {
	d := &Driver{resolver: r, cacheSize: 512}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Dialect implements dialect.Driver.
func (*Driver) Dialect() string { return dialect.Postgres }

// Close implements dialect.Driver. The pools belong to the caller, who
// closes them.
func (*Driver) Close() error { return nil }

// route returns the placement, pool and encoded settings for ctx. readOnly
// says the work is a read-only transaction, which may go to a replica.
func (d *Driver) route(ctx context.Context, readOnly bool) (*Placement, *pgxpool.Pool, *scopeValues, error) {
	s := lookup(ctx)
	switch {
	case s != nil && s.unscoped:
		var (
			p   *Placement
			err error
		)
		if s.tenant.IsZero() {
			p, err = d.resolver.ResolveUnscoped(ctx)
		} else {
			p, err = d.resolver.Resolve(ctx, s.tenant)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		// The views are made by NewPlacement from the shard's pools; the
		// pool used is the view's, which is the one the gate counts.
		if p.onAdmin == nil {
			return nil, nil, nil, fmt.Errorf("%w: shard %q has no admin pool for unscoped access", ErrInvalidPlacement, p.Shard.Name)
		}
		return p.onAdmin, p.onAdmin.Shard.Pool, &p.adminScope, nil
	case s == nil || s.tenant.IsZero():
		return nil, nil, nil, ErrNoTenant
	default:
		p, err := d.resolver.Resolve(ctx, s.tenant)
		if err != nil {
			return nil, nil, nil, err
		}
		if readOnly && p.onReplica != nil {
			return p.onReplica, p.onReplica.Shard.Pool, &p.scope, nil
		}
		return p, p.Shard.Pool, &p.scope, nil
	}
}

// lease is a connection held for one statement or transaction, with the
// gate's admission that goes with it.
type lease struct {
	conn     *pgxpool.Conn
	pool     *pgxpool.Pool
	st       *connState
	p        *Placement
	gate     Gate
	settings *scopeValues
	retire   bool // close the connection on release (WithMaxSchemasPerConn)
}

// acquire routes ctx, passes the gate and takes a connection.
func (d *Driver) acquire(ctx context.Context, readOnly bool) (lease, error) {
	p, pool, settings, err := d.route(ctx, readOnly)
	if err != nil {
		return lease{}, err
	}
	if d.gate != nil {
		if err := d.gate.Enter(ctx, p); err != nil {
			return lease{}, err
		}
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		if d.gate != nil {
			d.gate.Leave(p)
		}
		if uerr := p.unavailable(nil, nil, err); uerr != err {
			return lease{}, uerr
		}
		return lease{}, fmt.Errorf("tenancy: shard %q: %w", p.Shard.Name, err)
	}
	st := stateOf(conn.Conn(), d.cacheSize)
	st.path = settings[0]
	// Unscoped work sends every limit: admin code may change session
	// values on its connections, which the driver otherwise compares to.
	st.allLimits = pool == p.Shard.Admin
	retire := d.maxSchemas > 0 && st.serve(st.path) > d.maxSchemas
	return lease{conn: conn, pool: pool, st: st, p: p, gate: d.gate, settings: settings, retire: retire}, nil
}

func (l *lease) release() {
	if l.retire {
		// The pool destroys a closed connection on release and opens
		// another when one is needed.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		l.conn.Conn().Close(ctx)
		cancel()
	}
	l.conn.Release()
	if l.gate != nil {
		l.gate.Leave(l.p)
	}
}

// Exec implements dialect.ExecQuerier.
func (d *Driver) Exec(ctx context.Context, query string, args, v any) error {
	argv, err := argsOf(args)
	if err != nil {
		return err
	}
	l, err := d.acquire(ctx, false)
	if err != nil {
		return err
	}
	defer l.release()
	c := l.conn.Conn()
	prefix := l.p.implicitPrefix()
	tag, err := execStatement(ctx, c, l.st, prefix, l.settings, query, argv, v)
	if l.st.recover(query, err) {
		tag, err = execStatement(ctx, c, l.st, prefix, l.settings, query, argv, v)
	}
	l.retire = l.retire || changesSession(tag)
	return l.p.failed(l.pool, c.PgConn(), query, err)
}

// Query implements dialect.ExecQuerier. v must be *entsql.Rows.
func (d *Driver) Query(ctx context.Context, query string, args, v any) error {
	vr, ok := v.(*entsql.Rows)
	if !ok {
		return fmt.Errorf("tenancy: Query: invalid type %T, expect *sql.Rows", v)
	}
	argv, err := argsOf(args)
	if err != nil {
		return err
	}
	l, err := d.acquire(ctx, false)
	if err != nil {
		return err
	}
	c := l.conn.Conn()
	prefix := l.p.implicitPrefix()
	r, err := queryStatement(ctx, c, l.st, prefix, l.settings, query, argv)
	if l.st.recover(query, err) {
		r, err = queryStatement(ctx, c, l.st, prefix, l.settings, query, argv)
	}
	if err != nil {
		err = l.p.failed(l.pool, c.PgConn(), query, err) // reads the connection: before release
		l.release()
		return err
	}
	r.lease, r.query = l, query
	*vr = entsql.Rows{ColumnScanner: r}
	return nil
}

// Tx implements dialect.Driver.
func (d *Driver) Tx(ctx context.Context) (dialect.Tx, error) {
	return d.BeginTx(ctx, nil)
}

// BeginTx starts a transaction scoped to the tenant in ctx. Nothing is sent
// until the first statement, which carries BEGIN and the settings with it.
// Every statement of the transaction must carry the same scope.
func (d *Driver) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (dialect.Tx, error) {
	begin, err := beginSQL(opts)
	if err != nil {
		return nil, err
	}
	readOnly := opts != nil && opts.ReadOnly
	l, err := d.acquire(ctx, readOnly)
	if err != nil {
		return nil, err
	}
	if l.p.fence != "" && !readOnly {
		begin += " READ ONLY"
	}
	return &Tx{
		ctx:   ctx,
		scope: lookup(ctx),
		lease: l,
		c:     l.conn.Conn(),
		begin: begin,
	}, nil
}

func beginSQL(opts *stdsql.TxOptions) (string, error) {
	if opts == nil {
		return "BEGIN", nil
	}
	s := "BEGIN"
	switch opts.Isolation {
	case stdsql.LevelDefault:
	case stdsql.LevelReadCommitted:
		s += " ISOLATION LEVEL READ COMMITTED"
	case stdsql.LevelRepeatableRead, stdsql.LevelSnapshot:
		s += " ISOLATION LEVEL REPEATABLE READ"
	case stdsql.LevelSerializable:
		s += " ISOLATION LEVEL SERIALIZABLE"
	default:
		return "", fmt.Errorf("tenancy: isolation level %v is not supported by PostgreSQL", opts.Isolation)
	}
	if opts.ReadOnly {
		s += " READ ONLY"
	}
	return s, nil
}

// Tx is a transaction of one tenant (or of one Unscoped context) on one
// connection.
type Tx struct {
	ctx   context.Context
	scope *scope
	lease lease
	c     *pgx.Conn
	begin string // BEGIN statement still to send with the first statement; "" once sent
	done  bool
}

// check makes sure a statement belongs to the transaction's scope.
func (tx *Tx) check(ctx context.Context) error {
	if tx.done {
		return stdsql.ErrTxDone
	}
	s := lookup(ctx)
	if s == nil || (!s.unscoped && s.tenant.IsZero()) {
		return ErrNoTenant
	}
	if s.unscoped != tx.scope.unscoped || s.tenant != tx.scope.tenant {
		return fmt.Errorf("statement for tenant %s in a transaction of tenant %s: %w", s.tenant, tx.scope.tenant, ErrTenantMismatch)
	}
	return nil
}

// opening returns the BEGIN and settings to send with the next statement.
func (tx *Tx) opening() (string, *scopeValues) {
	if tx.begin == "" {
		return "", nil
	}
	return tx.begin, tx.lease.settings
}

// opened records the outcome of a statement that carried BEGIN. The server
// transaction exists once the batch reached the server and BEGIN ran: the
// statement succeeded, or the connection reports a transaction (in progress
// or failed). A statement refused before it was sent (encoding, prepare,
// routing) leaves BEGIN pending for the next one, so that no statement of
// the transaction ever runs outside it.
func (tx *Tx) opened(begin string, err error) {
	if begin != "" && (err == nil || tx.c.PgConn().TxStatus() != 'I') {
		tx.begin = ""
	}
}

// Exec implements dialect.ExecQuerier.
func (tx *Tx) Exec(ctx context.Context, query string, args, v any) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	argv, err := argsOf(args)
	if err != nil {
		return err
	}
	begin, settings := tx.opening()
	tag, err := execStatement(ctx, tx.c, tx.lease.st, begin, settings, query, argv, v)
	tx.opened(begin, err)
	if tx.lease.st.recover(query, err) && unsent(err) {
		tag, err = execStatement(ctx, tx.c, tx.lease.st, begin, settings, query, argv, v)
		tx.opened(begin, err)
	}
	tx.lease.retire = tx.lease.retire || changesSession(tag)
	return tx.lease.p.failed(tx.lease.pool, tx.c.PgConn(), query, err)
}

// Query implements dialect.ExecQuerier.
func (tx *Tx) Query(ctx context.Context, query string, args, v any) error {
	vr, ok := v.(*entsql.Rows)
	if !ok {
		return fmt.Errorf("tenancy: Query: invalid type %T, expect *sql.Rows", v)
	}
	if err := tx.check(ctx); err != nil {
		return err
	}
	argv, err := argsOf(args)
	if err != nil {
		return err
	}
	begin, settings := tx.opening()
	r, err := queryStatement(ctx, tx.c, tx.lease.st, begin, settings, query, argv)
	tx.opened(begin, err)
	if tx.lease.st.recover(query, err) && unsent(err) {
		r, err = queryStatement(ctx, tx.c, tx.lease.st, begin, settings, query, argv)
		tx.opened(begin, err)
	}
	if err != nil {
		return tx.lease.p.failed(tx.lease.pool, tx.c.PgConn(), query, err)
	}
	r.lease.p, r.lease.pool, r.query = tx.lease.p, tx.lease.pool, query
	*vr = entsql.Rows{ColumnScanner: r}
	return nil
}

// Commit implements driver.Tx.
func (tx *Tx) Commit() error { return tx.end("COMMIT") }

// Rollback implements driver.Tx.
func (tx *Tx) Rollback() error { return tx.end("ROLLBACK") }

func (tx *Tx) end(stmt string) error {
	if tx.done {
		return stdsql.ErrTxDone
	}
	tx.done = true
	defer tx.lease.release()
	if tx.begin != "" { // nothing was sent: there is no server transaction
		return nil
	}
	tag, err := tx.c.PgConn().Exec(tx.ctx, stmt).ReadAll()
	if err != nil {
		return tx.lease.p.unavailable(tx.lease.pool, tx.c.PgConn(), err)
	}
	if stmt == "COMMIT" && len(tag) == 1 && tag[0].CommandTag.String() == "ROLLBACK" {
		return errRolledBack
	}
	return nil
}

var errRolledBack = errors.New("tenancy: commit failed: the transaction was rolled back after an earlier error")

func argsOf(args any) ([]any, error) {
	switch a := args.(type) {
	case []any:
		return a, nil
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("tenancy: invalid args type %T, expect []any", args)
	}
}

// unsent reports an error raised before anything was sent for the
// statement, which a transaction survives.
func unsent(err error) bool {
	var e *encodeError
	return errors.As(err, &e)
}

// send batches [BEGIN (or readOnlySQL)], [scope settings] and the statement
// behind one Sync (one write, one round trip) and returns the reader
// positioned at the statement's result.
func send(ctx context.Context, c *pgx.Conn, st *connState, begin string, settings *scopeValues, query string, args []any) (*pgconn.MultiResultReader, *pgconn.ResultReader, error) {
	if len(args) > maxParams {
		// The protocol counts parameters in 16 bits; pgconn would fail
		// the batch with an error that names the scope statement.
		return nil, nil, &encodeError{fmt.Errorf("%d arguments: PostgreSQL takes at most %d per statement; split the statement (e.g. an IN list into batches)", len(args), maxParams)}
	}
	sd, borrowed, err := st.prepare(ctx, c, settings, query)
	if err != nil {
		return nil, nil, err
	}
	var (
		scope *pgconn.StatementDescription
		vals  [][]byte
	)
	if settings != nil {
		if scope, vals, err = st.scope(ctx, c, settings); err != nil {
			return nil, nil, err
		}
	}
	if err := st.eqb.Build(c.TypeMap(), sd, args); err != nil {
		return nil, nil, lent(borrowed, &encodeError{err})
	}
	batch := &st.batch
	*batch = pgconn.Batch{}
	if begin != "" {
		batch.ExecParams(begin, nil, nil, nil, nil)
	}
	if scope != nil {
		batch.ExecStatement(scope, vals, nil, nil)
	}
	if borrowed {
		batch.ExecParams(query, st.eqb.ParamValues, sd.ParamOIDs, st.eqb.ParamFormats, st.eqb.ResultFormats)
	} else {
		batch.ExecStatement(sd, st.eqb.ParamValues, st.eqb.ParamFormats, st.eqb.ResultFormats)
	}
	mrr := c.PgConn().ExecBatch(ctx, batch)
	fail := func(err error) (*pgconn.MultiResultReader, *pgconn.ResultReader, error) {
		if cerr := mrr.Close(); err == nil {
			err = cerr
		}
		return nil, nil, err
	}
	if begin != "" {
		if err := discardResult(mrr); err != nil {
			return fail(fmt.Errorf("tenancy: %s: %w", begin, err))
		}
	}
	if scope != nil {
		if err := scopeApplied(mrr); err != nil {
			return fail(fmt.Errorf("tenancy: apply tenant settings: %w", err))
		}
	}
	if !mrr.NextResult() {
		if err := mrr.Close(); err != nil {
			return nil, nil, lent(borrowed, err)
		}
		return nil, nil, errors.New("tenancy: no result for the statement")
	}
	return mrr, mrr.ResultReader(), nil
}

// maxParams is the most parameters the protocol lets a statement have.
const maxParams = 65535

// lent marks err as the error of a borrowed statement description.
func lent(borrowed bool, err error) error {
	if borrowed {
		return &borrowedError{err}
	}
	return err
}

// readOnlySQL makes the implicit transaction of a statement of a fenced
// placement read-only. Sent first in the statement's batch, it costs no
// extra round trip. (SET TRANSACTION would do the same, with a warning
// outside an explicit transaction block.)
const readOnlySQL = "SELECT set_config('transaction_read_only', 'on', true)"

// implicitPrefix returns what send puts before the settings of a statement
// outside a transaction: nothing, or readOnlySQL for a fenced placement.
func (p *Placement) implicitPrefix() string {
	if p.fence != "" {
		return readOnlySQL
	}
	return ""
}

// nextResult advances mrr to the next result, which must exist.
func nextResult(mrr *pgconn.MultiResultReader) (*pgconn.ResultReader, error) {
	if !mrr.NextResult() {
		if err := mrr.Close(); err != nil {
			return nil, err
		}
		return nil, errors.New("missing result")
	}
	return mrr.ResultReader(), nil
}

// discardResult reads and drops the next result of mrr.
func discardResult(mrr *pgconn.MultiResultReader) error {
	rr, err := nextResult(mrr)
	if err != nil {
		return err
	}
	_, err = rr.Close()
	return err
}

// scopeApplied reads the result of the scope statement, one row whose
// value is 0 unless a set_config call returned NULL (see scopeSQL).
func scopeApplied(mrr *pgconn.MultiResultReader) error {
	rr, err := nextResult(mrr)
	if err != nil {
		return err
	}
	ok := rr.NextRow() && len(rr.Values()) == 1 && string(rr.Values()[0]) == "0"
	if _, err := rr.Close(); err != nil {
		return err
	}
	if !ok {
		return errScopeNotApplied
	}
	return nil
}

var errScopeNotApplied = errors.New("the scope statement did not return 0: a set_config call returned NULL")

func execStatement(ctx context.Context, c *pgx.Conn, st *connState, begin string, settings *scopeValues, query string, args []any, v any) (pgconn.CommandTag, error) {
	mrr, rr, err := send(ctx, c, st, begin, settings, query, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := rr.Close()
	// Errors raised at the implicit commit arrive with the Sync.
	if cerr := mrr.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return tag, err
	}
	switch v := v.(type) {
	case nil:
	case *stdsql.Result:
		*v = result(tag.RowsAffected())
	default:
		return tag, fmt.Errorf("tenancy: Exec: invalid type %T, expect *sql.Result", v)
	}
	return tag, nil
}

// changesSession reports a statement that may have changed the
// connection's session state: SET (a session-level one lasts after the
// transaction), RESET, DISCARD, LISTEN, LOAD. The driver then closes the
// connection when it is released, so that the next user gets a fresh one,
// whose session values are those the driver reads and relies on.
// (Unscoped raw SQL may run these; tenant-scoped raw SQL may not,
// CheckRawSQL.)
func changesSession(tag pgconn.CommandTag) bool {
	s := tag.String()
	if len(s) == 0 || (s[0] != 'S' && s[0] != 'R' && s[0] != 'D' && s[0] != 'L') {
		return false
	}
	switch s {
	case "SET", "RESET", "LISTEN", "LOAD":
		return true
	}
	return strings.HasPrefix(s, "DISCARD")
}

func queryStatement(ctx context.Context, c *pgx.Conn, st *connState, begin string, settings *scopeValues, query string, args []any) (*rows, error) {
	mrr, rr, err := send(ctx, c, st, begin, settings, query, args)
	if err != nil {
		return nil, err
	}
	m := c.TypeMap()
	return &rows{Rows: pgx.RowsFromResultReader(m, rr), typeMap: m, batch: mrr, pc: c.PgConn()}, nil
}

type result int64

func (r result) RowsAffected() (int64, error) { return int64(r), nil }
func (result) LastInsertId() (int64, error) {
	return 0, errors.New("tenancy: LastInsertId is not supported by PostgreSQL; use RETURNING")
}

// rows adapts pgx.Rows to Ent's ColumnScanner. When the rows are exhausted
// or closed it reads the batch to its end (where errors of the implicit
// commit arrive) and releases the connection (outside a transaction).
type rows struct {
	pgx.Rows
	typeMap *pgtype.Map
	batch   *pgconn.MultiResultReader
	pc      *pgconn.PgConn
	lease   lease  // only its placement inside a transaction, which keeps the connection
	query   string // for the errors of the fence (Placement.fenced)
	err     error
	closed  bool
}

func (r *rows) Next() bool {
	if r.closed {
		return false
	}
	if r.Rows.Next() {
		return true
	}
	r.close()
	return false
}

func (r *rows) close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.Rows.Err()
	if err := r.batch.Close(); r.err == nil {
		r.err = err
	}
	r.err = r.lease.p.failed(r.lease.pool, r.pc, r.query, r.err)
	if r.lease.conn != nil {
		r.lease.retire = r.lease.retire || changesSession(r.Rows.CommandTag())
		r.lease.release()
	}
}

func (r *rows) Close() error {
	r.close()
	return r.err
}

func (r *rows) Err() error {
	if r.closed {
		return r.err
	}
	return r.lease.p.failed(r.lease.pool, r.pc, r.query, r.Rows.Err())
}

// Scan scans like pgx, except into *any and *driver.Value, which get the
// value database/sql would give (Ent scans ids of edge updates and unknown
// columns that way): pgx itself cannot put a binary uuid into them. Rows
// of Ent's common field types are scanned by scanDirect.
func (r *rows) Scan(dest ...any) error {
	if scanDirect(r.typeMap, r.Rows.FieldDescriptions(), r.Rows.RawValues(), dest) {
		return nil
	}
	for i, d := range dest {
		switch d.(type) {
		case *any, *driver.Value:
			return r.Rows.Scan(sqlValues(dest, i)...)
		}
	}
	return r.Rows.Scan(dest...)
}

// sqlValues copies dest from index i on, wrapping *any and *driver.Value
// destinations in a sql.Scanner.
func sqlValues(dest []any, i int) []any {
	out := make([]any, len(dest))
	copy(out, dest[:i])
	for ; i < len(dest); i++ {
		switch d := dest[i].(type) {
		case *any:
			out[i] = sqlValue{d}
		case *driver.Value:
			out[i] = sqlValue{(*any)(d)}
		default:
			out[i] = d
		}
	}
	return out
}

// sqlValue receives a column as a database/sql driver value.
type sqlValue struct{ dst *any }

func (v sqlValue) Scan(src any) error {
	if b, ok := src.([]byte); ok {
		src = bytes.Clone(b) // pgx reuses its read buffer
	}
	*v.dst = src
	return nil
}

func (r *rows) Columns() ([]string, error) {
	fds := r.Rows.FieldDescriptions()
	cols := make([]string, len(fds))
	for i := range fds {
		cols[i] = fds[i].Name
	}
	return cols, nil
}

// ColumnTypes is not available without database/sql; Ent then scans unknown
// columns into any.
func (*rows) ColumnTypes() ([]*stdsql.ColumnType, error) {
	return nil, errors.New("tenancy: column types are not available")
}

func (*rows) NextResultSet() bool { return false }
