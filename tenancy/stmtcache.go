package tenancy

import (
	"container/list"
	"context"
	"fmt"
	"hash/maphash"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connState is what the driver keeps on each pooled connection (in
// pgconn.PgConn.CustomData): its prepared statements and reusable buffers.
// A connection is used by one goroutine at a time, so it needs no lock.
//
// Prepared statements are cached per search_path and SQL. PostgreSQL
// re-analyses and re-plans a prepared statement whenever it runs under
// another search_path than the one it was planned under, so one statement
// per SQL, shared by every schema, is re-planned at almost every use on a
// shard with many tenant schemas (measured: 114 against 48 µs of server time
// per point read, internal/fleetbench BenchmarkPlanCacheSchemaSwitch). A
// statement for a new search_path costs one extra round trip, though, and
// with thousands of schemas a connection could spend more round trips
// preparing than it saves in planning. So a search_path gets a statement of
// its own only once it has run the SQL promoteAfter times on the
// connection; until then it uses the statement another search_path
// prepared, and the server re-plans it as before.
type connState struct {
	session [][]byte                                     // session values of the limits, read on first use
	scopes  [1 << numLimits]*pgconn.StatementDescription // scope statements by limit mask
	vals    [][]byte                                     // scope parameter buffer
	path    []byte                                       // search_path of the lease using the connection
	byPath  map[string]map[string]*list.Element          // search_path -> SQL -> element holding *stmt
	bySQL   map[string]*list.Element                     // SQL -> the most recently prepared *stmt of any search_path
	uses    [useSlots]uint8                              // uses of (search_path, SQL) not yet promoted, hashed
	nuses   int                                          // increments since uses was last aged
	seed    maphash.Seed
	lru     list.List
	cap     int
	seq     uint64
	stale   []string // forgotten statements still to deallocate on the server
	eqb     pgx.ExtendedQueryBuilder
	batch   pgconn.Batch
}

// stmt is a prepared statement and the search_path it was prepared under.
type stmt struct {
	path string
	sd   *pgconn.StatementDescription
}

const (
	connStateKey = "tenantry"
	// promoteAfter is how many runs of one SQL under one search_path,
	// borrowing another path's statement, earn it a statement of its own:
	// about when the planning saved pays for the extra round trip.
	promoteAfter = 3
	useSlots     = 1024
)

func stateOf(c *pgx.Conn, capacity int) *connState {
	data := c.PgConn().CustomData()
	if st, ok := data[connStateKey].(*connState); ok {
		return st
	}
	st := &connState{
		byPath: make(map[string]map[string]*list.Element),
		bySQL:  make(map[string]*list.Element),
		seed:   maphash.MakeSeed(),
		cap:    capacity,
	}
	data[connStateKey] = st
	return st
}

// lookup returns the statement to run sql under st.path: the path's own,
// or another path's while the path has not earned one (then ok is false).
func (st *connState) lookup(sql string) (sd *pgconn.StatementDescription, own bool) {
	if e, ok := st.byPath[string(st.path)][sql]; ok {
		st.lru.MoveToFront(e)
		return e.Value.(*stmt).sd, true
	}
	e, ok := st.bySQL[sql]
	if !ok {
		return nil, false
	}
	if st.used(sql) >= promoteAfter {
		return nil, false
	}
	st.lru.MoveToFront(e)
	return e.Value.(*stmt).sd, false
}

// used counts one more run of sql under st.path and returns the count. The
// counts live in a fixed table (a collision only promotes early) and are
// halved every few thousand runs, so paths that ran long ago lose their
// claim.
func (st *connState) used(sql string) uint8 {
	var h maphash.Hash
	h.SetSeed(st.seed)
	h.Write(st.path)
	h.WriteByte(0)
	h.WriteString(sql)
	i := h.Sum64() % useSlots
	if st.uses[i] < 255 {
		st.uses[i]++
	}
	if st.nuses++; st.nuses >= 4*useSlots {
		st.nuses = 0
		for j := range st.uses {
			st.uses[j] /= 2
		}
	}
	return st.uses[i]
}

// forget drops the statements sql could run with under st.path, because
// the server-side copy is gone or stale; their names are deallocated at the
// next prepare outside a transaction.
func (st *connState) forget(sql string) {
	if e, ok := st.byPath[string(st.path)][sql]; ok {
		st.remove(e)
	}
	if e, ok := st.bySQL[sql]; ok {
		st.remove(e)
	}
}

// remove drops e from the cache and queues its name for deallocation.
func (st *connState) remove(e *list.Element) {
	s := e.Value.(*stmt)
	st.lru.Remove(e)
	if m := st.byPath[s.path]; m != nil {
		delete(m, s.sd.SQL)
		if len(m) == 0 {
			delete(st.byPath, s.path)
		}
	}
	if st.bySQL[s.sd.SQL] == e {
		delete(st.bySQL, s.sd.SQL)
	}
	st.stale = append(st.stale, s.sd.Name)
}

func (st *connState) nextName() string {
	st.seq++
	return "tenantry_" + strconv.FormatUint(st.seq, 10)
}

// prepare returns the statement description to run sql with on this
// connection under st.path, preparing one on a miss. Preparing resolves
// table names, so it must happen under the tenant's search_path: with scope
// values (outside a transaction, or before its first statement) it runs in
// an implicit transaction after them; without (inside a transaction that
// has them) it runs as is. A miss costs one extra round trip.
func (st *connState) prepare(ctx context.Context, c *pgx.Conn, v *scopeValues, sql string) (*pgconn.StatementDescription, error) {
	if sd, _ := st.lookup(sql); sd != nil {
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
		st.remove(oldest)
		name := st.stale[len(st.stale)-1]
		st.stale = st.stale[:len(st.stale)-1]
		if err := pc.Deallocate(ctx, name); err != nil {
			return nil, fmt.Errorf("tenancy: deallocate %s: %w", name, err)
		}
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
	path := string(st.path)
	e := st.lru.PushFront(&stmt{path: path, sd: sd})
	m := st.byPath[path]
	if m == nil {
		m = make(map[string]*list.Element)
		st.byPath[path] = m
	}
	m[sql] = e
	st.bySQL[sql] = e
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
