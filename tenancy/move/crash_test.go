package move_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/move"
)

// The test binary re-executed with childEnv set runs one move as a mover
// process and holds it at the phase named by childEnv, printing "HOLD".
const (
	childEnv         = "TENANTRY_MOVE_CHILD_HOLD"
	childRegistryEnv = "TENANTRY_MOVE_CHILD_REGISTRY"
	childTenantEnv   = "TENANTRY_MOVE_CHILD_TENANT"
	childShardEnv    = "TENANTRY_MOVE_CHILD_SHARD"
)

func childMain() int {
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 2 }
	store, err := registry.Open(ctx, os.Getenv(childRegistryEnv))
	if err != nil {
		return fail(err)
	}
	desired, err := desiredOnce()
	if err != nil {
		return fail(err)
	}
	hold := move.Phase(os.Getenv(childEnv))
	m, err := move.New(move.Config{
		Store: store, Apply: provision.ApplySchema(desired, migrate.DefaultRoles()),
		HeartbeatInterval: 50 * time.Millisecond,
		OnPhase: func(ctx context.Context, _ tenancy.ID, p move.Phase) error {
			if p == hold {
				fmt.Println("HOLD")
				<-ctx.Done() // until killed
				return ctx.Err()
			}
			return nil
		},
	})
	if err != nil {
		return fail(err)
	}
	if _, err := m.Move(ctx, move.Request{Tenant: os.Getenv(childTenantEnv), Shard: os.Getenv(childShardEnv)}); err != nil {
		return fail(err)
	}
	return 0
}

// startChild runs a mover process for tenant to shard and returns once it
// holds at phase.
func startChild(t *testing.T, f *fleet, tenant, shard string, phase move.Phase) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(phase), childRegistryEnv+"="+f.registryDSN,
		childTenantEnv+"="+tenant, childShardEnv+"="+shard)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	held := make(chan bool, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.TrimSpace(s.Text()) == "HOLD" {
				held <- true
				return
			}
		}
		held <- false
	}()
	select {
	case ok := <-held:
		require.True(t, ok, "the mover process ended before phase %s", phase)
	case <-time.After(30 * time.Second):
		t.Fatalf("the mover process did not reach phase %s", phase)
	}
	return cmd
}

// TestKillMoverMidCatchup SIGKILLs a mover process during the catch-up;
// another mover then resumes the move to the end, or aborts it, and either
// way nothing is lost and nothing is left behind.
func TestKillMoverMidCatchup(t *testing.T) {
	f := newFleet(t, twoShards(t)...)
	r := f.router(t)
	client := clientOf(r)
	resume := func(t *testing.T, m *move.Mover, slug string) error {
		// Until the dead mover's heartbeat is stale, it counts as alive.
		_, err := m.Resume(context.Background(), slug, false)
		for errors.Is(err, move.ErrMoverAlive) {
			time.Sleep(50 * time.Millisecond)
			_, err = m.Resume(context.Background(), slug, false)
		}
		return err
	}
	abort := func(t *testing.T, m *move.Mover, slug string) error {
		return m.Abort(context.Background(), slug)
	}
	for _, tc := range []struct {
		name   string
		phase  move.Phase
		finish func(t *testing.T, m *move.Mover, slug string) error
		served string
		state  registry.JobState
	}{
		{"resume", move.PhaseCatchup, resume, "s1", registry.JobDone},
		{"abort", move.PhaseCatchup, abort, "s0", registry.JobAborted},
		// Killed while fenced (registry moving, writes revoked): the
		// resumed move re-applies the fence and finishes; the aborted one
		// gives the writes back.
		{"resume when fenced", move.PhaseSync, resume, "s1", registry.JobDone},
		{"abort when fenced", move.PhaseSync, abort, "s0", registry.JobAborted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := f.tenant(t, "s0")
			seed(t, client, tn.ID, 20)
			child := startChild(t, f, tn.Slug, "s1", tc.phase)
			_, err := client.Customer.Create().SetName("during").SetEmail("d@example.com").Save(ctxOf(tn.ID))
			if tc.phase == move.PhaseCatchup {
				// Writes during the catch-up go to the source and must survive.
				require.NoError(t, err)
			} else {
				// Fenced: refused, retryably; retried after the move.
				eventually(t, "the router to fence the tenant", func() bool {
					p, err := r.Resolve(context.Background(), tn.ID)
					return err == nil && fenced(p)
				})
				_, err = client.Customer.Create().SetName("during").SetEmail("d@example.com").Save(ctxOf(tn.ID))
				require.ErrorIs(t, err, tenancy.ErrTenantReadOnly)
			}
			require.NoError(t, child.Process.Kill())
			child.Wait()

			job, err := f.store.RunningJob(context.Background(), tn.ID)
			require.NoError(t, err, "the killed mover's job is still running")
			require.Equal(t, string(tc.phase), job.Phase)
			_, err = f.mover(t, move.Config{}).Move(context.Background(), move.Request{Tenant: tn.Slug, Shard: "s1"})
			require.ErrorIs(t, err, move.ErrMoveInProgress)

			m := f.mover(t, move.Config{StaleAfter: 300 * time.Millisecond})
			require.NoError(t, tc.finish(t, m, tn.Slug))

			got, err := f.store.Tenant(context.Background(), tn.Slug)
			require.NoError(t, err)
			require.Equal(t, registry.Active, got.State)
			require.Equal(t, tc.served, got.Placement.Shard)
			eventually(t, "the router to serve the tenant from "+tc.served, func() bool {
				p, err := r.Resolve(context.Background(), tn.ID)
				return err == nil && p.Shard.Name == tc.served
			})
			if tc.phase != move.PhaseCatchup { // the retry of the refused write
				client.Customer.Create().SetName("during").SetEmail("d@example.com").SaveX(ctxOf(tn.ID))
			}
			n, err := client.Customer.Query().Count(ctxOf(tn.ID))
			require.NoError(t, err)
			require.Equal(t, 21, n, "every customer is served")
			client.Customer.Create().SetName("after").SetEmail("a@example.com").SaveX(ctxOf(tn.ID))
			require.Len(t, customers(t, f.super(t, tc.served), tn.Placement.Schema), 22)
			require.Empty(t, f.leftovers(t, "s0", tn.ID))
			require.Empty(t, f.leftovers(t, "s1", tn.ID))
			other := map[string]string{"s0": "s1", "s1": "s0"}[tc.served]
			require.False(t, schemaExists(t, f.super(t, other), tn.Placement.Schema), "no copy left on %s", other)
			jobs, err := f.store.Jobs(context.Background(), registry.JobFilter{Tenant: tn.ID})
			require.NoError(t, err)
			require.Len(t, jobs, 1)
			require.Equal(t, tc.state, jobs[0].State)
		})
	}
}
