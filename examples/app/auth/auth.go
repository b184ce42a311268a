package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tenantry/tenantry/tenancy"
)

// ErrUnauthenticated is wrapped by every error of this package that means
// "no valid credential": answer 401 and ask for a token.
var ErrUnauthenticated = errors.New("auth: unauthenticated: send Authorization: Bearer <HS256 token with a tenant claim> or X-API-Key: <key>")

// ErrConfig is wrapped by errors of a malformed configuration (a short
// secret, a malformed stored key).
var ErrConfig = errors.New("auth: invalid configuration")

// Error says why a request was not authenticated. Reason is safe to log: it
// never contains the credential.
type Error struct {
	Reason string
	Err    error // underlying cause, if any (never holds the token)
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", ErrUnauthenticated.Error(), e.Reason, e.Err)
	}
	return fmt.Sprintf("%s: %s", ErrUnauthenticated.Error(), e.Reason)
}

// Is makes errors.Is(err, ErrUnauthenticated) true.
func (e *Error) Is(target error) bool { return target == ErrUnauthenticated }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func fail(reason string, err error) error { return &Error{Reason: reason, Err: err} }

// MinSecretLen is the shortest HS256 secret accepted (256 bits).
const MinSecretLen = 32

// MaxCredentialLen bounds a credential before any parsing.
const MaxCredentialLen = 4096

// TenantClaim is the name of the JWT claim that holds the tenant id.
const TenantClaim = "tenant"

// Claims are the claims of an app token.
type Claims struct {
	Tenant string `json:"tenant"`
	jwt.RegisteredClaims
}

// Config configures an Authenticator.
type Config struct {
	// Secret is the HS256 key (at least MinSecretLen bytes).
	Secret []byte
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer, Audience string
	// Leeway tolerates clock skew on exp/nbf/iat (default 30 s).
	Leeway time.Duration
	// Pepper is the HMAC key of stored API keys. Empty: API keys are off.
	Pepper []byte
}

// Authenticator verifies credentials. It is safe for concurrent use.
type Authenticator struct {
	cfg    Config
	parser *jwt.Parser

	mu   sync.RWMutex
	keys map[string]storedKey // key id -> stored key
}

type storedKey struct {
	tenant tenancy.ID
	mac    [sha256.Size]byte
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("%w: the JWT secret has %d bytes, want at least %d (e.g. 32 random bytes, base64)", ErrConfig, len(cfg.Secret), MinSecretLen)
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Authenticator{cfg: cfg, parser: jwt.NewParser(opts...), keys: map[string]storedKey{}}, nil
}

// Token issues an HS256 token for tenant, valid for ttl.
func (a *Authenticator) Token(tenant tenancy.ID, ttl time.Duration) (string, error) {
	if tenant.IsZero() {
		return "", fmt.Errorf("%w: no tenant", ErrConfig)
	}
	now := time.Now()
	c := Claims{Tenant: tenant.String(), RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    a.cfg.Issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	if a.cfg.Audience != "" {
		c.Audience = jwt.ClaimStrings{a.cfg.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.cfg.Secret)
}

// ParseToken verifies an HS256 token and returns its tenant.
func (a *Authenticator) ParseToken(raw string) (tenancy.ID, error) {
	if raw == "" {
		return tenancy.ID{}, fail("empty token", nil)
	}
	if len(raw) > MaxCredentialLen {
		return tenancy.ID{}, fail("token too long", nil)
	}
	var c Claims
	_, err := a.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if t.Method != jwt.SigningMethodHS256 { // belt and braces: WithValidMethods checks the header too
			return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
		}
		return a.cfg.Secret, nil
	})
	if err != nil {
		return tenancy.ID{}, fail(tokenReason(err), err)
	}
	id, err := tenancy.ParseID(c.Tenant)
	if err != nil {
		return tenancy.ID{}, fail("malformed tenant claim", err)
	}
	return id, nil
}

func tokenReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "bad signature or algorithm"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token without exp"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired token"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token not valid yet"
	default:
		return "invalid token"
	}
}

// ----- API keys

const keyPrefix = "tk_"

// KeyIDLen and keySecretLen are the lengths of the two parts of a key.
const (
	keyIDLen     = 12 // hex characters
	keySecretLen = 43 // base64url characters of 32 random bytes
)

// SplitAPIKey splits "tk_<key id>_<secret>" into its parts. It checks the
// shape only; the caller verifies the secret.
func SplitAPIKey(key string) (id, secret string, err error) {
	if len(key) > MaxCredentialLen {
		return "", "", fail("API key too long", nil)
	}
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", "", fail("malformed API key", nil)
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != keyIDLen || !isHex(id) || len(secret) != keySecretLen || !isBase64URL(secret) {
		return "", "", fail("malformed API key", nil)
	}
	return id, secret, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// StoredKey is what the server keeps of an API key: its id, its tenant and
// the hex HMAC-SHA256 of its secret under the pepper. It is safe to store
// in a database or file; the key cannot be recovered from it.
type StoredKey struct {
	ID     string
	Tenant tenancy.ID
	MAC    string // hex
}

// String is the one-line form that ParseStoredKey reads.
func (k StoredKey) String() string { return k.ID + " " + k.Tenant.String() + " " + k.MAC }

// ParseStoredKey reads "<key id> <tenant id> <hex mac>".
func ParseStoredKey(line string) (StoredKey, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return StoredKey{}, fmt.Errorf("%w: stored API key: want \"<key id> <tenant id> <hex hmac>\"", ErrConfig)
	}
	if len(f[0]) != keyIDLen || !isHex(f[0]) {
		return StoredKey{}, fmt.Errorf("%w: stored API key: key id must be %d hex digits", ErrConfig, keyIDLen)
	}
	t, err := tenancy.ParseID(f[1])
	if err != nil {
		return StoredKey{}, fmt.Errorf("%w: stored API key %s: %w", ErrConfig, f[0], err)
	}
	if mac, err := hex.DecodeString(f[2]); err != nil || len(mac) != sha256.Size {
		return StoredKey{}, fmt.Errorf("%w: stored API key %s: the HMAC must be %d hex digits", ErrConfig, f[0], 2*sha256.Size)
	}
	return StoredKey{ID: f[0], Tenant: t, MAC: f[2]}, nil
}

func (a *Authenticator) mac(secret string) [sha256.Size]byte {
	h := hmac.New(sha256.New, a.cfg.Pepper)
	h.Write([]byte(secret))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// NewAPIKey makes a key for tenant and registers it. It returns the key,
// to hand to the customer once, and what to store.
func (a *Authenticator) NewAPIKey(tenant tenancy.ID) (key string, stored StoredKey, err error) {
	if len(a.cfg.Pepper) == 0 {
		return "", StoredKey{}, fmt.Errorf("%w: API keys need a pepper", ErrConfig)
	}
	if tenant.IsZero() {
		return "", StoredKey{}, fmt.Errorf("%w: no tenant", ErrConfig)
	}
	var idb [keyIDLen / 2]byte
	var sec [32]byte
	rand.Read(idb[:])
	rand.Read(sec[:])
	id := hex.EncodeToString(idb[:])
	secret := base64.RawURLEncoding.EncodeToString(sec[:])
	mac := a.mac(secret)
	stored = StoredKey{ID: id, Tenant: tenant, MAC: hex.EncodeToString(mac[:])}
	if err := a.AddAPIKey(stored); err != nil {
		return "", StoredKey{}, err
	}
	return keyPrefix + id + "_" + secret, stored, nil
}

// AddAPIKey registers a stored key (replacing one with the same id).
func (a *Authenticator) AddAPIKey(k StoredKey) error {
	k, err := ParseStoredKey(k.String())
	if err != nil {
		return err
	}
	var sk storedKey
	sk.tenant = k.Tenant
	hex.Decode(sk.mac[:], []byte(k.MAC))
	a.mu.Lock()
	a.keys[k.ID] = sk
	a.mu.Unlock()
	return nil
}

// RevokeAPIKey removes a key; requests with it fail from now on.
func (a *Authenticator) RevokeAPIKey(id string) {
	a.mu.Lock()
	delete(a.keys, id)
	a.mu.Unlock()
}

// dummyMAC is compared against when the key id is unknown, so that an
// unknown id and a wrong secret take the same work.
var dummyMAC [sha256.Size]byte

// ParseAPIKey verifies an API key and returns its tenant.
func (a *Authenticator) ParseAPIKey(key string) (tenancy.ID, error) {
	if len(a.cfg.Pepper) == 0 {
		return tenancy.ID{}, fail("API keys are not enabled", nil)
	}
	id, secret, err := SplitAPIKey(key)
	if err != nil {
		return tenancy.ID{}, err
	}
	a.mu.RLock()
	sk, ok := a.keys[id]
	a.mu.RUnlock()
	want := dummyMAC
	if ok {
		want = sk.mac
	}
	got := a.mac(secret)
	if !hmac.Equal(got[:], want[:]) || !ok {
		return tenancy.ID{}, fail("unknown or revoked API key", nil)
	}
	return sk.tenant, nil
}

// ----- HTTP

// Credential extracts the credential of a request: a bearer token from
// Authorization or a key from X-API-Key (exactly one of them).
func Credential(r *http.Request) (token, apiKey string, err error) {
	authz := r.Header.Values("Authorization")
	keys := r.Header.Values("X-API-Key")
	switch {
	case len(authz) == 0 && len(keys) == 0:
		return "", "", fail("no credential", nil)
	case len(authz)+len(keys) > 1:
		return "", "", fail("more than one credential", nil)
	case len(keys) == 1:
		return "", keys[0], nil
	}
	scheme, tok, ok := strings.Cut(authz[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", "", fail("Authorization is not a Bearer token", nil)
	}
	return strings.TrimSpace(tok), "", nil
}

// Authenticate returns the tenant of a request.
func (a *Authenticator) Authenticate(r *http.Request) (tenancy.ID, error) {
	token, key, err := Credential(r)
	if err != nil {
		return tenancy.ID{}, err
	}
	if key != "" {
		return a.ParseAPIKey(key)
	}
	return a.ParseToken(token)
}

// Challenge is the WWW-Authenticate value of a 401.
const Challenge = `Bearer realm="tenantry-app"`

// OnError answers a request whose authentication failed.
type OnError func(w http.ResponseWriter, r *http.Request, err error)

// Middleware authenticates every request and scopes its context to the
// tenant; a failure goes to onErr (which must answer 401).
func (a *Authenticator) Middleware(onErr OnError) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := a.Authenticate(r)
			if err != nil {
				onErr(w, r, err)
				return
			}
			if n := noteOf(r.Context()); n != nil {
				n.tenant = id
			}
			next.ServeHTTP(w, r.WithContext(tenancy.WithTenant(r.Context(), id)))
		})
	}
}

// ----- telling the access log who the tenant was

type noteKey struct{}

type note struct{ tenant tenancy.ID }

// WithNote returns a context on which Middleware records the tenant it
// authenticated, for an outer access log to read with Noted.
func WithNote(ctx context.Context) context.Context {
	return context.WithValue(ctx, noteKey{}, &note{})
}

func noteOf(ctx context.Context) *note { n, _ := ctx.Value(noteKey{}).(*note); return n }

// Noted returns the tenant Middleware authenticated on a context made by
// WithNote.
func Noted(ctx context.Context) (tenancy.ID, bool) {
	if n := noteOf(ctx); n != nil && !n.tenant.IsZero() {
		return n.tenant, true
	}
	return tenancy.ID{}, false
}
