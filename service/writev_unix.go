//go:build unix

package service

import "golang.org/x/sys/unix"

// writevNow writes bufs to the non-blocking socket fd with one writev and returns how many
// bytes it took: 0 or less when it took none (a full socket answers EAGAIN).
func writevNow(fd uintptr, bufs [][]byte) int {
	n, _ := unix.Writev(int(fd), bufs)
	return n
}
