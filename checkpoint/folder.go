package checkpoint

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// WriteFolderAtomic writes files (plain file name → content) as the folder
// out: into a temporary folder beside it, synced, then renamed into place,
// so out appears only once complete and a failure leaves nothing. As
// Create, it refuses an out that is one of opts.Inputs, lies inside one or
// holds one, and an existing out unless opts.Force.
func WriteFolderAtomic(out string, files map[string][]byte, opts WriteOptions) error {
	if out == "" {
		return fmt.Errorf("no output path given")
	}
	if err := CheckOutput(out, opts.Inputs, opts.Force); err != nil {
		return err
	}
	for name := range files {
		if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
			return fmt.Errorf("writing %s: %q is not a plain file name", out, name)
		}
	}
	dir, base := filepath.Split(filepath.Clean(out))
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the folder of output %s: %w", out, err)
	}
	tmp, err := newTemp(dir, tempPrefix(base), true)
	if err != nil {
		return fmt.Errorf("creating output beside %s: %w", out, err)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := withinTemp(func() error { return writeSynced(filepath.Join(tmp, name), files[name]) }); err != nil {
			removeTemp(tmp)
			return fmt.Errorf("writing %s: %w", out, err)
		}
	}
	if err := withinTemp(func() error { return replace(tmp, out, opts.Force) }); err != nil {
		removeTemp(tmp)
		return err
	}
	dropTemp(tmp)
	return nil
}
