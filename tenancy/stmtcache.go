package tenancy

import (
	"container/list"
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connState is what the driver keeps on each pooled connection (in
// pgconn.PgConn.CustomData): its prepared statements and reusable buffers.
// A connection is used by one goroutine at a time, so it needs no lock.
type connState struct {
	session [][]byte                                     // session values of the limits, read on first use
	scopes  [1 << numLimits]*pgconn.StatementDescription // scope statements by limit mask
	vals    [][]byte                                     // scope parameter buffer
	stmts   map[string]*list.Element                     // SQL -> element holding *pgconn.StatementDescription
	lru     list.List
	cap     int
	seq     uint64
	stale   []string // forgotten statements still to deallocate on the server
	eqb     pgx.ExtendedQueryBuilder
	batch   pgconn.Batch
}

const connStateKey = "tenantry"

func stateOf(c *pgx.Conn, capacity int) *connState {
	data := c.PgConn().CustomData()
	if st, ok := data[connStateKey].(*connState); ok {
		return st
	}
	st := &connState{stmts: make(map[string]*list.Element), cap: capacity}
	data[connStateKey] = st
	return st
}

func (st *connState) lookup(sql string) *pgconn.StatementDescription {
	if e, ok := st.stmts[sql]; ok {
		st.lru.MoveToFront(e)
		return e.Value.(*pgconn.StatementDescription)
	}
	return nil
}

// forget drops a statement whose server-side copy is gone or stale; its
// name is deallocated at the next prepare outside a transaction.
func (st *connState) forget(sql string) {
	if e, ok := st.stmts[sql]; ok {
		st.lru.Remove(e)
		delete(st.stmts, sql)
		st.stale = append(st.stale, e.Value.(*pgconn.StatementDescription).Name)
	}
}

func (st *connState) nextName() string {
	st.seq++
	return "tenantry_" + strconv.FormatUint(st.seq, 10)
}

// prepare returns the statement description of sql on this connection,
// preparing it on a miss. Preparing resolves table names, so it must happen
// under the tenant's search_path: with scope values (outside a transaction,
// or before its first statement) it runs in an implicit transaction after
// them; without (inside a transaction that has them) it runs as is. A miss costs
// one extra round trip per connection and statement.
func (st *connState) prepare(ctx context.Context, c *pgx.Conn, v *scopeValues, sql string) (*pgconn.StatementDescription, error) {
	if sd := st.lookup(sql); sd != nil {
		return sd, nil
	}
	pc := c.PgConn()
	if v != nil { // not inside a server transaction
		for _, name := range st.stale {
			// The statement may be gone already (26000); either way it is
			// no longer ours.
			_ = pc.Deallocate(ctx, name)
		}
		st.stale = st.stale[:0]
	}
	if st.lru.Len() >= st.cap {
		oldest := st.lru.Back()
		sd := oldest.Value.(*pgconn.StatementDescription)
		if err := pc.Deallocate(ctx, sd.Name); err != nil {
			return nil, fmt.Errorf("tenancy: deallocate %s: %w", sd.Name, err)
		}
		st.lru.Remove(oldest)
		delete(st.stmts, sd.SQL)
	}
	name := st.nextName()
	var (
		sd  *pgconn.StatementDescription
		err error
	)
	if v == nil {
		sd, err = pc.Prepare(ctx, name, sql, nil)
	} else {
		scope, vals, serr := st.scope(ctx, c, v)
		if serr != nil {
			return nil, serr
		}
		sd, err = prepareScoped(ctx, pc, scope, vals, name, sql)
	}
	if err != nil {
		return nil, err
	}
	sd.Name, sd.SQL = name, sql
	st.stmts[sql] = st.lru.PushFront(sd)
	return sd, nil
}

func prepareScoped(ctx context.Context, pc *pgconn.PgConn, scope *pgconn.StatementDescription, settings [][]byte, name, sql string) (*pgconn.StatementDescription, error) {
	p := pc.StartPipeline(ctx)
	p.SendQueryStatement(scope, settings, nil, nil)
	p.SendPrepare(name, sql, nil)
	if err := p.Sync(); err != nil {
		return nil, err
	}
	var sd *pgconn.StatementDescription
	err := drainScope(p)
	if err == nil {
		var res any
		res, err = p.GetResults()
		sd, _ = res.(*pgconn.StatementDescription)
		if err == nil && sd == nil {
			err = fmt.Errorf("tenancy: prepare: unexpected pipeline result %T", res)
		}
	}
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	return sd, err
}

// drainScope reads the result of the scope statement.
func drainScope(p *pgconn.Pipeline) error {
	res, err := p.GetResults()
	if err != nil {
		return err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return fmt.Errorf("tenancy: scope: unexpected pipeline result %T", res)
	}
	_, err = rr.Close()
	return err
}
