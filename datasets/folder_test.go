package datasets

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spakin/netpbm"
)

func encodeFile(t *testing.T, path string, m image.Image) {
	t.Helper()
	var b bytes.Buffer
	var err error
	switch filepath.Ext(path) {
	case ".png":
		err = png.Encode(&b, m)
	case ".jpg", ".JPG":
		err = jpeg.Encode(&b, m, &jpeg.Options{Quality: 100})
	case ".ppm":
		err = netpbm.Encode(&b, m, &netpbm.EncodeOptions{Format: netpbm.PPM, MaxValue: 255})
	case ".pgm":
		err = netpbm.Encode(&b, m, &netpbm.EncodeOptions{Format: netpbm.PGM, MaxValue: 255})
	}
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b.Bytes())
}

// rgbImage is a w×h RGBA image whose pixel (x, y) is (10x+1, 10y+2, x+y+3).
func rgbImage(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.Set(x, y, color.RGBA{uint8(10*x + 1), uint8(10*y + 2), uint8(x + y + 3), 255})
		}
	}
	return m
}

func checkRGB(t *testing.T, what string, img Image, w, h int) {
	t.Helper()
	if img.Width != w || img.Height != h || img.Channels != 3 {
		t.Fatalf("%s: %d×%d×%d, want %d×%d×3", what, img.Height, img.Width, img.Channels, h, w)
	}
	for y := range h {
		for x := range w {
			want := []uint8{uint8(10*x + 1), uint8(10*y + 2), uint8(x + y + 3)}
			for c := range 3 {
				if img.At(y, x, c) != want[c] {
					t.Fatalf("%s: pixel (%d,%d) = %v, want %v", what, x, y, img.Pix[(y*w+x)*3:(y*w+x)*3+3], want)
				}
			}
		}
	}
}

// makeFolderDataset writes train/{cat,dog} and test/dog image folders.
func makeFolderDataset(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "pets")
	encodeFile(t, filepath.Join(dir, "train", "cat", "a.png"), rgbImage(3, 2))
	encodeFile(t, filepath.Join(dir, "train", "cat", "b.ppm"), rgbImage(4, 5))
	writeFile(t, filepath.Join(dir, "train", "cat", "README.txt"), []byte("not an image"))
	writeFile(t, filepath.Join(dir, "train", "cat", ".hidden.png"), []byte("ignored"))
	flat := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for i := 0; i < len(flat.Pix); i += 4 {
		copy(flat.Pix[i:], []uint8{200, 100, 50, 255})
	}
	encodeFile(t, filepath.Join(dir, "train", "dog", "c.JPG"), flat)
	gray := image.NewGray(image.Rect(0, 0, 2, 3))
	copy(gray.Pix, []uint8{0, 1, 2, 3, 4, 250})
	encodeFile(t, filepath.Join(dir, "test", "dog", "d.pgm"), gray)
	return dir
}

func TestImageFolderDataset(t *testing.T) {
	dir := makeFolderDataset(t)
	src, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if src.Format != "folders" || src.Name != "pets" || !slices.Equal(src.Classes, []string{"cat", "dog"}) {
		t.Fatalf("format %q name %q classes %v", src.Format, src.Name, src.Classes)
	}
	train, err := src.Split(TrainVal)
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != 3 || !slices.Equal(train.Labels(), []int{0, 0, 1}) {
		t.Fatalf("train: %d examples, labels %v", train.Len(), train.Labels())
	}
	if _, _, _, ok := train.Shape(); ok {
		t.Error("image folders report a common shape")
	}
	img, err := train.Image(0)
	if err != nil {
		t.Fatal(err)
	}
	checkRGB(t, "png", img, 3, 2)
	img, err = train.Image(1)
	if err != nil {
		t.Fatal(err)
	}
	checkRGB(t, "ppm", img, 4, 5)
	img, err = train.Image(2)
	if err != nil {
		t.Fatal(err)
	}
	if img.Channels != 3 || img.Width != 16 {
		t.Fatalf("jpeg: %d×%d×%d", img.Height, img.Width, img.Channels)
	}
	for i, want := range []int{200, 100, 50} {
		if d := int(img.At(7, 7, i)) - want; d < -3 || d > 3 {
			t.Errorf("jpeg channel %d = %d, want %d ± 3", i, img.At(7, 7, i), want)
		}
	}
	// test/ lacks cat/: dog keeps label 1 (classes are the union, sorted).
	test, err := src.Split(Test)
	if err != nil {
		t.Fatal(err)
	}
	if test.Len() != 1 || test.Label(0) != 1 {
		t.Fatalf("test: %d examples, labels %v", test.Len(), test.Labels())
	}
	img, _ = test.Image(0)
	if img.Channels != 1 || img.Height != 3 || img.Width != 2 || !slices.Equal(img.Pix, []uint8{0, 1, 2, 3, 4, 250}) {
		t.Errorf("pgm: %+v", img)
	}
	// A batch over the folder's mixed sizes and formats.
	it, err := train.Batches(CLIP(4), BatchOptions{BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	for it.Next() {
	}
	if it.Err() != nil {
		t.Error(it.Err())
	}
}

func TestImageFolderClassesFile(t *testing.T) {
	dir := makeFolderDataset(t)
	writeFile(t, filepath.Join(dir, "classes.txt"), []byte("dog\ncat\n\n"))
	src, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	train, _ := src.Split(TrainVal)
	if !slices.Equal(src.Classes, []string{"dog", "cat"}) || !slices.Equal(train.Labels(), []int{1, 1, 0}) {
		t.Errorf("classes %v labels %v", src.Classes, train.Labels())
	}
	// Folders named by class index (as GTSRB's 00000 … 00042).
	if err := os.Rename(filepath.Join(dir, "train", "cat"), filepath.Join(dir, "train", "00001")); err != nil {
		t.Fatal(err)
	}
	src, _ = Open(dir, Options{})
	train, err = src.Split(TrainVal)
	if err != nil || !slices.Equal(train.Labels(), []int{1, 1, 0}) { // folders sorted: 00001, dog
		t.Errorf("index folders: labels %v, err %v", train.Labels(), err)
	}
	// A folder that is neither.
	if err := os.Rename(filepath.Join(dir, "train", "00001"), filepath.Join(dir, "train", "horse")); err != nil {
		t.Fatal(err)
	}
	src, _ = Open(dir, Options{})
	if _, err := src.Split(Train); err == nil || !strings.Contains(err.Error(), `"horse"`) || !strings.Contains(err.Error(), "classes.txt") {
		t.Errorf("unknown class folder: %v", err)
	}
	// ReadImageFolder on one split folder.
	d, err := ReadImageFolder(filepath.Join(dir, "train"), nil)
	if err != nil || !slices.Equal(d.Classes(), []string{"dog", "horse"}) || d.Len() != 3 {
		t.Errorf("ReadImageFolder: %v %v", d, err)
	}
}

func TestImageFileDecoding(t *testing.T) {
	dir := t.TempDir()
	// PNG with alpha: dropped, not composited (PIL's convert("RGB")).
	nrgba := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	nrgba.Pix = []uint8{10, 20, 30, 128}
	encodeFile(t, filepath.Join(dir, "alpha.png"), nrgba)
	// 16-bit gray PNG: scaled to 8 bits, 1 channel.
	g16 := image.NewGray16(image.Rect(0, 0, 1, 1))
	g16.SetGray16(0, 0, color.Gray16{0x8080})
	encodeFile(t, filepath.Join(dir, "g16.png"), g16)
	// PPM with maximum value 15: scaled to 0…255.
	writeFile(t, filepath.Join(dir, "m15.ppm"), []byte("P6\n2 1\n15\n\x0f\x00\x07\x00\x0f\x00"))
	for _, c := range []struct {
		file string
		want []uint8
	}{
		{"alpha.png", []uint8{10, 20, 30}},
		{"g16.png", []uint8{0x80}},
		{"m15.ppm", []uint8{255, 0, 119, 0, 255, 0}},
	} {
		img, err := ReadImageFile(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range c.want {
			if d := int(img.Pix[i]) - int(w); d < -1 || d > 1 || len(img.Pix) != len(c.want) {
				t.Errorf("%s: pixels %v, want %v", c.file, img.Pix, c.want)
				break
			}
		}
	}
	bad := writeFile(t, filepath.Join(dir, "broken.png"), []byte("\x89PNG\r\n\x1a\nbroken"))
	if _, err := ReadImageFile(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("broken png: %v", err)
	}
	// A broken file in a folder dataset surfaces from Image and from batches.
	root := makeFolderDataset(t)
	writeFile(t, filepath.Join(root, "train", "dog", "z.png"), []byte("garbage"))
	train, err := Load(root, TrainVal, Options{})
	if err != nil {
		t.Fatal(err)
	}
	it, _ := train.Batches(ViT(4), BatchOptions{BatchSize: 8})
	if it.Next() || it.Err() == nil || !strings.Contains(it.Err().Error(), "z.png") {
		t.Errorf("broken file in a batch: %v", it.Err())
	}
	// Empty class folder.
	if err := os.MkdirAll(filepath.Join(root, "train", "emu"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(root, Train, Options{}); err == nil || !strings.Contains(err.Error(), "emu") {
		t.Errorf("empty class folder: %v", err)
	}
}
