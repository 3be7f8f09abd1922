package datasets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestTransform(t *testing.T) {
	d := toyDataset(t, 6) // image i: pixels 10·i, label i%3
	v, err := d.Transform(Transform{Name: "inv",
		Image: func(i int, src Image) (Image, error) {
			out := Image{Height: src.Height, Width: src.Width, Channels: src.Channels, Pix: make([]uint8, len(src.Pix))}
			for k, p := range src.Pix {
				out.Pix[k] = 255 - p + uint8(i)
			}
			return out, nil
		},
		Label: func(i, l int) int { return (l + i) % 3 }})
	if err != nil {
		t.Fatal(err)
	}
	if v.Name() != "toy+inv" || v.Len() != 6 || v.NumClasses() != 3 {
		t.Fatalf("view %s of %d examples, %d classes", v.Name(), v.Len(), v.NumClasses())
	}
	for i := range 6 {
		img, err := v.Image(i)
		if err != nil {
			t.Fatal(err)
		}
		if img.Pix[0] != uint8(255-10*i+i) || v.Label(i) != (i%3+i)%3 {
			t.Errorf("example %d: pixel %d label %d", i, img.Pix[0], v.Label(i))
		}
		orig, _ := d.Image(i)
		if orig.Pix[0] != uint8(10*i) {
			t.Errorf("the transform changed the stored image %d", i)
		}
	}
	// Subsets of the view index the view; batches read through it.
	s := v.Subset([]int{4, 1})
	if s.Label(0) != v.Label(4) || s.Label(1) != v.Label(1) {
		t.Errorf("subset labels %v", s.Labels())
	}
	it, err := v.Batches(identityNorm(2, Stretch, Bilinear), BatchOptions{BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for it.Next() {
		b := it.Batch()
		for k := range b.Size {
			i := b.Indices[k]
			if want := float32(255-10*i+i) / 255; b.Images[k*12] != want || int(b.Labels[k]) != v.Label(i) {
				t.Errorf("batch example %d: pixel %v label %d, want %v and %d", i, b.Images[k*12], b.Labels[k], want, v.Label(i))
			}
			seen++
		}
	}
	if it.Err() != nil || seen != 6 {
		t.Fatalf("batches over the view: %d examples, %v", seen, it.Err())
	}
	// Errors: labels out of range at once, image errors and size changes when read.
	if _, err := d.Transform(Transform{Name: "bad", Label: func(i, l int) int { return 3 }}); err == nil || !strings.Contains(err.Error(), "outside its 3 classes") {
		t.Errorf("label 3 of 3 classes: %v", err)
	}
	failing, _ := d.Transform(Transform{Name: "fail", Image: func(int, Image) (Image, error) { return Image{}, errors.New("boom") }})
	if _, err := failing.Image(0); err == nil || !strings.Contains(err.Error(), "fail: boom") {
		t.Errorf("failing transform: %v", err)
	}
	resized, _ := d.Transform(Transform{Name: "resize", Image: func(_ int, src Image) (Image, error) {
		return Image{Height: 1, Width: 1, Channels: 1, Pix: []uint8{0}}, nil
	}})
	if _, err := resized.Image(0); err == nil || !strings.Contains(err.Error(), "1×1×1") {
		t.Errorf("size-changing transform: %v", err)
	}
	if _, err := d.Transform(Transform{Channels: 2}); err == nil {
		t.Error("2 channels accepted")
	}
}

func TestEncodeIDXRoundTrip(t *testing.T) {
	for _, c := range []int{1, 3} {
		n, h, w := 5, 3, 4
		pix := make([]uint8, n*h*w*c)
		for i := range pix {
			pix[i] = uint8(i * 7)
		}
		labels := []int{0, 2, 1, 1, 0}
		d, err := FromPixels("rt", []string{"x", "y", "z"}, h, w, c, pix, labels)
		if err != nil {
			t.Fatal(err)
		}
		files, err := EncodeIDX(d, "test")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		back, err := Load(dir, Test, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(back.Classes(), d.Classes()) || !slices.Equal(back.Labels(), labels) {
			t.Errorf("%d channels: classes %v labels %v", c, back.Classes(), back.Labels())
		}
		for i := range n {
			a, _ := back.Image(i)
			b, _ := d.Image(i)
			if !bytes.Equal(a.Pix, b.Pix) || a.Channels != c {
				t.Errorf("%d channels: image %d differs", c, i)
			}
		}
	}
	if _, err := EncodeIDX(toyDataset(t, 2), "val"); err == nil {
		t.Error("EncodeIDX accepted set val")
	}
	var buf bytes.Buffer
	if err := WriteIDX(&buf, &IDX{Dims: []int{2, 2}, Data: []byte{1, 2, 3}}, false); err == nil {
		t.Error("WriteIDX accepted 3 bytes for 2×2")
	}
}
