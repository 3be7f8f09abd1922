package datasets

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// toyDataset has n gray 2×2 images; image i has all pixels 10·i, label i%3.
func toyDataset(t *testing.T, n int) *Dataset {
	t.Helper()
	pix := make([]uint8, n*4)
	labels := make([]int, n)
	for i := range n {
		for k := range 4 {
			pix[4*i+k] = uint8(10 * i)
		}
		labels[i] = i % 3
	}
	d, err := FromPixels("toy", []string{"a", "b", "c"}, 2, 2, 1, pix, labels)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// collect runs a pass and returns the example visited at each position,
// checking each image's content against its index.
func collect(t *testing.T, d *Dataset, o BatchOptions) (order []int, sizes []int) {
	t.Helper()
	p := identityNorm(2, Stretch, Bilinear)
	it, err := d.Batches(p, o)
	if err != nil {
		t.Fatal(err)
	}
	for it.Next() {
		b := it.Batch()
		sizes = append(sizes, b.Size)
		if len(b.Images) != b.Size*2*2*3 || len(b.Labels) != b.Size || len(b.Indices) != b.Size {
			t.Fatalf("batch of %d: %d values, %d labels", b.Size, len(b.Images), len(b.Labels))
		}
		for k, i := range b.Indices {
			if int(b.Labels[k]) != i%3 {
				t.Errorf("example %d has label %d", i, b.Labels[k])
			}
			for _, v := range b.Images[k*12 : (k+1)*12] {
				if v != float32(10*i)/255 {
					t.Fatalf("example %d: value %v, want %v", i, v, float32(10*i)/255)
				}
			}
		}
		order = append(order, b.Indices...)
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
	if !slices.Equal(order, it.Order()) {
		t.Error("Order() differs from the batches' order")
	}
	return order, sizes
}

func TestBatches(t *testing.T) {
	d := toyDataset(t, 10)
	order, sizes := collect(t, d, BatchOptions{BatchSize: 4})
	if !slices.Equal(order, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) || !slices.Equal(sizes, []int{4, 4, 2}) {
		t.Errorf("in order: %v in batches %v", order, sizes)
	}
	_, sizes = collect(t, d, BatchOptions{BatchSize: 4, DropLast: true})
	if !slices.Equal(sizes, []int{4, 4}) {
		t.Errorf("drop last: batches %v", sizes)
	}
	e0, _ := collect(t, d, BatchOptions{BatchSize: 3, Shuffle: true, Seed: 9})
	again, _ := collect(t, d, BatchOptions{BatchSize: 3, Shuffle: true, Seed: 9, Workers: 1})
	e1, _ := collect(t, d, BatchOptions{BatchSize: 3, Shuffle: true, Seed: 9, Epoch: 1})
	if !isPermutation(e0) || len(e0) != 10 || !slices.Equal(e0, again) {
		t.Errorf("shuffled order %v, again %v", e0, again)
	}
	if slices.Equal(e0, e1) || !slices.Equal(e1, permutation(10, 9, 2)) {
		t.Errorf("epoch 1 order %v (epoch 0 %v)", e1, e0)
	}
	// A subset iterates over its own positions.
	sub := d.Subset([]int{7, 3})
	it, _ := sub.Batches(identityNorm(2, Stretch, Bilinear), BatchOptions{BatchSize: 5})
	if !it.Next() || it.Batch().Labels[0] != 1 || it.Batch().Images[0] != float32(70)/255 || it.NumBatches() != 1 {
		t.Error("subset batch")
	}
	if _, err := d.Batches(CLIP(2), BatchOptions{}); err == nil {
		t.Error("batch size 0 accepted")
	}
	if _, err := d.Batches(Preprocess{Size: 2}, BatchOptions{BatchSize: 1}); err == nil {
		t.Error("zero std accepted")
	}
	empty := d.Subset(nil)
	it, err := empty.Batches(CLIP(2), BatchOptions{BatchSize: 2, Shuffle: true})
	if err != nil || it.Next() || it.NumBatches() != 0 {
		t.Errorf("empty dataset: %v", err)
	}
}

func TestResolveAndOpenErrors(t *testing.T) {
	data := t.TempDir()
	toy := filepath.Join(data, "toy")
	writeFile(t, filepath.Join(toy, "train-images-idx3-ubyte"), idxBytes(0x08, []int{20, 2, 2}, seq(80)))
	writeFile(t, filepath.Join(toy, "train-labels-idx1-ubyte.gz"), gzipBytes(t, idxBytes(0x08, []int{20}, seq(20)[:20])))
	// labels 0,7,14,…: classes "0" … up to the largest label without classes.txt.
	src, err := Open("toy", Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Classes) != int(seq(20)[19])+1 {
		t.Errorf("%d numbered classes", len(src.Classes))
	}
	if _, err := src.Split(Test); err == nil || !strings.Contains(err.Error(), "no test set") {
		t.Errorf("missing test set: %v", err)
	}
	val, err := src.Split(Validation)
	if err != nil || val.Len() != 2 || val.Name() != "toy/val" {
		t.Errorf("val: %v %v", val, err)
	}
	// Options change the held-out share.
	src2, _ := Open("toy", Options{DataDir: data, ValidationFraction: 0.5, MaxValidation: 3})
	if v, _ := src2.Split(Validation); v.Len() != 3 {
		t.Errorf("fraction 0.5 capped at 3: %d", v.Len())
	}

	// EDITKIT_DATA is used when no DataDir is given.
	t.Setenv(EnvDataDir, data)
	if d, err := Resolve("TOY", Options{}); err != nil || d != toy {
		t.Errorf("Resolve via %s: %s %v", EnvDataDir, d, err)
	}
	// A missing dataset says where it looked and how to provide it.
	_, err = Open("nosuch", Options{DataDir: data})
	for _, w := range []string{filepath.Join(data, "nosuch"), "--data", EnvDataDir, "classes.txt", "Available: mnist, toy"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing dataset error %v lacks %q", err, w)
		}
	}
	// Incomplete layouts.
	writeFile(t, filepath.Join(data, "half", "test-images-idx3-ubyte.gz"), gzipBytes(t, idxBytes(0x08, []int{1, 1, 1}, []byte{0})))
	if _, err := Open("half", Options{DataDir: data}); err == nil || !strings.Contains(err.Error(), "test-labels-idx1-ubyte.gz") {
		t.Errorf("images without labels: %v", err)
	}
	writeFile(t, filepath.Join(data, "junk", "notes.txt"), []byte("x"))
	if _, err := Open("junk", Options{DataDir: data}); err == nil || !strings.Contains(err.Error(), "holds no dataset") {
		t.Errorf("no layout: %v", err)
	}
	writeFile(t, filepath.Join(toy, "classes.txt"), []byte("a\n\nb\n"))
	if _, err := Open("toy", Options{DataDir: data}); err == nil || !strings.Contains(err.Error(), "line 2 is empty") {
		t.Errorf("empty class line: %v", err)
	}
	writeFile(t, filepath.Join(toy, "classes.txt"), []byte("a\nb\n"))
	src, _ = Open("toy", Options{DataDir: data})
	if _, err := src.Split(Train); err == nil || !strings.Contains(err.Error(), "outside the 2 classes") {
		t.Errorf("labels beyond classes.txt: %v", err)
	}
	if _, err := Open(filepath.Join(data, "absent"), Options{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing path: %v", err)
	}
	// Default data dirs: ../shared/data/vision from the working directory and the repository root.
	t.Setenv(EnvDataDir, "")
	dirs := DataDirs(Options{})
	wd, _ := os.Getwd()
	if len(dirs) != 2 || dirs[0] != filepath.Join(wd, "..", "shared", "data", "vision") || !strings.HasSuffix(dirs[1], filepath.Join("shared", "data", "vision")) {
		t.Errorf("default data dirs %v", dirs)
	}
	for _, s := range []string{"train", "val", "validation", "test", "trainval"} {
		if _, err := ParseSplit(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseSplit("dev"); err == nil {
		t.Error("unknown split accepted")
	}
}
