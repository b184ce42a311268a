package move

import (
	"context"
	"time"

	"github.com/tenantry/tenantry/registry"
)

// PlacementAt returns where tenant t's data was at time at: the source of
// the first completed move whose flip came after at, or t's placement now.
// A point-in-time restore reads the tenant's data as of at there. (Writes
// are fenced from a move's fence to its flip, so the source holds all of
// the tenant's data until the flip.)
func PlacementAt(ctx context.Context, store *registry.Store, t registry.Tenant, at time.Time) (registry.Placement, error) {
	jobs, err := store.Jobs(ctx, registry.JobFilter{Kind: Kind, Tenant: t.ID, State: registry.JobDone})
	if err != nil {
		return registry.Placement{}, err
	}
	out, first := t.Placement, time.Time{}
	for _, j := range jobs {
		st, err := stateOf(j)
		if err != nil {
			return registry.Placement{}, err
		}
		flip := j.FinishedAt
		if !st.FencedAt.IsZero() && st.WindowNanos > 0 {
			flip = st.FencedAt.Add(st.WindowNanos)
		}
		if flip.After(at) && (first.IsZero() || flip.Before(first)) {
			out, first = st.From, flip
		}
	}
	return out, nil
}
