package openloop

import (
	"syscall"
	"time"
)

// setTimerSlack sets the calling thread's timer slack to 1 µs (50 µs by
// default), so that sleepPrecise wakes up on time.
func setTimerSlack() {
	const prSetTimerslack = 29
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, 1000, 0)
}

// sleepPrecise blocks the calling thread for d with nanosleep.
func sleepPrecise(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
