package pgtest

import (
	"context"
	"errors"
	"testing"
)

func TestExternalClusters(t *testing.T) {
	cs, err := externalClusters(" postgres://admin:secret@127.0.0.1:6000/postgres?sslmode=disable , postgresql://127.0.0.1/x,")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("got %d clusters, want 2", len(cs))
	}
	for _, tt := range []struct{ got, want string }{
		{cs[0].SuperuserDSN(), "postgres://admin:secret@127.0.0.1:6000/postgres?sslmode=disable"},
		{cs[0].DSN("admin", "app"), "postgres://admin:secret@127.0.0.1:6000/app?sslmode=disable"},
		{cs[0].DSN("tenant", "my db"), "postgres://tenant@127.0.0.1:6000/my%20db?sslmode=disable"},
		{cs[0].Host(), "127.0.0.1"},
		{cs[0].DataDir(), ""},
		{cs[1].DSN("u", "d"), "postgresql://u@127.0.0.1/d"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if cs[0].Port() != 6000 || cs[1].Port() != 5432 {
		t.Errorf("ports %d, %d; want 6000, 5432", cs[0].Port(), cs[1].Port())
	}
	for name, err := range map[string]error{
		"Kill":    cs[0].Kill(),
		"Stop":    cs[0].Stop(),
		"Restart": cs[0].Restart(context.Background()),
	} {
		if !errors.Is(err, ErrExternal) {
			t.Errorf("%s: %v, want ErrExternal", name, err)
		}
	}
	if err := cs[0].Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestExternalClustersInvalid(t *testing.T) {
	for _, dsns := range []string{"host=127.0.0.1 password=secret", "http://127.0.0.1/x", ",", "postgres://127.0.0.1:x/y"} {
		if _, err := externalClusters(dsns); err == nil {
			t.Errorf("%q: no error", dsns)
		}
	}
}

func TestLocalDSN(t *testing.T) {
	c := &Cluster{host: "127.0.0.1", port: 5433}
	if got, want := c.DSN("app", "tenants"), "postgres://app@127.0.0.1:5433/tenants?sslmode=disable"; got != want {
		t.Errorf("DSN = %q, want %q", got, want)
	}
	if got, want := c.SuperuserDSN(), "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"; got != want {
		t.Errorf("SuperuserDSN = %q, want %q", got, want)
	}
}
