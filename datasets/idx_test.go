package datasets

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// idxBytes builds an IDX file: magic 0x0000 typ ndim, dims, data.
func idxBytes(typ byte, dims []int, data []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, typ, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, uint32(d))
	}
	b.Write(data)
	return b.Bytes()
}

func gzipBytes(t *testing.T, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func seq(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(i * 7)
	}
	return out
}

func TestReadIDXPlainAndGzip(t *testing.T) {
	dir := t.TempDir()
	dims := []int{5, 3, 2, 3}
	data := seq(5 * 3 * 2 * 3)
	raw := idxBytes(0x08, dims, data)
	for _, gz := range []bool{false, true} {
		content, name := raw, "x-idx4-ubyte"
		if gz {
			content, name = gzipBytes(t, raw), "x-idx4-ubyte.gz"
		}
		p := writeFile(t, filepath.Join(dir, name), content)
		x, err := ReadIDXFile(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(x.Dims, dims) || !bytes.Equal(x.Data, data) {
			t.Errorf("%s: got dims %v and %d bytes, want %v and %d", name, x.Dims, len(x.Data), dims, len(data))
		}
		// The same through a reader without a known size.
		y, err := ReadIDX(bytes.NewReader(content), name)
		if err != nil || !bytes.Equal(y.Data, data) {
			t.Errorf("ReadIDX %s: %v", name, err)
		}
	}
}

func TestReadIDXGrowsBuffer(t *testing.T) {
	// readN grows its buffer past the first allocation.
	data := seq(10_000)
	got, err := readN(bytes.NewReader(data), len(data))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("readN: %v", err)
	}
	got, err = readN(bytes.NewReader(data[:3000]), len(data))
	if err == nil || len(got) != 3000 {
		t.Fatalf("readN of a short stream: %d bytes, err %v", len(got), err)
	}
}

func TestReadIDXErrors(t *testing.T) {
	dir := t.TempDir()
	good := idxBytes(0x08, []int{4, 2, 2}, seq(16))
	cases := []struct {
		name    string
		content []byte
		want    []string // substrings of the error
	}{
		{"badmagic", []byte("hello, world: not an idx file"), []string{"bad magic number 0x68656c6c", "IDX"}},
		{"doublegz.gz", gzipBytes(t, gzipBytes(t, good)), []string{"bad magic", "gzipped twice"}},
		{"float.idx", idxBytes(0x0D, []int{2}, make([]byte, 8)), []string{"float32", "not supported", "uint8"}},
		{"unknowntype.idx", idxBytes(0x42, []int{2}, make([]byte, 2)), []string{"bad magic", "unknown IDX element type 0x42"}},
		{"zerodims.idx", []byte{0, 0, 8, 0}, []string{"bad magic"}},
		{"short", []byte{0, 0}, []string{"truncated", "too short"}},
		{"shortheader", []byte{0, 0, 8, 3, 0, 0, 0, 4}, []string{"truncated header", "3 dimensions"}},
		{"truncated", good[:len(good)-5], []string{"truncated", "[4 2 2] = 16 bytes", "holds 11", "download it again"}},
		{"truncated.gz", gzipBytes(t, good[:len(good)-5]), []string{"truncated", "[4 2 2] = 16 bytes", "holds 11"}},
		{"cutgzip.gz", gzipBytes(t, good)[:20], []string{"download"}},
		{"trailing", append(slices.Clone(good), 1, 2, 3), []string{"3 bytes after", "[4 2 2]"}},
		{"trailing.gz", gzipBytes(t, append(slices.Clone(good), 1, 2, 3)), []string{"3 bytes after"}},
		{"huge", idxBytes(0x08, []int{1 << 30, 1 << 30}, nil), []string{"GiB", "corrupt"}},
	}
	for _, c := range cases {
		p := writeFile(t, filepath.Join(dir, c.name), c.content)
		_, err := ReadIDXFile(p)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, p) {
			t.Errorf("%s: error does not name the file: %v", c.name, msg)
		}
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q lacks %q", c.name, msg, w)
			}
		}
	}
	// A gzip stream cut short, read through a reader (size unknown).
	if _, err := ReadIDX(bytes.NewReader(gzipBytes(t, good)[:25]), "cut.gz"); err == nil || !strings.Contains(err.Error(), "cut.gz") {
		t.Errorf("cut gzip stream: %v", err)
	}
}

func TestReadIDXImagesChecks(t *testing.T) {
	dir := t.TempDir()
	imgs := writeFile(t, filepath.Join(dir, "train-images-idx3-ubyte"), idxBytes(0x08, []int{3, 2, 2}, seq(12)))
	rgb := writeFile(t, filepath.Join(dir, "rgb-images-idx4-ubyte"), idxBytes(0x08, []int{3, 2, 2, 3}, seq(36)))
	labels := writeFile(t, filepath.Join(dir, "train-labels-idx1-ubyte"), idxBytes(0x08, []int{3}, []byte{2, 0, 1}))
	fewer := writeFile(t, filepath.Join(dir, "short-labels-idx1-ubyte"), idxBytes(0x08, []int{2}, []byte{2, 0}))
	bigLabel := writeFile(t, filepath.Join(dir, "big-labels-idx1-ubyte"), idxBytes(0x08, []int{3}, []byte{2, 0, 9}))
	fourDims := writeFile(t, filepath.Join(dir, "bad-images-idx4-ubyte"), idxBytes(0x08, []int{3, 2, 2, 2}, seq(24)))

	d, err := ReadIDXImages(imgs, labels, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 3 || d.Label(0) != 2 || d.NumClasses() != 3 {
		t.Fatalf("got len %d label0 %d classes %d", d.Len(), d.Label(0), d.NumClasses())
	}
	img, _ := d.Image(1)
	if img.Height != 2 || img.Width != 2 || img.Channels != 1 || !bytes.Equal(img.Pix, seq(12)[4:8]) {
		t.Errorf("image 1 = %+v", img)
	}
	d, err = ReadIDXImages(rgb, labels, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, w, c, ok := d.Shape(); !ok || h != 2 || w != 2 || c != 3 || !slices.Equal(d.Classes(), []string{"0", "1", "2"}) {
		t.Errorf("rgb: shape %d %d %d %v classes %v", h, w, c, ok, d.Classes())
	}
	if img, _ := d.Image(2); img.At(1, 1, 2) != seq(36)[24+11] {
		t.Errorf("rgb image 2 pixel (1,1,B) = %d", img.At(1, 1, 2))
	}

	for _, c := range []struct {
		images, labels string
		want           []string
	}{
		{imgs, fewer, []string{imgs, "has 3 images", fewer, "has 2 labels", "same dataset"}},
		{labels, labels, []string{labels, "[N,H,W]", "[3]", "labels file given as images"}},
		{imgs, imgs, []string{imgs, "labels must have dimensions [N]", "images file given as labels"}},
		{fourDims, labels, []string{fourDims, "[3 2 2 2]"}},
		{imgs, bigLabel, []string{bigLabel, "label 9 of example 2", "3 classes", "classes.txt"}},
	} {
		_, err := ReadIDXImages(c.images, c.labels, []string{"a", "b", "c"})
		if err == nil {
			t.Errorf("%s + %s: no error", c.images, c.labels)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
	}
}

func TestGroupFile(t *testing.T) {
	dir := t.TempDir()
	// A 10-image training set in 4 groups, with a test set.
	img := idxBytes(0x08, []int{10, 2, 2}, seq(40))
	lab := idxBytes(0x08, []int{10}, []byte{0, 1, 0, 1, 0, 1, 0, 1, 0, 1})
	writeFile(t, filepath.Join(dir, "train-images-idx3-ubyte"), img)
	writeFile(t, filepath.Join(dir, "train-labels-idx1-ubyte"), lab)
	writeFile(t, filepath.Join(dir, "test-images-idx3-ubyte"), idxBytes(0x08, []int{1, 2, 2}, seq(4)))
	writeFile(t, filepath.Join(dir, "test-labels-idx1-ubyte"), idxBytes(0x08, []int{1}, []byte{1}))
	var g bytes.Buffer
	for _, v := range []int32{-3, -3, 5, 5, 5, 70000, 70000, 2, 2, 2} {
		binary.Write(&g, binary.BigEndian, v)
	}
	gp := writeFile(t, filepath.Join(dir, "train-tracks-idx1-int.gz"), gzipBytes(t, idxBytes(0x0C, []int{10}, g.Bytes())))
	dims, vals, err := ReadIDXInt32File(gp)
	if err != nil || !slices.Equal(dims, []int{10}) || vals[0] != -3 || vals[5] != 70000 {
		t.Fatalf("ReadIDXInt32File: %v %v %v", dims, vals, err)
	}
	if _, err := ReadIDXFile(gp); err == nil || !strings.Contains(err.Error(), "int32") {
		t.Errorf("a group file read as images: %v", err)
	}
	if _, _, err := ReadIDXInt32File(filepath.Join(dir, "train-labels-idx1-ubyte")); err == nil || !strings.Contains(err.Error(), "group file must be int32") {
		t.Errorf("labels read as a group file: %v", err)
	}
	src, err := Open(dir, Options{ValidationFraction: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := src.Split(Train)
	val, _ := src.Split(Validation)
	if !val.HasGroups() || val.Len() < 2 || tr.Len()+val.Len() != 10 {
		t.Fatalf("train %d val %d", tr.Len(), val.Len())
	}
	inVal := map[int]bool{}
	for i := range val.Len() {
		g, _ := val.Group(i)
		inVal[g] = true
	}
	for i := range tr.Len() {
		if g, _ := tr.Group(i); inVal[g] {
			t.Errorf("group %d on both sides", g)
		}
	}
	if te, _ := src.Split(Test); te.HasGroups() {
		t.Error("the test set has no group file")
	}
	// Image by image when asked.
	byImage, _ := Open(dir, Options{ValidationFraction: 0.2, SplitByImage: true})
	v2, _ := byImage.Split(Validation)
	_, want := HoldOut(10, 0.2, 5000, 0)
	if v2.Len() != len(want) || v2.SourceIndex(0) != want[0] {
		t.Errorf("SplitByImage: %d examples, want HoldOut's %v", v2.Len(), want)
	}
	// A group file of the wrong length is an error naming it.
	writeFile(t, gp, gzipBytes(t, idxBytes(0x0C, []int{2}, g.Bytes()[:8])))
	bad, _ := Open(dir, Options{})
	if _, err := bad.Split(Validation); err == nil || !strings.Contains(err.Error(), gp) || !strings.Contains(err.Error(), "10 examples") {
		t.Errorf("short group file: %v", err)
	}
}
