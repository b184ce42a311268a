package fleetbench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tenantry/tenantry/internal/pgtest"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times (100 on every
// Linux the project runs on).
const clockTick = 10 * time.Millisecond

// procTimes returns utime+stime and cutime+cstime of a process from
// /proc/<pid>/stat, and its parent's pid.
func procTimes(pid int) (self, children time.Duration, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("fleetbench: /proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("fleetbench: /proc/%d/stat: malformed", pid)
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k-3], 10, 64); return n }
	return time.Duration(num(14)+num(15)) * clockTick, time.Duration(num(16)+num(17)) * clockTick, int(num(4)), nil
}

// SelfCPU returns the CPU time this process has used.
func SelfCPU() time.Duration {
	self, _, _, _ := procTimes(os.Getpid())
	return self
}

// ServerCPU returns the CPU time the cluster's server processes have used
// so far: the postmaster, its live children (backends, checkpointer, …)
// and the children it has reaped. It needs the cluster's data directory,
// so it does not work for external servers.
func ServerCPU(c *pgtest.Cluster) (time.Duration, error) {
	dataDir := c.DataDir()
	if dataDir == "" {
		return 0, fmt.Errorf("fleetbench: server CPU of an external cluster is unknown")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	postmaster := 0
	type proc struct {
		ppid int
		cpu  time.Duration
	}
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		self, _, ppid, err := procTimes(pid)
		if err != nil {
			continue
		}
		procs[pid] = proc{ppid, self}
		if postmaster == 0 {
			cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && bytes.Contains(cmd, []byte("\x00-D\x00"+dataDir)) && bytes.HasSuffix(bytes.SplitN(cmd, []byte{0}, 2)[0], []byte("postgres")) {
				postmaster = pid
			}
		}
	}
	if postmaster == 0 {
		return 0, fmt.Errorf("fleetbench: postmaster of %s not found", dataDir)
	}
	self, reaped, _, err := procTimes(postmaster)
	if err != nil {
		return 0, err
	}
	total := self + reaped
	for pid, p := range procs {
		if p.ppid == postmaster && pid != postmaster {
			total += p.cpu
		}
	}
	return total, nil
}
