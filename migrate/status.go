package migrate

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// StatusReport is where a fleet stands: per shard, how many schemas are at
// which version, which ones drifted (their catalog fingerprint is neither
// the target version's nor any state the ledger knows) and how, and which
// ones failed their last migration.
type StatusReport struct {
	Mode    string         `json:"mode"`
	Version string         `json:"version"` // the target version
	Shards  []ShardStatus  `json:"shards"`
	Drifted []Drift        `json:"drifted,omitempty"`
	Failing []FailedSchema `json:"failing,omitempty"`
	Elapsed time.Duration  `json:"elapsed_ns"`
}

// ShardStatus counts a shard's schemas per version.
type ShardStatus struct {
	Shard    string         `json:"shard"`
	Targets  int            `json:"targets"`
	Versions []VersionCount `json:"versions"`
	// Current is the number of schemas at the target version.
	Current int `json:"current"`
	Drifted int `json:"drifted"`
	Failing int `json:"failing"`
	// Absent counts listed targets whose schema does not exist.
	Absent int    `json:"absent"`
	Error  string `json:"error,omitempty"`
}

// VersionCount is how many schemas of a shard are at a version.
type VersionCount struct {
	Version string `json:"version"`
	Schemas int    `json:"schemas"`
	Current bool   `json:"current"`
}

// FailedSchema is a schema whose last migration attempt failed.
type FailedSchema struct {
	Target
	// Version is the version the schema is at; Attempted the one it
	// failed to reach.
	Version   string    `json:"version"`
	Attempted string    `json:"attempted"`
	Error     string    `json:"error"`
	RunID     string    `json:"run_id"`
	At        time.Time `json:"at"`
}

// Labels of VersionCount.Version besides versions.
const (
	StatusDrifted = "drifted"
	StatusAbsent  = "absent"
)

// maxDescribed bounds how many drifted schemas Status describes in detail.
const maxDescribed = 50

// Status reports where the fleet stands; opts.Select narrows it. It
// changes nothing except creating the ledger on shards that have none.
func (f *Fleet) Status(ctx context.Context, opts RunOptions) (*StatusReport, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if err := f.checkSelection(opts.Select); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	start := time.Now()
	rep := &StatusReport{Mode: f.mode()}
	if f.Dir != nil {
		steps, err := dirSteps(f.Dir)
		if err != nil {
			return nil, err
		}
		if len(steps) > 0 {
			rep.Version = steps[len(steps)-1].version
		}
	} else {
		rep.Version = f.Desired.Version()
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, s := range f.Shards {
		if !opts.Select.shardSelected(s.Name) {
			continue
		}
		wg.Go(func() {
			ss, drifted, failing, err := f.shardStatus(ctx, s, opts, rep.Version)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ss = ShardStatus{Shard: s.Name, Error: err.Error()}
			}
			rep.Shards = append(rep.Shards, ss)
			rep.Drifted = append(rep.Drifted, drifted...)
			rep.Failing = append(rep.Failing, failing...)
		})
	}
	wg.Wait()
	slices.SortFunc(rep.Shards, func(a, b ShardStatus) int { return cmp.Compare(a.Shard, b.Shard) })
	slices.SortFunc(rep.Drifted, func(a, b Drift) int { return cmp.Compare(a.Target.String(), b.Target.String()) })
	slices.SortFunc(rep.Failing, func(a, b FailedSchema) int { return cmp.Compare(a.Target.String(), b.Target.String()) })
	rep.Elapsed = time.Since(start)
	return rep, ctx.Err()
}

func (f *Fleet) shardStatus(ctx context.Context, s Shard, opts RunOptions, version string) (ShardStatus, []Drift, []FailedSchema, error) {
	st := &shardState{shard: s}
	if err := f.loadShard(ctx, st, opts, f.Desired != nil); err != nil {
		return ShardStatus{}, nil, nil, err
	}
	descs, err := versionDescriptions(ctx, s.DB)
	if err != nil {
		return ShardStatus{}, nil, nil, err
	}
	if f.Desired != nil {
		descs[version] = st.desc
	}
	last, err := lastAttempts(ctx, s.DB)
	if err != nil {
		return ShardStatus{}, nil, nil, err
	}
	knownFor := make(map[string]bool) // versions with a known fingerprint
	for _, vs := range st.known {
		for _, v := range vs {
			knownFor[v] = true
		}
	}
	ss := ShardStatus{Shard: s.Name, Targets: len(st.targets)}
	counts := make(map[string]int)
	var drifted []Drift
	var failing []FailedSchema
	for _, t := range st.targets {
		fp, exists := st.fps[t.Schema]
		ledger := st.state[t.Schema].version
		var at string
		switch vs := st.known[fp]; {
		case !exists:
			at = StatusAbsent
		case fp == st.desired || slices.Contains(vs, version):
			at = version
		case f.Dir != nil && ledger != "" && !knownFor[ledger]:
			at = ledger // versioned, no fingerprint recorded for it
		case len(vs) > 0:
			at = vs[0]
		default:
			at = StatusDrifted
		}
		counts[at]++
		switch at {
		case version:
			ss.Current++
		case StatusAbsent:
			ss.Absent++
		case StatusDrifted:
			ss.Drifted++
			want := ledger
			if want == "" || descs[want] == nil {
				want = version
			}
			drifted = append(drifted, Drift{Target: t, Fingerprint: fp, Version: want})
		}
		if a, ok := last[t.Schema]; ok && a.Error != "" && at != version {
			ss.Failing++
			a.Target, a.Version = t, at
			failing = append(failing, a)
		}
	}
	for v, n := range counts {
		ss.Versions = append(ss.Versions, VersionCount{Version: v, Schemas: n, Current: v == version})
	}
	slices.SortFunc(ss.Versions, func(a, b VersionCount) int { return cmp.Compare(b.Schemas, a.Schemas) })
	// What differs, for the first drifted schemas.
	var names []string
	for i := range drifted {
		if i == maxDescribed {
			break
		}
		names = append(names, drifted[i].Schema)
	}
	if len(names) > 0 {
		have, err := Describe(ctx, s.DB, names...)
		if err != nil {
			return ShardStatus{}, nil, nil, err
		}
		for i := range drifted[:len(names)] {
			d := &drifted[i]
			if want := descs[d.Version]; want != nil {
				d.Differences = diffLines(want, have[d.Schema])
			} else {
				d.Differences = []string{fmt.Sprintf("(no description recorded for version %s)", d.Version)}
			}
		}
	}
	return ss, drifted, failing, nil
}

// versionDescriptions reads the recorded description of every version.
func versionDescriptions(ctx context.Context, db *sql.DB) (map[string][]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT version, description FROM tenantry.versions WHERE description IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string][]string)
	for rows.Next() {
		var v, d string
		if err := rows.Scan(&v, &d); err != nil {
			return nil, err
		}
		out[v] = strings.Split(d, "\n")
	}
	return out, rows.Err()
}

// lastAttempts returns each schema's last ledger row, when it failed.
func lastAttempts(ctx context.Context, db *sql.DB) (map[string]FailedSchema, error) {
	rows, err := db.QueryContext(ctx, `SELECT schema_name, version, coalesce(error, ''), run_id, finished_at FROM (
		SELECT DISTINCT ON (schema_name) * FROM tenantry.schema_migrations ORDER BY schema_name, id DESC) last
		WHERE status = 'failed'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]FailedSchema)
	for rows.Next() {
		var schema string
		var fs FailedSchema
		if err := rows.Scan(&schema, &fs.Attempted, &fs.Error, &fs.RunID, &fs.At); err != nil {
			return nil, err
		}
		out[schema] = fs
	}
	return out, rows.Err()
}

// WriteText writes the status for people.
func (r *StatusReport) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("%s mode, target version %s\n", r.Mode, r.Version)
	tw := newTable(ew, "SHARD", "VERSION", "SCHEMAS", "")
	for _, s := range r.Shards {
		if s.Error != "" {
			tw.row(s.Shard, "-", "-", "error: "+s.Error)
			continue
		}
		if len(s.Versions) == 0 {
			tw.row(s.Shard, "-", 0, "no targets")
		}
		for _, v := range s.Versions {
			note := ""
			if v.Current {
				note = "current"
			}
			tw.row(s.Shard, v.Version, v.Schemas, note)
		}
	}
	tw.flush()
	if len(r.Failing) > 0 {
		ew.printf("\nlast migration failed:\n")
		for _, f := range r.Failing {
			ew.printf("  %s tenant=%s at %s, failed to reach %s (run %s): %s\n", f.Target, orDash(f.Tenant), f.Version, f.Attempted, f.RunID, f.Error)
		}
	}
	for _, d := range r.Drifted {
		ew.printf("\ndrifted %s (fingerprint %s, compared with %s):\n", d.Target, d.Fingerprint, d.Version)
		for _, l := range d.Differences {
			ew.printf("  %s\n", l)
		}
	}
	return ew.err
}

// Err returns an error when a shard could not be read.
func (r *StatusReport) Err() error {
	var errs []error
	for _, s := range r.Shards {
		if s.Error != "" {
			errs = append(errs, fmt.Errorf("shard %s: %s", s.Shard, s.Error))
		}
	}
	return errors.Join(errs...)
}
