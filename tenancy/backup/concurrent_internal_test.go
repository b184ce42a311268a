package backup

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantry/tenantry/internal/apptest"
)

// TestSharedReplaceKeepsConcurrentWrite: restoring over a tenant of a
// shared schema moves its current rows into a retired schema. A write of
// the tenant acknowledged while the restore runs must end up in the live
// tenant or in the retired copy. (It was lost when the copy and the DELETE
// of a table were separate statements, each with its own snapshot: found
// by a review.)
func TestSharedReplaceKeepsConcurrentWrite(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	m, _ := newManager(t, f, f.desired)
	owner := f.owner[0]
	tenant := apptest.B
	src := Source{Shard: "shard0", DB: owner, Schema: apptest.SharedSchema, Mode: ModeShared}
	man, err := m.Backup(ctx, tenant, src, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Hold a row of the tenant's order_tags, so that the restore stops at
	// its first DELETE, after every CREATE TABLE ... AS of the retired copy.
	blocker, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if err := prepareTx(ctx, blocker, tenant.String(), 5000); err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.Exec(ctx, "SELECT 1 FROM "+qualified(apptest.SharedSchema, "order_tags")+" WHERE tenant_id = "+tenantExpr+" LIMIT 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	var res *RestoreResult
	go func() {
		var err error
		res, err = m.Restore(ctx, man.Name, Target{Shard: "shard0", DB: owner, Schema: apptest.SharedSchema, Mode: ModeShared}, RestoreOptions{Replace: true})
		done <- err
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var waiting bool
		if err := owner.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%DELETE FROM%order_tags%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restore never reached its DELETE")
		}
	}
	// The app writes for the tenant now, and is acknowledged.
	email := "concurrent-" + uuid.NewString()[:8] + "@example.test"
	cu, err := f.env.Client.Customer.Create().SetName("acknowledged during the restore").SetEmail(email).Save(apptest.Ctx(tenant))
	if err != nil {
		t.Fatal(err)
	}
	blocker.Rollback(ctx)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var live, retired int
	if err := owner.QueryRow(ctx, "SELECT count(*) FROM "+qualified(apptest.SharedSchema, "customers")+" WHERE id = $1", cu.ID).Scan(&live); err != nil {
		t.Fatal(err)
	}
	if err := owner.QueryRow(ctx, "SELECT count(*) FROM "+qualified(res.Retired, "customers")+" WHERE id = $1", cu.ID).Scan(&retired); err != nil {
		t.Fatal(err)
	}
	t.Logf("acknowledged customer %s: %d live, %d in retired schema %s", cu.ID, live, retired, res.Retired)
	if live+retired == 0 {
		t.Errorf("an acknowledged write of the tenant is in neither the live tenant nor the retired copy: lost")
	}
}
