package fleetbench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantry/tenantry/internal/pgtest"
)

// PgbenchDatabase is the database InitPgbench creates on a cluster.
const PgbenchDatabase = "pgbench"

// pgbenchPath returns the cluster's pgbench binary.
func pgbenchPath(c *pgtest.Cluster) (string, error) {
	dir := c.BinDir()
	if dir == "" {
		return "", fmt.Errorf("fleetbench: no PostgreSQL binaries for pgbench (install postgresql-15)")
	}
	path := filepath.Join(dir, "pgbench")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("fleetbench: pgbench: %w (install postgresql-15, which ships it)", err)
	}
	return path, nil
}

// InitPgbench creates PgbenchDatabase on c, if missing, and initialises it
// with `pgbench -i -s scale`.
func InitPgbench(ctx context.Context, c *pgtest.Cluster, scale int) error {
	path, err := pgbenchPath(c)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, c.SuperuserDSN())
	if err != nil {
		return fmt.Errorf("fleetbench: %w", err)
	}
	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", PgbenchDatabase).Scan(&exists)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("fleetbench: %w", err)
	}
	if !exists {
		if err := c.CreateDatabase(ctx, PgbenchDatabase); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, path, "-i", "-q", "-s", strconv.Itoa(scale), c.DSN("postgres", PgbenchDatabase))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("fleetbench: pgbench -i: %w\n%s", err, out)
	}
	return nil
}

// PgbenchResult is what one `pgbench -S` run measured.
type PgbenchResult struct {
	Clients, Threads int
	Duration         time.Duration
	Transactions     int64         // "number of transactions actually processed"
	TPS              float64       // "tps = … (without initial connection time)"
	LatencyAvg       time.Duration // "latency average"
	Latencies        Latencies     // per transaction, from pgbench's log (-l), sorted
	ClientCPU        time.Duration // user+system time of the pgbench process
	Command          string
}

var (
	tpsRE     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	txRE      = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	latencyRE = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

// RunPgbench runs the select-only built-in script (`pgbench -S -M mode`;
// mode is simple, pgbench's default, extended or prepared) on
// PgbenchDatabase with clients connections and threads threads for d
// (whole seconds), logging every transaction to compute percentiles.
func RunPgbench(ctx context.Context, c *pgtest.Cluster, mode string, clients, threads int, d time.Duration) (*PgbenchResult, error) {
	switch mode {
	case "simple", "extended", "prepared":
	default:
		return nil, fmt.Errorf("fleetbench: pgbench query mode %q: want simple, extended or prepared", mode)
	}
	path, err := pgbenchPath(c)
	if err != nil {
		return nil, err
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	logDir, err := os.MkdirTemp("", "fleetbench-pgbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(logDir)
	args := []string{"-S", "-M", mode, "-n",
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(secs),
		"-l", "--log-prefix=" + filepath.Join(logDir, "tx")}
	cmd := exec.CommandContext(ctx, path, append(args, c.DSN("postgres", PgbenchDatabase))...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("fleetbench: pgbench: %w\n%s%s", err, stdout.Bytes(), stderr.Bytes())
	}
	r := &PgbenchResult{Clients: clients, Threads: threads, Duration: time.Duration(secs) * time.Second,
		ClientCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(),
		Command:   "pgbench " + strings.Join(args[:len(args)-2], " ") + " " + PgbenchDatabase}
	out := stdout.String()
	m := tpsRE.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("fleetbench: no tps in pgbench's output:\n%s", out)
	}
	r.TPS, _ = strconv.ParseFloat(m[1], 64)
	if m := txRE.FindStringSubmatch(out); m != nil {
		r.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := latencyRE.FindStringSubmatch(out); m != nil {
		ms, _ := strconv.ParseFloat(m[1], 64)
		r.LatencyAvg = time.Duration(ms * float64(time.Millisecond))
	}
	if r.Latencies, err = readPgbenchLogs(logDir); err != nil {
		return nil, err
	}
	if len(r.Latencies) == 0 {
		return nil, fmt.Errorf("fleetbench: pgbench logged no transactions:\n%s", out)
	}
	r.Latencies.Sorted()
	return r, nil
}

// readPgbenchLogs reads the per-transaction logs of pgbench -l: lines of
// "client_id transaction_no time script_no time_epoch time_us", time being
// the latency in µs.
func readPgbenchLogs(dir string) (Latencies, error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx*"))
	if err != nil {
		return nil, err
	}
	var l Latencies
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("fleetbench: pgbench log %s: %q: %w", name, sc.Text(), err)
			}
			l = append(l, time.Duration(us)*time.Microsecond)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}
