// Package fanout runs a list of jobs on a fixed number of workers that stop
// together at the first error: the shape of the parallel table copies of
// backup and move, and of move's index builds.
package fanout
