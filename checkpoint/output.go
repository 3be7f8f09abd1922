package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Output is one path a run writes: a checkpoint, a table, a record, a plot.
type Output struct {
	// Flag is how the user named it, for messages ("-o", "--md"); empty
	// means "output".
	Flag string
	Path string
}

func (o Output) label() string {
	if o.Flag == "" {
		return "output"
	}
	return o.Flag
}

// Outputs are every path a run writes, checked together before the run
// starts, as one guard for checkpoints and side files alike.
type Outputs struct {
	List []Output
	// Inputs are files and folders the run reads: no output may be one of
	// them, lie inside one or hold one.
	Inputs []string
	// Roots are folders the run searches for inputs (a data folder): an
	// output may lie inside one, but may not be one or hold one.
	Roots []string
	// Force lets existing outputs be replaced.
	Force bool
}

// Check refuses, naming the output's flag: an output that is an input, lies
// inside an input folder or would replace a folder holding one; an
// existing output without Force; two outputs that are the same path or
// nest; an output whose folder cannot be created because a file stands in
// its way. Then it removes the outputs' stale temporaries (see
// [RemoveStale]) and returns them, so the caller can say so.
func (o *Outputs) Check() ([]Removed, error) {
	for i, out := range o.List {
		if err := checkOutput(out, o.Inputs, o.Roots, o.Force); err != nil {
			return nil, err
		}
		for _, prev := range o.List[:i] {
			if err := checkDisjoint(prev, out); err != nil {
				return nil, err
			}
		}
	}
	var removed []Removed
	for _, out := range o.List {
		r, err := RemoveStale(out.Path)
		removed = append(removed, r...)
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// CheckOutput refuses an output that would overwrite or remove an input
// (the same path, a path inside an input folder, or a folder holding an
// input), and an existing output unless force. Create calls it; commands
// that run several passes call it first so they fail before the work.
func CheckOutput(out string, inputs []string, force bool) error {
	return checkOutput(Output{Path: out}, inputs, nil, force)
}

func checkOutput(o Output, inputs, roots []string, force bool) error {
	if o.Path == "" {
		return fmt.Errorf("%s: empty path", o.label())
	}
	outAbs := absPath(o.Path)
	for _, in := range inputs {
		inAbs := absPath(in)
		switch {
		case outAbs == inAbs:
			return fmt.Errorf("%s %s is also an input: choose another output path", o.label(), o.Path)
		case within(outAbs, inAbs):
			return fmt.Errorf("%s %s lies inside input %s: choose a path outside the inputs", o.label(), o.Path, in)
		case within(inAbs, outAbs):
			return fmt.Errorf("%s %s would replace a folder holding input %s: choose another output path", o.label(), o.Path, in)
		}
		if a, err := os.Stat(o.Path); err == nil {
			if b, err := os.Stat(in); err == nil && os.SameFile(a, b) {
				return fmt.Errorf("%s %s is also an input (%s): choose another output path", o.label(), o.Path, in)
			}
		}
	}
	for _, r := range roots {
		rAbs := absPath(r)
		if outAbs == rAbs || within(rAbs, outAbs) {
			return fmt.Errorf("%s %s would replace the data folder %s: choose another output path", o.label(), o.Path, r)
		}
	}
	if _, err := os.Lstat(o.Path); err == nil && !force {
		return fmt.Errorf("%s %s already exists: pass --force to replace it", o.label(), o.Path)
	}
	// The nearest existing ancestor must be a folder, or the output's
	// folder cannot be created.
	for p := filepath.Dir(outAbs); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s %s cannot be created: %s is a file, not a folder", o.label(), o.Path, p)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || p == filepath.Dir(p) {
			break
		}
	}
	return nil
}

// checkDisjoint refuses two outputs that are the same path or nest.
func checkDisjoint(a, b Output) error {
	pa, pb := absPath(a.Path), absPath(b.Path)
	switch {
	case pa == pb:
		return fmt.Errorf("%s and %s are the same path (%s): give each output its own path", a.label(), b.label(), b.Path)
	case within(pb, pa):
		return fmt.Errorf("%s %s lies inside %s %s: give each output its own path", b.label(), b.Path, a.label(), a.Path)
	case within(pa, pb):
		return fmt.Errorf("%s %s lies inside %s %s: give each output its own path", a.label(), a.Path, b.label(), b.Path)
	}
	return nil
}

// absPath resolves p to an absolute path without symlinks, as far as it exists.
func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	if r, err := filepath.EvalSymlinks(a); err == nil {
		return r
	}
	if r, err := filepath.EvalSymlinks(filepath.Dir(a)); err == nil {
		return filepath.Join(r, filepath.Base(a))
	}
	return a
}

func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// File is a file written atomically: its data goes to a temporary beside
// the target, renamed into place by Commit. Nothing is visible at the
// target before, and Abort (or a signal, see [RemoveTemporaries]) leaves
// nothing behind.
type File struct {
	*os.File
	target string
	force  bool
	done   bool
}

// CreateFile starts writing the file path atomically. Like [Create] it
// fails at once when path is an input, lies inside one, or exists without
// opts.Force (then Commit also refuses a file that appeared meanwhile).
// Only opts.Force and opts.Inputs are used.
func CreateFile(path string, opts WriteOptions) (*File, error) {
	if err := CheckOutput(path, opts.Inputs, opts.Force); err != nil {
		return nil, err
	}
	dir, base := filepath.Split(filepath.Clean(path))
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the folder of %s: %w", path, err)
	}
	tmp, err := newTemp(dir, tempPrefix(base), false)
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY, 0)
	if err != nil {
		removeTemp(tmp)
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &File{File: f, target: path, force: opts.Force}, nil
}

// Commit syncs the file and renames it into place.
func (f *File) Commit() error {
	if f.done {
		return errors.New("commit after commit or abort")
	}
	tmp := f.Name()
	err := f.Sync()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = withinTemp(func() error { return replace(tmp, f.target, f.force) })
	}
	f.done = true
	if err != nil {
		removeTemp(tmp)
		return fmt.Errorf("writing %s: %w", f.target, err)
	}
	dropTemp(tmp)
	return nil
}

// Abort removes the temporary. It is safe to call after Commit (then it
// does nothing), so `defer f.Abort()` is the usual pattern.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	removeTemp(f.Name())
}

// WriteFile writes data to path atomically (see [CreateFile]): refused
// when path is one of opts.Inputs, lies inside one, or exists without
// opts.Force.
func WriteFile(path string, data []byte, opts WriteOptions) error {
	f, err := CreateFile(path, opts)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

// WriteFileAtomic writes data to path atomically, replacing an existing
// file: for files a program owns (an example's results folder). Outputs
// the user named go through [WriteFile].
func WriteFileAtomic(path string, data []byte) error {
	return WriteFile(path, data, WriteOptions{Force: true})
}

// WriteFiles writes several files as a unit, each as [WriteFile] would:
// every one is written and synced to a temporary beside its path first,
// and only then are they renamed into place, in order. A failure while
// writing leaves none of them; a rename that fails removes the files
// renamed before it, so no failure leaves part of the set.
func WriteFiles(paths []string, data [][]byte, opts WriteOptions) error {
	if len(paths) != len(data) {
		return fmt.Errorf("writing %d files with %d contents", len(paths), len(data))
	}
	files := make([]*File, 0, len(paths))
	defer func() {
		for _, f := range files {
			f.Abort()
		}
	}()
	for i, p := range paths {
		f, err := CreateFile(p, opts)
		if err != nil {
			return err
		}
		files = append(files, f)
		if _, err := f.Write(data[i]); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	for i, f := range files {
		if err := f.Commit(); err != nil {
			for _, p := range paths[:i] {
				os.Remove(p)
			}
			return err
		}
	}
	return nil
}
