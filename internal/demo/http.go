package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/examples/app/admin"
	"github.com/tenantry/tenantry/examples/app/api"
	"github.com/tenantry/tenantry/examples/app/auth"
	"github.com/tenantry/tenantry/examples/app/server"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/backup"
	"github.com/tenantry/tenantry/tenancy/move"
)

// The HTTP part of the demo: a registry, tenants in the three placement
// modes, and the example app server in process on a loopback port.
const (
	registryDB = "tenantry_registry"
	fleetDB    = "fleet"
	noisyPlan  = "noisy"
)

type httpTenant struct {
	slug   string
	mode   registry.Mode
	shard  string // "" lets the registry place it
	plan   string
	id     tenancy.ID
	where  string // shard/schema, once placed
	token  string
	order  string // an order id, once the workload made one
	apiKey string
}

type httpDemo struct {
	w          io.Writer
	store      *registry.Store
	router     *router.Router
	auth       *auth.Authenticator
	adminToken string
	url        string
	registry   string // the registry's DSN, for tenantctl against the kept demo
	client     *http.Client
	tenants    []*httpTenant

	cancel context.CancelFunc
	done   chan error
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runHTTP runs the HTTP steps. The returned demo's server keeps running
// until shutdown (or close, on errors).
func runHTTP(ctx context.Context, s *steps, w io.Writer, clusters []*pgtest.Cluster, roles migrate.Roles, desired *migrate.Desired) (d *httpDemo, err error) {
	d = &httpDemo{w: w, client: &http.Client{Timeout: 10 * time.Second}}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	d.tenants = []*httpTenant{
		{slug: "acme", mode: registry.ModeSchema, shard: "fleet0"},
		{slug: "tiny-1", mode: registry.ModeShared, shard: "fleet0"},
		{slug: "tiny-2", mode: registry.ModeShared, shard: "fleet0"},
		{slug: "bigco", mode: registry.ModeDedicated},
		{slug: "noisy", mode: registry.ModeSchema, shard: "fleet0"}, // moved to plan noisy before it floods
	}

	if err := s.do("registry: a control-plane database; shards fleet0 and fleet1 (a database on each cluster)", func() (string, error) {
		if err := clusters[0].CreateDatabase(ctx, registryDB); err != nil {
			return "", err
		}
		for _, c := range clusters {
			if err := createShardDB(ctx, c, fleetDB, roles); err != nil {
				return "", err
			}
		}
		d.registry = clusters[0].DSN("postgres", registryDB)
		d.store, err = registry.Open(ctx, d.registry)
		if err != nil {
			return "", err
		}
		if err := d.store.Init(ctx); err != nil {
			return "", err
		}
		for i, c := range clusters {
			if err := d.store.AddShard(ctx, registry.Shard{Name: fmt.Sprintf("fleet%d", i), DSN: c.DSN("postgres", fleetDB), Capacity: 100, Accepting: true}); err != nil {
				return "", err
			}
		}
		limits := tenancy.DefaultLimits
		limits.RatePerSec, limits.Burst, limits.MaxConns = 40, 10, 2
		if err := d.store.PutPlan(ctx, registry.Plan{Name: noisyPlan, Limits: limits}); err != nil {
			return "", err
		}
		return fmt.Sprintf("plan %q: %g statements/s, bursts of %d, %d connections", noisyPlan, limits.RatePerSec, limits.Burst, limits.MaxConns), nil
	}); err != nil {
		return d, err
	}

	apply := provision.ApplySchema(desired, roles)
	for _, t := range d.tenants {
		title := fmt.Sprintf("provision %-6s in %s mode", t.slug, t.mode)
		if err := s.do(title, func() (string, error) {
			rt, err := d.store.CreateTenant(ctx, registry.NewTenant{Slug: t.slug, Mode: t.mode, Shard: t.shard, Plan: t.plan}, apply)
			if err != nil {
				return "", err
			}
			t.id, t.where = rt.ID, rt.Placement.Shard+"/"+rt.Placement.Schema
			return fmt.Sprintf("%s on %s, plan %s", t.id, t.where, rt.Plan), nil
		}); err != nil {
			return d, err
		}
	}

	if err := s.do("start the example app server (router on the registry, admission gate, metrics)", func() (string, error) {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		d.router, err = router.New(ctx, router.Config{RegistryDSN: clusters[0].DSN("postgres", registryDB), Logger: quiet})
		if err != nil {
			return "", err
		}
		reg := prometheus.NewRegistry()
		stack, err := server.NewStack(d.router, reg, server.StackOptions{})
		if err != nil {
			return "", err
		}
		if d.auth, err = auth.New(auth.Config{Secret: []byte(randomHex(32)), Pepper: []byte(randomHex(16))}); err != nil {
			return "", err
		}
		d.adminToken = randomHex(16)
		fleet := &admin.Fleet{Client: stack.Admin, Resolver: d.router, Tenants: func(context.Context) ([]tenancy.ID, error) {
			ids := make([]tenancy.ID, len(d.tenants))
			for i, t := range d.tenants {
				ids[i] = t.id
			}
			return ids, nil
		}}
		adminHandler, err := admin.NewHandler(fleet, d.adminToken)
		if err != nil {
			return "", err
		}
		srv, err := server.New(server.Config{
			API: &api.API{Client: stack.Client}, Auth: d.auth, Admin: adminHandler, Metrics: reg, Log: quiet,
			Ready: server.ShardChecks(d.router.Shards()), ShutdownTimeout: 5 * time.Second,
			Precheck: stack.Gate.Check, OpsToken: d.adminToken,
		})
		if err != nil {
			return "", err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		d.url = "http://" + ln.Addr().String()
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		d.cancel, d.done = cancel, make(chan error, 1)
		go func() { d.done <- srv.Serve(sctx, ln) }()
		for _, t := range d.tenants {
			if t.token, err = d.auth.Token(t.id, 24*time.Hour); err != nil {
				return "", err
			}
		}
		if d.tenants[0].apiKey, _, err = d.auth.NewAPIKey(d.tenants[0].id); err != nil {
			return "", err
		}
		if code, body, err := d.call("GET", "/readyz", "", ""); err != nil || code != 200 {
			return "", fmt.Errorf("/readyz: %d %s %v", code, body, err)
		}
		return d.url + " (/v1 API, /healthz, /readyz, /metrics, /admin)", nil
	}); err != nil {
		return d, err
	}

	if err := s.do("each tenant writes through the HTTP API (customers, orders with line items, tags)", func() (string, error) {
		var lat []time.Duration
		requests := 0
		for i, t := range d.tenants {
			requests += 3 + i + 1
			t0 := time.Now()
			var c api.Customer
			if err := d.json(t, "POST", "/v1/customers", fmt.Sprintf(`{"name":"%s buyer","email":"buyer@%s.example"}`, t.slug, t.slug), 201, &c); err != nil {
				return "", err
			}
			var tg api.Tag
			if err := d.json(t, "POST", "/v1/tags", `{"name":"priority"}`, 201, &tg); err != nil {
				return "", err
			}
			for n := range i + 1 {
				var o api.Order
				body := fmt.Sprintf(`{"number":"%s-%d","customer_id":%q,"line_items":[{"sku":"WIDGET","quantity":%d,"unit_price_cents":1250}]}`, t.slug, n+1, c.ID, n+1)
				if err := d.json(t, "POST", "/v1/orders", body, 201, &o); err != nil {
					return "", err
				}
				t.order = o.ID.String()
			}
			if code, body, err := d.call("PUT", "/v1/orders/"+t.order+"/tags/"+tg.ID.String(), t.token, ""); err != nil || code != 204 {
				return "", fmt.Errorf("tag order: %d %s %v", code, body, err)
			}
			lat = append(lat, time.Since(t0))
		}
		return fmt.Sprintf("%d tenants, %d requests, all answered as expected; slowest tenant's requests took %s in all", len(d.tenants), requests, slices.Max(lat).Round(time.Millisecond)), nil
	}); err != nil {
		return d, err
	}

	if err := s.do("tenants ask for each other's orders by id: 404, the same answer as for an id that does not exist", func() (string, error) {
		a, b := d.tenants[1], d.tenants[2] // tiny-1 and tiny-2 share a schema
		code, body, err := d.call("GET", "/v1/orders/"+b.order, a.token, "")
		if err != nil {
			return "", err
		}
		ucode, ubody, err := d.call("GET", "/v1/orders/"+tenancy.NewID().String(), a.token, "")
		if err != nil {
			return "", err
		}
		if code != 404 || ucode != 404 || body != ubody {
			return "", fmt.Errorf("another tenant's order: %d %s; unknown id: %d %s", code, body, ucode, ubody)
		}
		bcode, _, err := d.call("GET", "/v1/orders/"+d.tenants[3].order, d.tenants[0].token, "")
		if err != nil || bcode != 404 {
			return "", fmt.Errorf("acme reading bigco's order: %d %v", bcode, err)
		}
		own, _, err := d.call("GET", "/v1/orders/"+b.order, b.token, "")
		if err != nil || own != 200 {
			return "", fmt.Errorf("tiny-2 reading its own order: %d %v", own, err)
		}
		return fmt.Sprintf("tiny-1 -> tiny-2's order (same shared schema): %d %s; acme -> bigco's (other shard): %d; tiny-2 itself: %d", code, strings.TrimSpace(body), bcode, own), nil
	}); err != nil {
		return d, err
	}

	if err := s.do("noisy neighbour: 'noisy' moves to plan noisy (routers notified), then floods the API from 8 connections while 3 tenants work", func() (string, error) {
		if _, err := d.store.SetPlan(ctx, d.tenants[4].id, noisyPlan); err != nil {
			return "", err
		}
		return d.noisy(ctx, 1500*time.Millisecond)
	}); err != nil {
		return d, err
	}

	if err := s.do("fence tiny-1 (registry state read_only, as during a move): reads served, writes 503 + Retry-After", func() (string, error) {
		t := d.tenants[1]
		if _, err := d.store.SetState(ctx, t.id, registry.ReadOnly); err != nil {
			return "", err
		}
		code, body, retry, err := d.waitWrite(t, 503, 15*time.Second)
		if err != nil {
			return "", err
		}
		rcode, _, err := d.call("GET", "/v1/orders", t.token, "")
		if err != nil || rcode != 200 {
			return "", fmt.Errorf("read while fenced: %d %v", rcode, err)
		}
		if _, err := d.store.SetState(ctx, t.id, registry.Active); err != nil {
			return "", err
		}
		if _, _, _, err := d.waitWrite(t, 201, 15*time.Second); err != nil {
			return "", err
		}
		return fmt.Sprintf("write: %d Retry-After %s %s; read: %d; after the fence lifts: 201", code, retry, strings.TrimSpace(body), rcode), nil
	}); err != nil {
		return d, err
	}

	if err := s.do("back up tiny-2 (shared schema: only its rows), delete its orders through the API, restore it in place", func() (string, error) {
		return d.backupRestore(ctx, clusters[0], roles, desired)
	}); err != nil {
		return d, err
	}

	if err := s.do("a new shard joins (database fleet2 on cluster 1: two shards in one cluster); move acme there live while it writes", func() (string, error) {
		return d.move(ctx, clusters[1], roles, desired)
	}); err != nil {
		return d, err
	}

	if err := s.do("fleet migration (tenantctl migrate apply) after someone dropped an index of acme by hand: the drifted schema is repaired, the rest are up to date", func() (string, error) {
		return d.fleetMigrate(ctx, clusters, roles, desired)
	}); err != nil {
		return d, err
	}

	if err := s.do("admin report across shards (GET /admin/v1/tenants/counts, admin token)", func() (string, error) {
		req, _ := http.NewRequest("GET", d.url+"/admin/v1/tenants/counts", nil)
		req.Header.Set("Authorization", "Bearer "+d.adminToken)
		resp, err := d.client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var rep admin.Report
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != 200 {
			return "", fmt.Errorf("admin report: %d %v", resp.StatusCode, err)
		}
		slug := map[tenancy.ID]string{}
		for _, t := range d.tenants {
			slug[t.id] = t.slug
		}
		var lines []string
		shards := map[string]bool{}
		for _, tc := range rep.Tenants {
			shards[tc.Shard] = true
			lines = append(lines, fmt.Sprintf("%-6s %-7s %-40s customers=%d orders=%d total=%d.%02d tags=%d",
				slug[tc.Tenant], tc.Shard, tc.Schema, tc.Customers, tc.Orders, tc.TotalCents/100, tc.TotalCents%100, tc.Tags))
		}
		return fmt.Sprintf("%d schemas on %d shards in %s:\n    %s", rep.Schemas, len(shards), rep.Duration, strings.Join(lines, "\n    ")), nil
	}); err != nil {
		return d, err
	}
	return d, nil
}

// noisy runs the noisy-neighbour workload for dur and reports it.
func (d *httpDemo) noisy(ctx context.Context, dur time.Duration) (string, error) {
	noisy := d.tenants[4]
	victims := []*httpTenant{d.tenants[0], d.tenants[1], d.tenants[3]}
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var (
		mu                         sync.Mutex
		noisyOK, noisy429, noisyEr int
		victimLat                  []time.Duration
		victimErr                  []string
		wg                         sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, _, err := d.call("GET", "/v1/orders?limit=20", noisy.token, "")
				mu.Lock()
				switch {
				case err != nil:
					noisyEr++
				case code == 200:
					noisyOK++
				case code == 429:
					noisy429++
				default:
					noisyEr++
				}
				mu.Unlock()
			}
		}()
	}
	for _, v := range victims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				code, body, err := d.call("GET", "/v1/orders/"+v.order, v.token, "")
				mu.Lock()
				if err != nil && ctx.Err() == nil || err == nil && code != 200 {
					victimErr = append(victimErr, fmt.Sprintf("%s: %d %s %v", v.slug, code, body, err))
				} else if err == nil {
					victimLat = append(victimLat, time.Since(t0))
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if len(victimErr) > 0 {
		return "", fmt.Errorf("victims saw %d errors, e.g. %s", len(victimErr), victimErr[0])
	}
	if noisy429 == 0 {
		return "", fmt.Errorf("the noisy tenant was never throttled (%d requests served)", noisyOK)
	}
	slices.Sort(victimLat)
	pct := func(p float64) time.Duration {
		if len(victimLat) == 0 {
			return 0
		}
		return victimLat[min(len(victimLat)-1, int(p*float64(len(victimLat))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("noisy: %d served, %d throttled (429 + Retry-After), %d other errors; victims: %d requests, 0 errors, p50 %s, p99 %s",
		noisyOK, noisy429, noisyEr, len(victimLat), pct(0.5), pct(0.99)), nil
}

// waitWrite creates a tag for t until the answer has status want.
// fleetMigrate drops an index of acme's schema behind migrate's back, then
// runs the fleet migration over every shard database of the demo: one plan
// per schema shape, the drifted schema brought back to the Ent graph.
func (d *httpDemo) fleetMigrate(ctx context.Context, clusters []*pgtest.Cluster, roles migrate.Roles, desired *migrate.Desired) (string, error) {
	acme, err := d.store.Tenant(ctx, d.tenants[0].slug)
	if err != nil {
		return "", err
	}
	shards, err := d.store.Shards(ctx)
	if err != nil {
		return "", err
	}
	fleet := &migrate.Fleet{Desired: desired, Roles: roles, Logger: slog.New(slog.DiscardHandler)}
	for _, sh := range shards {
		ms, err := migrate.OpenShard(sh.Name, sh.DSN, 2)
		if err != nil {
			return "", err
		}
		defer ms.DB.Close()
		fleet.Shards = append(fleet.Shards, ms)
		if sh.Name == acme.Placement.Shard {
			index := "orders_customer_id_tenant_id_fk"
			if _, err := ms.DB.ExecContext(ctx, "DROP INDEX "+pgx.Identifier{acme.Placement.Schema, index}.Sanitize()); err != nil {
				return "", fmt.Errorf("drop %s: %w", index, err)
			}
		}
	}
	rep, err := fleet.Run(ctx, migrate.RunOptions{})
	if err != nil {
		return "", err
	}
	if err := rep.Err(); err != nil {
		return "", err
	}
	if rep.Total.Applied != 1 {
		return "", fmt.Errorf("fleet run applied %d schemas, want the 1 drifted one: %+v", rep.Total.Applied, rep.Total)
	}
	return fmt.Sprintf("%d schemas on %d shards in %s: %d repaired (acme's index back), %d up to date, %d failed; version %s",
		rep.Total.Targets, len(rep.Shards), rep.Elapsed.Round(time.Millisecond), rep.Total.Applied, rep.Total.UpToDate, rep.Total.Failed, rep.Version), nil
}

// orderIDs lists t's order ids through the API.
func (d *httpDemo) orderIDs(t *httpTenant) ([]string, error) {
	var page api.List[api.Order]
	if err := d.json(t, "GET", "/v1/orders?limit=100", "", 200, &page); err != nil {
		return nil, err
	}
	ids := make([]string, len(page.Items))
	for i, o := range page.Items {
		ids[i] = o.ID.String()
	}
	slices.Sort(ids)
	return ids, nil
}

// backupRestore backs up tiny-2 from the shared schema on fleet0 (cluster
// c), deletes its orders through the API and restores the archive over it;
// tiny-1, in the same schema, must not notice.
func (d *httpDemo) backupRestore(ctx context.Context, c *pgtest.Cluster, roles migrate.Roles, desired *migrate.Desired) (string, error) {
	t, neighbour := d.tenants[2], d.tenants[1]
	rt, err := d.store.Tenant(ctx, t.slug)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "tenantry-demo-backups-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	store, err := backup.NewDir(dir)
	if err != nil {
		return "", err
	}
	m, err := backup.New(backup.Config{Store: store, Desired: desired, Roles: roles})
	if err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, c.DSN(roles.Owner, fleetDB))
	if err != nil {
		return "", err
	}
	defer pool.Close()
	where := backup.Source{Shard: rt.Placement.Shard, DB: pool, Schema: rt.Placement.Schema, Mode: backup.ModeShared}

	before, err := d.orderIDs(t)
	if err != nil {
		return "", err
	}
	theirs, err := d.orderIDs(neighbour)
	if err != nil {
		return "", err
	}
	man, err := m.Backup(ctx, t.id, where, backup.BackupOptions{})
	if err != nil {
		return "", err
	}
	var rows int64
	for _, tb := range man.Tables {
		rows += tb.Rows
	}
	for _, id := range before {
		if code, body, err := d.call("DELETE", "/v1/orders/"+id, t.token, ""); err != nil || code != 204 {
			return "", fmt.Errorf("delete order %s: %d %s %v", id, code, body, err)
		}
	}
	gone, err := d.orderIDs(t)
	if err != nil {
		return "", err
	}
	res, err := m.Restore(ctx, man.Name, backup.Target{Shard: where.Shard, DB: where.DB, Schema: where.Schema, Mode: where.Mode}, backup.RestoreOptions{Replace: true})
	if err != nil {
		return "", err
	}
	after, err := d.orderIDs(t)
	if err != nil {
		return "", err
	}
	still, err := d.orderIDs(neighbour)
	if err != nil {
		return "", err
	}
	if !slices.Equal(before, after) || len(gone) != 0 || !slices.Equal(theirs, still) {
		return "", fmt.Errorf("orders before %v, after delete %v, after restore %v; neighbour's before %v, after %v", before, gone, after, theirs, still)
	}
	return fmt.Sprintf("archive %s: %d tables, %d rows of tiny-2 only, checksummed; orders %d -> deleted -> %d restored (same ids, verified against the manifest in %s); tiny-1's %d orders untouched",
		man.Name, len(man.Tables), rows, len(before), len(after), res.Duration.Round(time.Millisecond), len(still)), nil
}

// move adds shard fleet2 (a second database on cluster c) and moves acme
// onto it with tenancy/move while a writer creates tags through the API:
// every acknowledged tag must be readable afterwards, and the writer may
// see only 503s (the fence) besides its 201s.
func (d *httpDemo) move(ctx context.Context, c *pgtest.Cluster, roles migrate.Roles, desired *migrate.Desired) (string, error) {
	const db = "fleet2"
	if err := createShardDB(ctx, c, db, roles); err != nil {
		return "", err
	}
	if err := d.store.AddShard(ctx, registry.Shard{Name: db, DSN: c.DSN("postgres", db), Capacity: 100, Accepting: true}); err != nil {
		return "", err
	}
	t := d.tenants[0] // acme
	var (
		acked   []string
		fenced  int
		other   error
		stop    = make(chan struct{})
		writing sync.WaitGroup
	)
	writing.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var tg api.Tag
			code, body, err := d.call("POST", "/v1/tags", t.token, fmt.Sprintf(`{"name":"during-move-%d"}`, i))
			switch {
			case err != nil:
				other = err
				return
			case code == 201:
				if err := json.Unmarshal([]byte(body), &tg); err != nil {
					other = err
					return
				}
				acked = append(acked, tg.ID.String())
			case code == 503:
				fenced++
			default:
				other = fmt.Errorf("write during the move: %d %s", code, body)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	mover, err := move.New(move.Config{Store: d.store, Apply: provision.ApplySchema(desired, roles), Roles: roles,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		close(stop)
		writing.Wait()
		return "", err
	}
	res, err := mover.Move(ctx, move.Request{Tenant: t.slug, Shard: db})
	time.Sleep(50 * time.Millisecond) // a few writes on the target too
	close(stop)
	writing.Wait()
	if err != nil {
		return "", err
	}
	if other != nil {
		return "", other
	}
	for _, id := range acked {
		if code, body, err := d.call("GET", "/v1/tags/"+id, t.token, ""); err != nil || code != 200 {
			return "", fmt.Errorf("tag %s acknowledged during the move: %d %s %v", id, code, body, err)
		}
	}
	t.where = res.To.Shard + "/" + res.To.Schema
	return fmt.Sprintf("%s -> %s in %s (copy %s, %d rows, verified %v); writes refused (503) for %s; writer: %d acknowledged, all readable on the target, %d answered 503, no other errors",
		res.From.Shard+"/"+res.From.Schema, t.where, res.Duration.Round(time.Millisecond), res.Copy.Round(time.Millisecond), res.Rows, res.Verified,
		res.Window.Round(time.Millisecond), len(acked), fenced), nil
}

// createShardDB creates a shard database on c owned by the owner role, so
// that provisioning (as the owner) may create tenant schemas in it.
func createShardDB(ctx context.Context, c *pgtest.Cluster, name string, roles migrate.Roles) error {
	db, err := sql.Open("pgx", c.SuperuserDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name+" OWNER "+roles.Owner); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func (d *httpDemo) waitWrite(t *httpTenant, want int, within time.Duration) (code int, body, retry string, err error) {
	deadline := time.Now().Add(within)
	for {
		req, _ := http.NewRequest("POST", d.url+"/v1/tags", strings.NewReader(fmt.Sprintf(`{"name":"fence-%s"}`, randomHex(4))))
		req.Header.Set("Authorization", "Bearer "+t.token)
		resp, err := d.client.Do(req)
		if err != nil {
			return 0, "", "", err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == want {
			return resp.StatusCode, string(b), resp.Header.Get("Retry-After") + "s", nil
		}
		if time.Now().After(deadline) {
			return 0, "", "", fmt.Errorf("write answered %d %s, want %d within %s", resp.StatusCode, b, want, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *httpDemo) call(method, path, token, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, d.url+path, rd)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (d *httpDemo) json(t *httpTenant, method, path, body string, want int, v any) error {
	code, out, err := d.call(method, path, t.token, body)
	if err != nil {
		return err
	}
	if code != want {
		return fmt.Errorf("%s %s as %s: %d %s", method, path, t.slug, code, out)
	}
	return json.NewDecoder(bytes.NewReader([]byte(out))).Decode(v)
}

// printKeep prints what a person needs to try the API with curl.
func (d *httpDemo) printKeep(w io.Writer) {
	fmt.Fprintf(w, "\nthe example app is serving on %s\n", d.url)
	for _, t := range d.tenants {
		fmt.Fprintf(w, "  %-6s %s  %s  token: %s\n", t.slug, t.id, t.where, t.token)
	}
	acme := d.tenants[0]
	fmt.Fprintln(w, "try:")
	fmt.Fprintf(w, "  curl -s -H 'Authorization: Bearer %s' %s/v1/orders\n", acme.token, d.url)
	fmt.Fprintf(w, "  curl -s -H 'X-API-Key: %s' %s/v1/customers\n", acme.apiKey, d.url)
	fmt.Fprintf(w, "  curl -s -H 'Authorization: Bearer %s' -d '{\"name\":\"new\"}' %s/v1/tags\n", acme.token, d.url)
	fmt.Fprintf(w, "  curl -s -H 'Authorization: Bearer %s' %s/v1/orders/%s   # another tenant's order: 404\n", acme.token, d.url, d.tenants[2].order)
	fmt.Fprintf(w, "  curl -s -H 'Authorization: Bearer %s' %s/admin/v1/tenants/counts\n", d.adminToken, d.url)
	fmt.Fprintf(w, "  curl -s -H 'Authorization: Bearer %s' %s/metrics | grep -E '^(app_http|tenantry)_' | head\n", d.adminToken, d.url)
	fmt.Fprintln(w, "and operate the fleet with tenantctl:")
	fmt.Fprintf(w, "  export TENANTRY_REGISTRY='%s'\n", d.registry)
	fmt.Fprintln(w, "  go run ./cmd/tenantctl shards list; go run ./cmd/tenantctl tenants list; go run ./cmd/tenantctl migrate plan")
}

// shutdown stops the server gracefully and reports how long the drain took.
func (d *httpDemo) shutdown() (string, error) {
	if d.cancel == nil {
		return "not running", nil
	}
	// Our own idle keep-alive connections would hold the drain: a
	// connection that never sent a request counts as active for 5 s.
	d.client.CloseIdleConnections()
	d.cancel()
	d.cancel = nil
	err := <-d.done
	d.closeRest()
	if err != nil {
		return "", err
	}
	return "stopped accepting, drained in-flight requests, closed the router's pools", nil
}

// close releases everything after an error (idempotent).
func (d *httpDemo) close() {
	if d.cancel != nil {
		d.client.CloseIdleConnections()
		d.cancel()
		d.cancel = nil
		if err := <-d.done; err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(d.w, "app server:", err)
		}
	}
	d.closeRest()
}

func (d *httpDemo) closeRest() {
	if d.router != nil {
		d.router.Close()
		d.router = nil
	}
	if d.store != nil {
		d.store.Close()
		d.store = nil
	}
}
