package migrate_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
)

// TestProvisionEquivalentToApply: a schema created by the cached plan in
// one round trip is the schema Apply creates (catalog description, catalog
// fingerprint and pg_dump), Apply afterwards changes nothing, the ledger
// records it at the desired version, and a fleet run finds it current.
func TestProvisionEquivalentToApply(t *testing.T) {
	e := newFleetEnv(t, pgtest.Shards(t, 1))
	ctx := t.Context()
	d := newDesired(t, appmigrate.Tables)
	p, err := migrate.NewProvisioner(d, e.roles)
	require.NoError(t, err)
	db := e.shards[0].DB

	fast, slow := "tenant_0123456789abcdef0123456789abcdef", "tenant_fedcba9876543210fedcba9876543210"
	res, err := p.Provision(ctx, db, fast, "")
	require.NoError(t, err)
	require.True(t, res.Fast, "a new schema takes the cached plan")
	require.Equal(t, d.Version(), res.Version)
	require.Greater(t, res.Statements, 20, "tables, indexes, keys, RLS, policies, grants")
	_, err = d.Apply(ctx, db, slow, e.roles)
	require.NoError(t, err)

	desc, err := migrate.Describe(ctx, db, fast, slow)
	require.NoError(t, err)
	require.NotEmpty(t, desc[fast])
	require.Equal(t, desc[slow], desc[fast], "catalog description of the fast schema = Apply's")
	fps, err := migrate.Fingerprints(ctx, db, []string{fast, slow}, nil)
	require.NoError(t, err)
	require.Equal(t, fps[slow], fps[fast], "catalog fingerprint of the fast schema = Apply's")
	require.Equal(t, fps[fast], res.Fingerprint, "the fingerprint the plan promised")
	require.Equal(t, e.dump(t, 0, slow), e.dump(t, 0, fast), "pg_dump of the fast schema = Apply's")

	again, err := d.Apply(ctx, db, fast, e.roles)
	require.NoError(t, err)
	require.Empty(t, again.Statements, "Apply after fast provisioning changes nothing")

	ledger, err := migrate.Ledger(ctx, db, fast)
	require.NoError(t, err)
	require.Len(t, ledger, 1)
	require.Equal(t, "applied", ledger[0].Status)
	require.Equal(t, d.Version(), ledger[0].Version)
	require.Equal(t, "01234567-89ab-cdef-0123-456789abcdef", ledger[0].Tenant)
	require.Equal(t, res.Fingerprint, ledger[0].Fingerprint)

	// Provisioning an existing schema goes through Apply: nothing to do,
	// nothing lost.
	e.exec(t, 0, `INSERT INTO "`+fast+`".customers (id, tenant_id, name, email, created_at)
		VALUES (gen_random_uuid(), '01234567-89ab-cdef-0123-456789abcdef', 'kept', 'k@example.com', now())`)
	res, err = p.Provision(ctx, db, fast, "")
	require.NoError(t, err)
	require.False(t, res.Fast)
	require.Zero(t, res.Statements)
	require.Equal(t, []string{"1"}, e.strings(t, 0, `SELECT count(*)::text FROM "`+fast+`".customers`))

	// Shared schemas: Ensure creates once, then only reads the ledger.
	res, err = p.Ensure(ctx, db, "shared_pool")
	require.NoError(t, err)
	require.True(t, res.Fast)
	res, err = p.Ensure(ctx, db, "shared_pool")
	require.NoError(t, err)
	require.False(t, res.Fast)
	require.Zero(t, res.Statements)

	// A fleet run over everything it discovers finds all of it current.
	rep := run(t, e.fleet(d, migrate.Discover{}), migrate.RunOptions{})
	require.Equal(t, 3, rep.Total.UpToDate, "%+v", rep.Total)
	require.Zero(t, rep.Total.Applied+rep.Total.Failed+rep.Total.Drifted, "%+v", rep.Total)

	// Names are validated, never pasted.
	_, err = p.Provision(ctx, db, `tenant_x"; DROP SCHEMA tenantry CASCADE; --`, "")
	require.ErrorIs(t, err, migrate.ErrInvalidSchemaName)
}

// TestProvisionConcurrent: schemas provisioned in parallel, one of them
// twice at once, while a fleet run migrates the others to a new version;
// afterwards a fleet run to the new version leaves every schema equal to a
// fresh one and fails none.
func TestProvisionConcurrent(t *testing.T) {
	e := newFleetEnv(t, pgtest.Shards(t, 1))
	ctx := t.Context()
	v1, v2 := newDesired(t, appmigrate.Tables), newDesired(t, v2Tables())
	p, err := migrate.NewProvisioner(v1, e.roles)
	require.NoError(t, err)
	db := e.shards[0].DB
	names := tenantSchemas(0, 12)
	for _, s := range names[:4] {
		_, err := p.Provision(ctx, db, s, "")
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i, s := range names[4:] {
		wg.Go(func() {
			if _, err := p.Provision(ctx, db, s, ""); err != nil {
				errs <- err
			}
			if i == 0 { // the same schema again, concurrently with others
				if _, err := p.Provision(ctx, db, s, ""); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		if _, err := e.fleet(v2, migrate.Discover{}).Run(ctx, migrate.RunOptions{FailureBudget: -1}); err != nil {
			errs <- fmt.Errorf("fleet: %w", err)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	rep := run(t, e.fleet(v2, migrate.Discover{}), migrate.RunOptions{})
	require.Zero(t, rep.Total.Failed+rep.Total.Drifted, "%+v", rep.Failed)
	require.Equal(t, len(names), rep.Total.Done())
	_, err = v2.Apply(ctx, db, "tenant_ffffffffffffffffffffffffffffffff", e.roles)
	require.NoError(t, err)
	want := e.dump(t, 0, "tenant_ffffffffffffffffffffffffffffffff")
	for _, s := range names {
		require.Equal(t, want, e.dump(t, 0, s), s)
	}
	var n int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM tenantry.schema_state WHERE version = $1`, v2.Version()).Scan(&n))
	require.Equal(t, len(names)+1-1, n, "every provisioned schema recorded at v2 (the Apply-made one is not in the ledger)")
}

// TestProvisionFromSpares: Prepare creates spare schemas; Provision
// renames one to the new schema (same catalog as Apply's, ledger moved);
// a spare taken by someone else, or left behind by a version change, is
// skipped; with none left, Provision creates the schema.
func TestProvisionFromSpares(t *testing.T) {
	e := newFleetEnv(t, pgtest.Shards(t, 1))
	ctx := t.Context()
	d := newDesired(t, appmigrate.Tables)
	p, err := migrate.NewProvisioner(d, e.roles)
	require.NoError(t, err)
	db := e.shards[0].DB
	n, err := p.Prepare(ctx, db, 3)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	spares := e.strings(t, 0, `SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'tenant\_spare\_%' ORDER BY 1`)
	require.Len(t, spares, 3)

	// Another process adopts the same spares and takes one.
	other, err := migrate.NewProvisioner(d, e.roles)
	require.NoError(t, err)
	n, err = other.Prepare(ctx, db, 3)
	require.NoError(t, err)
	require.Zero(t, n, "existing spares are adopted")
	taken, err := other.Provision(ctx, db, "tenant_0000000000000000000000000000000a", "")
	require.NoError(t, err)
	require.True(t, taken.Spare)

	var got []*migrate.Provisioned
	for _, s := range []string{"tenant_0000000000000000000000000000000b", "tenant_0000000000000000000000000000000c", "tenant_0000000000000000000000000000000d"} {
		res, err := p.Provision(ctx, db, s, "")
		require.NoError(t, err)
		got = append(got, res)
	}
	spareCount := 0
	for _, r := range got {
		require.True(t, r.Fast)
		if r.Spare {
			spareCount++
		}
	}
	require.Equal(t, 2, spareCount, "two spares left after the other process took one; the third schema is created")

	// Provisioning a schema that exists keeps the spares.
	_, err = p.Prepare(ctx, db, 1)
	require.NoError(t, err)
	res, err := p.Provision(ctx, db, "tenant_0000000000000000000000000000000b", "")
	require.NoError(t, err)
	require.False(t, res.Fast)
	require.Equal(t, 1, p.Spares(db), "the spare is kept")
	res, err = p.Provision(ctx, db, "tenant_0000000000000000000000000000000e", "")
	require.NoError(t, err)
	require.True(t, res.Spare)
	require.Equal(t, 0, p.Spares(db))
	require.Empty(t, e.strings(t, 0, `SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'tenant\_spare\_%'`))

	_, err = d.Apply(ctx, db, "tenant_ffffffffffffffffffffffffffffffff", e.roles)
	require.NoError(t, err)
	all := []string{"tenant_0000000000000000000000000000000a", "tenant_0000000000000000000000000000000b", "tenant_0000000000000000000000000000000c", "tenant_0000000000000000000000000000000d", "tenant_0000000000000000000000000000000e"}
	desc, err := migrate.Describe(ctx, db, append(all, "tenant_ffffffffffffffffffffffffffffffff")...)
	require.NoError(t, err)
	for _, s := range all {
		require.Equal(t, desc["tenant_ffffffffffffffffffffffffffffffff"], desc[s], s)
		res, err := d.Apply(ctx, db, s, e.roles)
		require.NoError(t, err)
		require.Empty(t, res.Statements, s)
	}
	require.Equal(t, []string{"5"}, e.strings(t, 0, `SELECT count(*)::text FROM tenantry.schema_state WHERE version = $1 AND schema_name LIKE 'tenant\_0%'`, d.Version()))
	require.Equal(t, []string{"0"}, e.strings(t, 0, `SELECT count(*)::text FROM tenantry.schema_state WHERE schema_name LIKE 'tenant\_spare\_%'`))

	// Spares of an older version are not used.
	_, err = p.Prepare(ctx, db, 1)
	require.NoError(t, err)
	v2 := newDesired(t, v2Tables())
	p2, err := migrate.NewProvisioner(v2, e.roles)
	require.NoError(t, err)
	n, err = p2.Prepare(ctx, db, 1)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the v1 spare is not adopted for v2")
	res, err = p.Provision(ctx, db, "tenant_00000000000000000000000000000010", "")
	require.NoError(t, err)
	require.True(t, res.Spare)
	// A fleet run to v2 migrates the v1 spare... the v1 provisioner's
	// remembered spare is then skipped.
	_, err = p.Prepare(ctx, db, 1)
	require.NoError(t, err)
	run(t, e.fleet(v2, migrate.Discover{}), migrate.RunOptions{})
	res, err = p.Provision(ctx, db, "tenant_0000000000000000000000000000000f", "")
	require.NoError(t, err)
	require.False(t, res.Spare, "a spare no longer at the provisioner's version is skipped")
	require.True(t, res.Fast)
}

// TestProvisionColdSmallPool: a provisioner that has not planned yet,
// called by more goroutines than its pool has connections, plans once and
// serves them all (planning must not wait for connections the callers
// hold).
func TestProvisionColdSmallPool(t *testing.T) {
	e := newFleetEnv(t, pgtest.Shards(t, 1))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db, err := sql.Open("pgx", e.clusters[0].DSN(e.roles.Owner, e.database))
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(2)
	p, err := migrate.NewProvisioner(newDesired(t, appmigrate.Tables), e.roles)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for _, s := range tenantSchemas(0, 6) {
		wg.Go(func() {
			if _, err := p.Provision(ctx, db, s, ""); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, []string{"6"}, e.strings(t, 0, `SELECT count(*)::text FROM tenantry.schema_state`))
}

// TestProvisionSchemaAhead: a provisioner of an older version, given a
// schema that a fleet run already migrated further (a shared schema during
// a rollout), leaves it as it is instead of failing or dropping anything.
func TestProvisionSchemaAhead(t *testing.T) {
	e := newFleetEnv(t, pgtest.Shards(t, 1))
	ctx := t.Context()
	v1, v2 := newDesired(t, appmigrate.Tables), newDesired(t, v2Tables())
	p1, err := migrate.NewProvisioner(v1, e.roles)
	require.NoError(t, err)
	p2, err := migrate.NewProvisioner(v2, e.roles)
	require.NoError(t, err)
	db := e.shards[0].DB
	_, err = p2.Ensure(ctx, db, "shared_pool")
	require.NoError(t, err)
	before := e.dump(t, 0, "shared_pool")
	res, err := p1.Ensure(ctx, db, "shared_pool")
	require.NoError(t, err)
	require.NotEmpty(t, res.Ahead)
	require.Equal(t, v2.Version(), res.Version)
	require.Equal(t, before, e.dump(t, 0, "shared_pool"), "nothing dropped")
}
