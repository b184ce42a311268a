// Package uuid is a stub of github.com/google/uuid for the analyzer tests.
package uuid

type UUID [16]byte

var Nil UUID
