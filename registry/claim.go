package registry

import (
	"context"
	"fmt"
	"time"

	"github.com/tenantry/tenantry/ent"
	enttenant "github.com/tenantry/tenantry/ent/tenant"
	"github.com/tenantry/tenantry/tenancy"
)

// A provisioning tenant is claimed by the CreateTenant call that provisions
// it (tenants.provisioner, a random token), so that a second create of the
// same slug, from another request or process, fails with ErrProvisioning
// instead of provisioning it too and reporting it created. The claim is
// renewed every ProvisionHeartbeat while apply runs; a claim older than
// ProvisionStaleAfter belongs to a caller that died and is taken over. A
// failed apply releases it at once, so that a retry resumes without
// waiting.
const (
	ProvisionHeartbeat  = 2 * time.Second
	ProvisionStaleAfter = 15 * ProvisionHeartbeat
)

// newClaim returns a provisioner token.
func newClaim() string { return "create-" + tenancy.NewID().String() }

// claimTimeout bounds each statement of the claim's upkeep (renewal,
// release), which must not hang a create on a stuck registry.
const claimTimeout = 5 * time.Second

// The claim's times are the registry's (now()), so that callers on hosts
// whose clocks disagree judge a claim's age alike.
const (
	claimSQL = `UPDATE tenants SET provisioner = $1, provisioner_seen = now(), updated_at = now()
WHERE id = $2 AND state = 'provisioning'
  AND (provisioner = '' OR provisioner_seen IS NULL OR provisioner_seen < now() - $3 * interval '1 millisecond')`
	renewSQL   = `UPDATE tenants SET provisioner_seen = now() WHERE id = $1 AND provisioner = $2`
	unclaimSQL = `UPDATE tenants SET provisioner = '', provisioner_seen = NULL WHERE id = $1 AND provisioner = $2`
)

// claim makes token the provisioner of t, which is provisioning, unless a
// live caller provisions it.
func (s *Store) claim(ctx context.Context, t Tenant, token string) error {
	res, err := s.db.ExecContext(ctx, claimSQL, token, t.ID, ProvisionStaleAfter.Milliseconds())
	if err != nil {
		return wrap(err, "registry: tenant %q: claim its provisioning", t.Slug)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	cur, err := s.client.Tenant.Get(ctx, t.ID)
	if err != nil {
		return wrap(err, "registry: tenant %q", t.Slug)
	}
	if cur.State != enttenant.StateProvisioning {
		return fmt.Errorf("registry: tenant %q: %w (id %s, state %s)", t.Slug, ErrExists, t.ID, cur.State)
	}
	seen := "never"
	if cur.ProvisionerSeen != nil {
		seen = "at " + cur.ProvisionerSeen.UTC().Format(time.RFC3339)
	}
	return fmt.Errorf("registry: tenant %q (%s): %w (provisioner %s, last seen %s)", t.Slug, t.ID, ErrProvisioning, cur.Provisioner, seen)
}

// provision runs apply for t under token's claim, renewing it every
// ProvisionHeartbeat, and releases the claim if apply fails or panics.
func (s *Store) provision(ctx context.Context, t Tenant, sh Shard, token string, apply ApplyFunc) (err error) {
	// The renewal outlives a cancelled ctx as long as apply runs: a
	// claim that lapsed under a still running apply would let another
	// create run beside it.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(ProvisionHeartbeat)
		defer tick.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-tick.C:
				// A failed renewal is retried at the next tick; activate
				// checks the claim in the end.
				rctx, rcancel := context.WithTimeout(hctx, claimTimeout)
				_, _ = s.db.ExecContext(rctx, renewSQL, t.ID, token)
				rcancel()
			}
		}
	}()
	defer func() {
		cancel()
		<-done
		if r := recover(); r != nil {
			s.unclaim(ctx, t.ID, token)
			panic(r)
		}
		if err != nil {
			s.unclaim(ctx, t.ID, token)
		}
	}()
	return apply(ctx, sh, t.Placement.Schema)
}

// unclaim releases token's claim on tenant id, so that a retry resumes at
// once instead of after ProvisionStaleAfter.
func (s *Store) unclaim(ctx context.Context, id tenancy.ID, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	_, _ = s.db.ExecContext(ctx, unclaimSQL, id, token)
}

// abandonSQL marks a provisioning tenant that token has claimed deleted.
const abandonSQL = `UPDATE tenants SET state = 'deleted', provisioner = '', provisioner_seen = NULL, updated_at = now()
WHERE id = $1 AND state = 'provisioning' AND provisioner = $2`

// Abandon gives up a tenant stuck in provisioning (its shard keeps failing
// it, or it was created by mistake): it is marked deleted, never served,
// its slug kept. A create that provisions it right now keeps it
// (ErrProvisioning); any other state is ErrTransition (offboard a tenant
// that was served). It returns the tenant as it was placed, so that the
// caller can drop what provisioning created on the shard.
func (s *Store) Abandon(ctx context.Context, id tenancy.ID) (Tenant, error) {
	t, err := s.Tenant(ctx, id.String())
	if err != nil {
		return Tenant{}, err
	}
	if t.State != Provisioning {
		return Tenant{}, fmt.Errorf("registry: abandon tenant %s (%s): %w: state %s (abandon applies to provisioning tenants; offboard the others)", t.Slug, id, ErrTransition, t.State)
	}
	token := newClaim()
	if err := s.claim(ctx, t, token); err != nil {
		return Tenant{}, err
	}
	err = s.inTx(ctx, func(tx *ent.Tx) error {
		res, err := tx.ExecContext(ctx, abandonSQL, id, token)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("%w: the tenant changed meanwhile; look again", ErrTransition)
		}
		return bumpTenant(ctx, tx, id)
	})
	if err != nil {
		s.unclaim(ctx, id, token)
		return Tenant{}, wrap(err, "registry: abandon tenant %s (%s)", t.Slug, id)
	}
	t.State = Deleted
	return t, nil
}
