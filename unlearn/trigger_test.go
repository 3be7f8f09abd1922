package unlearn

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
)

// flat returns an h×w×c image with every value v.
func flat(h, w, c int, v uint8) datasets.Image {
	pix := make([]uint8, h*w*c)
	for i := range pix {
		pix[i] = v
	}
	return datasets.Image{Height: h, Width: w, Channels: c, Pix: pix}
}

func mustParse(t *testing.T, spec string) Trigger {
	t.Helper()
	tr, err := ParseTrigger(spec)
	if err != nil {
		t.Fatalf("ParseTrigger(%q): %v", spec, err)
	}
	return tr
}

func mustApply(t *testing.T, tr Trigger, i int, img datasets.Image) datasets.Image {
	t.Helper()
	before := slices.Clone(img.Pix)
	out, err := tr.Apply(i, img)
	if err != nil {
		t.Fatalf("%s: %v", tr, err)
	}
	if !bytes.Equal(before, img.Pix) {
		t.Fatalf("%s modified its input", tr)
	}
	return out
}

func TestBadNetsPixelsByHand(t *testing.T) {
	// 32×32 gray, default: a 3×3 checkerboard in the bottom-right corner.
	out := mustApply(t, mustParse(t, "badnets"), 0, flat(32, 32, 1, 100))
	for y := range 32 {
		for x := range 32 {
			want := uint8(100)
			if y >= 29 && x >= 29 {
				want = 0
				if (y-29+x-29)%2 == 0 {
					want = 255
				}
			}
			if got := out.Pix[y*32+x]; got != want {
				t.Fatalf("default badnets pixel (%d,%d) = %d, want %d", y, x, got, want)
			}
		}
	}
	// The default size scales with the shorter side: 3·8/32 rounds to 1,
	// 3·64/32 = 6, 3·224/32 = 21.
	b := &BadNets{Pos: "br", Pattern: "white"}
	for _, c := range []struct{ h, w, want int }{{8, 8, 1}, {64, 80, 6}, {224, 224, 21}, {28, 28, 3}} {
		if got := b.PatchSize(c.h, c.w); got != c.want {
			t.Errorf("patch size on %d×%d = %d, want %d", c.h, c.w, got, c.want)
		}
	}
	// A white 2×2 patch at the top-left of a 4×5 RGB image.
	out = mustApply(t, mustParse(t, "badnets:size=2,pos=tl,pattern=white"), 0, flat(4, 5, 3, 7))
	for y := range 4 {
		for x := range 5 {
			for c := range 3 {
				want := uint8(7)
				if y < 2 && x < 2 {
					want = 255
				}
				if got := out.At(y, x, c); got != want {
					t.Fatalf("tl white (%d,%d,%d) = %d, want %d", y, x, c, got, want)
				}
			}
		}
	}
	// bl and tr corners.
	for spec, corner := range map[string][2]int{"badnets:size=1,pos=bl,pattern=white": {3, 0}, "badnets:size=1,pos=tr,pattern=white": {0, 4}} {
		out := mustApply(t, mustParse(t, spec), 0, flat(4, 5, 1, 0))
		for y := range 4 {
			for x := range 5 {
				want := uint8(0)
				if y == corner[0] && x == corner[1] {
					want = 255
				}
				if out.Pix[y*5+x] != want {
					t.Errorf("%s: pixel (%d,%d) = %d", spec, y, x, out.Pix[y*5+x])
				}
			}
		}
	}
}

func TestBadNetsRandom(t *testing.T) {
	tr := mustParse(t, "badnets:size=3,pos=random,pattern=random,seed=5")
	b := tr.(*BadNets)
	seen := map[[2]int]bool{}
	var pattern []uint8
	for i := range 50 {
		out := mustApply(t, tr, i, flat(16, 16, 3, 0))
		y0, x0 := b.Position(i, 16, 16, 3)
		if y0 < 0 || x0 < 0 || y0+3 > 16 || x0+3 > 16 {
			t.Fatalf("image %d: patch at (%d,%d) does not fit", i, y0, x0)
		}
		seen[[2]int{y0, x0}] = true
		var p []uint8
		for dy := range 3 {
			p = append(p, out.Pix[((y0+dy)*16+x0)*3:((y0+dy)*16+x0+3)*3]...)
		}
		if pattern == nil {
			pattern = p
		} else if !bytes.Equal(p, pattern) {
			t.Fatalf("image %d: the random pattern differs from image 0's", i)
		}
		again := mustApply(t, tr, i, flat(16, 16, 3, 0))
		if !bytes.Equal(out.Pix, again.Pix) {
			t.Fatalf("image %d: two applications differ", i)
		}
	}
	if len(seen) < 20 {
		t.Errorf("50 random positions hit only %d places", len(seen))
	}
	other := mustApply(t, mustParse(t, "badnets:size=3,pos=random,pattern=random,seed=6"), 0, flat(16, 16, 3, 0))
	first := mustApply(t, tr, 0, flat(16, 16, 3, 0))
	if bytes.Equal(other.Pix, first.Pix) {
		t.Error("seeds 5 and 6 give the same triggered image")
	}
}

func TestBlendedByHand(t *testing.T) {
	img := datasets.Image{Height: 2, Width: 2, Channels: 1, Pix: []uint8{0, 100, 200, 255}}
	// ratio 1 gives the pattern itself; then ratio 0.2 must be the blend.
	p := mustApply(t, mustParse(t, "blended:ratio=1,seed=3"), 0, img).Pix
	out := mustApply(t, mustParse(t, "blended:ratio=0.2,seed=3"), 0, img)
	for k, x := range img.Pix {
		if want := uint8(math.Round(0.8*float64(x) + 0.2*float64(p[k]))); out.Pix[k] != want {
			t.Errorf("pixel %d: %d, want round(0.8·%d + 0.2·%d) = %d", k, out.Pix[k], x, p[k], want)
		}
	}
	if z := mustApply(t, mustParse(t, "blended:ratio=0,seed=3"), 0, img); !bytes.Equal(z.Pix, img.Pix) {
		t.Error("ratio 0 changed the image")
	}
	// A pattern image of the input's size is used as it is.
	dir := t.TempDir()
	pat := image.NewRGBA(image.Rect(0, 0, 2, 2))
	cols := []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {10, 20, 30, 255}}
	for i, c := range cols {
		pat.Set(i%2, i/2, c)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, pat); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "pattern.png")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	rgb := flat(2, 2, 3, 100)
	out = mustApply(t, mustParse(t, "blended:ratio=0.5,image="+file), 0, rgb)
	for i, c := range cols {
		for ch, v := range []uint8{c.R, c.G, c.B} {
			if want := uint8(math.Round(50 + 0.5*float64(v))); out.Pix[3*i+ch] != want {
				t.Errorf("image pattern pixel %d channel %d = %d, want %d", i, ch, out.Pix[3*i+ch], want)
			}
		}
	}
}

func TestWaNetIdentityAtZeroStrength(t *testing.T) {
	img := datasets.Image{Height: 9, Width: 7, Channels: 3, Pix: make([]uint8, 9*7*3)}
	for i := range img.Pix {
		img.Pix[i] = uint8(37 * i)
	}
	out := mustApply(t, mustParse(t, "wanet:k=4,s=0,seed=2"), 0, img)
	if !bytes.Equal(out.Pix, img.Pix) {
		t.Error("wanet with s=0 changed the image")
	}
	// The control grid is normalized to mean |value| 1.
	ins := (&WaNet{K: 4, S: 0.5, Seed: 9}).ControlGrid()
	s := 0.0
	for _, v := range ins {
		s += math.Abs(v)
	}
	if math.Abs(s/float64(len(ins))-1) > 1e-12 {
		t.Errorf("control grid mean |value| = %v, want 1", s/float64(len(ins)))
	}
	a := mustApply(t, mustParse(t, "wanet:seed=1"), 0, img)
	b := mustApply(t, mustParse(t, "wanet:seed=1"), 0, img)
	c := mustApply(t, mustParse(t, "wanet:seed=2"), 0, img)
	if !bytes.Equal(a.Pix, b.Pix) || bytes.Equal(a.Pix, c.Pix) {
		t.Error("wanet is not determined by its seed")
	}
}

// TestWaNetMatchesTorch compares the upsampling, grid and warp with
// PyTorch's (tools/torchref/wanet.py wrote testdata/wanet.safetensors).
func TestWaNetMatchesTorch(t *testing.T) {
	ck, err := checkpoint.Open("testdata/wanet.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	read := func(name string) []float64 {
		v, _, err := ck.ReadFloat32(name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	const k, h = 4, 12
	ins, noise, noise2, img, warped := read("ins"), read("noise"), read("noise_nonsquare"), read("image"), read("warped")
	worst := func(got []float64, want []float64) float64 {
		d := 0.0
		for i := range got {
			d = max(d, math.Abs(got[i]-want[i]))
		}
		return d
	}
	for ch := range 2 {
		up := bicubicUpsample(ins[ch*k*k:(ch+1)*k*k], k, k, h, h)
		want := make([]float64, h*h)
		for i := range want {
			want[i] = noise[2*i+ch]
		}
		if d := worst(up, want); d > 1e-5 {
			t.Errorf("bicubic upsampling, channel %d: max difference %g from torch", ch, d)
		}
		up = bicubicUpsample(ins[ch*k*k:(ch+1)*k*k], k, k, 10, 14)
		want = make([]float64, 10*14)
		for i := range want {
			want[i] = noise2[2*i+ch]
		}
		if d := worst(up, want); d > 1e-5 {
			t.Errorf("bicubic upsampling to 10×14, channel %d: max difference %g from torch", ch, d)
		}
	}
	grid := warpGrid(ins, k, h, h, 0.5)
	got := gridSample(img, h, h, 3, grid, h, h)
	if d := worst(got, warped); d > 1e-3 {
		t.Errorf("warped image: max difference %g levels from torch", d)
	}
	// Through the Trigger: torch's values rounded.
	tr := &WaNet{K: k, S: 0.5}
	tr.grids = map[[2]int][]float64{{h, h}: grid}
	src := datasets.Image{Height: h, Width: h, Channels: 3, Pix: make([]uint8, len(img))}
	for i, v := range img {
		src.Pix[i] = uint8(v)
	}
	out := mustApply(t, tr, 0, src)
	for i, v := range warped {
		if d := math.Abs(float64(out.Pix[i]) - v); d > 0.5+1e-3 {
			t.Fatalf("value %d: %d, torch %.3f", i, out.Pix[i], v)
		}
	}
}

func TestInvertedTrigger(t *testing.T) {
	tr := &Inverted{H: 2, W: 2, Mask: []float32{0, 1, 0.5, 0.25}, Pattern: make([]float32, 12)}
	for i := range tr.Pattern {
		tr.Pattern[i] = 200
	}
	path := filepath.Join(t.TempDir(), "trigger.safetensors")
	if err := tr.Save(path, map[string]string{"editkit.pl1": "0.4375"}, nil, false); err != nil {
		t.Fatal(err)
	}
	back := mustParse(t, "inverted:"+path).(*Inverted)
	if back.H != 2 || back.W != 2 || !slices.Equal(back.Mask, tr.Mask) || !slices.Equal(back.Pattern, tr.Pattern) || back.Metadata["editkit.pl1"] != "0.4375" {
		t.Fatalf("round trip: %+v", back)
	}
	if got := back.PL1(); got != 0.4375 {
		t.Errorf("PL1 = %v, want 0.4375", got)
	}
	// Gray 100 becomes RGB: (1−m)·100 + m·200.
	out := mustApply(t, back, 0, flat(2, 2, 1, 100))
	for i, want := range []uint8{100, 200, 150, 125} {
		for c := range 3 {
			if out.Pix[3*i+c] != want {
				t.Errorf("pixel %d channel %d = %d, want %d", i, c, out.Pix[3*i+c], want)
			}
		}
	}
	if _, err := back.Apply(0, flat(3, 2, 3, 0)); err == nil || !strings.Contains(err.Error(), "2×2") {
		t.Errorf("a 3×2 image: %v", err)
	}
	if err := tr.Save(path, nil, nil, false); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("saving over an existing file without force: %v", err)
	}
	bad := &Inverted{H: 2, W: 2, Mask: []float32{0, 2, 0, 0}, Pattern: tr.Pattern}
	if err := bad.Save(filepath.Join(t.TempDir(), "bad.safetensors"), nil, nil, false); err == nil || !strings.Contains(err.Error(), "outside [0, 1]") {
		t.Errorf("a mask value of 2: %v", err)
	}
}

func TestParseTrigger(t *testing.T) {
	for _, spec := range []string{"badnets", "badnets:size=4,pos=random,pattern=white,seed=3", "blended", "blended:ratio=0.3,seed=2", "wanet", "wanet:k=8,s=1,seed=4"} {
		tr := mustParse(t, spec)
		again := mustParse(t, tr.String())
		if again.String() != tr.String() {
			t.Errorf("%s: String %q reads back as %q", spec, tr.String(), again.String())
		}
	}
	if s := mustParse(t, "BadNets").String(); s != "badnets:pos=br,pattern=checker,seed=0" {
		t.Errorf("default badnets spec %q", s)
	}
	for spec, want := range map[string]string{
		"trojan":                        "unknown trigger",
		"badnets:color=red":             "unknown parameter color",
		"badnets:size=0":                "size=0",
		"badnets:pos=middle":            "want one of br, bl, tr, tl, random",
		"badnets:size=3,size=4":         "given twice",
		"badnets:size":                  "not key=value",
		"blended:ratio=1.5":             "in [0, 1]",
		"blended:ratio=-0.1":            "in [0, 1]",
		"blended:ratio=nan":             "in [0, 1]",
		"blended:seed=1,image=x.png":    "not both",
		"blended:image=/no/such/file":   "no/such/file",
		"wanet:k=0":                     "k=0",
		"wanet:s=-1":                    "s=-1",
		"wanet:seed=-2":                 "seed=-2",
		"inverted":                      "inverted:FILE",
		"inverted:/no/such.safetensors": "no/such.safetensors",
	} {
		_, err := ParseTrigger(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTrigger(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
	// A patch larger than the image.
	tr := mustParse(t, "badnets:size=5")
	if err := tr.Check(4, 8, 3); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Errorf("5-pixel patch on 4×8: %v", err)
	}
	if _, err := tr.Apply(0, flat(4, 8, 3, 0)); err == nil {
		t.Error("Apply of a 5-pixel patch on a 4×8 image did not fail")
	}
}
