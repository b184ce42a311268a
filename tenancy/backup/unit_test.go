package backup

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestStreamSum(t *testing.T) {
	const a = "aaaaaaaa-0000-4000-8000-00000000000a"
	const b = "bbbbbbbb-0000-4000-8000-00000000000b"
	text := "1\t" + a + "\tx\\ty\n2\t" + a + "\t\\N\n3\t" + a + "\tlast\n"
	whole := newStreamSum(1, a)
	whole.Write([]byte(text))
	if whole.rows != 3 || whole.foreign != 0 || !whole.complete() {
		t.Fatalf("rows %d, foreign %d, complete %t", whole.rows, whole.foreign, whole.complete())
	}
	// Split at every byte: the same sums.
	for i := range len(text) {
		s := newStreamSum(1, a)
		s.Write([]byte(text[:i]))
		s.Write([]byte(text[i:]))
		if s.rows != whole.rows || s.rowSum != whole.rowSum || s.shaHex() != whole.shaHex() {
			t.Fatalf("split at %d: different sums", i)
		}
	}
	// Another tenant's id: the same row hash (tenant_id is left out, so a
	// clone verifies), but counted as foreign for the archive's tenant.
	other := newStreamSum(1, a)
	other.Write([]byte("3\t" + b + "\tlast\n1\t" + b + "\tx\\ty\n2\t" + b + "\t\\N\n"))
	if other.rowSum != whole.rowSum {
		t.Error("row hash depends on tenant_id or on the order of rows")
	}
	if other.foreign != 3 {
		t.Errorf("foreign %d, want 3", other.foreign)
	}
	// Any other change changes the row hash; a cut row is incomplete.
	changed := newStreamSum(1, a)
	changed.Write([]byte("1\t" + a + "\tx\\ty\n2\t" + a + "\t\\N\n3\t" + a + "\tLast\n"))
	if changed.rowSum == whole.rowSum {
		t.Error("row hash ignores a changed value")
	}
	cut := newStreamSum(1, a)
	cut.Write([]byte(text[:len(text)-3]))
	if cut.complete() {
		t.Error("a cut last row is not noticed")
	}
	if err := cut.check("x", Table{Name: "t", Rows: 3}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("check of a cut stream: %v", err)
	}
}

func TestLoadOrder(t *testing.T) {
	tables := []*tableInfo{
		{name: "line_items", refs: []string{"orders"}},
		{name: "order_tags", refs: []string{"orders", "tags"}},
		{name: "orders", refs: []string{"customers"}},
		{name: "customers"},
		{name: "tags"},
	}
	got, err := loadOrder(tables)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, tb := range got {
		pos[tb.name] = i
	}
	for _, tb := range tables {
		for _, r := range tb.refs {
			if pos[r] > pos[tb.name] {
				t.Errorf("%s loads before %s, which it references", tb.name, r)
			}
		}
	}
	_, err = loadOrder([]*tableInfo{{name: "a", refs: []string{"b"}}, {name: "b", refs: []string{"a"}}})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("cycle: %v, want ErrUnsupported", err)
	}
}

func TestDirStore(t *testing.T) {
	ctx := context.Background()
	d, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "../x", "a/../b", ".hidden", "a//b", "a/b/", "sp ace", "/abs"} {
		if _, err := d.Create(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%q): %v, want ErrInvalid", bad, err)
		}
	}
	w, err := d.Create(ctx, "arc/data/one")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello"))
	if objs, _ := d.List(ctx, "arc"); len(objs) != 0 {
		t.Errorf("an object being written is listed: %v", objs)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, _ = d.Create(ctx, "arc/data/two")
	w.Write([]byte("discarded"))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	objs, err := d.List(ctx, "arc")
	if err != nil || !slices.Equal(objs, []string{"arc/data/one"}) {
		t.Errorf("List = %v, %v", objs, err)
	}
	entries, _ := os.ReadDir(filepath.Join(d.Root, "arc", "data"))
	if len(entries) != 1 {
		t.Errorf("files left by an aborted write: %v", entries)
	}
	r, err := d.Open(ctx, "arc/data/one")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "hello" {
		t.Errorf("read %q", b)
	}
	if _, err := d.Open(ctx, "arc/data/two"); !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of an aborted object: %v", err)
	}
	if _, err := ReadManifest(ctx, d, "arc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("archive without a manifest: %v, want ErrNotFound", err)
	}
	if names, _ := Archives(ctx, d, ""); len(names) != 0 {
		t.Errorf("Archives lists an incomplete archive: %v", names)
	}
	if err := d.Remove(ctx, "arc"); err != nil {
		t.Fatal(err)
	}
	if objs, _ := d.List(ctx, ""); len(objs) != 0 {
		t.Errorf("after Remove: %v", objs)
	}
}

func TestManifestValidation(t *testing.T) {
	ctx := context.Background()
	d, _ := NewDir(t.TempDir())
	w, _ := d.Create(ctx, "x/"+ManifestFile)
	w.Write([]byte(`{"format": "tenantry-backup/99"}`))
	w.Close()
	if _, err := ReadManifest(ctx, d, "x"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("future format: %v, want ErrUnsupported", err)
	}
	w, _ = d.Create(ctx, "y/"+ManifestFile)
	w.Write([]byte(`{"format": "tenantry-backup/1", "tenant": "aaaaaaaa-0000-4000-8000-00000000000a", "mode": "schema",
		"copy_format": "text", "compression": "gzip",
		"tables": [{"name": "t", "file": "../../etc/passwd", "columns": [{"name": "a"}], "tenant_column": -1}]}`))
	w.Close()
	if _, err := ReadManifest(ctx, d, "y"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("file outside the archive: %v, want ErrCorrupt", err)
	}
	w, _ = d.Create(ctx, "z/"+ManifestFile)
	w.Write([]byte(`{not json`))
	w.Close()
	if _, err := ReadManifest(ctx, d, "z"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("broken manifest: %v, want ErrCorrupt", err)
	}
}
