package datasets

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// identityNorm preprocesses without normalization: values are level/255.
func identityNorm(size int, mode ResizeMode, interp Interpolation) Preprocess {
	return Preprocess{Size: size, Resize: mode, Interpolation: interp, Mean: [3]float32{}, Std: [3]float32{1, 1, 1}}
}

// levels converts level/255 values back to levels.
func levels(t *testing.T, v []float32) []int {
	t.Helper()
	out := make([]int, len(v))
	for i, x := range v {
		l := float64(x) * 255
		out[i] = int(math.Round(l))
		if math.Abs(l-float64(out[i])) > 1e-3 {
			t.Fatalf("value %v is not a level/255", x)
		}
	}
	return out
}

func TestPreprocessNormalizeByHand(t *testing.T) {
	// 2×2 RGB image, already 2×2: no resampling, only scaling and normalization.
	img := Image{Height: 2, Width: 2, Channels: 3, Pix: []uint8{
		0, 128, 255, 10, 20, 30,
		255, 255, 255, 1, 2, 3,
	}}
	for _, p := range []Preprocess{CLIP(2), ViT(2), {Size: 2, Mean: ImageNetMean, Std: ImageNetStd}} {
		got, err := p.Tensor(img)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range img.Pix {
			c := i % 3
			want := (float64(v)/255 - float64(p.Mean[c])) / float64(p.Std[c])
			if math.Abs(float64(got[i])-want) > 1e-6 {
				t.Errorf("mean %v: value %d = %v, want %v", p.Mean, i, got[i], want)
			}
		}
	}
	// Hand-computed: level 0 red under CLIP is -0.48145466/0.26862954 = -1.7922625;
	// level 255 blue is (1-0.40821073)/0.27577711 = 2.1458969; ViT maps 0 → -1, 255 → 1.
	clip, _ := CLIP(2).Tensor(img)
	vit, _ := ViT(2).Tensor(img)
	if math.Abs(float64(clip[0])+1.7922625) > 1e-6 || math.Abs(float64(clip[2])-2.1458969) > 1e-6 {
		t.Errorf("CLIP values %v %v", clip[0], clip[2])
	}
	if vit[0] != -1 || vit[2] != 1 || math.Abs(float64(vit[1])-(128.0/255-0.5)/0.5) > 1e-7 {
		t.Errorf("ViT values %v", vit[:3])
	}
	// Gray is replicated into the three channels.
	gray := Image{Height: 2, Width: 2, Channels: 1, Pix: []uint8{0, 51, 102, 255}}
	got, _ := CLIP(2).Tensor(gray)
	for i, v := range gray.Pix {
		for c := range 3 {
			want := (float64(v)/255 - float64(CLIPMean[c])) / float64(CLIPStd[c])
			if math.Abs(float64(got[3*i+c])-want) > 1e-6 {
				t.Errorf("gray pixel %d channel %d = %v, want %v", i, c, got[3*i+c], want)
			}
		}
	}
}

func TestPreprocessCenterCropByHand(t *testing.T) {
	// The short side is already Size: no resampling, only the crop, whose
	// offset is round-half-to-even((long-Size)/2) as Python's round.
	row := func(w int) Image {
		img := Image{Height: 2, Width: w, Channels: 1, Pix: make([]uint8, 2*w)}
		for y := range 2 {
			for x := range w {
				img.Pix[y*w+x] = uint8(10*x + y)
			}
		}
		return img
	}
	for _, c := range []struct{ w, left int }{{3, 0}, {4, 1}, {5, 2}, {7, 2}} { // 0.5→0, 1→1, 1.5→2, 2.5→2
		got, err := identityNorm(2, ShortSideCenterCrop, Bicubic).Tensor(row(c.w))
		if err != nil {
			t.Fatal(err)
		}
		l := levels(t, got)
		want := []int{10 * c.left, 10 * (c.left + 1), 10*c.left + 1, 10*(c.left+1) + 1}
		for i, w := range want {
			if l[3*i] != w || l[3*i+1] != w || l[3*i+2] != w {
				t.Errorf("width %d: pixel %d = %v, want %d", c.w, i, l[3*i:3*i+3], w)
			}
		}
	}
	// A tall image crops rows: 5×2, top = round(1.5) = 2.
	tall := Image{Height: 5, Width: 2, Channels: 1, Pix: []uint8{0, 1, 10, 11, 20, 21, 30, 31, 40, 41}}
	got, _ := identityNorm(2, ShortSideCenterCrop, Bilinear).Tensor(tall)
	if l := levels(t, got); l[0] != 20 || l[3] != 21 || l[6] != 30 || l[9] != 31 {
		t.Errorf("tall crop %v", l)
	}
}

func TestPreprocessResizeByHand(t *testing.T) {
	// 2×2 → 4×4 with each row [0, 200]. Destination column x samples source
	// coordinate (x+0.5)/2-0.5 = -0.25, 0.25, 0.75, 1.25; weights are
	// normalized over the pixels inside the kernel's support (as PIL does).
	img := Image{Height: 2, Width: 2, Channels: 1, Pix: []uint8{0, 200, 0, 200}}
	// Bilinear: -0.25 → pixel 0 only; 0.25 → 0.75·0 + 0.25·200 = 50; 0.75 → 150; 1.25 → 200.
	got, _ := identityNorm(4, Stretch, Bilinear).Tensor(img)
	l := levels(t, got)
	for y := range 4 {
		for x, w := range []int{0, 50, 150, 200} {
			if l[(y*4+x)*3] != w {
				t.Errorf("bilinear (%d,%d) = %d, want %d", y, x, l[(y*4+x)*3], w)
			}
		}
	}
	// Bicubic (Catmull-Rom, a = -0.5): k(0.25) = 1.5·0.25³ − 2.5·0.25² + 1 = 0.8671875,
	// k(0.75) = 0.2265625, k(1.25) = −0.5·1.25³ + 2.5·1.25² − 4·1.25 + 2 = −0.0703125.
	// x=0: 200·(−0.0703125)/(0.8671875−0.0703125) = −17.65 → 0 (clamped)
	// x=1: 200·0.2265625/(0.8671875+0.2265625) = 41.43
	// x=2: 200·0.8671875/1.09375 = 158.57
	// x=3: 200·0.8671875/0.796875 = 217.65
	// PIL rounds these to 0, 41, 159, 218; x/image/draw may land one level off.
	got, _ = identityNorm(4, Stretch, Bicubic).Tensor(img)
	l = levels(t, got)
	for x, w := range []float64{0, 41.43, 158.57, 217.65} {
		if math.Abs(float64(l[x*3])-w) > 1 {
			t.Errorf("bicubic column %d = %d, want %.2f ± 1", x, l[x*3], w)
		}
	}
}

// refResample resamples one channel as PIL does (separable, kernel widened
// by the scale when shrinking, weights normalized), in float64, rounded once.
func refResample(src []float64, h, w, dh, dw int, interp Interpolation) []float64 {
	k, support := func(t float64) float64 { return max(0, 1-t) }, 1.0
	if interp == Bicubic {
		k, support = func(t float64) float64 {
			if t < 1 {
				return (1.5*t-2.5)*t*t + 1
			} else if t < 2 {
				return ((-0.5*t+2.5)*t-4)*t + 2
			}
			return 0
		}, 2.0
	}
	pass := func(in []float64, n, out int, at func(i int) float64) []float64 {
		scale := float64(n) / float64(out)
		fs := max(scale, 1)
		res := make([]float64, out)
		for x := range out {
			center := (float64(x) + 0.5) * scale
			var sum, tw float64
			for i := range n {
				tt := math.Abs((float64(i) + 0.5 - center) / fs)
				if tt >= support {
					continue
				}
				wt := k(tt)
				sum += wt * at(i)
				tw += wt
			}
			res[x] = sum / tw
		}
		return res
	}
	tmp := make([]float64, h*dw)
	for y := range h {
		copy(tmp[y*dw:], pass(nil, w, dw, func(i int) float64 { return src[y*w+i] }))
	}
	out := make([]float64, dh*dw)
	for x := range dw {
		col := pass(nil, h, dh, func(i int) float64 { return tmp[i*dw+x] })
		for y := range dh {
			out[y*dw+x] = math.Round(min(255, max(0, col[y])))
		}
	}
	return out
}

func TestPreprocessMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		h, w, size int
		mode       ResizeMode
		interp     Interpolation
	}{
		{5, 5, 12, Stretch, Bicubic},             // upscale
		{16, 16, 5, Stretch, Bilinear},           // downscale
		{10, 7, 4, ShortSideCenterCrop, Bicubic}, // shrink to 5×4, crop rows 0..3 (round(0.5) = 0)
		{6, 9, 8, ShortSideCenterCrop, Bicubic},  // grow to 8×12, crop columns 2..9
		{3, 4, 10, Stretch, Bicubic},
	} {
		img := Image{Height: c.h, Width: c.w, Channels: 3, Pix: make([]uint8, c.h*c.w*3)}
		for i := range img.Pix {
			img.Pix[i] = uint8(r.IntN(256))
		}
		p := identityNorm(c.size, c.mode, c.interp)
		got, err := p.Tensor(img)
		if err != nil {
			t.Fatal(err)
		}
		l := levels(t, got)
		rh, rw, top, left := p.geometry(c.h, c.w)
		worst := 0.0
		for ch := range 3 {
			src := make([]float64, c.h*c.w)
			for i := range src {
				src[i] = float64(img.Pix[3*i+ch])
			}
			ref := refResample(src, c.h, c.w, rh, rw, c.interp)
			for y := range c.size {
				for x := range c.size {
					d := math.Abs(float64(l[(y*c.size+x)*3+ch]) - ref[(top+y)*rw+left+x])
					worst = max(worst, d)
				}
			}
		}
		if worst > 1 {
			t.Errorf("%d×%d → %d (%v, %v): differs from the PIL-style reference by %v levels", c.h, c.w, c.size, c.mode, c.interp, worst)
		}
	}
}

func TestPreprocessErrors(t *testing.T) {
	img := Image{Height: 2, Width: 2, Channels: 1, Pix: make([]uint8, 4)}
	for _, c := range []struct {
		p    Preprocess
		want string
	}{
		{Preprocess{Size: 0, Std: ViTStd}, "size 0"},
		{Preprocess{Size: 2}, "std[0] = 0"},
		{Preprocess{Size: 2, Std: ViTStd, Interpolation: 7}, "interpolation"},
		{Preprocess{Size: 2, Std: ViTStd, Resize: 9}, "resize mode"},
	} {
		if _, err := c.p.Tensor(img); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.p, err, c.want)
		}
	}
	if err := CLIP(2).Apply(img, make([]float32, 5)); err == nil {
		t.Error("short destination accepted")
	}
	if _, err := CLIP(2).Tensor(Image{Height: 2, Width: 2, Channels: 3, Pix: make([]uint8, 4)}); err == nil {
		t.Error("malformed image accepted")
	}
}

// TestResizeWeights checks the linear maps against Apply itself: applied
// to random images they give Apply's levels within one (Apply rounds to 8
// bits; the maps do not).
func TestResizeWeights(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		h, w, size int
		mode       ResizeMode
		interp     Interpolation
	}{
		{32, 32, 16, ShortSideCenterCrop, Bicubic},
		{28, 28, 16, ShortSideCenterCrop, Bicubic},
		{5, 5, 12, Stretch, Bicubic},
		{16, 16, 5, Stretch, Bilinear},
		{10, 7, 4, ShortSideCenterCrop, Bicubic},
		{6, 9, 8, ShortSideCenterCrop, Bicubic},
		{8, 8, 8, ShortSideCenterCrop, Bicubic},
		{9, 8, 8, ShortSideCenterCrop, Bicubic}, // no resample, only a crop
	} {
		p := identityNorm(c.size, c.mode, c.interp)
		rows, cols, err := p.ResizeWeights(c.h, c.w)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != c.size*c.h || len(cols) != c.size*c.w {
			t.Fatalf("%+v: %d row and %d column weights", c, len(rows), len(cols))
		}
		worst := 0.0
		for range 3 {
			img := Image{Height: c.h, Width: c.w, Channels: 3, Pix: make([]uint8, c.h*c.w*3)}
			for i := range img.Pix {
				img.Pix[i] = uint8(r.IntN(256))
			}
			got, err := p.Tensor(img)
			if err != nil {
				t.Fatal(err)
			}
			l := levels(t, got)
			for ch := range 3 {
				for y := range c.size {
					for x := range c.size {
						v := 0.0
						for i := range c.h {
							for j := range c.w {
								v += float64(rows[y*c.h+i]) * float64(img.Pix[(i*c.w+j)*3+ch]) * float64(cols[x*c.w+j])
							}
						}
						v = min(255, max(0, v))
						worst = max(worst, math.Abs(v-float64(l[(y*c.size+x)*3+ch])))
					}
				}
			}
		}
		if worst > 1 {
			t.Errorf("%d×%d → %d (%v, %v): the linear maps differ from Apply by %.3f levels", c.h, c.w, c.size, c.mode, c.interp, worst)
		}
	}
	if _, _, err := ViT(8).ResizeWeights(0, 3); err == nil {
		t.Error("a 0×3 image was accepted")
	}
}
