package move

import "testing"

func TestBinaryCompatible(t *testing.T) {
	const uuid, text, int8, int4, userType = 2950, 25, 20, 23, 16500
	tests := []struct {
		name     string
		src, dst table
		want     bool
	}{
		{"same built-in types",
			table{Columns: []string{"id", "name"}, Types: []uint32{uuid, text}},
			table{Columns: []string{"id", "name"}, Types: []uint32{uuid, text}}, true},
		{"target has more columns",
			table{Columns: []string{"id"}, Types: []uint32{uuid}},
			table{Columns: []string{"extra", "id"}, Types: []uint32{text, uuid}}, true},
		{"a type differs",
			table{Columns: []string{"id", "n"}, Types: []uint32{uuid, int4}},
			table{Columns: []string{"id", "n"}, Types: []uint32{uuid, int8}}, false},
		{"a type created in the cluster",
			table{Columns: []string{"id", "state"}, Types: []uint32{uuid, userType}},
			table{Columns: []string{"id", "state"}, Types: []uint32{uuid, userType}}, false},
		{"a column missing on the target",
			table{Columns: []string{"id", "gone"}, Types: []uint32{uuid, text}},
			table{Columns: []string{"id"}, Types: []uint32{uuid}}, false},
		{"no columns", table{}, table{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := binaryCompatible(tt.src, tt.dst); got != tt.want {
				t.Errorf("binaryCompatible = %v, want %v", got, tt.want)
			}
		})
	}
}
