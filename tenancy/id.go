package tenancy

import (
	"database/sql/driver"
	"encoding/hex"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// ID identifies a tenant. It is a UUID; the zero ID is never a valid tenant.
type ID uuid.UUID

// ParseID parses a tenant id in the canonical 36-character UUID form
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx). Any other input, including the nil
// UUID, returns an error wrapping [ErrInvalidTenantID].
func ParseID(s string) (ID, error) {
	if len(s) != 36 {
		return ID{}, invalidID(s, "want 36 characters like 7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c")
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return ID{}, invalidID(s, err.Error())
	}
	if u == uuid.Nil {
		return ID{}, invalidID(s, "the nil UUID is not a tenant")
	}
	return ID(u), nil
}

func invalidID(s, why string) error {
	const max = 64
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidTenantID, s, why)
}

// MustParseID is like ParseID but panics on error. Use it for constants in
// tests and examples.
func MustParseID(s string) ID {
	id, err := ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// NewID returns a random (version 4) tenant id.
func NewID() ID { return ID(uuid.New()) }

// IsZero reports whether id is the zero ID, which no tenant has.
func (id ID) IsZero() bool { return id == ID{} }

// String returns the canonical UUID form.
func (id ID) String() string { return uuid.UUID(id).String() }

// SchemaName returns the name of the tenant's own schema in the schema
// placement mode: "tenant_" followed by the 32 hex digits of the id.
func (id ID) SchemaName() string {
	var b [len(SchemaPrefix) + 32]byte
	copy(b[:], SchemaPrefix)
	hex.Encode(b[len(SchemaPrefix):], id[:])
	return string(b[:])
}

// Value implements driver.Valuer.
func (id ID) Value() (driver.Value, error) { return id.String(), nil }

// UUIDValue implements pgtype.UUIDValuer, so pgx encodes an ID in binary
// without going through its string form.
func (id ID) UUIDValue() (pgtype.UUID, error) { return pgtype.UUID{Bytes: id, Valid: true}, nil }

// Scan implements sql.Scanner.
func (id *ID) Scan(src any) error {
	var u uuid.UUID
	if err := u.Scan(src); err != nil {
		return fmt.Errorf("tenancy: scan tenant id: %w", err)
	}
	*id = ID(u)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return uuid.UUID(id).MarshalText() }

// UnmarshalText implements encoding.TextUnmarshaler with the rules of ParseID.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
