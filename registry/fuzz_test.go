package registry_test

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/tenantry/tenantry/ent/plan"
	"github.com/tenantry/tenantry/ent/shard"
	"github.com/tenantry/tenantry/ent/tenant"
	"github.com/tenantry/tenantry/registry"
)

// nameOK is the documented shape of slugs, plan and shard names, written
// out independently of the schema's regular expression.
func nameOK(s string) bool {
	if len(s) < 1 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		lower := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !lower && (i == 0 || c != '-' && c != '_') {
			return false
		}
	}
	return true
}

// FuzzNames: tenant slugs, plan names and shard names (which end up in
// logs, metric labels, schema-less command lines) are validated alike and
// exactly as documented: 1–63 of [a-z0-9_-], starting with a letter or
// digit.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"acme", "a", "-a", "_a", "Acme", "acme corp", "ac/me", "ac\nme", "äcme", strings.Repeat("a", 63), strings.Repeat("a", 64), "gold-plan_2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := nameOK(s)
		for what, v := range map[string]func(string) error{
			"tenant slug": tenant.SlugValidator, "plan name": plan.NameValidator, "shard name": shard.NameValidator,
		} {
			if err := v(s); (err == nil) != want {
				t.Fatalf("%s %q: validator says %v, documented shape says ok=%t", what, s, err, want)
			}
		}
	})
}

// FuzzRedact: whatever the password, in a URL's user info, in a URL's
// password= parameter or in a keyword/value string, Redact and the error
// of ValidateDSN never show it.
func FuzzRedact(f *testing.F) {
	f.Add("alice", "s3cr3t-pa55", "db.internal:5432", "app", uint8(0))
	f.Add("bob", "p@ss:w/o?rd#x", "127.0.0.1", "app", uint8(1))
	f.Add("carol", "it's a secret", "localhost", "app", uint8(2))
	f.Add("dave", `back\slash'quote`, "h", "d", uint8(2))
	f.Add("eve", "xxxxx-not-really", "h:1", "d", uint8(3))
	f.Fuzz(func(t *testing.T, user, pass, host, db string, form uint8) {
		if len(pass) < 6 || strings.Contains(pass, "xxxxx") {
			return // short passwords occur in any text by chance
		}
		if form%4 == 3 && strings.ContainsAny(pass, " \t\n\r\f\v'\\") {
			return // an unquoted keyword value ends at a space
		}
		build := func(pass string) string {
			switch form % 4 {
			case 0: // postgres://user:pass@host/db
				return "postgres://" + url.UserPassword(user, pass).String() + "@" + url.PathEscape(host) + "/" + url.PathEscape(db)
			case 1: // postgresql://user@host/db?sslmode=disable&password=pass
				return "postgresql://" + url.User(user).String() + "@" + url.PathEscape(host) + "/" + url.PathEscape(db) +
					"?sslmode=disable&password=" + url.QueryEscape(pass)
			case 2: // keyword/value, quoted as libpq reads it
				q := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pass)
				return "host=" + kw(host) + " user=" + kw(user) + " password='" + q + "' dbname=" + kw(db)
			default: // keyword/value, unquoted
				return "host=" + kw(host) + " password=" + pass + " user=" + kw(user)
			}
		}
		dsn := build(pass)
		// The same DSN with another password: whatever of the password
		// shows in its redaction comes from the other parts, by chance.
		bare := registry.Redact(build("Q"))
		bareErr := ""
		if err := registry.ValidateDSN(build("Q")); err != nil {
			bareErr = err.Error()
		}
		for _, enc := range append(encodings(pass), pass) {
			if strings.Contains(bare, enc) || strings.Contains(bareErr, enc) || strings.Contains("xxxxx", enc) {
				return
			}
		}
		out := registry.Redact(dsn)
		var errText string
		if err := registry.ValidateDSN(dsn); err != nil {
			errText = err.Error()
		}
		for _, enc := range append(encodings(pass), pass) {
			if strings.Contains(out, enc) {
				t.Fatalf("Redact(%q) = %q shows the password (as %q)", dsn, out, enc)
			}
			if strings.Contains(errText, enc) {
				t.Fatalf("ValidateDSN(%q) error %q shows the password (as %q)", dsn, errText, enc)
			}
		}
	})
}

// kw makes s a bare keyword value (no spaces or quotes).
func kw(s string) string {
	s = regexp.MustCompile(`[\s'\\=]`).ReplaceAllString(s, "_")
	if s == "" {
		return "x"
	}
	return s
}

// encodings are the forms a password takes in a URL.
func encodings(pass string) []string {
	var out []string
	for _, e := range []string{url.QueryEscape(pass), url.PathEscape(pass), url.UserPassword("u", pass).String()[2:]} {
		if len(e) >= 6 && e != pass {
			out = append(out, e)
		}
	}
	return out
}

// FuzzValidateDSN: any input is either refused with an error that does not
// repeat a URL password, or is a postgres URL with a host that WithUser
// turns into a DSN for another role without the password.
func FuzzValidateDSN(f *testing.F) {
	for _, s := range []string{"postgres://u:pw123456@h:5432/db", "postgresql://h/db?password=pw123456", "mysql://u:p@h/db",
		"postgres://", "host=h password=pw123456", "postgres://u:pw123456@/db", "postgres://u:%zz@h/db", ":", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		out := registry.Redact(dsn) // never panics
		err := registry.ValidateDSN(dsn)
		u, perr := url.Parse(dsn)
		pass, hasPass := "", false
		if perr == nil && u.User != nil {
			pass, hasPass = u.User.Password()
		}
		if hasPass && len(pass) >= 6 && strings.Count(dsn, pass) == 1 && !strings.Contains(pass, "xxxxx") {
			if strings.Contains(out, pass) {
				t.Fatalf("Redact(%q) = %q shows the password", dsn, out)
			}
			if err != nil && strings.Contains(err.Error(), pass) {
				t.Fatalf("ValidateDSN(%q) error shows the password: %v", dsn, err)
			}
		}
		if err != nil {
			return
		}
		if perr != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			t.Fatalf("ValidateDSN accepted %q (parse error %v)", dsn, perr)
		}
		role := "tenantry_app"
		if u.User != nil && u.User.Username() == role {
			role = "tenantry_admin"
		}
		w, err := registry.WithUser(dsn, role)
		if err != nil {
			t.Fatalf("WithUser of a valid DSN %q: %v", dsn, err)
		}
		wu, err := url.Parse(w)
		if err != nil || wu.User == nil || wu.User.Username() != role {
			t.Fatalf("WithUser(%q) = %q: user is not %s (%v)", dsn, w, role, err)
		}
		if _, ok := wu.User.Password(); ok || wu.Query().Has("password") {
			t.Fatalf("WithUser(%q) = %q keeps a password for another role", dsn, w)
		}
	})
}
