package datasets

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Split names a part of a dataset.
type Split string

const (
	// Train is the training set less the examples held out for Validation:
	// what the task-vectors reference code fine-tunes on.
	Train Split = "train"
	// Validation is held out of the training set (see HoldOut and Options).
	Validation Split = "val"
	// Test is the test set.
	Test Split = "test"
	// TrainVal is the whole training set, Train and Validation together.
	TrainVal Split = "trainval"
)

// ParseSplit accepts train, val (or validation), test and trainval.
func ParseSplit(s string) (Split, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "train":
		return Train, nil
	case "val", "validation":
		return Validation, nil
	case "test":
		return Test, nil
	case "trainval", "train+val", "full-train":
		return TrainVal, nil
	}
	return "", fmt.Errorf("datasets: unknown split %q; use train, val, test or trainval", s)
}

// EnvDataDir names the environment variable giving the data folder.
const EnvDataDir = "EDITKIT_DATA"

// Options say where to find datasets and how to hold out validation examples.
// The zero value gives the reference code's behaviour.
type Options struct {
	// DataDir holds one folder per named dataset (the CLI's --data flag).
	// Empty: $EDITKIT_DATA, else ../shared/data/vision relative to the working
	// directory, then relative to the repository root (the nearest folder
	// above the working directory holding go.mod or .git).
	DataDir string
	// ValidationFraction of the training set is held out (0: 0.1).
	ValidationFraction float64
	// MaxValidation caps the held-out examples (0: 5000; negative: no cap).
	MaxValidation int
	// Seed of the held-out choice (see HoldOut); the reference code uses 0.
	Seed uint64
	// SplitByImage holds validation out image by image even where the
	// dataset has a group file (the reference code's split, which puts
	// near-duplicate frames of a GTSRB track on both sides).
	SplitByImage bool
}

// holdOut splits the training set d: by group (HoldOutGroups) when it has
// groups, else image by image (HoldOut).
func (o Options) holdOut(d *Dataset) (train, val []int) {
	frac := o.ValidationFraction
	if frac == 0 {
		frac = DefaultValidationFraction
	}
	maxVal := o.MaxValidation
	if maxVal == 0 {
		maxVal = DefaultMaxValidation
	}
	if d.HasGroups() && !o.SplitByImage {
		groups := make([]int, d.Len())
		for i := range groups {
			groups[i], _ = d.Group(i)
		}
		return HoldOutGroups(groups, frac, maxVal, o.Seed)
	}
	return HoldOut(d.Len(), frac, maxVal, o.Seed)
}

// DataDirs returns the folders searched for named datasets, in order (see Options.DataDir).
func DataDirs(opts Options) []string {
	if opts.DataDir != "" {
		return []string{opts.DataDir}
	}
	if v := os.Getenv(EnvDataDir); v != "" {
		return []string{v}
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil
	}
	rel := filepath.Join("..", "shared", "data", "vision")
	out := []string{filepath.Join(wd, rel)}
	if root := repoRoot(wd); root != "" {
		if d := filepath.Join(root, rel); d != out[0] {
			out = append(out, d)
		}
	}
	return out
}

func repoRoot(dir string) string {
	for {
		for _, marker := range []string{"go.mod", ".git"} {
			if _, err := os.Stat(filepath.Join(dir, marker)); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Available lists the dataset names that Open finds: mnist and the folders
// in the data folders, sorted.
func Available(opts Options) []string {
	names := []string{"mnist"}
	for _, d := range DataDirs(opts) {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") && isDir(filepath.Join(d, e.Name())) && !slices.Contains(names, e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	return names
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func isPathName(name string) bool {
	return filepath.IsAbs(name) || strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator) ||
		strings.HasPrefix(name, ".")
}

// Resolve returns the folder that the dataset name refers to:
//   - a name that is a path (absolute, holding a separator, or starting with
//     '.') is that folder;
//   - "mnist" (any case) is <data dir>/mnist when DataDir or $EDITKIT_DATA is
//     set and holds it, else the data/ folder of the Go module MNISTModule
//     (see MNISTDir);
//   - any other name is <data dir>/<name> (or its lower-case form) in the
//     first of DataDirs(opts) that holds it.
func Resolve(name string, opts Options) (string, error) {
	if name == "" {
		return "", fmt.Errorf("datasets: empty dataset name; available: %s", strings.Join(Available(opts), ", "))
	}
	if isPathName(name) {
		if !isDir(name) {
			return "", fmt.Errorf("datasets: dataset folder %s does not exist", name)
		}
		return name, nil
	}
	dirs := DataDirs(opts)
	explicit := opts.DataDir != "" || os.Getenv(EnvDataDir) != ""
	lower := strings.ToLower(name)
	if lower == "mnist" {
		if explicit {
			for _, d := range dirs {
				for _, n := range []string{name, lower} {
					if p := filepath.Join(d, n); isDir(p) {
						return p, nil
					}
				}
			}
		}
		return MNISTDir()
	}
	var looked []string
	for _, d := range dirs {
		for _, n := range []string{name, lower} {
			p := filepath.Join(d, n)
			if slices.Contains(looked, p) {
				continue
			}
			looked = append(looked, p)
			if isDir(p) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("datasets: dataset %q not found; looked in %s. Available: %s. A dataset is a folder <data dir>/%s holding train-images-idx3-ubyte.gz (or idx4 for RGB), train-labels-idx1-ubyte.gz, test-images-…, test-labels-… and classes.txt, or train/<class>/ and test/<class>/ image folders; give the data dir with --data DIR or %s=DIR, or the dataset folder's path as the name",
		name, strings.Join(looked, ", "), strings.Join(Available(opts), ", "), lower, EnvDataDir)
}

// Source is one dataset found on disk, with its splits. Splits are read
// when first asked for and kept; a Source is safe for concurrent use.
type Source struct {
	Name    string   // as given to Open (a path's base name)
	Dir     string   // the folder read
	Format  string   // "idx" or "folders"
	Classes []string // class names; label l is Classes[l]

	opts  Options
	files map[Split][2]string // idx: Train/Test → images, labels paths; folders: Train/Test → folder
	// groups names each set's group file (train-tracks-idx1-int.gz), if any.
	groups map[Split]string

	mu     sync.Mutex
	loaded map[Split]*Dataset
}

// idxName matches the IDX file names of the supported layout (MNIST's).
var idxName = regexp.MustCompile(`^(train|test|t10k)-(images|labels)-idx([0-9])-ubyte(\.gz)?$`)

// groupName matches a group file: one int32 group id per example of the
// set (GTSRB's train-tracks-idx1-int.gz gives each image its track).
var groupName = regexp.MustCompile(`^(train|test|t10k)-(tracks|groups)-idx1-int(\.gz)?$`)

// Open finds the dataset called name (see Resolve) and reads its layout and
// class names. The supported layouts of a dataset folder are
//
//   - IDX: train-images-idx3-ubyte[.gz] ([N,H,W] gray) or
//     train-images-idx4-ubyte[.gz] ([N,H,W,3] RGB), train-labels-idx1-ubyte[.gz],
//     and the same with test- (or t10k-) for the test set; plain files are
//     preferred to gzipped ones of the same name;
//   - image folders: train/<class>/ and test/<class>/ holding PNG, JPEG or
//     PPM/PGM files (see ReadImageFolder);
//
// and classes.txt, one class name a line, in the folder. Without classes.txt
// the classes are "0", "1", … up to the largest label for IDX, and the sorted
// union of the class folder names of train/ and test/ for image folders. MNIST
// has "0" … "9". A folder may hold only one of the two sets.
func Open(name string, opts Options) (*Source, error) {
	dir, err := Resolve(name, opts)
	if err != nil {
		return nil, err
	}
	display := name
	if isPathName(name) {
		display = filepath.Base(filepath.Clean(name))
	}
	s := &Source{Name: display, Dir: dir, opts: opts, files: map[Split][2]string{}, groups: map[Split]string{}, loaded: map[Split]*Dataset{}}
	if err := s.scan(); err != nil {
		return nil, err
	}
	if err := s.readClasses(strings.ToLower(name) == "mnist"); err != nil {
		return nil, err
	}
	return s, nil
}

// scan finds the IDX files or the split folders.
func (s *Source) scan() error {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return fmt.Errorf("datasets: %w", err)
	}
	type cand struct {
		path string
		rank int
	}
	found := map[Split]*[2]cand{}
	for _, e := range ents {
		if m := groupName.FindStringSubmatch(e.Name()); m != nil && !e.IsDir() {
			sp := Train
			if m[1] != "train" {
				sp = Test
			}
			if old, ok := s.groups[sp]; !ok || (m[3] == "" && strings.HasSuffix(old, ".gz")) {
				s.groups[sp] = filepath.Join(s.Dir, e.Name())
			}
			continue
		}
		m := idxName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		sp := Train
		if m[1] != "train" {
			sp = Test
		}
		kind := 0
		if m[2] == "labels" {
			kind = 1
		}
		rank := 0
		if m[1] == "t10k" {
			rank += 2
		}
		if m[4] != "" {
			rank++
		}
		if found[sp] == nil {
			found[sp] = &[2]cand{{rank: 99}, {rank: 99}}
		}
		if c := &found[sp][kind]; rank < c.rank {
			*c = cand{filepath.Join(s.Dir, e.Name()), rank}
		}
	}
	for _, sp := range []Split{Train, Test} {
		f := found[sp]
		if f == nil {
			continue
		}
		if f[0].path == "" || f[1].path == "" {
			have, want := f[0].path, "labels (train-labels-idx1-ubyte.gz)"
			if have == "" {
				have, want = f[1].path, "images (train-images-idx3-ubyte.gz or train-images-idx4-ubyte.gz)"
			}
			want = strings.ReplaceAll(want, "train", string(sp))
			return fmt.Errorf("datasets: %s has %s but no %s file for the %s set; add the missing file or remove the other", s.Dir, filepath.Base(have), want, sp)
		}
		s.files[sp] = [2]string{f[0].path, f[1].path}
	}
	if len(s.files) > 0 {
		s.Format = "idx"
		return nil
	}
	for _, sp := range []Split{Train, Test} {
		if p := filepath.Join(s.Dir, string(sp)); isDir(p) {
			s.files[sp] = [2]string{p}
		}
	}
	if len(s.files) > 0 {
		s.Format = "folders"
		return nil
	}
	return fmt.Errorf("datasets: %s holds no dataset: expected IDX files (train-images-idx3-ubyte.gz or -idx4- for RGB, train-labels-idx1-ubyte.gz, test-images-…, test-labels-…) or train/<class>/ and test/<class>/ image folders",
		s.Dir)
}

func (s *Source) readClasses(isMNIST bool) error {
	path := filepath.Join(s.Dir, "classes.txt")
	if _, err := os.Stat(path); err == nil {
		classes, err := ReadClasses(path)
		if err != nil {
			return err
		}
		s.Classes = classes
		return nil
	}
	if isMNIST {
		s.Classes = numberedClasses(10)
		return nil
	}
	if s.Format == "folders" {
		var all []string
		for _, sp := range []Split{Train, Test} {
			if f, ok := s.files[sp]; ok {
				names, err := classFolders(f[0])
				if err != nil {
					return err
				}
				all = append(all, names...)
			}
		}
		slices.Sort(all)
		s.Classes = slices.Compact(all)
		if len(s.Classes) == 0 {
			return fmt.Errorf("datasets: %s: the train/ and test/ folders hold no class folders", s.Dir)
		}
		return nil
	}
	maxLabel := -1
	for _, sp := range []Split{Train, Test} {
		if f, ok := s.files[sp]; ok {
			lab, err := ReadIDXFile(f[1])
			if err != nil {
				return err
			}
			for _, v := range lab.Data {
				maxLabel = max(maxLabel, int(v))
			}
		}
	}
	s.Classes = numberedClasses(maxLabel + 1)
	return nil
}

// ReadClasses reads a classes.txt file: one class name a line, label l on line
// l+1. Surrounding spaces and a final newline are ignored; an empty line
// before the last name or a repeated name is an error.
func ReadClasses(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, strings.TrimSpace(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("datasets: %s: %w", path, err)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("datasets: %s is empty; it must list one class name a line", path)
	}
	seen := map[string]int{}
	for i, c := range out {
		if c == "" {
			return nil, fmt.Errorf("datasets: %s: line %d is empty; classes.txt lists one class name a line, label l on line l+1", path, i+1)
		}
		if j, ok := seen[c]; ok {
			return nil, fmt.Errorf("datasets: %s: class %q on lines %d and %d; class names must be distinct", path, c, j+1, i+1)
		}
		seen[c] = i
	}
	return out, nil
}

// Split returns the examples of one split (see Split). Train and Validation
// share the training set's memory.
func (s *Source) Split(sp Split) (*Dataset, error) {
	switch sp {
	case Test:
		d, err := s.raw(Test)
		if err != nil {
			return nil, err
		}
		return d.rename(s.Name + "/test"), nil
	case TrainVal, Train, Validation:
		d, err := s.raw(Train)
		if err != nil {
			return nil, err
		}
		if sp == TrainVal {
			return d.rename(s.Name + "/trainval"), nil
		}
		tr, val := s.opts.holdOut(d)
		if sp == Train {
			return d.Subset(tr).rename(s.Name + "/train"), nil
		}
		return d.Subset(val).rename(s.Name + "/val"), nil
	}
	return nil, fmt.Errorf("datasets: unknown split %q; use train, val, test or trainval", sp)
}

// raw reads (once) the whole train or test set.
func (s *Source) raw(sp Split) (*Dataset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.loaded[sp]; d != nil {
		return d, nil
	}
	f, ok := s.files[sp]
	if !ok {
		want := "test-images-idx3-ubyte.gz and test-labels-idx1-ubyte.gz (or test/<class>/ folders)"
		if sp == Train {
			want = "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (or train/<class>/ folders)"
		}
		return nil, fmt.Errorf("datasets: %s has no %s set: expected %s in %s", s.Name, sp, want, s.Dir)
	}
	var d *Dataset
	var err error
	if s.Format == "idx" {
		d, err = ReadIDXImages(f[0], f[1], s.Classes)
	} else {
		var folders []string
		if folders, err = classFolders(f[0]); err == nil {
			var st *folderStore
			if st, err = readClassFolders(f[0], folders, s.Classes); err == nil {
				d = newDataset("", s.Classes, st)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if p, ok := s.groups[sp]; ok {
		if err := d.setGroups(p); err != nil {
			return nil, err
		}
	}
	s.loaded[sp] = d
	return d, nil
}

// setGroups reads a group file ([N] int32, one group per example) for d.
func (d *Dataset) setGroups(path string) error {
	dims, g, err := ReadIDXInt32File(path)
	if err != nil {
		return err
	}
	if len(dims) != 1 || dims[0] != d.Len() {
		return fmt.Errorf("datasets: %s gives groups %v for %d examples: a group file holds one int32 per example ([N], magic 0x00000C01); remove it or replace it with the one made for these images", path, dims, d.Len())
	}
	d.groups = g
	return nil
}

// Load opens the dataset called name and returns one of its splits.
func Load(name string, sp Split, opts Options) (*Dataset, error) {
	s, err := Open(name, opts)
	if err != nil {
		return nil, err
	}
	return s.Split(sp)
}
