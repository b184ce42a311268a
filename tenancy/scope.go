package tenancy

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The transaction-local settings a scope sends, in parameter order. The
// first three go with every transaction; the limits only when they differ
// from the connection's session value (a set_config costs server time on
// every statement, and most tenants run at the pool's defaults).
var scopeSettings = [...]string{
	"search_path",
	"app.current_tenant_id",
	"application_name",
	// limits, in Limits order:
	"statement_timeout",
	"lock_timeout",
	"idle_in_transaction_session_timeout",
	"work_mem",
}

const (
	numAlways = 3
	numLimits = len(scopeSettings) - numAlways
)

// scopeValues are the encoded values of scopeSettings, in their units as
// pg_settings reports them (milliseconds, kB).
type scopeValues [len(scopeSettings)][]byte

// scopeSQL returns the statement that sets the always-sent settings and the
// limits whose bit is set in mask.
//
// The calls are the arguments of one num_nulls, so that the statement
// returns one small column, where a column per call would make the server
// build a row type of as many text columns and send their values back.
// (A statement without columns would do less still, but pgx then sends a
// Describe message with it every time.) Function arguments are all
// evaluated, so every setting is applied whatever the others return; the
// result is 0 unless a call returns NULL, which set_config does not do,
// and the driver fails the statement otherwise (scopeApplied).
func scopeSQL(mask uint) string {
	var b strings.Builder
	b.WriteString("SELECT num_nulls(")
	n := 0
	for i, name := range scopeSettings {
		if i >= numAlways && mask&(1<<(i-numAlways)) == 0 {
			continue
		}
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		fmt.Fprintf(&b, "set_config('%s', $%d, true)", name, n)
	}
	b.WriteString(")")
	return b.String()
}

// sessionLimitsSQL reads the connection's session values of the limits.
var sessionLimitsSQL = func() string {
	names := make([]string, numLimits)
	for i := range names {
		names[i] = "'" + scopeSettings[numAlways+i] + "'"
	}
	list := strings.Join(names, ", ")
	return "SELECT setting FROM pg_settings WHERE name IN (" + list + ") ORDER BY array_position(ARRAY[" + list + "], name)"
}()

// scope returns the prepared scope statement of this connection for v and
// the parameter values to send with it (valid until the next call).
func (st *connState) scope(ctx context.Context, c *pgx.Conn, v *scopeValues) (*pgconn.StatementDescription, [][]byte, error) {
	if st.session == nil {
		rows, err := c.Query(ctx, sessionLimitsSQL, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return nil, nil, fmt.Errorf("tenancy: read session limits: %w", err)
		}
		session, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]byte, error) {
			var s string
			err := r.Scan(&s)
			return []byte(s), err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("tenancy: read session limits: %w", err)
		}
		if len(session) != numLimits {
			return nil, nil, fmt.Errorf("tenancy: read session limits: got %d settings, want %d", len(session), numLimits)
		}
		st.session = session
	}
	vals := append(st.vals[:0], v[:numAlways]...)
	var mask uint
	for i := range numLimits {
		if st.allLimits || !bytes.Equal(v[numAlways+i], st.session[i]) {
			mask |= 1 << i
			vals = append(vals, v[numAlways+i])
		}
	}
	st.vals = vals
	if sd := st.scopes[mask]; sd != nil {
		return sd, vals, nil
	}
	sd, err := c.PgConn().Prepare(ctx, "tenantry_scope_"+strconv.Itoa(st.scopeGen)+"_"+strconv.FormatUint(uint64(mask), 10), scopeSQL(mask), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("tenancy: prepare scope statement: %w", err)
	}
	st.scopes[mask] = sd
	return sd, vals, nil
}
