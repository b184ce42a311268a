package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tenantry/tenantry/tenancy"
)

// Format identifies the archive layout this package writes and reads.
const Format = "tenantry-backup/1"

// ManifestFile is the object, under the archive's name, that describes the
// archive. It is written last: an archive without it is incomplete.
const ManifestFile = "manifest.json"

// Mode is the placement mode of a backed-up or restored tenant.
type Mode string

const (
	// ModeSchema: the tenant has its own schema (also used for dedicated
	// placements, which are own schemas on a shard of their own). Every
	// table of the schema is the tenant's.
	ModeSchema Mode = "schema"
	// ModeShared: the tenant shares a schema with others. Only its rows
	// of the tenant-scoped tables (those with a tenant_id column) are its.
	ModeShared Mode = "shared"
)

func (m Mode) valid() bool { return m == ModeSchema || m == ModeShared }

// Manifest describes an archive: what was backed up, from where, at which
// schema version, and how to check every data file.
type Manifest struct {
	Format string `json:"format"`
	Name   string `json:"name"`
	// Tenant is the tenant whose data the archive holds.
	Tenant tenancy.ID `json:"tenant"`
	// Mode is the placement mode of the source.
	Mode   Mode       `json:"mode"`
	Source SourceInfo `json:"source"`
	// SchemaVersion is the migrate version of the source schema: from the
	// shard's ledger when it knows the schema ("ledger"); else the desired
	// state's version when the source's tables and columns are exactly the
	// desired state's ("desired"); else "" ("unknown"). Restore compares
	// Tables and their columns with the desired state in every case.
	SchemaVersion string `json:"schema_version"`
	VersionSource string `json:"version_source"`
	// DesiredVersion is the desired state of the program that made the
	// backup.
	DesiredVersion string `json:"desired_version"`
	// SnapshotTime is the start of the snapshot transaction: the archive
	// holds every transaction committed before it and none after.
	SnapshotTime time.Time `json:"snapshot_time"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"`
	// CopyFormat and Compression of the data files: PostgreSQL's COPY text
	// format, gzip-compressed.
	CopyFormat  string `json:"copy_format"`
	Compression string `json:"compression"`
	// Settings are the session settings the text was written under (and
	// is read under).
	Settings  map[string]string `json:"settings"`
	Tables    []Table           `json:"tables"`
	Skipped   []Skipped         `json:"skipped,omitempty"`
	Sequences []Sequence        `json:"sequences,omitempty"`
}

// SourceInfo says where an archive was taken.
type SourceInfo struct {
	Shard         string `json:"shard"`
	Schema        string `json:"schema"`
	ServerVersion string `json:"server_version"`
}

// Table is one table's data file in an archive.
type Table struct {
	Name string `json:"name"`
	// File is the data file's object name relative to the archive.
	File    string   `json:"file"`
	Columns []Column `json:"columns"`
	// TenantColumn is the index in Columns of tenant_id; -1 for a global
	// table (no tenant_id column), whose rows are all copied.
	TenantColumn int `json:"tenant_column"`
	// Rows, Bytes and SHA256 are the row count, size and SHA-256 of the
	// uncompressed COPY text; StoredBytes is the size of the file.
	Rows        int64  `json:"rows"`
	Bytes       int64  `json:"bytes"`
	SHA256      string `json:"sha256"`
	StoredBytes int64  `json:"stored_bytes"`
	// RowHash is an order-independent hash of the rows without their
	// tenant_id field: the sum modulo 2^64 of the first 8 bytes
	// (little-endian) of each row's SHA-256. A restore compares it with the
	// rows it loaded, also into another tenant (clone), where tenant_id
	// differs.
	RowHash string `json:"row_hash"`
}

// Column is a column of an archived table, with its type as PostgreSQL
// formats it (format_type).
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Skipped is a table of the source that the archive does not hold.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Sequence is a sequence's state when the tables had been copied. Reading a
// sequence is not transactional, so the value may be past the snapshot:
// never below any value the archived rows hold.
type Sequence struct {
	Name      string `json:"name"`
	LastValue int64  `json:"last_value"`
	IsCalled  bool   `json:"is_called"`
}

// Rows returns the number of rows in the archive.
func (m *Manifest) Rows() int64 {
	var n int64
	for _, t := range m.Tables {
		n += t.Rows
	}
	return n
}

// Table returns the archived table of that name.
func (m *Manifest) Table(name string) (Table, bool) {
	for _, t := range m.Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

func (m *Manifest) validate() error {
	if m.Format != Format {
		return fmt.Errorf("%w: archive format %q (this program reads %q)", ErrUnsupported, m.Format, Format)
	}
	if m.Tenant.IsZero() || !m.Mode.valid() || m.CopyFormat != "text" || m.Compression != "gzip" {
		return fmt.Errorf("%w: archive %s: manifest has no tenant, an unknown mode, copy format or compression", ErrCorrupt, m.Name)
	}
	seen := map[string]bool{}
	for _, t := range m.Tables {
		if seen[t.Name] || t.Name == "" || len(t.Columns) == 0 || t.TenantColumn < -1 || t.TenantColumn >= len(t.Columns) || ValidateName(t.File) != nil || t.Rows < 0 {
			return fmt.Errorf("%w: archive %s: malformed table entry %q", ErrCorrupt, m.Name, t.Name)
		}
		if t.TenantColumn >= 0 && t.Columns[t.TenantColumn].Name != tenantColumn {
			return fmt.Errorf("%w: archive %s: table %s: tenant column is %q", ErrCorrupt, m.Name, t.Name, t.Columns[t.TenantColumn].Name)
		}
		seen[t.Name] = true
	}
	return nil
}

// ReadManifest reads and checks the manifest of the named archive. A
// missing archive (or one without a manifest: an interrupted backup) is
// ErrNotFound; an unreadable manifest is ErrCorrupt.
func ReadManifest(ctx context.Context, store Store, name string) (*Manifest, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	r, err := store.Open(ctx, name+"/"+ManifestFile)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: archive %s (no %s)", ErrNotFound, name, ManifestFile)
		}
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("backup: archive %s: %w", name, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: archive %s: manifest: %w", ErrCorrupt, name, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func writeManifest(ctx context.Context, store Store, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	w, err := store.Create(ctx, m.Name+"/"+ManifestFile)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}

// Archives returns the names of the complete archives (those with a
// manifest) under prefix ("" for all), sorted.
func Archives(ctx context.Context, store Store, prefix string) ([]string, error) {
	objs, err := store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range objs {
		if name, ok := strings.CutSuffix(o, "/"+ManifestFile); ok {
			out = append(out, name)
		}
	}
	return out, nil
}
