package tenancy

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

func TestEncodeUUIDs(t *testing.T) {
	m := pgtype.NewMap()
	encodeUUIDs(m)
	u := uuid.New()
	bin, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u, nil)
	if err != nil || !bytes.Equal(bin, u[:]) {
		t.Fatalf("binary: %x, %v; want %x", bin, err, u[:])
	}
	text, err := m.Encode(pgtype.UUIDOID, pgtype.TextFormatCode, u, nil)
	if err != nil || string(text) != u.String() {
		t.Fatalf("text: %q, %v; want %q", text, err, u.String())
	}
	// Other Valuers keep pgx's own path.
	s, err := m.Encode(pgtype.TextOID, pgtype.TextFormatCode, uuid.NullUUID{UUID: u, Valid: true}, nil)
	if err != nil || string(s) != u.String() {
		t.Fatalf("NullUUID: %q, %v", s, err)
	}
}

func BenchmarkEncodeUUID(b *testing.B) {
	u := uuid.New()
	for _, tc := range []struct {
		name string
		wrap bool
	}{{"valuer", false}, {"codec", true}} {
		b.Run(tc.name, func(b *testing.B) {
			m := pgtype.NewMap()
			if tc.wrap {
				encodeUUIDs(m)
			}
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u, buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestIsWrite(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  bool
	}{
		{`INSERT INTO "customers" ("name") VALUES ($1) RETURNING "id"`, true},
		{`UPDATE "orders" SET "total_cents" = $1 WHERE "id" = $2`, true},
		{"\n  delete from tags", true},
		{`(DELETE FROM x)`, true},
		{`SELECT * FROM "customers"`, false},
		{`WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x`, false}, // not Ent's shape; reads keep their error
		{`INS`, false},
		{``, false},
	} {
		if got := isWrite(tc.query); got != tc.want {
			t.Errorf("isWrite(%q) = %v, want %v", tc.query, got, tc.want)
		}
	}
}
