package lint

import (
	"go/types"
	"strings"
)

// entPackages recognizes generated Ent client packages and remembers the
// answer per package.
//
// A package is a generated Ent client when it declares the types Client and
// Tx and depends on Ent: it imports entgo.io/ent, entgo.io/ent/dialect or
// entgo.io/ent/dialect/sql, or (when it was loaded from export data, where
// the import list can be incomplete) its Hook type is an alias of
// entgo.io/ent.Hook, as every generated client declares. It is tenant-scoped
// when one of its structs (the entities) has the field TenantID of type
// tenancy.ID, which the tenancy.Mixin adds (column tenant_id). Importing
// tenancy is not enough: a control-plane client of global schemas uses
// tenancy.ID for tenant references. The package path plays no part: apps
// put their generated code anywhere.
type entPackages struct {
	gen    map[*types.Package]bool
	scoped map[*types.Package]bool
}

func newEntPackages() *entPackages {
	return &entPackages{gen: map[*types.Package]bool{}, scoped: map[*types.Package]bool{}}
}

var entImports = map[string]bool{
	"entgo.io/ent":             true,
	"entgo.io/ent/dialect":     true,
	"entgo.io/ent/dialect/sql": true,
}

func (e *entPackages) generated(p *types.Package) bool {
	if p == nil {
		return false
	}
	if v, ok := e.gen[p]; ok {
		return v
	}
	v := isEntGenerated(p)
	e.gen[p] = v
	return v
}

func isEntGenerated(p *types.Package) bool {
	scope := p.Scope()
	if _, ok := scope.Lookup("Client").(*types.TypeName); !ok {
		return false
	}
	if _, ok := scope.Lookup("Tx").(*types.TypeName); !ok {
		return false
	}
	for _, imp := range p.Imports() {
		if entImports[imp.Path()] {
			return true
		}
	}
	if tn, ok := scope.Lookup("Hook").(*types.TypeName); ok {
		if n := namedOf(tn.Type()); n != nil && n.Obj().Pkg() != nil &&
			n.Obj().Pkg().Path() == "entgo.io/ent" && n.Obj().Name() == "Hook" {
			return true
		}
	}
	return false
}

// tenantScoped reports whether p is a generated client with at least one
// tenant-scoped entity, so that every operation needs a tenant.
func (e *entPackages) tenantScoped(p *types.Package) bool {
	if !e.generated(p) {
		return false
	}
	if v, ok := e.scoped[p]; ok {
		return v
	}
	v := isTenantScoped(p)
	e.scoped[p] = v
	return v
}

func isTenantScoped(p *types.Package) bool {
	scope := p.Scope()
	for _, name := range scope.Names() {
		tn, ok := scope.Lookup(name).(*types.TypeName)
		if !ok || !tn.Exported() {
			continue
		}
		st, ok := tn.Type().Underlying().(*types.Struct)
		if !ok {
			continue
		}
		for i := range st.NumFields() {
			if f := st.Field(i); f.Name() == "TenantID" && isTenancyID(f.Type()) {
				return true
			}
		}
	}
	return false
}

func isTenancyID(t types.Type) bool {
	n := namedOf(t)
	return n != nil && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == TenancyPath && n.Obj().Name() == "ID"
}

// builderSuffixes are the receiver type names of generated builders whose
// methods taking a context run statements: XQuery, XCreate, ... and the
// per-entity XClient.
var builderSuffixes = []string{
	"Client", "Query", "Create", "CreateBulk", "Update", "UpdateOne",
	"Delete", "DeleteOne", "UpsertOne", "UpsertBulk", "Select", "GroupBy",
	"Mutation",
}

// builderNames are exact receiver type names: the root client and the
// transactional client, and the unexported embedded types that carry raw
// SQL (config: ExecContext, QueryContext) and the Strings/Ints/Scan helpers
// of selections (selector).
var builderNames = map[string]bool{"Client": true, "Tx": true, "config": true, "selector": true}

func isBuilderName(name string) bool {
	if builderNames[name] {
		return true
	}
	for _, s := range builderSuffixes {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			return true
		}
	}
	return false
}

// namedOf returns the named type of t, through one pointer and aliases.
func namedOf(t types.Type) *types.Named {
	t = types.Unalias(t)
	if p, ok := t.(*types.Pointer); ok {
		t = types.Unalias(p.Elem())
	}
	n, _ := t.(*types.Named)
	return n
}
