package tenancy

import (
	stdsql "database/sql"
	"encoding/binary"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// scanDirect scans a row into the destinations Ent generates for its
// common field types (uuid.UUID and ID, sql.NullString, sql.NullTime)
// straight from the wire, with the values database/sql would give. pgx
// reaches these destinations through their sql.Scanner: it formats a uuid
// as a 36-byte string for uuid.UUID.Scan to parse back, boxes every value
// in an interface, and plans each column of every query's first row. It
// reports false, having written nothing, when any column needs pgx's
// general path (another destination type, a NULL uuid, an infinite
// timestamp, a timestamptz codec with a ScanLocation).
func scanDirect(m *pgtype.Map, fds []pgconn.FieldDescription, vals [][]byte, dest []any) bool {
	if len(fds) != len(dest) || len(vals) != len(dest) {
		return false
	}
	for i, d := range dest {
		if !direct(m, &fds[i], vals[i], d) {
			return false
		}
	}
	for i, d := range dest {
		v := vals[i]
		switch d := d.(type) {
		case *uuid.UUID:
			copy(d[:], v)
		case *ID:
			copy(d[:], v)
		case *stdsql.NullString:
			*d = stdsql.NullString{String: string(v), Valid: v != nil}
		case *stdsql.NullTime:
			if v == nil {
				*d = stdsql.NullTime{}
				continue
			}
			*d = stdsql.NullTime{Time: timestamptz(int64(binary.BigEndian.Uint64(v))), Valid: true}
		}
	}
	return true
}

// direct reports whether scanDirect can scan v, a value of the column fd,
// into d.
func direct(m *pgtype.Map, fd *pgconn.FieldDescription, v []byte, d any) bool {
	switch d.(type) {
	case *uuid.UUID, *ID:
		return fd.DataTypeOID == pgtype.UUIDOID && fd.Format == pgtype.BinaryFormatCode && len(v) == 16
	case *stdsql.NullString:
		// text and varchar are the same bytes in either format.
		return fd.DataTypeOID == pgtype.TextOID || fd.DataTypeOID == pgtype.VarcharOID
	case *stdsql.NullTime:
		if fd.DataTypeOID != pgtype.TimestamptzOID || fd.Format != pgtype.BinaryFormatCode {
			return false
		}
		if v == nil {
			return true
		}
		if len(v) != 8 {
			return false
		}
		if us := int64(binary.BigEndian.Uint64(v)); us == math.MaxInt64 || us == math.MinInt64 {
			return false // infinity: pgx gives a string, which NullTime refuses
		}
		t, ok := m.TypeForOID(pgtype.TimestamptzOID)
		if !ok {
			return false
		}
		c, ok := t.Codec.(*pgtype.TimestamptzCodec)
		return ok && c.ScanLocation == nil
	}
	return false
}

// microsecFromUnixEpochToY2K is PostgreSQL's timestamp epoch, 2000-01-01
// UTC, in microseconds since the Unix epoch.
const microsecFromUnixEpochToY2K = 946684800 * 1000000

// timestamptz decodes a finite binary timestamptz as pgx does: the local
// time of that instant.
func timestamptz(microsecSinceY2K int64) time.Time {
	return time.Unix(
		microsecFromUnixEpochToY2K/1000000+microsecSinceY2K/1000000,
		(microsecFromUnixEpochToY2K%1000000*1000)+(microsecSinceY2K%1000000*1000),
	)
}
