package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantry/tenantry/tenancy"
)

// memStore is an in-memory Store for the fuzz targets: Dir syncs every
// object to disk, which would make each input cost milliseconds. The
// targets fuzz the decoding and checking of archives, not the store.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func newMemStore() *memStore { return &memStore{objs: map[string][]byte{}} }

type memWriter struct {
	s    *memStore
	name string
	buf  bytes.Buffer
}

func (w *memWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }
func (w *memWriter) Close() error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.objs[w.name] = bytes.Clone(w.buf.Bytes())
	return nil
}
func (w *memWriter) Abort() error { return nil }

func (s *memStore) Create(_ context.Context, name string) (Writer, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	return &memWriter{s: s, name: name}, nil
}

func (s *memStore) Open(_ context.Context, name string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotFound, name, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (s *memStore) List(_ context.Context, prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *memStore) Remove(_ context.Context, prefix string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.objs {
		if k == prefix || strings.HasPrefix(k, prefix+"/") {
			delete(s.objs, k)
		}
	}
	return nil
}

var fuzzTenant = tenancy.MustParseID("aaaaaaaa-0000-4000-8000-00000000000a")

// validManifest is a well-formed manifest of archive "a" with one table.
func validManifest() *Manifest {
	return &Manifest{
		Format: Format, Name: "a", Tenant: fuzzTenant, Mode: ModeShared, CopyFormat: "text", Compression: "gzip",
		SnapshotTime: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		Settings:     map[string]string{"DateStyle": "ISO"},
		Tables: []Table{{Name: "orders", File: "orders.copy.gz", TenantColumn: 1,
			Columns: []Column{{"id", "uuid"}, {"tenant_id", "uuid"}, {"note", "text"}}, Rows: 2}},
	}
}

// FuzzReadManifest: any bytes as a manifest are either refused as corrupt
// or unsupported, or give a manifest that satisfies every rule the restore
// relies on and survives a write and a read unchanged.
func FuzzReadManifest(f *testing.F) {
	good, _ := json.Marshal(validManifest())
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"tenantry-backup/1","tenant":"aaaaaaaa-0000-4000-8000-00000000000a","mode":"schema","copy_format":"text","compression":"gzip","tables":[{"name":"t","file":"../etc/passwd","columns":[{"name":"x"}],"tenant_column":-1}]}`))
	f.Add([]byte(`{"format":"tenantry-backup/1","tenant":"aaaaaaaa-0000-4000-8000-00000000000a","mode":"shared","copy_format":"text","compression":"gzip","tables":[{"name":"t","file":"t.gz","columns":[{"name":"x"}],"tenant_column":5}]}`))
	f.Add([]byte(`{"format":"tenantry-backup/2"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		store := newMemStore()
		store.objs["a/"+ManifestFile] = data
		ctx := context.Background()
		m, err := ReadManifest(ctx, store, "a")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("refusal %v is neither ErrCorrupt nor ErrUnsupported", err)
			}
			return
		}
		if m.Format != Format || m.Tenant.IsZero() || (m.Mode != ModeSchema && m.Mode != ModeShared) {
			t.Fatalf("accepted a manifest without format, tenant or mode: %+v", m)
		}
		names := map[string]bool{}
		for _, tb := range m.Tables {
			if names[tb.Name] || tb.Name == "" || ValidateName(tb.File) != nil || tb.Rows < 0 ||
				tb.TenantColumn < -1 || tb.TenantColumn >= len(tb.Columns) ||
				(tb.TenantColumn >= 0 && tb.Columns[tb.TenantColumn].Name != "tenant_id") {
				t.Fatalf("accepted a malformed table entry %+v", tb)
			}
			names[tb.Name] = true
			for _, seg := range strings.Split(tb.File, "/") {
				if seg == ".." || seg == "." || seg == "" {
					t.Fatalf("accepted a file name that leaves the archive: %q", tb.File)
				}
			}
		}
		m.Name = "b"
		if err := writeManifest(ctx, store, m); err != nil {
			t.Fatal(err)
		}
		again, err := ReadManifest(ctx, store, "b")
		if err != nil {
			t.Fatalf("a manifest read back after writing it: %v", err)
		}
		j1, _ := json.Marshal(m)
		j2, _ := json.Marshal(again)
		if !bytes.Equal(j1, j2) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", j1, j2)
		}
	})
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzVerify: an archive whose data file is the COPY text it was made from
// verifies; a change to the text is always caught (ErrCorrupt), and a
// change to the compressed file is caught unless it leaves the
// decompressed text as it was (gzip's header fields).
func FuzzVerify(f *testing.F) {
	a := fuzzTenant.String()
	f.Add([]byte("1\t"+a+"\tx\n2\t"+a+"\t\\N\n"), uint16(3), byte('9'), false)
	f.Add([]byte("1\t"+a+"\tx\n"), uint16(5), byte('b'), true)
	f.Add([]byte("x\n"), uint16(0), byte('\n'), false)
	f.Fuzz(func(t *testing.T, text []byte, pos uint16, b byte, compressed bool) {
		if len(text) == 0 || text[len(text)-1] != '\n' {
			text = append(text, '\n')
		}
		sum := newStreamSum(1, a)
		sum.Write(text)
		m := validManifest()
		m.Tables[0].Rows, m.Tables[0].Bytes, m.Tables[0].SHA256, m.Tables[0].RowHash = sum.rows, sum.bytes, sum.shaHex(), sum.rowHashHex()
		store := newMemStore()
		ctx := context.Background()
		write := func(data []byte) {
			w, err := store.Create(ctx, "a/"+m.Tables[0].File)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
		file := gz(t, text)
		write(file)
		if err := writeManifest(ctx, store, m); err != nil {
			t.Fatal(err)
		}
		_, err := Verify(ctx, store, "a")
		if sum.foreign > 0 {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("rows of another tenant verified: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("an intact archive does not verify: %v", err)
		}
		if compressed {
			i := int(pos) % len(file)
			if file[i] == b {
				return
			}
			bad := bytes.Clone(file)
			bad[i] = b
			write(bad)
			_, err = Verify(ctx, store, "a")
			if err == nil {
				r, gerr := gzip.NewReader(bytes.NewReader(bad))
				var got []byte
				if gerr == nil {
					got, gerr = io.ReadAll(r)
				}
				if gerr != nil || !bytes.Equal(got, text) {
					t.Fatalf("a corrupted file verified (byte %d of %d -> %#x)", i, len(file), b)
				}
			} else if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("corruption reported as %v, not ErrCorrupt", err)
			}
			return
		}
		i := int(pos) % len(text)
		if text[i] == b {
			return
		}
		bad := bytes.Clone(text)
		bad[i] = b
		write(gz(t, bad))
		if _, err := Verify(ctx, store, "a"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("changed text (byte %d %q -> %q) verified or failed otherwise: %v", i, text[i], b, err)
		}
	})
}
