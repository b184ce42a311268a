package tenancy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tenantry/tenantry/tenancy"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{"7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c", false},
		{"7F1C2A4E-9B3D-4C8E-A1F0-5D6E7F8A9B0C", false},
		{"", true},
		{"00000000-0000-0000-0000-000000000000", true},
		{"7f1c2a4e9b3d4c8ea1f05d6e7f8a9b0c", true},                   // no dashes: not canonical
		{"{7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c}", true},             // braces
		{"urn:uuid:7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c", true},      // URN
		{"7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0g", true},               // not hex
		{"'; DROP SCHEMA public; --aaaaaaaaaaaaaaaaaaaaaaaaa", true}, // hostile
		{strings.Repeat("x", 10000), true},
	}
	for _, tt := range tests {
		id, err := tenancy.ParseID(tt.in)
		if tt.wantErr {
			if !errors.Is(err, tenancy.ErrInvalidTenantID) {
				t.Errorf("ParseID(%.40q) error = %v, want ErrInvalidTenantID", tt.in, err)
			}
			if err != nil && len(err.Error()) > 300 {
				t.Errorf("ParseID(%.40q) error message is %d bytes long; it must stay readable", tt.in, len(err.Error()))
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseID(%q) = %v", tt.in, err)
			continue
		}
		if got := id.String(); got != strings.ToLower(tt.in) {
			t.Errorf("ParseID(%q).String() = %q", tt.in, got)
		}
	}
}

func TestSchemaName(t *testing.T) {
	id := tenancy.MustParseID("7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c")
	if got, want := id.SchemaName(), "tenant_7f1c2a4e9b3d4c8ea1f05d6e7f8a9b0c"; got != want {
		t.Fatalf("SchemaName() = %q, want %q", got, want)
	}
}

func TestIDText(t *testing.T) {
	id := tenancy.NewID()
	b, err := id.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var back tenancy.ID
	if err := back.UnmarshalText(b); err != nil || back != id {
		t.Fatalf("round trip: %v, %v != %v", err, back, id)
	}
	if err := back.UnmarshalText([]byte("nope")); !errors.Is(err, tenancy.ErrInvalidTenantID) {
		t.Fatalf("UnmarshalText(nope) = %v", err)
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c", "", "00000000-0000-0000-0000-000000000000", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := tenancy.ParseID(s)
		if err != nil {
			if !errors.Is(err, tenancy.ErrInvalidTenantID) {
				t.Fatalf("error %v does not wrap ErrInvalidTenantID", err)
			}
			return
		}
		if id.IsZero() {
			t.Fatal("accepted the zero id")
		}
		again, err := tenancy.ParseID(id.String())
		if err != nil || again != id {
			t.Fatalf("String() does not round-trip: %v", err)
		}
		name := id.SchemaName()
		if len(name) != 39 || strings.Trim(name[7:], "0123456789abcdef") != "" {
			t.Fatalf("SchemaName() = %q", name)
		}
	})
}
