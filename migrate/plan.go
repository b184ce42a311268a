package migrate

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// scratchPrefix names the schema in which a run builds the desired state to
// fingerprint it. It lives only inside a transaction that is rolled back.
const scratchPrefix = "tenantry_scratch_"

// FleetPlan is what a run will do: the targets, grouped by catalog
// fingerprint, and one plan per group, computed once on a representative
// member and applied to every member.
type FleetPlan struct {
	RunID   string `json:"run_id"`
	Mode    string `json:"mode"`
	Version string `json:"version"`
	// Shards summarizes each shard; a shard that could not be read has
	// Error set, and its targets are not in any group.
	Shards []ShardPlan `json:"shards"`
	// Groups are the schemas that need a change, by starting state.
	Groups []*Group `json:"groups"`
	// Drifted are schemas that differ from the desired state in ways the
	// plan cannot repair (objects tenantry does not manage).
	Drifted []Drift `json:"drifted,omitempty"`
	// Destructive lists the destructive changes of all groups; a run
	// refuses them unless RunOptions.AllowDestructive.
	Destructive []string      `json:"destructive,omitempty"`
	Duration    time.Duration `json:"duration_ns"`

	opts     RunOptions
	shards   map[string]*shardState
	upToDate []Target
	steps    []versionedStep // versioned mode: the directory's files
	started  time.Time
	mu       sync.Mutex // guards upToDate and Drifted while groups are planned
}

// ShardPlan summarizes a shard in a plan.
type ShardPlan struct {
	Shard    string `json:"shard"`
	Targets  int    `json:"targets"`
	UpToDate int    `json:"up_to_date"`
	Change   int    `json:"change"`
	Drifted  int    `json:"drifted"`
	Error    string `json:"error,omitempty"`
}

// Group is a set of schemas in the same starting state and the plan that
// brings each of them to the target.
type Group struct {
	ID int `json:"id"`
	// Fingerprint is the members' catalog fingerprint; empty for schemas
	// that do not exist yet.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Expect is the fingerprint every member must have afterwards.
	Expect string `json:"expect,omitempty"`
	// Representative is the member the plan was computed on.
	Representative Target `json:"representative"`
	// Statements are the plan as it runs on the representative: each
	// member runs them with its own schema name, in one transaction under
	// a transaction-local search_path of exactly that schema.
	Statements []string `json:"statements"`
	// Concurrent are CREATE INDEX CONCURRENTLY statements run outside the
	// transaction (RunOptions.ConcurrentIndexes).
	Concurrent []string `json:"concurrent,omitempty"`
	// Destructive lists the plan's destructive changes.
	Destructive []string `json:"destructive,omitempty"`
	// PlanHash identifies the plan in the ledger.
	PlanHash string   `json:"plan_hash"`
	Members  []Target `json:"members"`
	// Error is set when no plan could be computed; the members then fail
	// with it.
	Error string `json:"error,omitempty"`
	// Drift is what the members will still differ in from the version once
	// the plan has run: drift that tenantry does not manage (e.g. grants to
	// other roles), carried into the run's report instead of being taken
	// for a state of the version.
	Drift []string `json:"drift,omitempty"`

	create   bool            // schemas must be created
	tx       []string        // statements of the transaction, schema as quotedToken
	conc     []concurrentIdx // indexes built concurrently
	steps    []versionedStep // versioned mode
	fromVers string          // versioned mode: the members' ledger version
}

// Drift is a schema that differs from the state its version should have.
type Drift struct {
	Target
	Fingerprint string `json:"fingerprint"`
	// Version is the version the schema is compared with.
	Version string `json:"version,omitempty"`
	// Differences are description lines, "-" missing from the schema and
	// "+" present in it but not in the version (Describe).
	Differences []string `json:"differences"`
}

// shardState is what planning learned about one shard.
type shardState struct {
	shard    Shard
	err      error
	targets  []Target
	fps      map[string]string      // schema → fingerprint
	state    map[string]ledgerState // schema → ledger version and run
	known    map[string][]string    // fingerprint → versions
	desired  string                 // fingerprint of a fresh schema at the version
	desc     []string               // its description
	fresh    bool                   // desired and desc were computed by this run
	recorded []string               // fingerprints to record as the version's
	mu       sync.Mutex
}

// Plan computes what a run with opts would do, changing nothing: on every
// shard in parallel, it lists the targets, fingerprints them in one query,
// and fingerprints the desired state (built in a scratch schema inside a
// transaction that is rolled back); targets already at a fingerprint known
// for the version are up to date; the others are grouped by fingerprint
// and each group is planned once, on a representative, inside a
// transaction that is rolled back.
func (f *Fleet) Plan(ctx context.Context, opts RunOptions) (*FleetPlan, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if err := f.checkSelection(opts.Select); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	p := &FleetPlan{RunID: opts.RunID, Mode: f.mode(), opts: opts, shards: make(map[string]*shardState), started: time.Now()}
	if f.Dir != nil {
		return p, f.planVersioned(ctx, p)
	}
	p.Version = f.Desired.Version()
	log := f.logger().With("run", p.RunID)

	var wg sync.WaitGroup
	for _, s := range f.Shards {
		if !opts.Select.shardSelected(s.Name) {
			continue
		}
		st := &shardState{shard: s}
		p.shards[s.Name] = st
		wg.Go(func() {
			start := time.Now()
			st.err = f.loadShard(ctx, st, opts, true)
			f.Metrics.observePhase(s.Name, "fingerprint", time.Since(start))
			if st.err != nil {
				log.Error("shard unavailable", "shard", s.Name, "err", st.err)
				return
			}
			log.Info("fingerprinted", "shard", s.Name, "targets", len(st.targets), "schemas", len(st.fps), "duration", time.Since(start).Round(time.Millisecond))
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.checkExisting(); err != nil {
		return nil, err
	}

	// Fingerprints known to be the version, on any shard: the state is
	// the same whatever the shard.
	atVersion := make(map[string]bool)
	for _, st := range p.shards {
		if st.err != nil {
			continue
		}
		atVersion[st.desired] = true
		for fp, vs := range st.known {
			if slices.Contains(vs, p.Version) {
				atVersion[fp] = true
			}
		}
	}
	byFP := make(map[string]*Group)
	for _, name := range sortedKeys(p.shards) {
		st := p.shards[name]
		if st.err != nil {
			continue
		}
		for _, t := range st.targets {
			fp, exists := st.fps[t.Schema]
			if exists && atVersion[fp] {
				p.upToDate = append(p.upToDate, t)
				continue
			}
			g := byFP[fp]
			if g == nil {
				g = &Group{Fingerprint: fp}
				byFP[fp] = g
				p.Groups = append(p.Groups, g)
			}
			g.Members = append(g.Members, t)
		}
	}
	slices.SortStableFunc(p.Groups, func(a, b *Group) int { return cmp.Compare(len(b.Members), len(a.Members)) })
	for i, g := range p.Groups {
		g.ID = i + 1
	}

	// One plan per group, a few groups at a time.
	sem := make(chan struct{}, 4)
	for _, g := range p.Groups {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			f.planGroup(ctx, p, g)
			f.Metrics.observePhase(g.Representative.Shard, "plan", time.Since(start))
			log.Info("planned group", "group", g.ID, "members", len(g.Members), "representative", g.Representative.String(),
				"statements", len(g.Statements), "concurrent", len(g.Concurrent), "error", g.Error, "duration", time.Since(start).Round(time.Millisecond))
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Groups whose plan is empty are up to date (their fingerprint is
	// recorded as the version's when the run applies) or drifted.
	p.Groups = slices.DeleteFunc(p.Groups, func(g *Group) bool {
		return g.Error == "" && len(g.tx) == 0 && len(g.conc) == 0 && !g.create
	})
	for _, g := range p.Groups {
		for _, d := range g.Destructive {
			if !slices.Contains(p.Destructive, d) {
				p.Destructive = append(p.Destructive, d)
			}
		}
	}
	p.summarize()
	p.Duration = time.Since(p.started)
	return p, nil
}

// loadShard ensures the ledger and reads targets, fingerprints, ledger
// state and known fingerprints of one shard; with desired, it also learns
// the desired state's fingerprint and description there (recorded by an
// earlier run, or built in a scratch schema).
func (f *Fleet) loadShard(ctx context.Context, st *shardState, opts RunOptions, desired bool) error {
	s := st.shard
	if err := EnsureLedger(ctx, s.DB, f.roles()); err != nil {
		return err
	}
	all, err := f.targets().Targets(ctx, s)
	if err != nil {
		return err
	}
	seen := make(map[string]bool)
	for _, t := range all {
		t.Shard = s.Name
		if opts.Select.Match(t) && !seen[t.Schema] {
			seen[t.Schema] = true
			st.targets = append(st.targets, t)
		}
	}
	names := make([]string, len(st.targets))
	for i, t := range st.targets {
		names[i] = t.Schema
	}
	var errs [4]error
	var wg sync.WaitGroup
	log := f.logger().With("shard", s.Name)
	wg.Go(func() {
		start := time.Now()
		if len(names) > 500 {
			if analyzed, err := refreshCatalogStats(ctx, s.DB); err != nil {
				log.Warn("could not refresh catalog statistics", "err", err)
			} else if len(analyzed) > 0 {
				log.Info("analyzed stale catalogs", "catalogs", analyzed, "duration", time.Since(start).Round(time.Millisecond))
			}
		}
		st.fps, errs[0] = Fingerprints(ctx, s.DB, names, nil)
		log.Debug("fingerprint query", "schemas", len(names), "duration", time.Since(start).Round(time.Millisecond))
	})
	wg.Go(func() {
		if st.state, errs[1] = schemaState(ctx, s.DB); errs[1] != nil {
			errs[1] = fmt.Errorf("migrate: ledger state: %w", errs[1])
		}
	})
	wg.Go(func() {
		if st.known, errs[2] = knownFingerprints(ctx, s.DB); errs[2] != nil {
			errs[2] = fmt.Errorf("migrate: known fingerprints: %w", errs[2])
		}
	})
	if desired {
		wg.Go(func() {
			start := time.Now()
			st.desired, st.desc, errs[3] = recordedDesired(ctx, s.DB, f.Desired.Version())
			if errs[3] == nil && st.desired == "" {
				errs[3] = f.fingerprintDesired(ctx, st)
			}
			log.Debug("desired state fingerprint", "built", st.fresh, "duration", time.Since(start).Round(time.Millisecond))
		})
	}
	wg.Wait()
	return errors.Join(errs[:]...)
}

// checkExisting fails with ErrNoSchema, under RunOptions.RequireExisting,
// when targets of the shards read do not exist.
func (p *FleetPlan) checkExisting() error {
	if !p.opts.RequireExisting {
		return nil
	}
	var missing []string
	n := 0
	for _, name := range sortedKeys(p.shards) {
		st := p.shards[name]
		if st.err != nil {
			continue
		}
		for _, t := range st.targets {
			if _, ok := st.fps[t.Schema]; !ok {
				if n++; n <= 10 {
					missing = append(missing, t.String())
				}
			}
		}
	}
	if n == 0 {
		return nil
	}
	if n > len(missing) {
		missing = append(missing, fmt.Sprintf("and %d more", n-len(missing)))
	}
	return fmt.Errorf("%w: %s", ErrNoSchema, strings.Join(missing, ", "))
}

// fingerprintDesired builds the desired state in a scratch schema inside a
// transaction, fingerprints and describes it, and rolls back. The scratch
// schema is new, so there is nothing to inspect: the plan is the diff from
// an empty schema.
func (f *Fleet) fingerprintDesired(ctx context.Context, st *shardState) error {
	tx, err := st.shard.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	name := scratchPrefix + fmt.Sprintf("%x", time.Now().UnixNano())
	if err := actAsOwner(ctx, tx, f.roles()); err != nil {
		return err
	}
	if _, err := f.Desired.reconcile(ctx, tx, name, f.roles(), reconcileOptions{schemaRef: quotedToken, fresh: true}); err != nil {
		return fmt.Errorf("migrate: desired state on %s: %w", st.shard.Name, err)
	}
	if st.desired, err = fingerprintTx(ctx, tx, name); err != nil {
		return err
	}
	desc, err := describeTx(ctx, tx, name)
	if err != nil {
		return err
	}
	st.desc = desc[name]
	st.fresh = true
	return nil
}

// planGroup computes a group's plan on a representative: the first member
// on which planning succeeds, of at most three tried (a member can be
// busy), not counting up to maxDataFailures members whose own data makes a
// statement fail (class 22 or 23): the plan does not depend on the data,
// so such members run it like the others and fail alone, with their own
// error in the ledger, instead of failing the whole group.
func (f *Fleet) planGroup(ctx context.Context, p *FleetPlan, g *Group) {
	const maxDataFailures = 20
	var errs []string
	tried, dataFailures := 0, 0
	for _, m := range g.Members {
		if tried == 3 {
			break
		}
		st := p.shards[m.Shard]
		if st.err != nil {
			continue
		}
		g.Representative = m
		err := f.planOn(ctx, p, st, g, m)
		if err == nil {
			return
		}
		errs = append(errs, fmt.Sprintf("on %s: %v", m, err))
		if ctx.Err() != nil {
			break
		}
		if c := pgCode(err); (strings.HasPrefix(c, "22") || strings.HasPrefix(c, "23")) && dataFailures < maxDataFailures {
			dataFailures++
			continue
		}
		tried++
	}
	g.Error = "no plan: " + strings.Join(errs, "; ")
}

func (f *Fleet) planOn(ctx context.Context, p *FleetPlan, st *shardState, g *Group, rep Target) error {
	tx, err := st.shard.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := prologue(ctx, tx, rep.Schema, f.roles(), p.opts.LockTimeout, true); err != nil {
		return err
	}
	sp, err := f.Desired.reconcile(ctx, tx, rep.Schema, f.roles(), reconcileOptions{
		allowDestructive: true, schemaRef: quotedToken, concurrent: p.opts.ConcurrentIndexes,
	})
	if err != nil {
		return err
	}
	for _, s := range sp.atlas {
		if len(s.args) > 0 {
			return fmt.Errorf("statement with arguments cannot be planned for a group: %s", s.cmd)
		}
	}
	if !sp.empty() {
		// The plan must converge: a second pass finds nothing left to do,
		// so the fingerprint after it is a state of the version.
		again, err := f.Desired.reconcile(ctx, tx, rep.Schema, f.roles(), reconcileOptions{allowDestructive: true, schemaRef: quotedToken})
		if err != nil {
			return err
		}
		if !again.empty() {
			return fmt.Errorf("the plan does not converge: a second pass would still run %q", again.statements(rep.Schema))
		}
	}
	if g.Expect, err = fingerprintTx(ctx, tx, rep.Schema); err != nil {
		return err
	}
	g.create = sp.created
	g.tx, g.conc, g.Destructive = nil, nil, sp.destructive
	for _, s := range sp.atlas {
		g.tx = append(g.tx, s.cmd)
	}
	g.tx = append(g.tx, sp.guards...)
	g.conc = sp.conc()
	g.Statements = nil
	if sp.created {
		g.Statements = append(g.Statements, sp.create)
	}
	for _, s := range g.tx {
		g.Statements = append(g.Statements, render(s, rep.Schema))
	}
	g.Concurrent = nil
	for _, c := range g.conc {
		g.Concurrent = append(g.Concurrent, render(c.create, rep.Schema))
	}
	h := sha256.New()
	fmt.Fprintf(h, "%v\n%s\n", g.create, strings.Join(g.tx, ";\n"))
	for _, c := range g.conc {
		fmt.Fprintln(h, c.create)
	}
	g.PlanHash = fmt.Sprintf("%x", h.Sum(nil)[:6])
	// The fingerprint after the plan (or now, when there is nothing to do)
	// is not one known for the version: either an equivalent state
	// (columns in another order, privileges granted in another order), or
	// drift that tenantry does not manage, which the plan leaves as it is.
	desc, err := describeTx(ctx, tx, rep.Schema)
	if err != nil {
		return err
	}
	diff := diffLines(st.desc, desc[rep.Schema])
	if !sp.empty() {
		if len(st.desc) > 0 {
			g.Drift = diff
		}
		return nil
	}
	if len(diff) == 0 {
		for _, m := range g.Members {
			ms := p.shards[m.Shard]
			ms.mu.Lock()
			if !slices.Contains(ms.recorded, g.Fingerprint) {
				ms.recorded = append(ms.recorded, g.Fingerprint)
			}
			ms.mu.Unlock()
		}
		p.markUpToDate(g.Members)
		return nil
	}
	for _, m := range g.Members {
		p.addDrift(Drift{Target: m, Fingerprint: g.Fingerprint, Version: p.Version, Differences: diff})
	}
	return nil
}

func (sp *schemaPlan) conc() []concurrentIdx { return slices.Clone(sp.concurrent) }

func (p *FleetPlan) markUpToDate(ts []Target) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upToDate = append(p.upToDate, ts...)
}

func (p *FleetPlan) addDrift(d Drift) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Drifted = append(p.Drifted, d)
}

// summarize fills Shards.
func (p *FleetPlan) summarize() {
	p.Shards = nil
	for _, name := range sortedKeys(p.shards) {
		st := p.shards[name]
		sp := ShardPlan{Shard: name, Targets: len(st.targets)}
		if st.err != nil {
			sp.Error = st.err.Error()
		}
		for _, t := range p.upToDate {
			if t.Shard == name {
				sp.UpToDate++
			}
		}
		for _, g := range p.Groups {
			for _, m := range g.Members {
				if m.Shard == name {
					sp.Change++
				}
			}
		}
		for _, d := range p.Drifted {
			if d.Shard == name {
				sp.Drifted++
			}
		}
		p.Shards = append(p.Shards, sp)
	}
	slices.SortFunc(p.Drifted, func(a, b Drift) int { return cmp.Compare(a.String(), b.String()) })
}

// Changes is the number of schemas the plan changes.
func (p *FleetPlan) Changes() int {
	n := 0
	for _, g := range p.Groups {
		n += len(g.Members)
	}
	return n
}

// Err returns nil when the plan covers every target: every shard was read
// and every group has a plan. Otherwise it returns an error wrapping
// ErrShardUnavailable (shards that could not be read: their schemas are in
// no group) and ErrNoPlan (groups without a plan: their members would
// fail), naming them. Apply still runs such a plan on the rest, and its
// Report.Err fails too; a caller that plans to check before applying
// (tenantctl migrate plan) fails here.
func (p *FleetPlan) Err() error {
	var errs []error
	var down []string
	for _, s := range p.Shards {
		if s.Error != "" {
			down = append(down, fmt.Sprintf("%s: %s", s.Shard, s.Error))
		}
	}
	if len(down) > 0 {
		errs = append(errs, fmt.Errorf("%w: %d shard(s) not read, none of their schemas is planned: %s",
			ErrShardUnavailable, len(down), strings.Join(down, "; ")))
	}
	var failed []string
	members := 0
	for _, g := range p.Groups {
		if g.Error != "" {
			members += len(g.Members)
			failed = append(failed, fmt.Sprintf("group %d (%d schema(s)): %s", g.ID, len(g.Members), g.Error))
		}
	}
	if len(failed) > 0 {
		errs = append(errs, fmt.Errorf("%w for %d schema(s): %s", ErrNoPlan, members, strings.Join(failed, "; ")))
	}
	return errors.Join(errs...)
}

// UpToDate returns the targets that need no change.
func (p *FleetPlan) UpToDate() []Target { return slices.Clone(p.upToDate) }

// WriteText writes the plan for people: per shard counts, then each group
// with its statements.
func (p *FleetPlan) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("run %s: %s mode, target version %s, planned in %v\n", p.RunID, p.Mode, p.Version, p.Duration.Round(time.Millisecond))
	tw := newTable(ew, "SHARD", "TARGETS", "UP TO DATE", "CHANGE", "DRIFTED", "ERROR")
	for _, s := range p.Shards {
		tw.row(s.Shard, s.Targets, s.UpToDate, s.Change, s.Drifted, s.Error)
	}
	tw.flush()
	for _, g := range p.Groups {
		from := g.Fingerprint
		switch {
		case g.fromVers != "":
			from = "version " + g.fromVers
		case from == "" && p.Mode == ModeDeclarative:
			from = "(new schemas)"
		}
		ew.printf("\ngroup %d: %d schema(s) from %s, planned on %s", g.ID, len(g.Members), from, g.Representative)
		if g.PlanHash != "" {
			ew.printf(", plan %s", g.PlanHash)
		}
		ew.printf("\n")
		if g.Error != "" {
			ew.printf("  error: %s\n", g.Error)
		}
		for _, d := range g.Destructive {
			ew.printf("  DESTRUCTIVE: %s\n", d)
		}
		for _, s := range g.Statements {
			ew.printf("  %s;\n", indent(s))
		}
		for _, s := range g.Concurrent {
			ew.printf("  %s; -- outside the transaction\n", indent(s))
		}
		for _, st := range g.steps {
			ew.printf("  file %s (%d statements%s)\n", st.file.Name(), len(st.stmts), map[bool]string{true: ", no transaction"}[st.noTx])
		}
	}
	for _, d := range p.Drifted {
		ew.printf("\ndrifted %s (not repairable by this plan):\n", d)
		for _, l := range d.Differences {
			ew.printf("  %s\n", l)
		}
	}
	if len(p.Destructive) > 0 && !p.opts.AllowDestructive {
		ew.printf("\nrefused without --allow-destructive: %s\n", strings.Join(p.Destructive, "; "))
	}
	return ew.err
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

// diffLines returns the lines of want missing from have ("- ...") and of
// have missing from want ("+ ..."); both are sorted.
func diffLines(want, have []string) []string {
	var out []string
	i, j := 0, 0
	for i < len(want) || j < len(have) {
		switch {
		case j == len(have) || (i < len(want) && want[i] < have[j]):
			out = append(out, "- "+want[i])
			i++
		case i == len(want) || want[i] > have[j]:
			out = append(out, "+ "+have[j])
			j++
		default:
			i++
			j++
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
