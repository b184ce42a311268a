package migrate

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
)

// versionedStep is one migration file to apply to a schema.
type versionedStep struct {
	file    atlasmigrate.File
	version string
	stmts   []string
	noTx    bool   // "-- atlas:txmode none": statements run one by one, outside a transaction
	hash    string // the file's hash in atlas.sum
}

// steps reads the directory's files, after checking atlas.sum.
func dirSteps(dir atlasmigrate.Dir) ([]versionedStep, error) {
	if err := atlasmigrate.Validate(dir); err != nil {
		return nil, fmt.Errorf("migrate: migration directory: %w", err)
	}
	files, err := dir.Files()
	if err != nil {
		return nil, fmt.Errorf("migrate: migration directory: %w", err)
	}
	sum, err := atlasmigrate.NewHashFile(files)
	if err != nil {
		return nil, err
	}
	hashes := make(map[string]string)
	for _, h := range sum {
		hashes[h.N] = h.H
	}
	var steps []versionedStep
	for _, f := range files {
		stmts, err := f.Stmts()
		if err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", f.Name(), err)
		}
		for i, s := range stmts {
			stmts[i] = strings.TrimSuffix(strings.TrimSpace(s), ";")
		}
		st := versionedStep{file: f, version: f.Version(), stmts: stmts, hash: hashes[f.Name()]}
		if d, ok := f.(interface{ Directive(string) []string }); ok && slices.Contains(d.Directive("txmode"), "none") {
			st.noTx = true
		}
		if n := len(steps); n > 0 && steps[n-1].version >= st.version {
			return nil, fmt.Errorf("migrate: %s: version %s does not follow %s", f.Name(), st.version, steps[n-1].version)
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// planVersioned groups the targets by their ledger version: each group
// applies the files after it, in order, one transaction per file.
func (f *Fleet) planVersioned(ctx context.Context, p *FleetPlan) error {
	steps, err := dirSteps(f.Dir)
	if err != nil {
		return err
	}
	if len(steps) == 0 {
		return errors.New("migrate: migration directory has no files")
	}
	p.Version = steps[len(steps)-1].version
	p.steps = steps
	log := f.logger().With("run", p.RunID)
	var wg sync.WaitGroup
	for _, s := range f.Shards {
		if !p.opts.Select.shardSelected(s.Name) {
			continue
		}
		st := &shardState{shard: s}
		p.shards[s.Name] = st
		wg.Go(func() {
			st.err = f.loadShard(ctx, st, p.opts, false)
			if st.err == nil {
				st.err = checkApplied(ctx, s, steps)
			}
			if st.err != nil {
				log.Error("shard unavailable", "shard", s.Name, "err", st.err)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.checkExisting(); err != nil {
		return err
	}
	index := make(map[string]int)
	for i, s := range steps {
		index[s.version] = i
	}
	groups := make(map[string]*Group)
	for _, name := range sortedKeys(p.shards) {
		st := p.shards[name]
		if st.err != nil {
			continue
		}
		for _, t := range st.targets {
			from := st.state[t.Schema].version
			_, exists := st.fps[t.Schema]
			key := from + "/" + strconv.FormatBool(exists)
			g := groups[key]
			if g == nil {
				g = &Group{fromVers: from, create: !exists}
				switch i, ok := index[from]; {
				case from == "":
					g.steps = steps
				case !ok:
					g.Error = fmt.Sprintf("ledger version %s is not a file of the migration directory", from)
				default:
					g.steps = steps[i+1:]
				}
				if g.Error == "" && len(g.steps) == 0 {
					g = nil
				} else {
					groups[key] = g
					p.Groups = append(p.Groups, g)
				}
			}
			if g == nil {
				p.upToDate = append(p.upToDate, t)
				continue
			}
			g.Members = append(g.Members, t)
		}
	}
	slices.SortStableFunc(p.Groups, func(a, b *Group) int { return cmp.Compare(len(b.Members), len(a.Members)) })
	for i, g := range p.Groups {
		g.ID = i + 1
		g.Representative = g.Members[0]
		for _, s := range g.steps {
			g.Statements = append(g.Statements, fmt.Sprintf("-- %s", s.file.Name()))
			g.Statements = append(g.Statements, s.stmts...)
		}
		h := make([]string, len(g.steps))
		for i, s := range g.steps {
			h[i] = s.hash
		}
		g.PlanHash = shortHash(strings.Join(h, ","))
		if g.Error == "" {
			f.tryVersioned(ctx, p, g)
		}
	}
	p.summarize()
	p.Duration = time.Since(p.started)
	return nil
}

// tryVersioned runs a group's pending files on its representative inside a
// transaction that is rolled back: a file that fails fails here, before
// any schema changed, and the fingerprint afterwards is what every member
// must end at. Files that must run outside a transaction are not tried.
func (f *Fleet) tryVersioned(ctx context.Context, p *FleetPlan, g *Group) {
	for _, s := range g.steps {
		if s.noTx {
			return
		}
	}
	rep := g.Representative
	st := p.shards[rep.Shard]
	err := func() error {
		tx, err := st.shard.DB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := prologue(ctx, tx, rep.Schema, f.roles(), p.opts.LockTimeout, true); err != nil {
			return err
		}
		stmts := []string{"CREATE SCHEMA IF NOT EXISTS " + ident(rep.Schema) + " AUTHORIZATION " + ident(f.roles().Owner),
			"SELECT set_config('search_path', " + literal(ident(rep.Schema)) + ", true)"}
		for _, s := range g.steps {
			stmts = append(stmts, s.stmts...)
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", firstLine(s), err)
			}
		}
		g.Expect, err = fingerprintTx(ctx, tx, rep.Schema)
		return err
	}()
	if err != nil {
		g.Error = fmt.Sprintf("pending files fail on %s: %v", rep, err)
	}
}

// checkApplied refuses a directory whose files differ from those applied
// on the shard.
func checkApplied(ctx context.Context, s Shard, steps []versionedStep) error {
	rows, err := s.DB.QueryContext(ctx, `SELECT DISTINCT version, coalesce(plan_hash, '') FROM tenantry.schema_migrations
		WHERE mode = $1 AND status = 'applied'`, ModeVersioned)
	if err != nil {
		return err
	}
	defer rows.Close()
	byVersion := make(map[string]versionedStep)
	for _, st := range steps {
		byVersion[st.version] = st
	}
	for rows.Next() {
		var v, h string
		if err := rows.Scan(&v, &h); err != nil {
			return err
		}
		st, ok := byVersion[v]
		switch {
		case !ok:
			return fmt.Errorf("migrate: version %s is applied on shard %s but not in the migration directory", v, s.Name)
		case h != "" && st.hash != h:
			return fmt.Errorf("migrate: %s was changed after it was applied on shard %s (atlas.sum hash %s, applied %s)", st.file.Name(), s.Name, st.hash, h)
		}
	}
	return rows.Err()
}

// attemptVersioned applies a member's pending files, one transaction per
// file with its ledger row; a retry resumes after the last file applied.
func (r *run) attemptVersioned(ctx context.Context, j *job) error {
	db := j.st.shard.DB
	for i, s := range j.g.steps {
		if j.from != "" && s.version <= j.from {
			continue
		}
		rec := r.record(j)
		rec.version, rec.planHash, rec.statements = s.version, s.hash, len(s.stmts)
		rec.fingerprint = ""
		if i == len(j.g.steps)-1 {
			rec.fingerprint = j.g.Expect
		}
		if !s.noTx {
			if err := execPipeline(ctx, db, r.script(j, j.g.create, s.stmts, rec.appliedSQL())); err != nil {
				return fmt.Errorf("%s: %w", s.file.Name(), err)
			}
		} else {
			if err := r.execNoTx(ctx, db, j, s); err != nil {
				return fmt.Errorf("%s: %w", s.file.Name(), err)
			}
			if err := execPipeline(ctx, db, r.script(j, false, nil, rec.appliedSQL())); err != nil {
				return fmt.Errorf("%s: %w", s.file.Name(), err)
			}
		}
		j.from = s.version
	}
	return nil
}

// execNoTx runs a file's statements one at a time outside a transaction
// (e.g. CREATE INDEX CONCURRENTLY), with the owner role, lock_timeout and
// search_path set for the session and reset afterwards. Such files should
// be written to be re-runnable (IF NOT EXISTS): a failure leaves the
// statements before it applied, and the file is run again in full.
func (r *run) execNoTx(ctx context.Context, db *sql.DB, j *job, s versionedStep) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer func() {
		if _, rerr := conn.ExecContext(context.Background(), "RESET search_path; RESET lock_timeout; RESET ROLE"); rerr != nil && err == nil {
			err = rerr
		}
	}()
	setup := fmt.Sprintf("SET ROLE %s; SET lock_timeout = %s; SELECT pg_advisory_lock(hashtext('tenantry:' || %s)); CREATE SCHEMA IF NOT EXISTS %s AUTHORIZATION %s; SET search_path = %s",
		ident(r.f.roles().Owner), literal(lockTimeoutSetting(r.opts.LockTimeout)), literal(j.t.Schema), ident(j.t.Schema), ident(r.f.roles().Owner), ident(j.t.Schema))
	// Unlocked whatever the setup does: a session-level advisory lock
	// taken in a statement list that fails later survives the rollback,
	// and would hold the schema's migrations on this pooled connection.
	// (Unlocking a lock not held only warns.)
	defer conn.ExecContext(context.Background(), fmt.Sprintf("SELECT pg_advisory_unlock(hashtext('tenantry:' || %s))", literal(j.t.Schema)))
	if _, err := conn.ExecContext(ctx, setup); err != nil {
		return err
	}
	for _, stmt := range s.stmts {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", firstLine(stmt), err)
		}
	}
	return nil
}

// DiffResult is what Diff wrote.
type DiffResult struct {
	// File is the name of the new migration file; empty when the directory
	// is already at the desired state.
	File string `json:"file,omitempty"`
	// Version is the new file's version.
	Version    string   `json:"version,omitempty"`
	Statements []string `json:"statements,omitempty"`
	// Destructive lists destructive changes in the file (Atlas's
	// destructive analyzer); review them before applying.
	Destructive []string `json:"destructive,omitempty"`
}

// Diff writes the next versioned migration: the statements that take a
// schema from the state of dir's files to the desired state, as an
// Atlas-format file NAME (version_name.sql) in dir, and updates atlas.sum.
// The current state comes from replaying dir's files in a scratch schema
// of db (any shard or a development database, connected as the owner role
// or a superuser), inside a transaction that is rolled back. The file
// includes the guard DDL (row-level security, policies, grants); statements
// on the schema itself name it through current_schema(), since files run
// under a search_path of the target schema. It returns an empty result
// when there is nothing to change.
func Diff(ctx context.Context, db *sql.DB, dir atlasmigrate.Dir, name string, desired *Desired, roles Roles) (*DiffResult, error) {
	if err := roles.validate(); err != nil {
		return nil, err
	}
	if name == "" || strings.ContainsAny(name, "/\\ \t\n") {
		return nil, fmt.Errorf("migrate: diff: invalid migration name %q", name)
	}
	steps, err := dirSteps(dir)
	if err != nil {
		return nil, err
	}
	res := &DiffResult{}
	plan, err := diffPlan(ctx, db, steps, name, desired, roles, res)
	if err != nil {
		return nil, fmt.Errorf("migrate: diff: %w", err)
	}
	if len(plan.Changes) == 0 {
		return res, nil
	}
	plan.Version = atlasmigrate.NewVersion()
	if n := len(steps); n > 0 && plan.Version <= steps[n-1].version {
		last, err := strconv.ParseUint(steps[n-1].version, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("migrate: diff: last version %q is not a number", steps[n-1].version)
		}
		plan.Version = strconv.FormatUint(last+1, 10)
	}
	if err := atlasmigrate.NewPlanner(nil, dir, atlasmigrate.PlanWithChecksum(true)).WritePlan(plan); err != nil {
		return nil, fmt.Errorf("migrate: diff: write: %w", err)
	}
	res.Version = plan.Version
	res.File = plan.Version + "_" + name + ".sql"
	for _, c := range plan.Changes {
		res.Statements = append(res.Statements, c.Cmd)
	}
	return res, nil
}

func diffPlan(ctx context.Context, db *sql.DB, steps []versionedStep, name string, desired *Desired, roles Roles, res *DiffResult) (*atlasmigrate.Plan, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if err := actAsOwner(ctx, tx, roles); err != nil {
		return nil, err
	}
	scratch := fmt.Sprintf("tenantry_dev_%x", time.Now().UnixNano())
	for _, s := range []string{
		"CREATE SCHEMA " + ident(scratch) + " AUTHORIZATION " + ident(roles.Owner),
		"SELECT set_config('search_path', " + literal(ident(scratch)) + ", true)",
	} {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return nil, err
		}
	}
	for _, st := range steps {
		for _, s := range st.stmts {
			// Replayed inside the transaction: build indexes plainly.
			s = strings.Replace(s, " CONCURRENTLY", "", 1)
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return nil, fmt.Errorf("replay %s: %s: %w", st.file.Name(), firstLine(s), err)
			}
		}
	}
	policy, err := desired.policyText(ctx, tx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, "SELECT set_config('search_path', "+literal(ident(scratch))+", true)"); err != nil {
		return nil, err
	}
	drv, err := postgres.Open(tx)
	if err != nil {
		return nil, err
	}
	current, err := drv.InspectSchema(ctx, scratch, nil)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	want, err := desired.State(scratch)
	if err != nil {
		return nil, err
	}
	changes, err := drv.SchemaDiff(current, want)
	if err != nil {
		return nil, err
	}
	if res.Destructive, err = destructive(ctx, changes); err != nil {
		return nil, err
	}
	plan := &atlasmigrate.Plan{Name: name}
	if len(changes) > 0 {
		if plan, err = drv.PlanChanges(ctx, name, changes, unqualified); err != nil {
			return nil, err
		}
		for _, c := range plan.Changes {
			if _, err := tx.ExecContext(ctx, c.Cmd, c.Args...); err != nil {
				return nil, fmt.Errorf("%s: %w", c.Cmd, err)
			}
		}
	}
	guards, err := desired.guardStatements(ctx, tx, scratch, roles, policy, quotedToken)
	if err != nil {
		return nil, err
	}
	for _, g := range guards {
		cmd := g
		if strings.Contains(g, quotedToken) {
			// The schema is the one the file runs in.
			f := strings.ReplaceAll(strings.ReplaceAll(g, "%", "%%"), quotedToken, "%I")
			cmd = "DO $tenantry$ BEGIN EXECUTE format(" + literal(f) + ", current_schema()); END $tenantry$"
		}
		plan.Changes = append(plan.Changes, &atlasmigrate.Change{Cmd: cmd, Comment: "tenantry guard: row-level security, policies, grants"})
	}
	return plan, nil
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return fmt.Sprintf("%x", sum[:6])
}
