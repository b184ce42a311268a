package schema

import (
	"time"

	"entgo.io/ent"
	entsql "entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/tenantry/tenantry/tenancy"
)

// Tenant is one customer account of the SaaS.
type Tenant struct {
	ent.Schema
}

func (Tenant) Annotations() []schema.Annotation {
	return []schema.Annotation{tenancy.Global()}
}

func (Tenant) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", tenancy.ID{}).Default(tenancy.NewID).Immutable(),
		field.String("slug").Unique().NotEmpty().MaxLen(63).Match(nameRE),
		field.Enum("state").
			Values("provisioning", "active", "read_only", "suspended", "moving", "offboarded", "deleted").
			Default("provisioning"),
		field.Int("plan_id"),
		field.String("provisioner").Default("").MaxLen(64).
			Comment("Who provisions the tenant now (a random token), empty when nobody does: a second create of the same slug must not provision it too."),
		field.Time("provisioner_seen").Optional().Nillable().
			Annotations(entsql.Default("CURRENT_TIMESTAMP")).
			Comment("When the provisioner last said it was alive (the registry's clock); an older claim may be taken over (its runner died)."),
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now),
	}
}

func (Tenant) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("plan", Plan.Type).Ref("tenants").Unique().Required().Field("plan_id"),
		edge.To("placement", Placement.Type).Unique(),
		edge.To("offboardings", Offboarding.Type),
	}
}
