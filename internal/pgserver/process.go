package pgserver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// RunAs returns the credential server programs must run with: the postgres
// OS user's when we run as root, which PostgreSQL refuses, and nil (run as
// ourselves) otherwise.
func RunAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, which PostgreSQL refuses, "+
			"and there is no postgres user to run it as (Debian's postgresql package creates one): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Chown gives path to cred's user; a no-op for a nil cred.
func Chown(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Chown(path, int(cred.Uid), int(cred.Gid))
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Postmaster is a postgres server process started by Start.
type Postmaster struct {
	Cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts `postgres -D dataDir args...` as our child (so that it can
// be waited for: an orphan would linger as a zombie after a kill, its PID
// blocking the lock file), in a session of its own, away from the
// terminal's signals, as cred's user, with stdout and stderr appended to
// logf. dir is its working directory.
func Start(binDir, dir, dataDir string, cred *syscall.Credential, logf *os.File, args ...string) (*Postmaster, error) {
	cmd := exec.Command(filepath.Join(binDir, "postgres"), append([]string{"-D", dataDir}, args...)...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Postmaster{Cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed when the postmaster has exited.
func (p *Postmaster) Exited() <-chan struct{} { return p.exited }

// Running reports whether the postmaster is up.
func (p *Postmaster) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the postmaster and waits up to timeout for it to
// exit.
func (p *Postmaster) Signal(sig os.Signal, timeout time.Duration) error {
	if !p.Running() {
		return errors.New("server not running")
	}
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("postmaster %d still there %v after %v", p.Cmd.Process.Pid, timeout, sig)
	}
}

// reaperScript waits for EOF on stdin, which comes when the lifeline is
// closed or its parent dies in whatever way, then stops the server and
// removes the directory. It ignores the signals a terminal or a test
// runner may send to its parent's process group.
const reaperScript = `trap '' HUP INT QUIT TERM
cat >/dev/null
"$1" stop -D "$2" -m immediate -w >/dev/null 2>&1
rm -rf "$3"`

// Reaper stops a server and removes its directory when its lifeline is
// closed or the process that started it dies, even by SIGKILL.
type Reaper struct {
	cmd      *exec.Cmd
	lifeline io.Closer
}

// StartReaper starts a reaper for the server of dataDir (stopped with
// binDir's pg_ctl) and the directory removeDir, running as cred's user.
func StartReaper(binDir, dataDir, removeDir string, cred *syscall.Credential) (*Reaper, error) {
	cmd := exec.Command("/bin/sh", "-c", reaperScript, "pgserver-reaper",
		filepath.Join(binDir, "pg_ctl"), dataDir, removeDir)
	cmd.Dir = "/"
	// A session of its own: signals for our process group or terminal do
	// not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("reaper: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("reaper: %w", err)
	}
	return &Reaper{cmd: cmd, lifeline: stdin}, nil
}

// Reap sets the reaper off and waits until it has stopped the server (if
// still running) and removed the directory.
func (r *Reaper) Reap() error {
	r.lifeline.Close()
	return r.cmd.Wait()
}

// ReadTail returns the last n bytes at most of the file, after offset.
func ReadTail(path string, offset, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > n {
		offset = fi.Size() - n
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, n))
	return string(b)
}
