package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"

	"github.com/klauspost/compress/gzip" // the gzip format, faster than compress/gzip
)

// streamSum checks a COPY text stream as it passes: size, SHA-256, rows
// (one per newline: COPY's text format escapes newlines inside values) and
// the order-independent row hash, which leaves out the tenant_id field.
type streamSum struct {
	sha       hash.Hash
	bytes     int64
	rows      int64
	rowSum    uint64
	tenantCol int    // field index of tenant_id; -1: none
	tenant    []byte // the tenant_id every row must have; nil: not checked
	foreign   int64  // rows with another tenant_id
	partial   []byte
	scratch   []byte
}

// newStreamSum returns a streamSum for rows whose tenant_id is field
// tenantCol (-1: none). When tenant is not empty, rows whose tenant_id is
// anything else are counted as foreign.
func newStreamSum(tenantCol int, tenant string) *streamSum {
	s := &streamSum{sha: sha256.New(), tenantCol: tenantCol}
	if tenant != "" && tenantCol >= 0 {
		s.tenant = []byte(tenant)
	}
	return s
}

func (s *streamSum) Write(p []byte) (int, error) {
	n := len(p)
	s.sha.Write(p)
	s.bytes += int64(n)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.partial = append(s.partial, p...)
			break
		}
		line := p[:i]
		if len(s.partial) > 0 {
			s.partial = append(s.partial, line...)
			line = s.partial
		}
		s.row(line)
		s.partial = s.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (s *streamSum) row(line []byte) {
	s.rows++
	start, end := 0, 0
	if s.tenantCol >= 0 {
		// Find the field's bounds; the tab separators stay.
		field := 0
		start = -1
		for i := 0; i <= len(line); i++ {
			if field == s.tenantCol && start < 0 {
				start = i
			}
			if i == len(line) || line[i] == '\t' {
				if field == s.tenantCol {
					end = i
					break
				}
				field++
			}
		}
		if start < 0 { // fewer fields than expected: hash the whole line
			start, end = 0, 0
		}
		if s.tenant != nil && (start == end || !bytes.Equal(line[start:end], s.tenant)) {
			s.foreign++
		}
	}
	s.scratch = append(append(s.scratch[:0], line[:start]...), line[end:]...)
	sum := sha256.Sum256(s.scratch)
	s.rowSum += binary.LittleEndian.Uint64(sum[:8])
}

// complete reports whether the stream ended at a row boundary.
func (s *streamSum) complete() bool { return len(s.partial) == 0 }

func (s *streamSum) shaHex() string     { return hex.EncodeToString(s.sha.Sum(nil)) }
func (s *streamSum) rowHashHex() string { return fmt.Sprintf("%016x", s.rowSum) }

// check compares the stream with a table's manifest entry.
func (s *streamSum) check(archive string, t Table) error {
	bad := func(what, want, got string) error {
		return &ChecksumError{Archive: archive, Table: t.Name, What: what, Want: want, Got: got}
	}
	switch {
	case !s.complete():
		return bad("stream", "whole rows", "a truncated last row")
	case s.rows != t.Rows:
		return bad("rows", strconv.FormatInt(t.Rows, 10), strconv.FormatInt(s.rows, 10))
	case s.bytes != t.Bytes:
		return bad("bytes", strconv.FormatInt(t.Bytes, 10), strconv.FormatInt(s.bytes, 10))
	case s.shaHex() != t.SHA256:
		return bad("sha256", t.SHA256, s.shaHex())
	case s.rowHashHex() != t.RowHash:
		return bad("row hash", t.RowHash, s.rowHashHex())
	case s.foreign > 0:
		return bad("tenant", "rows of tenant "+string(s.tenant)+" only", strconv.FormatInt(s.foreign, 10)+" rows of other tenants")
	}
	return nil
}

// countingWriter counts what it passes on.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// tableReader streams a table's data file, decompressed, through a
// streamSum, and remembers the first read error so that it is not lost
// when COPY FROM turns it into a server-side failure.
type tableReader struct {
	rc  io.ReadCloser
	gz  *gzip.Reader
	sum *streamSum
	err error
}

func openTable(ctx context.Context, store Store, archive string, tenant string, t Table) (*tableReader, error) {
	rc, err := store.Open(ctx, archive+"/"+t.File)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, &ChecksumError{Archive: archive, Table: t.Name, What: "file " + t.File, Err: err}
		}
		return nil, err
	}
	gz, err := gzip.NewReader(rc)
	if err != nil {
		rc.Close()
		return nil, &ChecksumError{Archive: archive, Table: t.Name, What: "gzip stream", Err: err}
	}
	return &tableReader{rc: rc, gz: gz, sum: newStreamSum(t.TenantColumn, tenant)}, nil
}

func (r *tableReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.gz.Read(p)
	if n > 0 {
		r.sum.Write(p[:n])
	}
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// drain reads the rest of the stream, so that the sums cover all of it.
func (r *tableReader) drain() {
	if r.err == nil {
		io.Copy(io.Discard, r)
	}
}

// result checks the whole stream against the manifest entry.
func (r *tableReader) result(archive string, t Table) error {
	if r.err != nil {
		return &ChecksumError{Archive: archive, Table: t.Name, What: "compressed stream", Err: r.err}
	}
	return r.sum.check(archive, t)
}

func (r *tableReader) Close() error {
	r.gz.Close()
	return r.rc.Close()
}
