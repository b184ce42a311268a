package pgddl

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Querier is what reading needs: a pgx.Tx, *pgx.Conn or *pgxpool.Pool.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Deferred are a schema's indexes and constraints, as statements.
type Deferred struct {
	// Drops remove them: foreign keys first, then the other constraints
	// (with their indexes), then the plain indexes.
	Drops []string
	// Creates recreate them in order: the indexes (IsIndex), the largest
	// tables' first (an index of a partitioned table on every partition),
	// then the constraints, then the foreign keys, then the replica
	// identities and CLUSTER marks that named a dropped index.
	Creates []string
}

// IsIndex reports whether a statement of Deferred.Creates builds an index
// (which may run beside the other index builds) rather than adding a
// constraint.
func IsIndex(stmt string) bool { return strings.HasPrefix(stmt, "CREATE ") }

const deferredSQL = `
SELECT 1 AS ord, c.relname::text, format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, c.relname, k.conname),
       format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid))
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND k.contype = 'f' AND k.conparentid = 0 AND c.relname <> ALL($2)
UNION ALL
SELECT 2, c.relname::text, format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, c.relname, k.conname),
       CASE WHEN c.relkind = 'r' AND k.contype IN ('p', 'u') THEN
         format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s USING INDEX %I%s', n.nspname, c.relname, k.conname,
                CASE k.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, i.relname,
                CASE WHEN k.condeferred THEN ' DEFERRABLE INITIALLY DEFERRED' WHEN k.condeferrable THEN ' DEFERRABLE' ELSE '' END)
       ELSE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)) END
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class i ON i.oid = k.conindid
WHERE n.nspname = $1 AND k.contype IN ('p', 'u', 'x') AND k.conparentid = 0 AND c.relname <> ALL($2)
UNION ALL
SELECT 3, c.relname::text, '', pg_get_indexdef(k.conindid)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND k.contype IN ('p', 'u') AND k.conparentid = 0 AND c.relkind = 'r' AND c.relname <> ALL($2)
UNION ALL
SELECT 3, c.relname::text, format('DROP INDEX %I.%I', n.nspname, i.relname),
       CASE WHEN i.relkind = 'I' THEN regexp_replace(pg_get_indexdef(i.oid), ' ON ONLY ', ' ON ')
            ELSE pg_get_indexdef(i.oid) END
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND NOT x.indisprimary AND NOT i.relispartition AND c.relname <> ALL($2)
  AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid
                  AND k.contype IN ('p', 'u', 'x'))
UNION ALL
SELECT 0, c.relname::text, '', format('ALTER TABLE %I.%I REPLICA IDENTITY USING INDEX %I', n.nspname, c.relname, i.relname)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND x.indisreplident AND c.relname <> ALL($2)
UNION ALL
SELECT 0, c.relname::text, '', format('ALTER TABLE %I.%I CLUSTER ON %I', n.nspname, c.relname, i.relname)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND x.indisclustered AND c.relname <> ALL($2)
ORDER BY 1, 3`

// Read returns the indexes and constraints of the schema's tables, but
// those of the tables named in except. A partition's own come and go with
// its parent's. sizes (bytes per table name, may be
// nil) orders the index builds, the largest tables' first, so that several
// builders end close together.
func Read(ctx context.Context, q Querier, schema string, except []string, sizes map[string]int64) (Deferred, error) {
	if except == nil {
		except = []string{}
	}
	rows, err := q.Query(ctx, deferredSQL, schema, except)
	if err != nil {
		return Deferred{}, fmt.Errorf("indexes and constraints of %s: %w", schema, err)
	}
	type create struct {
		ord         int
		table, stmt string
	}
	var d Deferred
	var creates []create
	for rows.Next() {
		var c create
		var drop string
		if err := rows.Scan(&c.ord, &c.table, &drop, &c.stmt); err != nil {
			rows.Close()
			return Deferred{}, fmt.Errorf("indexes and constraints of %s: %w", schema, err)
		}
		if drop != "" { // a constraint's index goes with its constraint
			d.Drops = append(d.Drops, drop)
		}
		creates = append(creates, c)
	}
	if err := rows.Err(); err != nil {
		return Deferred{}, fmt.Errorf("indexes and constraints of %s: %w", schema, err)
	}
	// Indexes before the constraints that take them over, those before the
	// foreign keys that need them; the indexes' marks last.
	slices.SortStableFunc(creates, func(a, b create) int {
		return cmp.Or(cmp.Compare(b.ord, a.ord), cmp.Compare(sizes[b.table], sizes[a.table]))
	})
	d.Creates = make([]string, len(creates))
	for i, c := range creates {
		d.Creates[i] = c.stmt
	}
	return d, nil
}
