package demo

import (
	"bytes"
	"strings"
	"testing"
)

// With -keep the demo prints how to reach what it leaves running, the
// registry too: the README's first session runs tenantctl against it.
func TestPrintKeepNamesTheRegistry(t *testing.T) {
	d := &httpDemo{url: "http://127.0.0.1:1", adminToken: "tok", registry: "postgres://postgres@127.0.0.1:2/tenantry_registry",
		tenants: []*httpTenant{{slug: "a"}, {slug: "b"}, {slug: "c", order: "o"}}}
	var out bytes.Buffer
	d.printKeep(&out)
	if !strings.Contains(out.String(), "export TENANTRY_REGISTRY='postgres://postgres@127.0.0.1:2/tenantry_registry'") {
		t.Errorf("no registry in:\n%s", out.String())
	}
}
