//go:build !linux

package openloop

import "time"

func setTimerSlack() {}

// sleepPrecise is time.Sleep where nanosleep on a locked thread is not
// wired up: wake-ups may be up to a millisecond late.
func sleepPrecise(d time.Duration) { time.Sleep(d) }
