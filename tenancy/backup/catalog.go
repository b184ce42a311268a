package backup

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/tenantry/tenantry/tenancy"
)

// tenantColumn is the column of tenant-scoped tables (tenancy.FieldTenantID).
const tenantColumn = "tenant_id"

// tenantExpr is the current transaction's tenant, as the row-level security
// policy reads it. Statements name the tenant through it rather than by
// interpolation: the tenant is set with set_config and a bound parameter.
const tenantExpr = "(SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid)"

// querier is what catalog reads need: a pgx.Tx or a pgx.Conn.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// tableInfo is a table of a schema as the catalog shows it.
type tableInfo struct {
	name     string
	columns  []Column // not dropped, not generated, in attnum order
	tenant   bool     // has tenant_id
	identity bool     // has an identity column
	forceRLS bool     // FORCE ROW LEVEL SECURITY: the policy applies to the owner too
	refs     []string // tables of the same schema it references (foreign keys)
}

func (t *tableInfo) column(name string) (Column, bool) {
	for _, c := range t.columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// readTables reads the ordinary and partitioned tables of a schema
// (partitions are read through their parent), sorted by name, but for a
// live move's marker table (tenancy.MoveMarkerTable).
func readTables(ctx context.Context, q querier, schema string) ([]*tableInfo, error) {
	rows, err := q.Query(ctx, `SELECT c.relname::text, c.relforcerowsecurity, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attidentity <> '', a.attgenerated <> ''
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> $2
		ORDER BY c.relname, a.attnum`, schema, tenancy.MoveMarkerTable)
	if err != nil {
		return nil, fmt.Errorf("read tables of %s: %w", schema, err)
	}
	byName := map[string]*tableInfo{}
	var out []*tableInfo
	for rows.Next() {
		var table, col, typ string
		var force, identity, generated bool
		if err := rows.Scan(&table, &force, &col, &typ, &identity, &generated); err != nil {
			return nil, err
		}
		t := byName[table]
		if t == nil {
			t = &tableInfo{name: table, forceRLS: force}
			byName[table] = t
			out = append(out, t)
		}
		if generated {
			continue // computed from the others; COPY cannot load it
		}
		t.columns = append(t.columns, Column{Name: col, Type: typ})
		t.tenant = t.tenant || col == tenantColumn
		t.identity = t.identity || identity
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tables of %s: %w", schema, err)
	}
	rows, err = q.Query(ctx, `SELECT DISTINCT c.relname::text, r.relname::text
		FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE k.contype = 'f' AND n.nspname = $1 AND r.relnamespace = c.relnamespace AND r.oid <> c.oid
		ORDER BY 1, 2`, schema)
	if err != nil {
		return nil, fmt.Errorf("read foreign keys of %s: %w", schema, err)
	}
	for rows.Next() {
		var from, to string
		if err := rows.Scan(&from, &to); err != nil {
			return nil, err
		}
		if t := byName[from]; t != nil && byName[to] != nil {
			t.refs = append(t.refs, to)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read foreign keys of %s: %w", schema, err)
	}
	return out, nil
}

// loadOrder sorts tables so that every table comes after the tables it
// references (parents first), by name among equals. A cycle of foreign keys
// between tables is ErrUnsupported (a table referencing itself is fine: a
// statement's rows are checked at its end).
func loadOrder(tables []*tableInfo) ([]*tableInfo, error) {
	byName := map[string]*tableInfo{}
	for _, t := range tables {
		byName[t.name] = t
	}
	done := map[string]bool{}
	var out []*tableInfo
	for len(out) < len(tables) {
		progressed := false
		for _, t := range tables {
			if done[t.name] {
				continue
			}
			ready := true
			for _, r := range t.refs {
				if byName[r] != nil && !done[r] {
					ready = false
					break
				}
			}
			if ready {
				done[t.name] = true
				out = append(out, t)
				progressed = true
			}
		}
		if !progressed {
			var left []string
			for _, t := range tables {
				if !done[t.name] {
					left = append(left, t.name)
				}
			}
			return nil, fmt.Errorf("%w: foreign keys form a cycle between tables %s", ErrUnsupported, strings.Join(left, ", "))
		}
	}
	return out, nil
}

// readSequences reads the sequences of a schema and their state, but for
// those of a live move's marker table.
func readSequences(ctx context.Context, q querier, schema string) ([]Sequence, error) {
	rows, err := q.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'S' AND NOT EXISTS (
			SELECT FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
			WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
				AND d.deptype IN ('a', 'i') AND t.relname = $2)
		ORDER BY 1`, schema, tenancy.MoveMarkerTable)
	if err != nil {
		return nil, fmt.Errorf("read sequences of %s: %w", schema, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read sequences of %s: %w", schema, err)
	}
	out := make([]Sequence, 0, len(names))
	for _, n := range names {
		s := Sequence{Name: n}
		if err := q.QueryRow(ctx, "SELECT last_value, is_called FROM "+qualified(schema, n)).Scan(&s.LastValue, &s.IsCalled); err != nil {
			return nil, fmt.Errorf("read sequence %s.%s: %w", schema, n, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func schemaExists(ctx context.Context, q querier, schema string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok)
	return ok, err
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func qualified(schema, name string) string { return pgx.Identifier{schema, name}.Sanitize() }

func columnList(cols []Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = ident(c.Name)
	}
	return strings.Join(names, ", ")
}

// literal quotes s as an SQL string literal (standard_conforming_strings).
func literal(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, "\x00", ""), "'", "''") + "'"
}

// sessionSettings fix how values are written as text, so that archives
// read the same everywhere, and lift the limits that a pool's plan defaults
// would put on a long COPY. All are transaction-local.
var sessionSettings = [][2]string{
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "1"}, // shortest exact text (PostgreSQL 12+)
	{"bytea_output", "hex"},
	{"search_path", ""},
	{"statement_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
}

func settingsMap() map[string]string {
	m := make(map[string]string, 5)
	for _, s := range sessionSettings[:5] {
		m[s[0]] = s[1]
	}
	return m
}

// prepareTx sets the tenant, the text settings and the lock timeout of a
// transaction, in one statement.
func prepareTx(ctx context.Context, q querier, tenant string, lockTimeoutMS int64) error {
	var b strings.Builder
	b.WriteString("SELECT set_config('app.current_tenant_id', $1, true), set_config('lock_timeout', $2, true)")
	args := []any{tenant, fmt.Sprintf("%dms", max(lockTimeoutMS, 1))}
	for _, s := range sessionSettings {
		args = append(args, s[0], s[1])
		fmt.Fprintf(&b, ", set_config($%d, $%d, true)", len(args)-1, len(args))
	}
	_, err := q.Exec(ctx, b.String(), args...)
	return err
}

// roleStmt returns the statement that switches a transaction to the owner
// role, "" when the session already is the owner (a superuser or a member
// of the owner role may connect instead). It is a utility statement, so a
// REPEATABLE READ transaction can run it before its snapshot is taken.
func roleStmt(currentUser, owner string) string {
	if currentUser == owner {
		return ""
	}
	return "SET LOCAL ROLE " + ident(owner)
}

func execAll(ctx context.Context, q querier, stmts ...string) error {
	for _, s := range stmts {
		if s == "" {
			continue
		}
		if _, err := q.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstWords(s), err)
		}
	}
	return nil
}

func firstWords(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// openDB returns a database/sql handle on the pool, for migrate. Closing it
// leaves the pool open.
func openDB(pool *pgxpool.Pool) *sql.DB { return stdlib.OpenDBFromPool(pool) }
