package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Store keeps archives. An archive is a set of objects under one name
// ("<name>/manifest.json", "<name>/data/...") written once and never
// modified. Dir keeps them in a directory; an object store (S3, GCS, Azure
// Blob) implements the same four methods: Create maps to a streaming
// (multipart) upload that becomes visible on Close and is discarded by Abort,
// Open to a streaming download, List to a prefix listing and Remove to
// deleting every object under a prefix.
//
// Object names are slash-separated paths of segments of letters, digits,
// '.', '_' and '-' that do not start with '.'. Implementations must be safe
// for concurrent use: a backup writes several objects at once.
type Store interface {
	// Create starts writing the object name. It becomes readable only when
	// Close returns nil; Abort discards it. An existing object of that
	// name is replaced on Close.
	Create(ctx context.Context, name string) (Writer, error)
	// Open reads the object name. A missing object is an error wrapping
	// ErrNotFound (and fs.ErrNotExist).
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// List returns the names of the objects under prefix ("" for all),
	// sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Remove deletes the object prefix and every object under prefix/.
	// Removing nothing is not an error.
	Remove(ctx context.Context, prefix string) error
}

// Writer is an object being written. Close publishes it; Abort discards it.
// After either, the Writer must not be used.
type Writer interface {
	io.Writer
	Close() error
	Abort() error
}

var nameSegment = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`)

// ValidateName checks an object or archive name: slash-separated segments
// of letters, digits, '.', '_' and '-' (not starting with '.'), at most 512
// bytes. The error wraps ErrInvalid.
func ValidateName(name string) error {
	if name == "" || len(name) > 512 {
		return fmt.Errorf("%w: name %q: want 1 to 512 bytes", ErrInvalid, trunc(name))
	}
	for _, s := range strings.Split(name, "/") {
		if !nameSegment.MatchString(s) {
			return fmt.Errorf("%w: name %q: segment %q must match %s", ErrInvalid, trunc(name), trunc(s), nameSegment)
		}
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Dir is a Store in a local directory: each object is a file under Root.
// Writes go to a hidden temporary file in the same directory, which Close
// syncs and renames into place, so a reader never sees a partial object.
type Dir struct {
	Root string
}

// NewDir returns a Dir store rooted at root, creating the directory if it
// does not exist.
func NewDir(root string) (*Dir, error) {
	if root == "" {
		return nil, fmt.Errorf("%w: empty directory", ErrInvalid)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("backup: store %s: %w", root, err)
	}
	return &Dir{Root: root}, nil
}

func (d *Dir) path(name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	return filepath.Join(d.Root, filepath.FromSlash(name)), nil
}

// Create implements Store.
func (d *Dir) Create(_ context.Context, name string) (Writer, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, fmt.Errorf("backup: create %s: %w", name, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return nil, fmt.Errorf("backup: create %s: %w", name, err)
	}
	return &dirWriter{f: f, final: p, name: name}, nil
}

type dirWriter struct {
	f     *os.File
	final string
	name  string
	done  bool
}

func (w *dirWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *dirWriter) Close() error {
	if w.done {
		return fmt.Errorf("backup: %s: already closed", w.name)
	}
	w.done = true
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.final)
	}
	if err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("backup: write %s: %w", w.name, err)
	}
	return nil
}

func (w *dirWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}

// Open implements Store.
func (d *Dir) Open(_ context.Context, name string) (io.ReadCloser, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: object %s: %w", ErrNotFound, name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: open %s: %w", name, err)
	}
	return f, nil
}

// List implements Store.
func (d *Dir) List(_ context.Context, prefix string) ([]string, error) {
	root := d.Root
	if prefix != "" {
		p, err := d.path(strings.TrimSuffix(prefix, "/"))
		if err != nil {
			return nil, err
		}
		root = p
	}
	var out []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() && p != root {
				return filepath.SkipDir
			}
			if !e.IsDir() {
				return nil
			}
		}
		if e.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(d.Root, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: list %s: %w", prefix, err)
	}
	slices.Sort(out)
	return out, nil
}

// Remove implements Store.
func (d *Dir) Remove(_ context.Context, prefix string) error {
	p, err := d.path(prefix)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("backup: remove %s: %w", prefix, err)
	}
	return nil
}
