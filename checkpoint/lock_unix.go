//go:build unix

package checkpoint

import (
	"errors"
	"os"
	"syscall"
)

// lockPath takes an exclusive flock on a file or folder and returns the
// open file holding it; closing it releases the lock, as the death of the
// process does.
func lockPath(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// isLocked reports whether a process (this one included) holds the flock
// of path. A path that cannot be opened is not locked.
func isLocked(path string) bool {
	if st, err := os.Stat(path); err != nil || !(st.Mode().IsRegular() || st.IsDir()) {
		return false // opening a FIFO would block
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}
