package migrate

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	stdsql "database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"ariga.io/atlas/sql/postgres"
	atlas "ariga.io/atlas/sql/schema"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	entschema "entgo.io/ent/dialect/sql/schema"
)

const (
	// TenantColumn is the column that makes a table tenant-scoped: the one
	// tenancy.Mixin adds (tenancy.FieldTenantID).
	TenantColumn = "tenant_id"

	// PolicyName is the name of the row-level security policy on every
	// tenant-scoped table.
	PolicyName = "tenant_isolation"

	// PolicyExpr is the USING and WITH CHECK expression of PolicyName: the
	// row's tenant is the transaction's tenant. NULLIF because a setting once
	// set in a session reads back as '' rather than NULL; the scalar
	// sub-select is evaluated once per statement (an InitPlan), not per row.
	PolicyExpr = "tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid)"
)

// Desired is the desired state of a tenant schema: the tables of an Ent
// graph plus the guard state (tenant-scoped foreign keys, row-level security
// and grants). It is immutable and safe for concurrent use.
type Desired struct {
	tables  []*entschema.Table // private copy of the Ent tables
	migrate *entschema.Atlas   // converts tables to an Atlas schema
	tenant  map[string]bool    // names of tenant-scoped tables
	names   []string           // all table names, sorted
	indexes []guardIndex       // unique (tenant_id, ref...) indexes; (fk..., tenant_id) indexes
	fks     []guardFK          // composite tenant foreign keys

	policies sync.Map // server_version_num → policyText
	version  string
}

// guardIndex is a unique index on (tenant_id, refcols...) that a composite
// tenant foreign key references, or a plain index on (cols..., tenant_id)
// of the referencing table. Without the latter, deleting a referenced row
// (or changing its key) scans the whole referencing table for each of the
// two foreign keys' checks, which in a shared schema holds every tenant's
// rows. Leading with the foreign key's own columns serves both checks:
// Ent's key (cols...) and the guard (tenant_id, cols...).
type guardIndex struct {
	table, name string
	columns     []string
	unique      bool
}

// guardFK is a composite foreign key (tenant_id, cols...) →
// ref(tenant_id, refcols...), added next to Ent's own foreign key.
//
// Both keys' triggers fire when a referenced row is deleted (or its key
// updated), in the order of their trigger names, which follow object ids:
// the guard must give the same outcome whichever fires first. So it
// cascades where Ent's key cascades, and otherwise takes no action; where
// Ent's key sets NULL or a default, the guard is DEFERRABLE INITIALLY
// DEFERRED so that its check runs at commit, after Ent's key has done so.
type guardFK struct {
	table, symbol      string
	columns            []string
	ref                string
	refColumns         []string
	onDelete, onUpdate atlas.ReferenceOption
	deferred           bool
}

// guardAction returns the guard key's action for Ent's action on the same
// event, and whether the guard must be deferred.
func guardAction(ent entschema.ReferenceOption) (atlas.ReferenceOption, bool) {
	switch ent {
	case entschema.Cascade:
		return atlas.Cascade, false
	case entschema.SetNull, entschema.SetDefault:
		return atlas.NoAction, true
	}
	return atlas.NoAction, false
}

// NewDesired builds the desired state from an Ent graph's tables, typically
// the Tables variable of the generated ent/migrate package. Tables with a
// tenant_id column are tenant-scoped and get row-level security; the others
// are global and get grants only. NewDesired copies the tables: changing
// them afterwards does not change the Desired.
//
// For every foreign key between two tenant-scoped tables, the desired state
// adds a composite foreign key (tenant_id, fk...) → ref(tenant_id, ref...)
// named after Ent's with a "_tenant" suffix, and a unique index on
// ref(tenant_id, ref...) named "<ref>_tenant_id_<cols>_key" when the table
// has no such key yet. Ent's own key, with its ON DELETE action, stays. The
// guard key cascades where Ent's key cascades and takes no action
// otherwise; where Ent's key sets NULL (or a default) it is DEFERRABLE
// INITIALLY DEFERRED. A delete fires both keys' triggers in an order that
// follows object ids, and a NO ACTION guard that fired before Ent's SET NULL
// would reject a legitimate delete.
//
// Column defaults given as SQL expressions (entsql.DefaultExpr,
// schema.Expr) are kept as written rather than wrapped in parentheses as Ent
// does. Write them the way PostgreSQL prints them back (pg_get_expr), as
// tenancy.TenantIDDefault is. Otherwise Atlas evaluates both texts in the
// database on every run (SELECT x = y) to compare them, which fails for an
// expression that evaluates to NULL, like the tenant_id default outside a
// tenant transaction.
func NewDesired(tables []*entschema.Table) (*Desired, error) {
	if len(tables) == 0 {
		return nil, ErrNoTables
	}
	copied, err := copyTables(tables)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	m, err := entschema.NewMigrate(versionDriver{}, entschema.WithDialect(dialect.Postgres))
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	d := &Desired{tables: copied, migrate: m, tenant: make(map[string]bool)}
	for _, t := range copied {
		d.names = append(d.names, t.Name)
		if t.HasColumn(TenantColumn) {
			d.tenant[t.Name] = true
		}
	}
	slices.Sort(d.names)
	if err := d.planGuards(); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	// The first build initializes the converter (not safe to race) and
	// validates everything Apply will build again.
	s, err := d.State("desired")
	if err != nil {
		return nil, err
	}
	if d.version, err = d.computeVersion(s); err != nil {
		return nil, fmt.Errorf("migrate: version: %w", err)
	}
	return d, nil
}

// Version identifies the desired state: "v" and 12 hex digits of a SHA-256
// over the Atlas HCL of its tables and the guard state (tenant-scoped
// tables, guard keys, policy, privileges). Equal graphs have equal
// versions, on every machine; the ledger records it for every schema
// migrated to it.
func (d *Desired) Version() string { return d.version }

func (d *Desired) computeVersion(s *atlas.Schema) (string, error) {
	h := sha256.New()
	hcl, err := postgres.MarshalHCL(s)
	if err != nil {
		return "", err
	}
	h.Write(hcl)
	fmt.Fprintf(h, "\ntenant tables %q\npolicy %s %q\n", d.TenantTables(), PolicyName, PolicyExpr)
	for _, g := range d.indexes {
		if g.unique {
			fmt.Fprintf(h, "guard index %q %q %q\n", g.table, g.name, g.columns)
		} else {
			fmt.Fprintf(h, "guard fk index %q %q %q\n", g.table, g.name, g.columns)
		}
	}
	for _, g := range d.fks {
		fmt.Fprintf(h, "guard fk %q %q %q %q %q %s %s %v\n", g.table, g.symbol, g.columns, g.ref, g.refColumns, g.onDelete, g.onUpdate, g.deferred)
	}
	fmt.Fprintf(h, "privileges %q %q %q\n", schemaPrivileges, tablePrivileges, sequencePrivileges)
	return fmt.Sprintf("v%x", h.Sum(nil)[:6]), nil
}

// Tables returns the names of all tables of the desired state, sorted.
func (d *Desired) Tables() []string { return slices.Clone(d.names) }

// TenantTables returns the names of the tenant-scoped tables (those with a
// tenant_id column), sorted.
func (d *Desired) TenantTables() []string {
	var names []string
	for _, n := range d.names {
		if d.tenant[n] {
			names = append(names, n)
		}
	}
	return names
}

// State returns a new Atlas schema named schemaName holding the desired
// tables, including the guard indexes and foreign keys. Row-level security,
// grants and the deferrability of guard foreign keys are not part of it:
// Atlas's open-source build does not manage them, Apply reconciles them
// itself.
func (d *Desired) State(schemaName string) (*atlas.Schema, error) {
	realm, err := d.migrate.StateReader(d.tables...).ReadState(context.Background())
	if err != nil {
		return nil, fmt.Errorf("migrate: desired state: %w", err)
	}
	if len(realm.Schemas) != 1 {
		return nil, fmt.Errorf("migrate: desired state: want the tables of one schema, got %d schemas", len(realm.Schemas))
	}
	s := realm.Schemas[0]
	s.Name = schemaName
	for _, et := range d.tables {
		at, ok := s.Table(et.Name)
		if !ok {
			return nil, fmt.Errorf("migrate: desired state: table %q missing from the Atlas state", et.Name)
		}
		for _, ec := range et.Columns {
			if x, ok := exprDefault(ec.Default); ok {
				ac, _ := at.Column(ec.Name)
				ac.SetDefault(&atlas.RawExpr{X: x})
			}
		}
	}
	for _, g := range d.indexes {
		t, _ := s.Table(g.table)
		idx := atlas.NewIndex(g.name)
		if g.unique {
			idx = atlas.NewUniqueIndex(g.name)
		}
		for _, c := range g.columns {
			col, _ := t.Column(c)
			idx.AddColumns(col)
		}
		t.AddIndexes(idx)
	}
	for _, g := range d.fks {
		t, _ := s.Table(g.table)
		ref, _ := s.Table(g.ref)
		fk := atlas.NewForeignKey(g.symbol).SetTable(t).SetRefTable(ref).
			SetOnUpdate(g.onUpdate).SetOnDelete(g.onDelete)
		for _, c := range g.columns {
			col, _ := t.Column(c)
			fk.AddColumns(col)
		}
		for _, c := range g.refColumns {
			col, _ := ref.Column(c)
			fk.AddRefColumns(col)
		}
		t.AddForeignKeys(fk)
	}
	return s, nil
}

// exprDefault returns the SQL text of an expression default for PostgreSQL.
func exprDefault(v any) (string, bool) {
	switch x := v.(type) {
	case entschema.Expr:
		return string(x), x != ""
	case map[string]entschema.Expr:
		e, ok := x[dialect.Postgres]
		return string(e), ok && e != ""
	}
	return "", false
}

// planGuards computes the composite tenant foreign keys and the unique
// indexes they reference.
func (d *Desired) planGuards() error {
	names := make(map[string]string) // index and constraint names in use → what
	for _, t := range d.tables {
		names[t.Name] = "table " + t.Name
		for _, idx := range t.Indexes {
			names[idx.Name] = "index " + idx.Name
		}
	}
	byName := make(map[string]*entschema.Table)
	for _, t := range d.tables {
		byName[t.Name] = t
	}
	for _, t := range d.tables {
		if !d.tenant[t.Name] {
			continue
		}
		for _, fk := range t.ForeignKeys {
			ref := byName[fk.RefTable.Name]
			cols, refCols := columnNames(fk.Columns), columnNames(fk.RefColumns)
			if !d.tenant[ref.Name] || slices.Contains(cols, TenantColumn) || slices.Contains(refCols, TenantColumn) {
				continue
			}
			gcols := append([]string{TenantColumn}, cols...)
			grefs := append([]string{TenantColumn}, refCols...)
			if !hasUniqueKey(ref, grefs) && !slices.ContainsFunc(d.indexes, func(g guardIndex) bool {
				return g.table == ref.Name && sameSet(g.columns, grefs)
			}) {
				name := symbol(ref.Name + "_" + strings.Join(grefs, "_") + "_key")
				if what, ok := names[name]; ok {
					return fmt.Errorf("guard index %q on %q: name taken by %s", name, ref.Name, what)
				}
				names[name] = "index " + name
				d.indexes = append(d.indexes, guardIndex{table: ref.Name, name: name, columns: grefs, unique: true})
			}
			sym := symbol(fk.Symbol + "_tenant")
			if slices.ContainsFunc(t.ForeignKeys, func(f *entschema.ForeignKey) bool { return f.Symbol == sym }) {
				return fmt.Errorf("guard foreign key %q on %q: name taken by one of its foreign keys", sym, t.Name)
			}
			if icols := append(slices.Clone(cols), TenantColumn); !hasIndexPrefix(t, cols) && !slices.ContainsFunc(d.indexes, func(g guardIndex) bool {
				return g.table == t.Name && slices.Equal(g.columns, icols)
			}) {
				name := symbol(t.Name + "_" + strings.Join(icols, "_") + "_fk")
				if what, ok := names[name]; ok {
					return fmt.Errorf("guard index %q on %q: name taken by %s", name, t.Name, what)
				}
				names[name] = "index " + name
				d.indexes = append(d.indexes, guardIndex{table: t.Name, name: name, columns: icols})
			}
			g := guardFK{table: t.Name, symbol: sym, columns: gcols, ref: ref.Name, refColumns: grefs}
			var deferDelete, deferUpdate bool
			g.onDelete, deferDelete = guardAction(fk.OnDelete)
			g.onUpdate, deferUpdate = guardAction(fk.OnUpdate)
			g.deferred = deferDelete || deferUpdate
			d.fks = append(d.fks, g)
		}
	}
	return nil
}

// hasIndexPrefix reports whether t has an index (or primary key) whose
// leading columns are cols, in order, so that lookups by cols use it.
func hasIndexPrefix(t *entschema.Table, cols []string) bool {
	lead := func(idx []string) bool { return len(idx) >= len(cols) && slices.Equal(idx[:len(cols)], cols) }
	if lead(columnNames(t.PrimaryKey)) {
		return true
	}
	for _, idx := range t.Indexes {
		if (idx.Annotation == nil || idx.Annotation.Where == "") && lead(columnNames(idx.Columns)) {
			return true
		}
	}
	return false
}

// hasUniqueKey reports whether t has a primary key or a plain unique index
// on exactly the given set of columns.
func hasUniqueKey(t *entschema.Table, cols []string) bool {
	if sameSet(columnNames(t.PrimaryKey), cols) {
		return true
	}
	for _, idx := range t.Indexes {
		if idx.Unique && (idx.Annotation == nil || idx.Annotation.Where == "") && sameSet(columnNames(idx.Columns), cols) {
			return true
		}
	}
	return false
}

func columnNames(cs []*entschema.Column) []string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	return names
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}

// symbol shortens names longer than PostgreSQL's 63 bytes the way Ent does.
func symbol(name string) string {
	const size = 63
	if len(name) <= size {
		return name
	}
	return fmt.Sprintf("%s_%x", name[:size-33], md5.Sum([]byte(name)))
}

// copyTables deep-copies Ent tables, resolving columns and referenced tables
// by name (as Ent's conversion does), so the copy shares no mutable state
// with the caller's tables.
func copyTables(tables []*entschema.Table) ([]*entschema.Table, error) {
	byName := make(map[string]*entschema.Table, len(tables))
	out := make([]*entschema.Table, 0, len(tables))
	for _, t := range tables {
		if t.View {
			return nil, fmt.Errorf("table %q: views are not supported", t.Name)
		}
		if t.Schema != tables[0].Schema {
			return nil, fmt.Errorf("table %q: all tables must belong to one schema (%q and %q)", t.Name, tables[0].Schema, t.Schema)
		}
		if _, dup := byName[t.Name]; dup {
			return nil, fmt.Errorf("table %q: listed twice", t.Name)
		}
		c := entschema.NewTable(t.Name).SetSchema(t.Schema).SetComment(t.Comment).SetPos(t.Pos)
		c.Annotation = t.Annotation
		for _, col := range t.Columns {
			cc := *col
			c.AddColumn(&cc)
		}
		byName[t.Name] = c
		out = append(out, c)
	}
	col := func(t *entschema.Table, name string) (*entschema.Column, error) {
		c, ok := t.Column(name)
		if !ok {
			return nil, fmt.Errorf("table %q has no column %q", t.Name, name)
		}
		return c, nil
	}
	cols := func(t *entschema.Table, cs []*entschema.Column) ([]*entschema.Column, error) {
		out := make([]*entschema.Column, len(cs))
		for i, c := range cs {
			var err error
			if out[i], err = col(t, c.Name); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	var errs []error
	for i, t := range tables {
		c := out[i]
		var err error
		if c.PrimaryKey, err = cols(c, t.PrimaryKey); err != nil {
			errs = append(errs, fmt.Errorf("primary key: %w", err))
		}
		for _, idx := range t.Indexes {
			ic := &entschema.Index{Name: idx.Name, Unique: idx.Unique, Annotation: idx.Annotation}
			if ic.Columns, err = cols(c, idx.Columns); err != nil {
				errs = append(errs, fmt.Errorf("index %q: %w", idx.Name, err))
			}
			c.Indexes = append(c.Indexes, ic)
		}
		for _, fk := range t.ForeignKeys {
			if fk.RefTable == nil {
				errs = append(errs, fmt.Errorf("foreign key %q of %q: no referenced table", fk.Symbol, t.Name))
				continue
			}
			ref, ok := byName[fk.RefTable.Name]
			if !ok {
				errs = append(errs, fmt.Errorf("foreign key %q of %q references table %q, which is not among the tables", fk.Symbol, t.Name, fk.RefTable.Name))
				continue
			}
			fc := &entschema.ForeignKey{Symbol: fk.Symbol, RefTable: ref, OnUpdate: fk.OnUpdate, OnDelete: fk.OnDelete}
			if fc.Columns, err = cols(c, fk.Columns); err != nil {
				errs = append(errs, fmt.Errorf("foreign key %q: %w", fk.Symbol, err))
			}
			if fc.RefColumns, err = cols(ref, fk.RefColumns); err != nil {
				errs = append(errs, fmt.Errorf("foreign key %q: %w", fk.Symbol, err))
			}
			c.ForeignKeys = append(c.ForeignKeys, fc)
		}
	}
	return out, errors.Join(errs...)
}

// versionDriver is the Ent driver behind the desired-state conversion. The
// conversion asks the server version once, to decide whether indexes may
// have INCLUDE columns (PostgreSQL 11+); every supported server has them.
type versionDriver struct{}

func (versionDriver) Exec(context.Context, string, any, any) error {
	return errors.New("migrate: desired-state conversion does not execute statements")
}

func (versionDriver) Query(_ context.Context, query string, _, v any) error {
	rows, ok := v.(*entsql.Rows)
	if !ok || query != "SHOW server_version_num" {
		return fmt.Errorf("migrate: desired-state conversion: unexpected query %q", query)
	}
	*rows = entsql.Rows{ColumnScanner: &versionRows{}}
	return nil
}

func (versionDriver) Tx(context.Context) (dialect.Tx, error) {
	return nil, errors.New("migrate: desired-state conversion has no transactions")
}
func (versionDriver) Close() error    { return nil }
func (versionDriver) Dialect() string { return dialect.Postgres }

// versionRows is the one-row result of SHOW server_version_num.
type versionRows struct{ done bool }

func (r *versionRows) Close() error                               { return nil }
func (r *versionRows) ColumnTypes() ([]*stdsql.ColumnType, error) { return nil, nil }
func (r *versionRows) Columns() ([]string, error)                 { return []string{"server_version_num"}, nil }
func (r *versionRows) Err() error                                 { return nil }
func (r *versionRows) NextResultSet() bool                        { return false }

func (r *versionRows) Next() bool {
	next := !r.done
	r.done = true
	return next
}

func (r *versionRows) Scan(dest ...any) error {
	p, ok := dest[0].(*string)
	if len(dest) != 1 || !ok {
		return errors.New("migrate: desired-state conversion: unexpected scan")
	}
	*p = "150000"
	return nil
}
