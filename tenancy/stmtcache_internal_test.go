package tenancy

import (
	"testing"

	"github.com/google/uuid"
)

func TestBinaryUUIDs(t *testing.T) {
	var st connState
	u := uuid.New()
	for _, tc := range []struct {
		name string
		args []any
		want []any
	}{
		{"none", nil, nil},
		{"no uuid", []any{1, "a"}, []any{1, "a"}},
		{"uuids", []any{u, "a", u}, []any{binaryUUID(u), "a", binaryUUID(u)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]any(nil), tc.args...)
			got := st.binaryUUIDs(in)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("arg %d = %#v, want %#v", i, got[i], tc.want[i])
				}
				if in[i] != tc.args[i] {
					t.Errorf("the caller's arg %d changed to %#v", i, in[i])
				}
			}
		})
	}
	pg, err := binaryUUID(u).UUIDValue()
	if err != nil || !pg.Valid || pg.Bytes != u {
		t.Fatalf("UUIDValue = %v, %v", pg, err)
	}
}
