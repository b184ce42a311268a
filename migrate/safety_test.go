package migrate_test

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	entschema "entgo.io/ent/dialect/sql/schema"
	"entgo.io/ent/schema/field"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// TestShardDownAtPlanFailsTheRun: a shard that is down when the run starts
// contributes no target at all; the run must still fail (tenantctl exits
// non-zero), since none of that shard's schemas was migrated.
func TestShardDownAtPlanFailsTheRun(t *testing.T) {
	var clusters []*pgtest.Cluster
	for i := range 2 {
		c, err := pgtest.Start(t.Context(), pgtest.Options{Name: fmt.Sprintf("down%d", i)})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		clusters = append(clusters, c)
	}
	e := newFleetEnv(t, clusters)
	targets := e.targets(3)
	v1, v2 := newDesired(t, appmigrate.Tables), newDesired(t, v2Tables())
	e.provision(t, v1, targets)

	require.NoError(t, clusters[1].Stop())
	rep, err := e.fleet(v2, migrate.Discover{}).Run(t.Context(), migrate.RunOptions{})
	require.NoError(t, err)
	var out strings.Builder
	require.NoError(t, rep.WriteTable(&out))
	t.Log("\n" + out.String())
	assert.NotEmpty(t, rep.Shards[1].Error, "the report knows shard1 is down")
	require.ErrorIs(t, rep.Err(), migrate.ErrFailed, "a run that migrated nothing on shard1 must not succeed")
	require.ErrorIs(t, rep.Err(), migrate.ErrShardUnavailable)
}

// TestPublicGrantReconciled: Apply gives the app role exactly SELECT,
// INSERT, UPDATE, DELETE and nothing more, also through grants to PUBLIC: a
// GRANT TRUNCATE ... TO PUBLIC made by hand would let the app role, scoped
// to tenant A, truncate tenant B's rows in a shared schema (TRUNCATE is not
// subject to row-level security).
func TestPublicGrantReconciled(t *testing.T) {
	e := newEnv(t)
	d := newDesired(t, appmigrate.Tables)
	e.apply(t, d, e.owner, "shared_0")
	e.exec(t, fmt.Sprintf(`INSERT INTO shared_0.tags (id, tenant_id, name) VALUES ('%s', '%s', 'b')`, tagB, tenantB))
	e.exec(t, `GRANT TRUNCATE ON ALL TABLES IN SCHEMA shared_0 TO PUBLIC`)
	res := e.apply(t, d, e.owner, "shared_0")
	t.Logf("Apply ran %q", res.Statements)
	app := e.open(t, e.roles.App)
	err := scoped(t, app, "shared_0", ptr(tenantA), true, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(t.Context(), `TRUNCATE tags CASCADE`)
		return err
	})
	t.Logf("TRUNCATE as app scoped to tenant A: err=%v", err)
	assert.Error(t, err, "the app role must not be able to TRUNCATE after Apply")
	assert.Equal(t, []string{"1"}, e.queryStrings(t, `SELECT count(*)::text FROM shared_0.tags`), "tenant B's row")
}

// TestDriftSurvivesUpgrade: drift that tenantry does not repair (here a
// grant to a role it does not manage) is reported at v1, and still after
// the v2 run: the drifted schema's state after the v2 plan is not taken
// for a state of v2, which would hide the drift for good.
func TestDriftSurvivesUpgrade(t *testing.T) {
	e, targets := oneShardFleet(t, 3)
	v1, v2 := newDesired(t, appmigrate.Tables), newDesired(t, v2Tables())
	e.provision(t, v1, targets)
	bad := tenantSchemas(0, 3)[1]
	intruder := fmt.Sprintf("intruder_%d", time.Now().UnixNano()) // roles are the cluster's
	e.exec(t, 0, `CREATE ROLE `+intruder)
	e.exec(t, 0, `GRANT TRUNCATE ON `+bad+`.orders TO `+intruder)

	st, err := e.fleet(v1, targets).Status(t.Context(), migrate.RunOptions{})
	require.NoError(t, err)
	require.Len(t, st.Drifted, 1, "at v1 the grant is reported")
	t.Logf("v1 drift: %v", st.Drifted[0].Differences)

	rep := run(t, e.fleet(v2, targets), migrate.RunOptions{})
	require.NoError(t, rep.Err())
	t.Logf("v2 run: applied %d drifted %d", rep.Total.Applied, rep.Total.Drifted)
	st, err = e.fleet(v2, targets).Status(t.Context(), migrate.RunOptions{})
	require.NoError(t, err)
	t.Logf("v2 status: current %d drifted %d", st.Shards[0].Current, st.Shards[0].Drifted)
	assert.Equal(t, 1, rep.Total.Drifted, "the v2 run reports the drift it left")
	assert.Equal(t, 2, rep.Total.Applied)
	require.Len(t, st.Drifted, 1, "v2 status still reports the drift")
	assert.Equal(t, bad, st.Drifted[0].Schema)
}

// TestRetiredDuringRunNotRecreated: a tenant offboarded between plan and
// apply (its schema and ledger row renamed, as provision.Retire does) is
// left alone: verify used to "repair" the missing schema, creating a fresh,
// empty one for the offboarded tenant.
func TestRetiredDuringRunNotRecreated(t *testing.T) {
	e, targets := oneShardFleet(t, 3)
	v1, v2 := newDesired(t, appmigrate.Tables), newDesired(t, v2Tables())
	e.provision(t, v1, targets)
	gone := tenantSchemas(0, 3)[1]
	f := e.fleet(v2, migrate.Discover{})
	p, err := f.Plan(t.Context(), migrate.RunOptions{})
	require.NoError(t, err)

	// Offboarding retires the schema while the run is between plan and apply.
	e.exec(t, 0, `BEGIN; SELECT pg_advisory_xact_lock(hashtext('tenantry:' || '`+gone+`'));
		ALTER SCHEMA `+gone+` RENAME TO retired_x;
		UPDATE tenantry.schema_state SET schema_name = 'retired_x' WHERE schema_name = '`+gone+`'; COMMIT`)

	rep, err := f.Apply(t.Context(), p)
	require.NoError(t, err)
	var out strings.Builder
	require.NoError(t, rep.WriteTable(&out))
	t.Log("\n" + out.String())
	exists := e.strings(t, 0, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)::text`, gone)
	assert.Equal(t, []string{"false"}, exists, "the offboarded tenant's schema must not be recreated")
	assert.Equal(t, 1, rep.Total.Skipped)
	assert.Equal(t, 2, rep.Total.Applied)
}

// TestConcurrentRepairSameVersion: two runs at the same version both plan
// the repair of a drifted schema (a policy dropped by hand). The second
// must see that the first repaired it meanwhile (its ledger check compared
// versions only, v1 -> v1: it ran CREATE POLICY again, failed with 42710
// and, with the default budget, halted).
func TestConcurrentRepairSameVersion(t *testing.T) {
	e, targets := oneShardFleet(t, 3)
	v1 := newDesired(t, appmigrate.Tables)
	e.provision(t, v1, targets)
	bad := tenantSchemas(0, 3)[0]
	e.exec(t, 0, `DROP POLICY tenant_isolation ON `+bad+`.tags`)
	f := e.fleet(v1, targets)
	p1, err := f.Plan(t.Context(), migrate.RunOptions{})
	require.NoError(t, err)
	p2, err := f.Plan(t.Context(), migrate.RunOptions{})
	require.NoError(t, err)
	rep1, err := f.Apply(t.Context(), p1)
	require.NoError(t, err)
	require.NoError(t, rep1.Err())
	rep2, err := f.Apply(t.Context(), p2)
	require.NoError(t, err)
	assert.NoError(t, rep2.Err(), "the second run must see the schema was repaired meanwhile")
}

// TestConcurrentIndexRetryResumes: with ConcurrentIndexes, the
// transactional part commits before the index is built. When the build
// times out on a lock (a tenant transaction on customers), the retry
// resumes with the index (it used to run the committed ALTER TABLE again,
// which failed for good: "already exists").
func TestConcurrentIndexRetryResumes(t *testing.T) {
	e, targets := oneShardFleet(t, 2)
	v1, v2 := newDesired(t, appmigrate.Tables), newDesired(t, colorAndNameIndex())
	e.provision(t, v1, targets)
	busy := tenantSchemas(0, 2)[0]

	tx, err := e.supers[0].BeginTx(t.Context(), nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(t.Context(), fmt.Sprintf(`INSERT INTO %s.customers (id, tenant_id, name, email, created_at)
		VALUES (gen_random_uuid(), '%s', 'x', 'x@example.com', now())`, busy, tenantA))
	require.NoError(t, err)
	timer := time.AfterFunc(1500*time.Millisecond, func() { tx.Rollback() })
	defer timer.Stop()

	f := e.fleet(v2, targets)
	p, err := f.Plan(t.Context(), migrate.RunOptions{ConcurrentIndexes: true, LockTimeout: 200 * time.Millisecond, Retries: 8, RetryBackoff: 100 * time.Millisecond})
	require.NoError(t, err)
	require.Len(t, p.Groups, 1)
	t.Logf("tx: %q concurrent: %q", p.Groups[0].Statements, p.Groups[0].Concurrent)
	rep, err := f.Apply(t.Context(), p)
	require.NoError(t, err)
	var out strings.Builder
	require.NoError(t, rep.WriteTable(&out))
	t.Log("\n" + out.String())
	assert.NoError(t, rep.Err(), "the busy tenant should be applied once its transaction ends")
}

// colorAndNameIndex is the example graph plus a nullable column tags.color
// and a plain index customers(name).
func colorAndNameIndex() []*entschema.Table {
	var out []*entschema.Table
	for _, t := range appmigrate.Tables {
		c := *t
		c.Columns = append([]*entschema.Column(nil), t.Columns...)
		c.Indexes = append([]*entschema.Index(nil), t.Indexes...)
		switch t.Name {
		case appmigrate.TagsTable.Name:
			c.Columns = append(c.Columns, &entschema.Column{Name: "color", Type: field.TypeString, Size: 20, Nullable: true})
		case appmigrate.CustomersTable.Name:
			c.Indexes = append(c.Indexes, &entschema.Index{Name: "customer_name", Columns: []*entschema.Column{t.Columns[2]}})
		}
		out = append(out, &c)
	}
	return out
}

// TestGroupPlanFailureStaysWithItsMembers: the first members of a group
// have data the change violates (duplicate names under a new unique
// index). Only they fail, with their own error; the healthy members
// migrate (all six failed with "no plan" when the first three tried
// failed).
func TestGroupPlanFailureStaysWithItsMembers(t *testing.T) {
	e, targets := oneShardFleet(t, 6)
	v1, v3 := newDesired(t, appmigrate.Tables), newDesired(t, withUniqueName())
	e.provision(t, v1, targets)
	for _, bad := range targets[:3] {
		e.addCustomers(t, 0, bad.Schema, "ann", "ann")
	}
	rep := run(t, e.fleet(v3, targets), migrate.RunOptions{FailureBudget: -1})
	var out strings.Builder
	require.NoError(t, rep.WriteTable(&out))
	t.Log("\n" + out.String())
	assert.Equal(t, 3, rep.Total.Applied, "the three healthy tenants should migrate")
	assert.Equal(t, 3, rep.Total.Failed, "only the three with duplicate names should fail")
}

// oneShardFleet is a fleet of one shard whose first n tenant schemas are
// the targets.
func oneShardFleet(t *testing.T, n int) (*fleetEnv, migrate.TargetList) {
	e := newFleetEnv(t, pgtest.Shards(t, 1))
	e.shards = e.shards[:1]
	var targets migrate.TargetList
	for _, s := range tenantSchemas(0, n) {
		targets = append(targets, migrate.Target{Shard: "shard0", Schema: s})
	}
	return e, targets
}

// TestPlanErr: a plan that leaves out a shard it could not read, or has a
// group without a plan, is not a plan to go ahead with: FleetPlan.Err says
// so (tenantctl migrate plan exits non-zero), as Report.Err does for a run.
func TestPlanErr(t *testing.T) {
	e, targets := oneShardFleet(t, 2)
	v1 := newDesired(t, appmigrate.Tables)
	e.provision(t, v1, targets)
	f := e.fleet(v1, migrate.Discover{})
	p, err := f.Plan(t.Context(), migrate.RunOptions{})
	require.NoError(t, err)
	require.NoError(t, p.Err(), "every schema is up to date")

	// A schema the owner role cannot change: no plan for its group.
	e.exec(t, 0, "CREATE SCHEMA tenant_ffffffff00004000800000000000000f AUTHORIZATION postgres")
	// A shard nobody listens on.
	down, err := migrate.OpenShard("down", "postgres://tenantry_owner@127.0.0.1:1/nodb?connect_timeout=5", 1)
	require.NoError(t, err)
	t.Cleanup(func() { down.DB.Close() })
	f.Shards = append(f.Shards, down)
	p, err = f.Plan(t.Context(), migrate.RunOptions{})
	require.NoError(t, err)
	var out strings.Builder
	require.NoError(t, p.WriteText(&out))
	t.Log("\n" + out.String())
	err = p.Err()
	require.ErrorIs(t, err, migrate.ErrShardUnavailable)
	require.ErrorIs(t, err, migrate.ErrNoPlan)
	assert.Contains(t, err.Error(), "down: ")
	assert.Contains(t, err.Error(), "tenant_ffffffff00004000800000000000000f")
}

// TestUnknownShardRejected: a shard name the fleet does not have, selected
// or in an explicit target, is an error, not a selection of nothing that
// succeeds. Nothing is sent to a shard (nobody listens at these).
func TestUnknownShardRejected(t *testing.T) {
	var shards []migrate.Shard
	for _, name := range []string{"s0", "s1"} {
		s, err := migrate.OpenShard(name, "postgres://tenantry_owner@127.0.0.1:1/nodb?connect_timeout=5", 1)
		require.NoError(t, err)
		t.Cleanup(func() { s.DB.Close() })
		shards = append(shards, s)
	}
	f := &migrate.Fleet{Shards: shards, Desired: newDesired(t, appmigrate.Tables), Logger: testLogger}
	only := migrate.RunOptions{Select: migrate.Selector{Shards: []string{"s1", "nosuch"}}}
	_, err := f.Plan(t.Context(), only)
	require.ErrorIs(t, err, migrate.ErrUnknownShard)
	assert.Contains(t, err.Error(), `"nosuch"`)
	_, err = f.Status(t.Context(), only)
	require.ErrorIs(t, err, migrate.ErrUnknownShard)
	_, err = f.Run(t.Context(), only)
	require.ErrorIs(t, err, migrate.ErrUnknownShard)

	f.Targets = migrate.TargetList{{Shard: "s0", Schema: "tenant_a"}, {Shard: "nosuchshard", Schema: "x"}}
	_, err = f.Plan(t.Context(), migrate.RunOptions{})
	require.ErrorIs(t, err, migrate.ErrUnknownShard)
	assert.Contains(t, err.Error(), "nosuchshard/x")
	_, err = f.Status(t.Context(), migrate.RunOptions{})
	require.ErrorIs(t, err, migrate.ErrUnknownShard)

	// Status validates schema patterns as Plan does.
	_, err = f.Status(t.Context(), migrate.RunOptions{Select: migrate.Selector{Schemas: []string{"tenant_["}}})
	require.Error(t, err)
}

// TestSelectorTenantIDs: a selected tenant must be a tenant id; a slug or
// a typo would match nothing and the run succeed, doing nothing.
func TestSelectorTenantIDs(t *testing.T) {
	require.NoError(t, migrate.Selector{Tenants: []string{"7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c", "7F1C2A4E-9B3D-4C8E-A1F0-5D6E7F8A9B0C"}}.Validate())
	for _, bad := range []string{"acme", "not-a-uuid", "7f1c2a4e9b3d4c8ea1f05d6e7f8a9b0c", "00000000-0000-0000-0000-000000000000"} {
		err := migrate.Selector{Tenants: []string{bad}}.Validate()
		require.ErrorIs(t, err, tenancy.ErrInvalidTenantID, bad)
		assert.Contains(t, err.Error(), bad)
	}
	s, err := migrate.OpenShard("s0", "postgres://tenantry_owner@127.0.0.1:1/nodb?connect_timeout=5", 1)
	require.NoError(t, err)
	t.Cleanup(func() { s.DB.Close() })
	f := &migrate.Fleet{Shards: []migrate.Shard{s}, Desired: newDesired(t, appmigrate.Tables), Logger: testLogger}
	_, err = f.Plan(t.Context(), migrate.RunOptions{Select: migrate.Selector{Tenants: []string{"acme"}}})
	require.ErrorIs(t, err, tenancy.ErrInvalidTenantID)
	_, err = f.Status(t.Context(), migrate.RunOptions{Select: migrate.Selector{Tenants: []string{"acme"}}})
	require.ErrorIs(t, err, tenancy.ErrInvalidTenantID)
}

// TestRequireExisting: with RunOptions.RequireExisting, an explicit target
// whose schema does not exist (a typo) fails the plan, in both modes,
// instead of becoming a new schema with every table; without it, such a
// target is created, as provisioning by target list does.
func TestRequireExisting(t *testing.T) {
	e, targets := oneShardFleet(t, 2)
	v1 := newDesired(t, appmigrate.Tables)
	e.provision(t, v1, targets)
	typo := migrate.Target{Shard: "shard0", Schema: "tenant_typo"}
	list := append(slices.Clone(targets), typo)
	exists := func() bool {
		return len(e.strings(t, 0, "SELECT nspname::text FROM pg_namespace WHERE nspname = $1", typo.Schema)) > 0
	}

	path := t.TempDir()
	dir, err := atlasmigrate.NewLocalDir(path)
	require.NoError(t, err)
	_, err = migrate.Diff(t.Context(), e.shards[0].DB, dir, "init", v1, e.roles)
	require.NoError(t, err)
	for _, f := range []*migrate.Fleet{e.fleet(v1, list), {Shards: e.shards, Targets: list, Dir: dir, Roles: e.roles, Logger: testLogger}} {
		_, err := f.Plan(t.Context(), migrate.RunOptions{RequireExisting: true})
		require.ErrorIs(t, err, migrate.ErrNoSchema)
		assert.Contains(t, err.Error(), "shard0/tenant_typo")
		_, err = f.Run(t.Context(), migrate.RunOptions{RequireExisting: true})
		require.ErrorIs(t, err, migrate.ErrNoSchema)
		assert.False(t, exists(), "the typo must not become a schema")
	}

	// Existing targets plan as before.
	p, err := e.fleet(v1, targets).Plan(t.Context(), migrate.RunOptions{RequireExisting: true})
	require.NoError(t, err)
	require.NoError(t, p.Err())
	assert.Len(t, p.UpToDate(), len(targets))

	// Without RequireExisting, the target is created.
	rep := run(t, e.fleet(v1, list), migrate.RunOptions{})
	require.NoError(t, rep.Err())
	assert.Equal(t, 1, rep.Total.Applied)
	assert.True(t, exists())
}
