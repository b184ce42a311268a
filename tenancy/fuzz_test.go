package tenancy_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/tenantry/tenantry/tenancy"
)

// FuzzIDText: every way a tenant id enters from outside (ParseID, text and
// JSON unmarshalling) accepts the same inputs, only the canonical UUID form
// (any letter case), round-trips, and says no more than 64 bytes of a bad
// input in its error. FuzzParseID (id_test.go) covers ParseID alone.
func FuzzIDText(f *testing.F) {
	for _, s := range []string{
		"7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c", "7F1C2A4E-9B3D-4C8E-A1F0-5D6E7F8A9B0C",
		"{7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c}", "urn:uuid:7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c",
		"7f1c2a4e9b3d4c8ea1f05d6e7f8a9b0c", "00000000-0000-0000-0000-000000000000", "7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c\n",
		strings.Repeat("a", 200),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := tenancy.ParseID(s)
		var viaText tenancy.ID
		textErr := viaText.UnmarshalText([]byte(s))
		if (err == nil) != (textErr == nil) || viaText != id {
			t.Fatalf("ParseID and UnmarshalText disagree on %q: %v / %v", s, err, textErr)
		}
		js, _ := json.Marshal(s)
		var viaJSON struct{ T tenancy.ID }
		jsonErr := json.Unmarshal([]byte(`{"T":`+string(js)+`}`), &viaJSON)
		if (err == nil) != (jsonErr == nil) || viaJSON.T != id {
			t.Fatalf("ParseID and JSON disagree on %q: %v / %v", s, err, jsonErr)
		}
		if err != nil {
			if !errors.Is(err, tenancy.ErrInvalidTenantID) {
				t.Fatalf("error %v does not wrap ErrInvalidTenantID", err)
			}
			// At most 64 bytes of the input, quoted (4 bytes each at worst).
			if len(err.Error()) > 400 || len(s) > 64 && strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("error of %d bytes repeats the input: %v", len(err.Error()), err)
			}
			return
		}
		if !strings.EqualFold(s, id.String()) {
			t.Fatalf("accepted %q, which is not the canonical form %s", s, id)
		}
		out, err := json.Marshal(id)
		if err != nil || string(out) != `"`+id.String()+`"` {
			t.Fatalf("MarshalJSON = %s, %v", out, err)
		}
	})
}
