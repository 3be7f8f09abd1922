package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// The partial outputs of this process. Every temporary file or folder an
// output is written into is registered here from its creation until it is
// renamed into place or removed, and holds an exclusive flock for that
// time, so that
//   - a signal handler can remove them all ([RemoveTemporaries]), and
//   - a later run can tell the temporaries of a killed run (unlocked) from
//     those of a run still writing (locked), and remove only the former
//     ([RemoveStale]).
//
// This is package state on purpose: signals and the lifetime of a process
// are per process, and every writer of the package (Create, CreateFile,
// WriteFile, TempBeside) must be reachable from one handler without each
// caller threading a registry through its calls.
var temps = struct {
	// gate excludes cleanup from the operations that create files inside a
	// temporary or rename one into place: they hold it for reading,
	// RemoveTemporaries for writing.
	gate sync.RWMutex
	// closed is set by RemoveTemporaries: later temporaries fail.
	closed bool
	mu     sync.Mutex
	m      map[string]*os.File // temporary path → its lock
}{m: map[string]*os.File{}}

// errInterrupted is returned by writers once RemoveTemporaries has run.
var errInterrupted = errors.New("interrupted: the partial outputs were removed")

// tempPrefix is the name prefix of the temporaries of output base.
func tempPrefix(base string) string { return "." + base + ".tmp-" }

// newTemp creates, locks and registers a temporary file or folder in dir
// whose name starts with prefix.
func newTemp(dir, prefix string, isDir bool) (string, error) {
	temps.gate.RLock()
	defer temps.gate.RUnlock()
	if temps.closed {
		return "", errInterrupted
	}
	path, err := createTemp(dir, prefix, isDir)
	if err != nil {
		return "", err
	}
	lock, err := lockPath(path)
	if err != nil {
		os.RemoveAll(path)
		return "", fmt.Errorf("locking %s: %w", path, err)
	}
	temps.mu.Lock()
	temps.m[path] = lock
	temps.mu.Unlock()
	return path, nil
}

// dropTemp unregisters and unlocks a temporary that was renamed into place
// or removed.
func dropTemp(path string) {
	temps.mu.Lock()
	lock := temps.m[path]
	delete(temps.m, path)
	temps.mu.Unlock()
	if lock != nil {
		lock.Close()
	}
}

// removeTemp removes a temporary and unregisters it.
func removeTemp(path string) {
	os.RemoveAll(path)
	dropTemp(path)
}

// withinTemp runs fn, which creates files inside a temporary or renames one
// into place, excluded from RemoveTemporaries.
func withinTemp(fn func() error) error {
	temps.gate.RLock()
	defer temps.gate.RUnlock()
	if temps.closed {
		return errInterrupted
	}
	return fn()
}

// Removed is a partial output removed by [RemoveTemporaries] or
// [RemoveStale].
type Removed struct {
	Path string
	// Bytes is what it held.
	Bytes int64
	// RestoredTo is set when RemoveStale moved a previous output back in
	// place instead (a run killed while replacing it had moved it aside).
	RestoredTo string
}

func (r Removed) String() string {
	if r.RestoredTo != "" {
		return fmt.Sprintf("%s put back as %s", r.Path, r.RestoredTo)
	}
	return fmt.Sprintf("%s (%s)", r.Path, FormatBytes(r.Bytes))
}

// RemoveTemporaries removes every partial output this process is writing,
// waiting for a rename into place in progress to finish, and makes every
// later write fail, so the work in flight stops at its next file operation.
// It is meant for a signal handler that exits afterwards; editkit's CLI
// calls it on SIGINT, SIGTERM and SIGHUP.
func RemoveTemporaries() []Removed {
	temps.gate.Lock()
	defer temps.gate.Unlock()
	temps.closed = true
	temps.mu.Lock()
	paths := make([]string, 0, len(temps.m))
	for p := range temps.m {
		paths = append(paths, p)
	}
	temps.mu.Unlock()
	sort.Strings(paths)
	var out []Removed
	for _, p := range paths {
		n := treeBytes(p)
		if err := os.RemoveAll(p); err != nil {
			os.RemoveAll(p) // a file created while the first pass ran
		}
		dropTemp(p)
		out = append(out, Removed{Path: p, Bytes: n})
	}
	return out
}

// RemoveStale removes the temporaries of output out left by runs that were
// killed (SIGKILL, a crash, a power loss) before they could clean up: the
// files and folders named .BASE.tmp-* beside it that no live process holds
// locked. A previous output a killed run had moved aside to replace it
// (.BASE.tmp-*.old) is put back when out does not exist, else removed. On
// systems without flock nothing is considered stale.
func RemoveStale(out string) ([]Removed, error) {
	dir, base := filepath.Split(filepath.Clean(out))
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("looking for stale temporaries of %s: %w", out, err)
	}
	prefix := tempPrefix(base)
	var removed []Removed
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		id, old := strings.CutSuffix(rest, ".old")
		if !isTempID(id) || !(e.Type().IsRegular() || e.IsDir()) {
			continue
		}
		path := filepath.Join(dir, name)
		if old {
			// A live writer keeps its lock, on the new output's inode, until
			// the old output is gone.
			if isLocked(filepath.Join(dir, prefix+id)) || isLocked(out) {
				continue
			}
			if _, err := os.Lstat(out); errors.Is(err, fs.ErrNotExist) {
				if err := os.Rename(path, out); err != nil {
					return removed, fmt.Errorf("restoring %s from %s: %w", out, path, err)
				}
				removed = append(removed, Removed{Path: path, RestoredTo: out})
				continue
			}
		} else if isLocked(path) {
			continue
		}
		n := treeBytes(path)
		if err := os.RemoveAll(path); err != nil {
			return removed, fmt.Errorf("removing the stale temporary %s: %w", path, err)
		}
		removed = append(removed, Removed{Path: path, Bytes: n})
	}
	return removed, nil
}

// isTempID reports whether s is the random part of a temporary's name.
func isTempID(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// treeBytes is the size of the files under path.
func treeBytes(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// FormatBytes formats a byte count in decimal units, as file managers and
// Hugging Face's shard sizes do ("1.2 GB").
func FormatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTP"[exp])
}

// TempBeside creates a scratch folder beside out (named as out's
// temporaries are, so that it is removed on a signal and, left by a killed
// run, by the next run's RemoveStale). remove deletes it.
func TempBeside(out string) (dir string, remove func(), err error) {
	parent, base := filepath.Split(filepath.Clean(out))
	if parent == "" {
		parent = "."
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", nil, fmt.Errorf("creating the folder of %s: %w", out, err)
	}
	dir, err = newTemp(parent, tempPrefix(base), true)
	if err != nil {
		return "", nil, fmt.Errorf("scratch folder beside %s: %w", out, err)
	}
	return dir, func() { removeTemp(dir) }, nil
}

// TempDir creates a temporary folder under parent (os.TempDir() when
// empty) that is removed on a signal like the partial outputs. remove
// deletes it. Use it for scratch data that is not an output, such as a
// benchmark's generated inputs.
func TempDir(parent, prefix string) (dir string, remove func(), err error) {
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err = newTemp(parent, prefix, true)
	if err != nil {
		return "", nil, err
	}
	return dir, func() { removeTemp(dir) }, nil
}
