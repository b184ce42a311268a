package api_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tenantry/tenantry/examples/app/auth"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(tenant string, exp time.Duration) auth.Claims {
	return auth.Claims{Tenant: tenant, RegisteredClaims: jwt.RegisteredClaims{
		IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(exp)),
	}}
}

// TestAuth: every way of not holding a valid credential answers the same
// 401 with WWW-Authenticate, and never reaches the data.
func TestAuth(t *testing.T) {
	a := newApp(t, nil)
	A := apptest.A.String()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024) // small: only its algorithm matters
	if err != nil {
		t.Fatal(err)
	}
	good := a.token(t, apptest.A)
	parts := strings.Split(good, ".")
	// The payload of a token of B under A's signature.
	bPayload := strings.Split(a.token(t, apptest.B), ".")[1]
	noExp := auth.Claims{Tenant: A}
	key, stored, err := a.auth.NewAPIKey(apptest.A)
	if err != nil {
		t.Fatal(err)
	}
	revokedKey, revoked, err := a.auth.NewAPIKey(apptest.A)
	if err != nil {
		t.Fatal(err)
	}
	a.auth.RevokeAPIKey(revoked.ID)
	flip := func(s string) string {
		b := []byte(s)
		if b[len(b)-2] == 'A' {
			b[len(b)-2] = 'B'
		} else {
			b[len(b)-2] = 'A'
		}
		return string(b)
	}

	cases := []struct {
		name   string
		header []string
	}{
		{"no credential", nil},
		{"unsigned tenant header", []string{"X-Tenant-ID", A}},
		{"empty bearer", []string{"Authorization", "Bearer "}},
		{"basic auth", []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(A+":x"))}},
		{"garbage", []string{"Authorization", "Bearer not.a.token"}},
		{"expired", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, claims(A, -time.Hour))}},
		{"no exp", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, noExp)}},
		{"alg none", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(A, time.Hour))}},
		{"RS256", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, claims(A, time.Hour))}},
		{"HS512 with the right secret", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS512, testSecret, claims(A, time.Hour))}},
		{"wrong secret", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-thirty-two-bytes!!"), claims(A, time.Hour))}},
		{"payload swapped", []string{"Authorization", "Bearer " + parts[0] + "." + bPayload + "." + parts[2]}},
		{"tenant not a uuid", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, claims("acme", time.Hour))}},
		{"nil tenant", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, claims("00000000-0000-0000-0000-000000000000", time.Hour))}},
		{"no tenant", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, claims("", time.Hour))}},
		{"tenant with spaces", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, claims(" "+A, time.Hour))}},
		{"two tokens", []string{"Authorization", "Bearer " + good, "Authorization", "Bearer " + good}},
		{"token and key", []string{"Authorization", "Bearer " + good, "X-API-Key", key}},
		{"key as bearer", []string{"Authorization", "Bearer " + key}},
		{"key with wrong secret", []string{"X-API-Key", flip(key)}},
		{"key with unknown id", []string{"X-API-Key", "tk_000000000000" + key[len("tk_000000000000"):]}},
		{"revoked key", []string{"X-API-Key", revokedKey}},
		{"malformed key", []string{"X-API-Key", "tk_" + stored.ID}},
	}
	var first response
	for i, c := range cases {
		r := a.do(t, "GET", "/v1/customers", "", c.header...)
		if r.status != 401 {
			t.Errorf("%s: status %d, want 401: %s", c.name, r.status, r.body)
			continue
		}
		if got := r.header.Get("WWW-Authenticate"); got != auth.Challenge {
			t.Errorf("%s: WWW-Authenticate %q, want %q", c.name, got, auth.Challenge)
		}
		if _, code := errorBody(t, r); code != "unauthenticated" {
			t.Errorf("%s: code %q", c.name, code)
		}
		if i == 0 {
			first = r
		} else if string(r.body) != string(first.body) {
			t.Errorf("%s: body %s differs from %s: the 401s must not say why", c.name, r.body, first.body)
		}
	}

	// The valid credentials reach A's rows, and only A's.
	f := seed(t, a, apptest.A)
	for name, h := range map[string][]string{
		"token":                    {"Authorization", "Bearer " + good},
		"bearer lower-case scheme": {"Authorization", "bearer " + good},
		"api key":                  {"X-API-Key", key},
	} {
		r := a.do(t, "GET", "/v1/customers/"+f.customer.String(), "", h...)
		if r.status != 200 || !strings.Contains(string(r.body), f.email) {
			t.Errorf("%s: %s", name, r)
		}
	}
	// A valid token of a tenant without a placement.
	if r := a.as(t, tenancy.NewID(), "GET", "/v1/customers", ""); r.status != 403 {
		t.Errorf("unknown tenant: %s, want 403", r)
	} else if _, code := errorBody(t, r); code != "tenant_unknown" {
		t.Errorf("unknown tenant: code %q", code)
	}
}
