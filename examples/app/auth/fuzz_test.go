package auth_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tenantry/tenantry/examples/app/auth"
	"github.com/tenantry/tenantry/tenancy"
)

var secret = []byte("fuzz-secret-0123456789abcdef-0123456789")

func newAuth(t testing.TB) *auth.Authenticator {
	a, err := auth.New(auth.Config{Secret: secret, Pepper: []byte("fuzz-pepper")})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// verifiedHS256 checks, independently of the JWT library, that tok is
// header.payload.signature with an HS256 header and a valid HMAC-SHA256 of
// the first two parts under the secret, and returns its claims.
func verifiedHS256(tok string) (map[string]any, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, false
	}
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil {
			return nil
		}
		return b
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(dec(parts[0]), &hdr) != nil || hdr.Alg != "HS256" {
		return nil, false
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(m.Sum(nil), dec(parts[2])) {
		return nil, false
	}
	var claims map[string]any
	if json.Unmarshal(dec(parts[1]), &claims) != nil {
		return nil, false
	}
	return claims, true
}

// FuzzParseToken: an arbitrary string is accepted only if it is an HS256
// token signed with the secret, with an exp, whose tenant claim parses as a
// tenant id, which is the id returned. Refusals wrap ErrUnauthenticated and
// never repeat the token.
func FuzzParseToken(f *testing.F) {
	a := newAuth(f)
	good, _ := a.Token(tenancy.MustParseID("7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c"), time.Hour)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"tenant": "7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c", "exp": 4e9}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, s := range []string{good, none, "", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", good + "x", strings.Replace(good, ".", "..", 1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := a.ParseToken(tok)
		if err != nil {
			if !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("refusal %v does not wrap ErrUnauthenticated", err)
			}
			if len(tok) >= 16 && strings.Contains(err.Error(), tok) {
				t.Fatalf("the error repeats the token: %v", err)
			}
			return
		}
		claims, ok := verifiedHS256(tok)
		if !ok {
			t.Fatalf("accepted %q, which is not an HS256 token signed with the secret", tok)
		}
		if _, ok := claims["exp"].(float64); !ok {
			t.Fatalf("accepted a token without a numeric exp: %v", claims)
		}
		want, err := tenancy.ParseID(claims["tenant"].(string))
		if err != nil || want != id {
			t.Fatalf("accepted tenant claim %v as %s (%v)", claims["tenant"], id, err)
		}
	})
}

// FuzzSignedToken: tokens signed with the secret are accepted exactly when
// their tenant claim is a tenant id and they have not expired, and a
// token changed anywhere is refused unless it still decodes to the same
// header, claims and signature (base64's unused trailing bits).
func FuzzSignedToken(f *testing.F) {
	a := newAuth(f)
	f.Add("7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c", int64(3600), uint16(10), byte('x'))
	f.Add("7F1C2A4E-9B3D-4C8E-A1F0-5D6E7F8A9B0C", int64(3600), uint16(60), byte('A'))
	f.Add("00000000-0000-0000-0000-000000000000", int64(3600), uint16(0), byte('.'))
	f.Add("acme", int64(-3600), uint16(100), byte('='))
	f.Fuzz(func(t *testing.T, tenant string, expIn int64, pos uint16, b byte) {
		if expIn > 1e9 || expIn < -1e9 || (expIn > -120 && expIn < 120) {
			return // keep clear of the leeway and of overflows
		}
		c := auth.Claims{Tenant: tenant, RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Duration(expIn) * time.Second))}}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		wantID, idErr := tenancy.ParseID(tenant)
		wantOK := idErr == nil && expIn > 0
		id, err := a.ParseToken(tok)
		if (err == nil) != wantOK || (err == nil && id != wantID) {
			t.Fatalf("tenant %q exp %+ds: ParseToken = %s, %v; want ok=%t", tenant, expIn, id, err, wantOK)
		}
		i := int(pos) % len(tok)
		if tok[i] == b {
			return
		}
		mutated := tok[:i] + string([]byte{b}) + tok[i+1:]
		if _, err := a.ParseToken(mutated); err == nil && !sameSegments(tok, mutated) {
			t.Fatalf("accepted a changed token (byte %d %q -> %q)", i, tok[i], b)
		}
	})
}

func sameSegments(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	if len(pa) != 3 || len(pb) != 3 {
		return false
	}
	for i := range pa {
		da, _ := base64.RawURLEncoding.DecodeString(pa[i])
		db, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(pb[i], "="))
		if err != nil || !bytes.Equal(da, db) {
			return false
		}
	}
	return true
}

// FuzzAPIKey: only the exact key handed out is accepted, for its tenant;
// any other string (including the stored form and other keys' parts) is
// refused with ErrUnauthenticated.
func FuzzAPIKey(f *testing.F) {
	a := newAuth(f)
	tenant := tenancy.MustParseID("7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c")
	key, stored, err := a.NewAPIKey(tenant)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{key, stored.String(), stored.MAC, "tk_" + stored.ID + "_", key[:len(key)-1], key + "A", strings.ToUpper(key), ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := a.ParseAPIKey(s)
		if s == key {
			if err != nil || id != tenant {
				t.Fatalf("the key was refused: %v", err)
			}
			return
		}
		if err == nil || !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("ParseAPIKey(%q) = %s, %v: want a refusal", s, id, err)
		}
		if _, err := auth.ParseStoredKey(s); err == nil && strings.Contains(s, key) {
			t.Fatalf("a stored-key line holds the key")
		}
	})
}
