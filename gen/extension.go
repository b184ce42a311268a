package gen

import (
	"embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"entgo.io/ent/entc"
	entgen "entgo.io/ent/entc/gen"

	"github.com/tenantry/tenantry/tenancy"
)

//go:embed template/*.tmpl
var templates embed.FS

// ErrUnsafeSchema is wrapped by the error that stops code generation when a
// schema could let a query escape its tenant.
var ErrUnsafeSchema = errors.New("tenantry: unsafe schema")

// Extension is the entc extension. The zero value is ready to use.
type Extension struct {
	entc.DefaultExtension
}

var _ entc.Extension = Extension{}

// Templates adds WhereP to every query builder, raw SQL through the scoped
// driver, and to the runtime package a check, when the program starts,
// that the tenant-scoped schemas' hooks and interceptors are
// tenancy.Mixin's (tenancy.CheckEnforced).
func (Extension) Templates() []*entgen.Template {
	funcs := template.FuncMap{"tenantScoped": func(t *entgen.Type) bool { return scopeOf(t) == tenancy.ScopeTenant }}
	return []*entgen.Template{
		entgen.MustParse(entgen.NewTemplate("tenantry").Funcs(funcs).ParseFS(templates, "template/tenantry.tmpl")),
		entgen.MustParse(entgen.NewTemplate("tenantry-runtime").Funcs(funcs).
			SkipIf(func(g *entgen.Graph) bool {
				return !slices.ContainsFunc(g.Nodes, func(t *entgen.Type) bool { return scopeOf(t) == tenancy.ScopeTenant })
			}).
			ParseFS(templates, "template/runtime.tmpl")),
	}
}

// Hooks adds the schema safety checks, run before any code is written.
func (Extension) Hooks() []entgen.Hook {
	return []entgen.Hook{
		func(next entgen.Generator) entgen.Generator {
			return entgen.GenerateFunc(func(g *entgen.Graph) error {
				if err := Check(g); err != nil {
					return err
				}
				return next.Generate(g)
			})
		},
	}
}

// Options enables upserts, which the mutation hook stamps and row-level
// security confines to the tenant. Raw SQL comes from the extension's own
// ExecContext and QueryContext, which run through the scoped driver (Ent's
// sql/execquery feature needs a database/sql driver and must stay off).
func (Extension) Options() []entc.Option {
	return []entc.Option{entc.FeatureNames("sql/upsert")}
}

// Check reports every unsafe schema in g, one line each, naming the schema
// and the fix. It returns nil for a safe graph.
func Check(g *entgen.Graph) error {
	var problems []string
	if on, _ := g.FeatureEnabled("sql/execquery"); on {
		problems = append(problems, `feature "sql/execquery" is enabled: disable it; the tenantry extension generates ExecContext and QueryContext that run through the scoped driver`)
	}
	for _, t := range g.Nodes {
		problems = append(problems, checkType(t)...)
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n  %s", ErrUnsafeSchema, strings.Join(problems, "\n  "))
}

func checkType(t *entgen.Type) []string {
	var problems []string
	switch scopeOf(t) {
	case tenancy.ScopeTenant:
	case tenancy.ScopeGlobal:
		return checkM2M(t)
	default:
		return []string{fmt.Sprintf("schema %q is neither tenant-scoped nor global: add tenancy.Mixin{} to its Mixin() if its rows belong to one tenant, or tenancy.Global() to its Annotations() if they are shared by all tenants", t.Name)}
	}
	// The annotation says tenant-scoped; what enforces it is the mixin's
	// field, interceptor and hook, and migrations put row-level security
	// on the tables that have the column.
	var tenant *entgen.Field
	for _, f := range t.Fields {
		if f.Name == tenancy.FieldTenantID {
			tenant = f
		}
	}
	switch {
	case tenant == nil:
		problems = append(problems, fmt.Sprintf("schema %q is annotated tenant-scoped but has no %s field: add tenancy.Mixin{} to its Mixin() instead of the annotation alone", t.Name, tenancy.FieldTenantID))
	case !tenant.IsUUID() || !tenant.Immutable || tenant.Optional || tenant.Nillable:
		problems = append(problems, fmt.Sprintf("schema %q: field %s must be tenancy.Mixin's (an immutable, required UUID): a mixin that overrides Fields() must keep it so, or rows could be moved to another tenant", t.Name, tenancy.FieldTenantID))
	}
	if len(t.MixedInHooks()) == 0 || len(t.MixedInInterceptors()) == 0 {
		problems = append(problems, fmt.Sprintf("schema %q is tenant-scoped without the mixin's hook and interceptor: add tenancy.Mixin{} to its Mixin(), and do not override its Hooks() or Interceptors() in a mixin built on it", t.Name))
	}
	for _, f := range t.Fields {
		if f.Unique && f.Name != tenancy.FieldTenantID {
			problems = append(problems, fmt.Sprintf("schema %q: field %q is Unique() across all tenants: tenants would collide on its values and an upsert on it could reach another tenant's row; drop .Unique() and add index.Fields(%q, %q).Unique() to Indexes()", t.Name, f.Name, tenancy.FieldTenantID, f.Name))
		}
	}
	for _, e := range t.Edges {
		// Ent puts a unique index on the foreign key of a one-to-one
		// edge, across all tenants.
		if e.O2O() && e.OwnFK() {
			problems = append(problems, fmt.Sprintf("schema %q: one-to-one edge %q gets a unique index on its foreign key (%s) across all tenants: make it one-to-many (drop .Unique() on the side that holds the key) and add index.Fields(%q).Edges(%q).Unique() to Indexes()", t.Name, e.Name, e.Rel.Column(), tenancy.FieldTenantID, e.Name))
		}
	}
	for _, idx := range t.Indexes {
		if idx.Unique && !slices.Contains(idx.Columns, tenancy.FieldTenantID) {
			problems = append(problems, fmt.Sprintf("schema %q: unique index on (%s) does not include %s: make it index.Fields(%q, ...).Unique() so uniqueness holds per tenant", t.Name, strings.Join(idx.Columns, ", "), tenancy.FieldTenantID, tenancy.FieldTenantID))
		}
	}
	return append(problems, checkM2M(t)...)
}

// checkM2M checks t's many-to-many edges that have a tenant-scoped side:
// their join table must be an edge schema with the mixin, whichever side
// declares the edge (a global schema's edge to a tenant-scoped one too).
func checkM2M(t *entgen.Type) []string {
	var problems []string
	for _, e := range t.Edges {
		if !e.M2M() || e.IsInverse() || (scopeOf(t) != tenancy.ScopeTenant && scopeOf(e.Type) != tenancy.ScopeTenant) {
			continue
		}
		to := fmt.Sprintf("to tenant-scoped %q", e.Type.Name)
		if scopeOf(e.Type) != tenancy.ScopeTenant {
			to = fmt.Sprintf("of tenant-scoped %q to %q", t.Name, e.Type.Name)
		}
		switch {
		case e.Through == nil:
			problems = append(problems, fmt.Sprintf("schema %q: many-to-many edge %q %s has no edge schema, so its join table has no tenant_id and Ent writes it without a tenant filter; declare it with edge.To(%q, %s.Type).Through(\"...\", <EdgeSchema>.Type) and give the edge schema tenancy.Mixin{}", t.Name, e.Name, to, e.Name, e.Type.Name))
		case scopeOf(e.Through) != tenancy.ScopeTenant:
			problems = append(problems, fmt.Sprintf("schema %q: edge schema %q of many-to-many edge %q is not tenant-scoped: add tenancy.Mixin{} to %s's Mixin()", t.Name, e.Through.Name, e.Name, e.Through.Name))
		}
	}
	return problems
}

// scopeOf reads the tenancy annotation from the generated graph, where
// annotations are JSON-decoded maps.
func scopeOf(t *entgen.Type) tenancy.Scope {
	switch a := t.Annotations[tenancy.AnnotationName].(type) {
	case map[string]any:
		s, _ := a["scope"].(string)
		return tenancy.Scope(s)
	case tenancy.Annotation:
		return a.Scope
	}
	return ""
}
