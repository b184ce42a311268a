package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is one throwaway redis-server.
type Server struct {
	bin  string
	dir  string
	port int

	mu       sync.Mutex
	cmd      *exec.Cmd
	lifeline io.Closer
	exited   chan struct{}
}

// FindServer returns the path of redis-server, from $PATH or /usr/bin.
func FindServer() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	return "", errors.New("redistest: redis-server not found: run ./scripts/install-deps.sh (or apt-get install redis-server)")
}

// Start starts a server for the test and stops it when the test ends. It
// fails the test when redis-server is missing or does not start.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := FindServer()
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{bin: bin, dir: dir}
	tb.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
	})
	for attempt := 1; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			tb.Fatal(err)
		}
		err = s.Start()
		if err == nil {
			return s
		}
		if attempt == 3 || !strings.Contains(err.Error(), "in use") {
			tb.Fatalf("redistest: %v", err)
		}
	}
}

// Addr returns host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// script runs redis-server in the background and stops it when its stdin
// (the pipe from the test process) closes, whether the test closed it or
// died.
const script = `trap '' HUP INT QUIT TERM
"$1" --port "$2" --bind 127.0.0.1 --dir "$3" --save '' --appendonly no --protected-mode yes --logfile "$3/redis.log" </dev/null &
pid=$!
cat >/dev/null
kill -TERM $pid 2>/dev/null
wait $pid`

// Start starts the server (again) on its address and waits until it
// answers PING.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("redistest: already running")
	}
	logPath := filepath.Join(s.dir, "redis.log")
	offset := int64(0)
	if fi, err := os.Stat(logPath); err == nil {
		offset = fi.Size()
	}
	cmd := exec.Command("/bin/sh", "-c", script, "redistest", s.bin, strconv.Itoa(s.port), s.dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.lifeline, s.exited = cmd, stdin, exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(s.Addr()) == nil {
			return nil
		}
		if time.Now().After(deadline) || strings.Contains(readFrom(logPath, offset), "in use") {
			s.stopLocked()
			return fmt.Errorf("redis-server on port %d did not start; its log:\n%s", s.port, readFrom(logPath, offset))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop stops the server and waits until its port is closed. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	s.lifeline.Close()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
	for i := 0; i < 500 && ping(s.Addr()) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func readFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
