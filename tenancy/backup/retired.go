package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// RetiredSchema is a copy of a tenant that a restore replaced, kept for
// retention in a schema named RetiredPrefix + the tenant's hex id + time.
// The app and admin roles cannot use it. Its description is stored as the
// schema's comment.
type RetiredSchema struct {
	// Schema is the retired schema's name (filled by Retired).
	Schema string     `json:"schema,omitempty"`
	Tenant tenancy.ID `json:"tenant"`
	// Original is the schema the copy was taken out of: the tenant's own
	// schema (renamed, with everything in it), or the shared schema (the
	// tenant's rows copied into plain tables of the same names).
	Original  string    `json:"original"`
	Mode      Mode      `json:"mode"`
	RetiredAt time.Time `json:"retired_at"`
	// Archive is the archive that replaced it.
	Archive string `json:"archive"`
	Reason  string `json:"reason"`
}

// Retired lists the retired schemas of a shard database, oldest first.
func Retired(ctx context.Context, db *pgxpool.Pool) ([]RetiredSchema, error) {
	rows, err := db.Query(ctx, `SELECT nspname::text, coalesce(obj_description(oid, 'pg_namespace'), '')
		FROM pg_namespace WHERE nspname LIKE $1 ORDER BY nspname`, strings.ReplaceAll(RetiredPrefix, "_", `\_`)+"%")
	if err != nil {
		return nil, fmt.Errorf("backup: retired schemas: %w", err)
	}
	defer rows.Close()
	var out []RetiredSchema
	for rows.Next() {
		var name, note string
		if err := rows.Scan(&name, &note); err != nil {
			return nil, err
		}
		var rs RetiredSchema
		_ = json.Unmarshal([]byte(note), &rs) // a schema without our comment is listed by name only
		rs.Schema = name
		out = append(out, rs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("backup: retired schemas: %w", err)
	}
	// Names sort by tenant first; order by retirement time.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].RetiredAt.Before(out[j-1].RetiredAt); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// DropRetired drops a retired schema and everything in it. Names that do
// not start with RetiredPrefix are refused (ErrInvalid), so it cannot drop
// a live schema.
func DropRetired(ctx context.Context, db *pgxpool.Pool, schema string) error {
	if !strings.HasPrefix(schema, RetiredPrefix) {
		return fmt.Errorf("%w: %q is not a retired schema (%s...)", ErrInvalid, schema, RetiredPrefix)
	}
	if err := migrate.ValidateSchemaName(schema); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	sqlDB := openDB(db)
	defer sqlDB.Close()
	return migrate.DropSchema(ctx, sqlDB, schema)
}
