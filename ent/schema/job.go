package schema

import (
	"time"

	"entgo.io/ent"
	entsql "entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/tenantry/tenantry/tenancy"
)

// Job is the resumable record of a long operation on one tenant (a move,
// and later backups, restores, point-in-time restores): which phase it has
// reached, whether it still runs, who runs it (owner + heartbeat, so that a
// crashed runner's job can be taken over), its parameters and its error.
// At most one job per tenant is running at a time (a partial unique index).
type Job struct {
	ent.Schema
}

func (Job) Annotations() []schema.Annotation {
	return []schema.Annotation{tenancy.Global()}
}

func (Job) Fields() []ent.Field {
	return []ent.Field{
		field.String("kind").NotEmpty().MaxLen(32).Match(nameRE).Immutable().
			Comment("What the job does, e.g. move, backup, restore."),
		field.UUID("tenant_ref", tenancy.ID{}).Immutable().
			Comment("The tenant the job works on (not named tenant_id: this is a control-plane table)."),
		field.String("phase").Default("").MaxLen(63).
			Comment("The last phase the job completed or entered; the kind defines the phases."),
		field.Enum("state").Values("running", "done", "failed", "aborted").Default("running"),
		field.JSON("params", map[string]any{}).Optional().
			Comment("The job's parameters and what its phases recorded for resuming (kind-specific)."),
		field.Bool("cancel_requested").Default(false).
			Comment("Set by an operator (abort); the owner sees it with its next heartbeat, stops and rolls back."),
		field.Text("error").Default("").
			Comment("Why the job failed or was aborted."),
		field.String("owner").Default("").MaxLen(200).
			Comment("Who runs the job now (host/pid/random), empty when nobody does."),
		field.Time("heartbeat").Optional().Nillable().
			Comment("When the owner last said it was alive; a running job whose heartbeat is old may be taken over."),
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now),
		field.Time("finished_at").Optional().Nillable(),
	}
}

func (Job) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_ref", "kind"),
		// One running job per tenant: two movers cannot both move it.
		index.Fields("tenant_ref").Unique().Annotations(entsql.IndexWhere("state = 'running'")),
		index.Fields("state"),
	}
}
