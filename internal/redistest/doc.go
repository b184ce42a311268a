// Package redistest starts throwaway redis-server processes for tests: each
// on a free port of 127.0.0.1, in its own temporary directory, without
// persistence. A test can Stop a server to take Redis away and Start it
// again on the same address.
//
// It never mocks and never skips: when redis-server is not installed the
// test fails and says how to install it (scripts/install-deps.sh, or
// apt-get install redis-server). The server also goes away when the test
// process dies in any way, since it is tied to the test process by a pipe.
package redistest
