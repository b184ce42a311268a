package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	_ "github.com/tenantry/tenantry/examples/app/ent/runtime" // the mixin's hooks and interceptors
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// Options configure a demo run.
type Options struct {
	// Keep leaves the clusters running until ctx is done (the command
	// cancels it on Ctrl-C) and prints how to connect to them.
	Keep bool
}

type tenant struct {
	name   string
	id     tenancy.ID
	shard  int
	schema string
}

// Run runs the demo, writing its narrative to w.
func Run(ctx context.Context, w io.Writer, opts Options) (err error) {
	s := &steps{w: w}
	fmt.Fprintln(w, "tenantry demo: two local shards, four tenants, one client")

	var clusters []*pgtest.Cluster
	defer func() {
		for _, c := range clusters {
			if cerr := c.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
		if len(clusters) > 0 {
			fmt.Fprintln(w, "removed the throwaway clusters")
		}
	}()
	if err := s.do("start two PostgreSQL shards (initdb, wal_level=logical, free loopback ports)", func() (string, error) {
		for i := range 2 {
			// PostgreSQL 15 starts a subscription's apply worker at most once
			// per wal_retrieve_retry_interval (5 s) per cluster; the live
			// move step wants it at once.
			c, err := pgtest.Start(ctx, pgtest.Options{Name: fmt.Sprintf("demo-shard%d", i),
				Settings: map[string]string{"wal_retrieve_retry_interval": "100ms"}})
			if err != nil {
				return "", err
			}
			clusters = append(clusters, c)
		}
		return fmt.Sprintf("shard0 on 127.0.0.1:%d, shard1 on 127.0.0.1:%d", clusters[0].Port(), clusters[1].Port()), nil
	}); err != nil {
		return err
	}

	roles := migrate.DefaultRoles()
	var shards []*tenancy.Shard
	defer func() {
		for _, sh := range shards {
			sh.Pool.Close()
			sh.Admin.Close()
		}
	}()
	if err := s.do("create roles (owner / app without BYPASSRLS / admin) and the app database", func() (string, error) {
		for i, c := range clusters {
			sh, err := apptest.PrepareShard(ctx, c, roles, fmt.Sprintf("shard%d", i))
			if err != nil {
				return "", err
			}
			shards = append(shards, sh)
		}
		return fmt.Sprintf("roles %s, %s, %s", roles.Owner, roles.App, roles.Admin), nil
	}); err != nil {
		return err
	}

	tenants := []*tenant{
		{name: "acme", id: tenancy.NewID(), shard: 0, schema: "shared_0"},
		{name: "globex", id: tenancy.NewID(), shard: 0, schema: "shared_0"},
		{name: "initech", shard: 0},
		{name: "umbrella", shard: 1},
	}
	for _, t := range tenants {
		if t.schema == "" {
			t.id = tenancy.NewID()
			t.schema = t.id.SchemaName()
		}
	}
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		return err
	}
	var placements []*tenancy.Placement
	for _, t := range tenants {
		if err := s.do(fmt.Sprintf("provision %-8s on shard%d in schema %s", t.name, t.shard, t.schema), func() (string, error) {
			res, err := apptest.ApplySchema(ctx, clusters[t.shard], roles, desired, t.schema)
			if err != nil {
				return "", err
			}
			p, err := tenancy.NewPlacement(t.id, shards[t.shard], t.schema, tenancy.DefaultLimits)
			if err != nil {
				return "", err
			}
			placements = append(placements, p)
			if !res.Changed() {
				return "already up to date", nil
			}
			return fmt.Sprintf("%d statements (tables, composite FKs, RLS policies, grants)", len(res.Statements)), nil
		}); err != nil {
			return err
		}
	}
	unscoped, err := tenancy.NewPlacement(tenancy.ID{}, shards[0], "shared_0", tenancy.DefaultLimits)
	if err != nil {
		return err
	}
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(unscoped, placements...))))
	ctxOf := func(t *tenant) context.Context { return tenancy.WithTenant(ctx, t.id) }

	if err := s.do("write customers and orders for every tenant through the one client", func() (string, error) {
		for i, t := range tenants {
			c := ctxOf(t)
			cu, err := client.Customer.Create().SetName(t.name + " buyer").SetEmail("buyer@" + t.name + ".example").Save(c)
			if err != nil {
				return "", err
			}
			for n := range i + 1 {
				if _, err := client.Order.Create().SetNumber(fmt.Sprintf("%s-%d", t.name, n+1)).SetCustomer(cu).SetTotalCents(int64(1000 * (n + 1))).Save(c); err != nil {
					return "", err
				}
			}
		}
		return "acme 1 order, globex 2, initech 3, umbrella 4", nil
	}); err != nil {
		return err
	}

	if err := s.do("each tenant counts its orders (same query, same client)", func() (string, error) {
		var parts []string
		for i, t := range tenants {
			n, err := client.Order.Query().Count(ctxOf(t))
			if err != nil {
				return "", err
			}
			if n != i+1 {
				return "", fmt.Errorf("%s sees %d orders, want %d", t.name, n, i+1)
			}
			parts = append(parts, fmt.Sprintf("%s=%d", t.name, n))
		}
		return strings.Join(parts, " "), nil
	}); err != nil {
		return err
	}

	if err := s.do("a query without a tenant fails closed", func() (string, error) {
		_, err := client.Order.Query().All(ctx)
		if !errors.Is(err, tenancy.ErrNoTenant) {
			return "", fmt.Errorf("want ErrNoTenant, got %v", err)
		}
		return "error: " + firstLine(err), nil
	}); err != nil {
		return err
	}

	acme, globex := tenants[0], tenants[1]
	if err := s.do("raw SQL with no tenant filter, in the schema acme shares with globex", func() (string, error) {
		rows, err := client.QueryContext(ctxOf(acme), "SELECT count(*) FROM orders")
		if err != nil {
			return "", err
		}
		defer rows.Close()
		var n int
		if !rows.Next() {
			return "", fmt.Errorf("no row: %v", rows.Err())
		}
		if err := rows.Scan(&n); err != nil {
			return "", err
		}
		if n != 1 {
			return "", fmt.Errorf("acme's raw count is %d, want 1", n)
		}
		return fmt.Sprintf("SELECT count(*) FROM orders = %d for acme (row-level security with FORCE hides globex's 2)", n), nil
	}); err != nil {
		return err
	}

	if err := s.do("acme tries to attach its order to globex's customer by id", func() (string, error) {
		gcu, err := client.Customer.Query().Only(ctxOf(globex))
		if err != nil {
			return "", err
		}
		err = client.Order.Update().Where(order.Number("acme-1")).SetCustomerID(gcu.ID).Exec(ctxOf(acme))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23503" {
			return "", fmt.Errorf("want a foreign key violation, got %v", err)
		}
		n, err := client.Order.Query().Where(order.HasCustomerWith(customer.ID(gcu.ID))).Count(ctxOf(globex))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("refused by the composite (tenant_id, customer_id) foreign key; globex's customer still has %d orders", n), nil
	}); err != nil {
		return err
	}

	if err := s.do("an admin report through the logged escape hatch", func() (string, error) {
		admin := tenancy.Unscoped(ctx, "demo: fleet-wide order count of shared_0")
		n, err := client.Order.Query().Count(admin)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("tenancy.Unscoped sees %d orders of acme and globex in shared_0 (admin role, BYPASSRLS)", n), nil
	}); err != nil {
		return err
	}

	hd, err := runHTTP(ctx, s, w, clusters, roles, desired)
	if err != nil {
		return err
	}
	defer hd.close()

	if opts.Keep {
		hd.printKeep(w)
		fmt.Fprintln(w, "\nclusters are running; connect with:")
		for i, c := range clusters {
			fmt.Fprintf(w, "  shard%d  psql %q\n", i, c.DSN(roles.Admin, apptest.Database))
		}
		for _, t := range tenants {
			fmt.Fprintf(w, "  tenant %-8s %s  schema %s on shard%d\n", t.name, t.id, t.schema, t.shard)
		}
		fmt.Fprintln(w, "press Ctrl-C to stop and remove them")
		<-ctx.Done()
	}
	if err := s.do("stop the app server gracefully", hd.shutdown); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ndemo finished OK: %d steps in %s\n", s.n, time.Since(s.start).Round(time.Millisecond))
	return nil
}

type steps struct {
	w     io.Writer
	n     int
	start time.Time
}

// do runs one step and prints its outcome and duration.
func (s *steps) do(title string, f func() (string, error)) error {
	if s.start.IsZero() {
		s.start = time.Now()
	}
	s.n++
	t0 := time.Now()
	detail, err := f()
	d := time.Since(t0).Round(100 * time.Microsecond)
	if err != nil {
		fmt.Fprintf(s.w, "%2d. %s\n    FAILED after %s: %v\n", s.n, title, d, err)
		return fmt.Errorf("demo step %d (%s): %w", s.n, title, err)
	}
	fmt.Fprintf(s.w, "%2d. %s  [%s]\n", s.n, title, d)
	if detail != "" {
		fmt.Fprintf(s.w, "    %s\n", detail)
	}
	return nil
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
