package registry

import (
	"context"
	"fmt"
	"time"

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

// seen is the provisioner_seen of a new claim by token, nil for none.
func seen(token string) *time.Time {
	if token == "" {
		return nil
	}
	now := time.Now()
	return &now
}

// claim makes token the provisioner of t, which is provisioning, unless a
// live caller provisions it.
func (s *Store) claim(ctx context.Context, t Tenant, token string) error {
	now := time.Now()
	n, err := s.client.Tenant.Update().
		Where(enttenant.ID(t.ID), enttenant.StateEQ(enttenant.StateProvisioning),
			enttenant.Or(enttenant.Provisioner(""), enttenant.ProvisionerSeenIsNil(), enttenant.ProvisionerSeenLT(now.Add(-ProvisionStaleAfter)))).
		SetProvisioner(token).SetProvisionerSeen(now).Save(ctx)
	if err != nil {
		return wrap(err, "registry: tenant %q: claim its provisioning", t.Slug)
	}
	if n == 1 {
		return nil
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
		seen = time.Since(*cur.ProvisionerSeen).Round(time.Millisecond).String() + " ago"
	}
	return fmt.Errorf("registry: tenant %q (%s): %w (provisioner %s, last seen %s)", t.Slug, t.ID, ErrProvisioning, cur.Provisioner, seen)
}

// keepClaim renews token's claim on tenant id every ProvisionHeartbeat
// until the returned function is called.
func (s *Store) keepClaim(ctx context.Context, id tenancy.ID, token string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(ProvisionHeartbeat)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				// A failed renewal is retried at the next tick; activate
				// checks the claim in the end.
				_, _ = s.client.Tenant.Update().Where(enttenant.ID(id), enttenant.Provisioner(token)).
					SetProvisionerSeen(time.Now()).Save(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// unclaim releases token's claim on tenant id (after a failed apply).
func (s *Store) unclaim(ctx context.Context, id tenancy.ID, token string) {
	_, _ = s.client.Tenant.Update().Where(enttenant.ID(id), enttenant.Provisioner(token)).
		SetProvisioner("").ClearProvisionerSeen().Save(ctx)
}
