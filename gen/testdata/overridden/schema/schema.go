// Package schema holds tenant-scoped Ent schemas whose mixins override
// tenancy.Mixin's interceptor or hook. The generator cannot see what a
// mixed-in hook or interceptor is, so generation passes; the generated
// NewClient must refuse them (tenancy.CheckEnforced).
package schema

import (
	"context"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"

	"github.com/tenantry/tenantry/tenancy"
)

// unfiltered keeps tenancy.Mixin's field and hook and replaces its
// interceptor with one that does nothing.
type unfiltered struct{ tenancy.Mixin }

func (unfiltered) Interceptors() []ent.Interceptor {
	return []ent.Interceptor{ent.TraverseFunc(func(context.Context, ent.Query) error { return nil })}
}

// unhooked keeps tenancy.Mixin's field and interceptor and replaces its
// hook with one that passes every mutation through.
type unhooked struct{ tenancy.Mixin }

func (unhooked) Hooks() []ent.Hook {
	return []ent.Hook{func(next ent.Mutator) ent.Mutator { return next }}
}

// Ledger loses the tenant filter.
type Ledger struct{ ent.Schema }

func (Ledger) Mixin() []ent.Mixin  { return []ent.Mixin{unfiltered{}} }
func (Ledger) Fields() []ent.Field { return []ent.Field{field.String("name")} }

// Journal loses the mutation hook.
type Journal struct{ ent.Schema }

func (Journal) Mixin() []ent.Mixin  { return []ent.Mixin{unhooked{}} }
func (Journal) Fields() []ent.Field { return []ent.Field{field.String("name")} }
