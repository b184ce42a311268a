package tenancy

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
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
// when a connection serves more (search_path, SQL) pairs than its cache
// holds, preparing for each would trade planning for round trips and churn.
// So the cache admits like TinyLFU: it counts every run of each pair in a
// small aged frequency table, and a search_path gets a statement of its own
// once it has run the SQL promoteAfter times and, when the cache is full,
// more often than the least recently used statement it would evict. Until
// then it borrows the description of the statement another search_path
// prepared (parameter and result types, so no Describe round trip) and
// runs the SQL as an unnamed statement: Parse, Bind and Execute in the
// statement's one round trip. The server parses and plans it once, as for
// a simple query, and the lender's prepared statement keeps its plan
// (running the lender's statement itself under another search_path would
// make the server re-analyse it there, and again when the lender next runs
// it: two plannings per borrow on a shard with more pairs than the cache).
type connState struct {
	session   [][]byte                                     // session values of the limits, read on first use
	scopes    [1 << numLimits]*pgconn.StatementDescription // scope statements by limit mask
	scopeGen  int                                          // names the scope statements apart after a reset
	allLimits bool                                         // send every limit whatever the session values (the admin pool)
	vals      [][]byte                                     // scope parameter buffer
	path      []byte                                       // search_path of the lease using the connection
	byPath    map[string]map[string]*list.Element          // search_path -> SQL -> element holding *stmt
	bySQL     map[string]*list.Element                     // SQL -> the most recently prepared *stmt of any search_path
	freq      [freqSlots]uint8                             // runs of (search_path, SQL), hashed
	nfreq     int                                          // runs since freq was last aged
	seed      maphash.Seed
	lru       list.List
	cap       int
	seq       uint64
	stale     []string            // statements to deallocate with the next prepare
	schemas   map[string]struct{} // search_paths served (WithMaxSchemasPerConn)
	eqb       pgx.ExtendedQueryBuilder
	batch     pgconn.Batch
}

// binaryUUID is a uuid.UUID as pgtype.UUIDValuer, which pgx encodes with
// its UUID codec.
type binaryUUID [16]byte

func (u binaryUUID) UUIDValue() (pgtype.UUID, error) { return pgtype.UUID{Bytes: u, Valid: true}, nil }

// encodeUUIDs makes the connection's type map encode uuid.UUID arguments
// with the UUID codec. uuid.UUID is a driver.Valuer, and pgx otherwise
// falls back to it: it formats the UUID as a 36-byte string and parses it
// back (a point read: 160 instead of 142 allocations). Ent passes every
// UUID id and foreign key that way. pgx memoizes encode plans per type
// map, so this must run before the connection's first uuid.UUID argument.
func encodeUUIDs(m *pgtype.Map) {
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{func(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
		if u, ok := value.(uuid.UUID); ok {
			return &uuidEncodePlan{}, binaryUUID(u), true
		}
		return nil, nil, false
	}}, m.TryWrapEncodePlanFuncs...)
}

type uuidEncodePlan struct{ next pgtype.EncodePlan }

func (p *uuidEncodePlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *uuidEncodePlan) Encode(value any, buf []byte) ([]byte, error) {
	return p.next.Encode(binaryUUID(value.(uuid.UUID)), buf)
}

// stmt is a prepared statement and the search_path it was prepared under.
type stmt struct {
	path string
	slot uint32 // of (path, SQL) in connState.freq
	sd   *pgconn.StatementDescription
}

const (
	connStateKey = "tenantry"
	// promoteAfter is how many runs of one SQL under one search_path earn
	// it a statement of its own: about when the planning saved pays for
	// the extra round trip.
	promoteAfter = 3
	freqSlots    = 4096
)

func stateOf(c *pgx.Conn, capacity int) *connState {
	data := c.PgConn().CustomData()
	if st, ok := data[connStateKey].(*connState); ok {
		return st
	}
	encodeUUIDs(c.TypeMap())
	st := &connState{
		schemas: make(map[string]struct{}),
		byPath:  make(map[string]map[string]*list.Element),
		bySQL:   make(map[string]*list.Element),
		seed:    maphash.MakeSeed(),
		cap:     capacity,
	}
	data[connStateKey] = st
	return st
}

// serve notes that the connection serves path and returns how many
// distinct paths it has served.
func (st *connState) serve(path []byte) int {
	if _, ok := st.schemas[string(path)]; !ok {
		st.schemas[string(path)] = struct{}{}
	}
	return len(st.schemas)
}

// lookup returns the statement to run sql with under st.path, the path's
// own or, when borrowed is true, the description of another path's (to
// run as an unnamed statement), and the slot of (st.path, sql) in the
// frequency table; nil means prepare one for st.path. A pair whose count
// is saturated gets its own statement even when the cache is full: that is
// where recover puts a pair whose borrowed run failed.
func (st *connState) lookup(sql string) (sd *pgconn.StatementDescription, slot uint32, borrowed bool) {
	slot = st.run(sql)
	if e, ok := st.byPath[string(st.path)][sql]; ok {
		st.lru.MoveToFront(e)
		return e.Value.(*stmt).sd, slot, false
	}
	e, ok := st.bySQL[sql]
	if !ok {
		return nil, slot, false
	}
	if n := st.freq[slot]; n >= promoteAfter &&
		(st.lru.Len() < st.cap || n > st.freq[st.lru.Back().Value.(*stmt).slot] || n == math.MaxUint8) {
		return nil, slot, false
	}
	st.lru.MoveToFront(e)
	return e.Value.(*stmt).sd, slot, true
}

// run counts one more run of sql under st.path and returns its slot. The
// counts live in a fixed table (a collision only overstates a pair) and are
// halved every few runs per slot, so that what ran long ago loses its claim.
func (st *connState) run(sql string) uint32 {
	slot := st.slot(sql)
	if st.freq[slot] < 255 {
		st.freq[slot]++
	}
	if st.nfreq++; st.nfreq >= 4*freqSlots {
		st.nfreq = 0
		for i := range st.freq {
			st.freq[i] /= 2
		}
	}
	return slot
}

// recover updates the cache after err, an error of running sql under
// st.path, and reports whether running sql again may succeed where it
// failed. Outside a transaction a failed run did nothing (its implicit
// transaction rolled back; and the errors recovered from are mostly raised
// before the statement runs: encoding, parse, bind, plan-cache
// revalidation, name checks), so it can be repeated; inside one, only an
// encoding error, which nothing was sent for, can.
//
//   - 26000 (a prepared statement is gone: DEALLOCATE or DISCARD ran on
//     the connection): every statement of the connection, the scope
//     statements included, is prepared again on next use.
//   - 0A000 from plan-cache revalidation (a migration changed the result
//     type), an argument that does not encode to the statement's
//     parameter types, 08P01 (a Bind whose formats do not match the
//     statement), or an analysis error of class 42 other than 42501: the
//     statement does not fit the schema any more. A statement of the
//     path's own is dropped and prepared again; a borrowed description
//     (another schema's, whose shape may differ mid-migration) is not
//     borrowed again for this path, which gets its own statement.
func (st *connState) recover(sql string, err error) bool {
	if err == nil {
		return false
	}
	var (
		pgErr  *pgconn.PgError
		encErr *encodeError
	)
	switch {
	case errors.As(err, &encErr):
	case !errors.As(err, &pgErr):
		return false
	case pgErr.Code == "26000":
		st.reset()
		return true
	case pgErr.Code == "0A000" && (pgErr.Routine == "RevalidateCachedQuery" || pgErr.Message == "cached plan must not change result type"),
		pgErr.Code == "08P01",
		strings.HasPrefix(pgErr.Code, "42") && pgErr.Code != "42501":
	default:
		return false
	}
	var be *borrowedError
	if errors.As(err, &be) {
		st.freq[st.slot(sql)] = math.MaxUint8 // promoted at the next lookup
	} else if e, ok := st.byPath[string(st.path)][sql]; ok {
		st.remove(e)
	}
	return true
}

// reset drops every statement of the connection, to be prepared again.
// Closing a statement that is gone is no error, so all are queued for
// deallocation, and the scope statements get new names.
func (st *connState) reset() {
	for st.lru.Len() > 0 {
		st.remove(st.lru.Back())
	}
	for i, sd := range st.scopes {
		if sd != nil {
			st.stale = append(st.stale, sd.Name)
			st.scopes[i] = nil
		}
	}
	st.scopeGen++
}

// encodeError is an argument that did not encode to the parameter types
// of the statement description it was to be sent with.
type encodeError struct{ err error }

func (e *encodeError) Error() string { return "tenancy: encode arguments: " + e.err.Error() }
func (e *encodeError) Unwrap() error { return e.err }

// borrowedError is the error of a statement run with the description of
// another search_path's statement (connState.lookup).
type borrowedError struct{ err error }

func (e *borrowedError) Error() string { return e.err.Error() }
func (e *borrowedError) Unwrap() error { return e.err }

// slot returns the slot of (st.path, sql) in the frequency table.
func (st *connState) slot(sql string) uint32 {
	var h maphash.Hash
	h.SetSeed(st.seed)
	h.Write(st.path)
	h.WriteByte(0)
	h.WriteString(sql)
	return uint32(h.Sum64() % freqSlots)
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
// connection under st.path, preparing one on a miss; borrowed says it is
// another path's, to run as an unnamed statement. Preparing resolves
// table names, so it must happen under the tenant's search_path: with scope
// values (outside a transaction, or before its first statement) it runs in
// an implicit transaction after them; without (inside a transaction that
// has them) it runs as is. A miss costs one extra round trip, which also
// carries the deallocation of evicted statements.
func (st *connState) prepare(ctx context.Context, c *pgx.Conn, v *scopeValues, sql string) (sd *pgconn.StatementDescription, borrowed bool, err error) {
	sd, slot, borrowed := st.lookup(sql)
	if sd != nil {
		return sd, borrowed, nil
	}
	if st.lru.Len() >= st.cap {
		st.remove(st.lru.Back())
	}
	var (
		scope *pgconn.StatementDescription
		vals  [][]byte
	)
	if v != nil {
		if scope, vals, err = st.scope(ctx, c, v); err != nil {
			return nil, false, err
		}
	}
	name := st.nextName()
	if sd, err = st.send(ctx, c.PgConn(), scope, vals, name, sql); err != nil {
		return nil, false, err
	}
	sd.Name, sd.SQL = name, sql
	path := string(st.path)
	e := st.lru.PushFront(&stmt{path: path, slot: slot, sd: sd})
	m := st.byPath[path]
	if m == nil {
		m = make(map[string]*list.Element)
		st.byPath[path] = m
	}
	m[sql] = e
	st.bySQL[sql] = e
	return sd, false, nil
}

// send deallocates the stale statements and prepares sql as name, after the
// scope statement when there is one, in one round trip.
func (st *connState) send(ctx context.Context, pc *pgconn.PgConn, scope *pgconn.StatementDescription, settings [][]byte, name, sql string) (*pgconn.StatementDescription, error) {
	p := pc.StartPipeline(ctx)
	for _, old := range st.stale {
		p.SendDeallocate(old) // Close: no error if the statement is gone already
	}
	if scope != nil {
		p.SendQueryStatement(scope, settings, nil, nil)
	}
	p.SendPrepare(name, sql, nil)
	if err := p.Sync(); err != nil {
		return nil, err
	}
	var err error
	for range st.stale {
		if _, err = p.GetResults(); err != nil {
			break
		}
	}
	if err == nil {
		st.stale = st.stale[:0]
		if scope != nil {
			err = drainScope(p)
		}
	}
	var sd *pgconn.StatementDescription
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
