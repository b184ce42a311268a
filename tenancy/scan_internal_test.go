package tenancy

import (
	"context"
	stdsql "database/sql"
	"reflect"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenantry/tenantry/internal/pgtest"
)

// TestScanDirect checks that scanDirect gives exactly what pgx's general
// path gives (through the destinations' sql.Scanner), over values read from
// a real server in both result formats, and that it declines what it does
// not handle.
func TestScanDirect(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.Shards(t, 1)[0].SuperuserDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const query = `SELECT u::uuid, t::uuid, s, v::varchar, ts::timestamptz FROM (VALUES
		('5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a10', '00000000-0000-0000-0000-000000000001', 'plain', 'x', '2026-12-07 12:34:56.789012+00'),
		('ffffffff-ffff-ffff-ffff-ffffffffffff', '11111111-1111-1111-1111-111111111111', NULL, NULL, NULL),
		('5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a11', '5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a12', '', 'ünïcødé ✓', '1969-12-31 23:59:59.999999+00'),
		('5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a13', '5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a14', 'a', 'b', '1999-12-31 23:59:59.5-08'),
		('5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a15', '5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a16', 'a', 'b', '0044-03-15 12:00:00+00 BC'),
		('5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a17', '5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a18', 'a', 'b', '294276-12-31 23:59:59.999999+00'),
		(NULL, '5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a19', 'null uuid', 'b', '2000-01-01 00:00:00+00'),
		('5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a1a', '5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a1b', 'infinite', 'b', 'infinity'),
		('5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a1c', '5f0c6a2e-8a9e-4f5e-9d55-3c1f0e2b7a1d', 'infinite', 'b', '-infinity')
	) AS r(u, t, s, v, ts)`
	entDest := func() []any {
		return []any{new(uuid.UUID), new(ID), new(stdsql.NullString), new(stdsql.NullString), new(stdsql.NullTime)}
	}
	tests := []struct {
		name       string
		mode       pgx.QueryExecMode
		dest       func() []any
		wantDirect []bool // per row
	}{
		{"binary", pgx.QueryExecModeCacheStatement, entDest, []bool{true, true, true, true, true, true, false, false, false}},
		// In text format only the text columns could be read directly.
		{"text", pgx.QueryExecModeSimpleProtocol, entDest, []bool{false, false, false, false, false, false, false, false, false}},
		{"other destination", pgx.QueryExecModeCacheStatement, func() []any {
			d := entDest()
			d[2] = new(string)
			return d
		}, []bool{false, false, false, false, false, false, false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := conn.Query(ctx, query, tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for i := 0; rows.Next(); i++ {
				fds, vals := rows.FieldDescriptions(), rows.RawValues()
				got, want := tt.dest(), tt.dest()
				direct := scanDirect(conn.TypeMap(), fds, vals, got)
				if direct != tt.wantDirect[i] {
					t.Errorf("row %d: scanDirect = %v, want %v", i, direct, tt.wantDirect[i])
				}
				werr := pgx.ScanRow(conn.TypeMap(), fds, vals, want...)
				if !direct {
					if !reflect.DeepEqual(got, tt.dest()) {
						t.Errorf("row %d: scanDirect declined but wrote %v", i, deref(got))
					}
					continue
				}
				if werr != nil {
					t.Errorf("row %d: scanned directly, but pgx fails: %v", i, werr)
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("row %d:\n got %v\nwant %v", i, deref(got), deref(want))
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func deref(ps []any) []any {
	out := make([]any, len(ps))
	for i, p := range ps {
		out[i] = reflect.ValueOf(p).Elem().Interface()
	}
	return out
}
