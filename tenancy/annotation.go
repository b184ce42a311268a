package tenancy

import "entgo.io/ent/schema"

// Scope says whether an Ent schema's rows belong to one tenant or to all.
type Scope string

const (
	// ScopeTenant marks a schema whose rows belong to one tenant. Mixin sets it.
	ScopeTenant Scope = "tenant"
	// ScopeGlobal marks a schema shared by all tenants (reference data,
	// control-plane tables). Use Global to set it.
	ScopeGlobal Scope = "global"
)

// AnnotationName is the name under which Annotation is stored in the
// generated graph.
const AnnotationName = "Tenancy"

// Annotation records a schema's tenancy scope. The generator refuses schemas
// that have none, so every table is either tenant-scoped or deliberately
// global.
type Annotation struct {
	Scope Scope `json:"scope"`
}

// Name implements schema.Annotation.
func (Annotation) Name() string { return AnnotationName }

// Global marks an Ent schema as deliberately shared by all tenants:
//
//	func (Plan) Annotations() []schema.Annotation {
//		return []schema.Annotation{tenancy.Global()}
//	}
func Global() schema.Annotation { return Annotation{Scope: ScopeGlobal} }
