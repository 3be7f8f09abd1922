package datasets

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"sync"

	"golang.org/x/image/draw"
)

// Interpolation selects the resampling kernel of the resize.
type Interpolation int

const (
	// Bicubic is x/image/draw's CatmullRom: the cubic convolution kernel with
	// a = -0.5, PIL's BICUBIC (which CLIP's preprocess uses), widened by the
	// scale factor when shrinking (antialiasing, as PIL does).
	Bicubic Interpolation = iota
	// Bilinear is x/image/draw's BiLinear (tent) kernel, PIL's BILINEAR
	// (Hugging Face ViTImageProcessor's default), also widened when shrinking.
	Bilinear
)

func (i Interpolation) String() string {
	switch i {
	case Bicubic:
		return "bicubic"
	case Bilinear:
		return "bilinear"
	}
	return fmt.Sprintf("Interpolation(%d)", int(i))
}

func (i Interpolation) kernel() *draw.Kernel {
	if i == Bilinear {
		return draw.BiLinear
	}
	return draw.CatmullRom
}

// ResizeMode says how an image becomes Size×Size.
type ResizeMode int

const (
	// ShortSideCenterCrop resizes the shorter side to Size, keeping the aspect
	// ratio (longer side int(Size·long/short)), then crops the central
	// Size×Size, the crop's offsets rounded half to even: torchvision's
	// Resize(Size) + CenterCrop(Size), as in CLIP's preprocess.
	ShortSideCenterCrop ResizeMode = iota
	// Stretch resizes to Size×Size ignoring the aspect ratio, as Hugging Face's
	// ViTImageProcessor does.
	Stretch
)

// Normalization constants (per RGB channel).
var (
	CLIPMean     = [3]float32{0.48145466, 0.4578275, 0.40821073}
	CLIPStd      = [3]float32{0.26862954, 0.26130258, 0.27577711}
	ViTMean      = [3]float32{0.5, 0.5, 0.5} // google/vit-* (ViTImageProcessor's image_mean)
	ViTStd       = [3]float32{0.5, 0.5, 0.5}
	ImageNetMean = [3]float32{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// Preprocess turns an Image into a float32 tensor of layout [Size, Size, 3]
// (height, width, RGB; channels last), as a model's preprocessing does:
//
//  1. resize (Resize, Interpolation) to Size×Size; the resized image is
//     8-bit, as PIL's is. An image already of the target size is not resampled;
//  2. gray images are replicated into R, G and B;
//  3. scale to [0, 1]: v/255 (float32), as torchvision's ToTensor;
//  4. normalize each channel: (v − Mean[c]) / Std[c] (float32 subtraction then
//     division, as torchvision's Normalize).
//
// x/image/draw keeps 16 bits a channel and truncates to 8 where PIL rounds,
// so resized pixels may differ from PIL's by one level; JPEG decoding may too.
type Preprocess struct {
	Size          int
	Resize        ResizeMode
	Interpolation Interpolation
	Mean, Std     [3]float32
}

// CLIP returns OpenAI CLIP's preprocess at the given size (224 for ViT-B/32):
// bicubic resize of the shorter side, center crop, CLIPMean/CLIPStd.
func CLIP(size int) Preprocess {
	return Preprocess{Size: size, Resize: ShortSideCenterCrop, Interpolation: Bicubic, Mean: CLIPMean, Std: CLIPStd}
}

// ViT returns Hugging Face ViTImageProcessor's preprocess (google/vit-*):
// bilinear resize to size×size, mean 0.5, std 0.5 (values in [-1, 1]).
func ViT(size int) Preprocess {
	return Preprocess{Size: size, Resize: Stretch, Interpolation: Bilinear, Mean: ViTMean, Std: ViTStd}
}

// Validate checks the settings.
func (p Preprocess) Validate() error {
	if p.Size <= 0 {
		return fmt.Errorf("datasets: preprocess size %d, want > 0", p.Size)
	}
	if p.Resize != ShortSideCenterCrop && p.Resize != Stretch {
		return fmt.Errorf("datasets: unknown resize mode %d", p.Resize)
	}
	if p.Interpolation != Bicubic && p.Interpolation != Bilinear {
		return fmt.Errorf("datasets: unknown interpolation %d", p.Interpolation)
	}
	for c, s := range p.Std {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("datasets: preprocess std[%d] = %v, want a positive number", c, s)
		}
	}
	return nil
}

// TensorLen is the number of float32 values of one preprocessed image.
func (p Preprocess) TensorLen() int { return p.Size * p.Size * 3 }

// Apply preprocesses img into dst, of length TensorLen(), layout [Size, Size, 3].
func (p Preprocess) Apply(img Image, dst []float32) error {
	pp, err := p.prepare()
	if err != nil {
		return err
	}
	return pp.apply(img, dst, nil)
}

// Tensor preprocesses img into a new slice of layout [Size, Size, 3].
func (p Preprocess) Tensor(img Image) ([]float32, error) {
	dst := make([]float32, p.TensorLen())
	if err := p.Apply(img, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// prepared is a validated Preprocess with its lookup table.
type prepared struct {
	Preprocess
	lut [3][256]float32 // lut[c][v] = (float32(v)/255 - Mean[c]) / Std[c]
}

func (p Preprocess) prepare() (*prepared, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	pp := &prepared{Preprocess: p}
	for c := range 3 {
		for v := range 256 {
			x := float32(v) / 255
			x -= p.Mean[c]
			pp.lut[c][v] = x / p.Std[c]
		}
	}
	return pp, nil
}

// geometry returns the resized size and the crop's top-left corner.
func (p Preprocess) geometry(h, w int) (rh, rw, top, left int) {
	s := p.Size
	if p.Resize == Stretch {
		return s, s, 0, 0
	}
	rh, rw = s, s
	if w > h {
		rw = s * w / h // int(s·long/short): the exact quotient, truncated
	} else if h > w {
		rh = s * h / w
	}
	top = int(math.RoundToEven(float64(rh-s) / 2))
	left = int(math.RoundToEven(float64(rw-s) / 2))
	return rh, rw, top, left
}

// apply preprocesses img into dst; scratch, when given, is reused for the
// resized RGBA image.
func (pp *prepared) apply(img Image, dst []float32, scratch *image.RGBA) error {
	if img.Channels != 1 && img.Channels != 3 || img.Height <= 0 || img.Width <= 0 || len(img.Pix) != img.Height*img.Width*img.Channels {
		return fmt.Errorf("datasets: preprocess: malformed image %d×%d×%d with %d bytes", img.Height, img.Width, img.Channels, len(img.Pix))
	}
	s := pp.Size
	if len(dst) != s*s*3 {
		return fmt.Errorf("datasets: preprocess: destination holds %d values, want %d = %d×%d×3", len(dst), s*s*3, s, s)
	}
	h, w := img.Height, img.Width
	rh, rw, top, left := pp.geometry(h, w)
	lr, lg, lb := &pp.lut[0], &pp.lut[1], &pp.lut[2]
	if rh == h && rw == w {
		c := img.Channels
		for y := range s {
			row := img.Pix[((top+y)*w+left)*c:]
			out := dst[y*s*3 : (y+1)*s*3]
			for x := range s {
				o := out[3*x : 3*x+3 : 3*x+3]
				if c == 1 {
					v := row[x]
					o[0], o[1], o[2] = lr[v], lg[v], lb[v]
				} else {
					px := row[3*x : 3*x+3 : 3*x+3]
					o[0], o[1], o[2] = lr[px[0]], lg[px[1]], lb[px[2]]
				}
			}
		}
		return nil
	}
	var src image.Image
	if img.Channels == 1 {
		src = &image.Gray{Pix: img.Pix, Stride: w, Rect: image.Rect(0, 0, w, h)}
	} else {
		src = img.Std()
	}
	out := scratch
	if out == nil || out.Rect.Dx() != s || out.Rect.Dy() != s {
		out = image.NewRGBA(image.Rect(0, 0, s, s))
	}
	// The resized image spans (-left, -top) … (rw-left, rh-top); the scaler
	// computes only the part inside out, the center crop.
	scalerFor(pp.Interpolation, rw, rh, w, h).Scale(out, image.Rect(-left, -top, rw-left, rh-top), src, src.Bounds(), draw.Src, nil)
	for i := range s * s {
		px := out.Pix[4*i : 4*i+3 : 4*i+3]
		o := dst[3*i : 3*i+3 : 3*i+3]
		o[0], o[1], o[2] = lr[px[0]], lg[px[1]], lb[px[2]]
	}
	return nil
}

// Scalers (weights precomputed, safe for concurrent use) are cached per size;
// the cache stops growing at maxScalers (image folders of many sizes).
const maxScalers = 64

type scalerKey struct {
	interp         Interpolation
	dw, dh, sw, sh int
}

var (
	scalersMu sync.Mutex
	scalers   = map[scalerKey]draw.Scaler{}
)

func scalerFor(interp Interpolation, dw, dh, sw, sh int) draw.Scaler {
	k := scalerKey{interp, dw, dh, sw, sh}
	scalersMu.Lock()
	defer scalersMu.Unlock()
	if sc, ok := scalers[k]; ok {
		return sc
	}
	if len(scalers) >= maxScalers {
		return interp.kernel()
	}
	sc := interp.kernel().NewScaler(dw, dh, sw, sh)
	scalers[k] = sc
	return sc
}

// ResizeWeights returns the resize and crop of Preprocess for h×w images as
// two linear maps, rows [Size, h] and cols [Size, w] (row-major): before
// the 8-bit rounding, resized[y][x] = Σ_i Σ_j rows[y][i]·img[i][j]·cols[x][j]
// for each channel, as the resampling is separable. They let a graph apply
// the model's resize to images it computes (trigger inversion). The weights
// are x/image/draw's own, measured by resizing basis images with 16-bit
// precision (about 6e-5 each); an image already of the target size gives
// identity maps, as Apply does not resample it.
func (p Preprocess) ResizeWeights(h, w int) (rows, cols []float32, err error) {
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	if h <= 0 || w <= 0 {
		return nil, nil, fmt.Errorf("datasets: resize weights of a %d×%d image", h, w)
	}
	rh, rw, top, left := p.geometry(h, w)
	s := p.Size
	if rh == h && rw == w {
		return identityMap(s, h, top), identityMap(s, w, left), nil
	}
	return axisWeights(p.Interpolation, h, rh, top, s), axisWeights(p.Interpolation, w, rw, left, s), nil
}

// identityMap selects n of m positions from off: [n, m].
func identityMap(n, m, off int) []float32 {
	out := make([]float32, n*m)
	for i := range n {
		out[i*m+off+i] = 1
	}
	return out
}

// axisWeights measures the resampling of one axis from n to r positions,
// keeping r's positions off … off+s−1: [s, n]. Each source position is
// resized alone as a 1-pixel-high image: background 0x8000 and 0xC000 at
// the position, so weights in [−2, 2) stay in range (Catmull-Rom's are
// negative near the center's neighbours and exceed 1 at the borders).
func axisWeights(interp Interpolation, n, r, off, s int) []float32 {
	const bg, amp = 0x8000, 0x4000
	out := make([]float32, s*n)
	src := image.NewGray16(image.Rect(0, 0, n, 1))
	dst := image.NewRGBA64(image.Rect(0, 0, r, 1))
	sc := interp.kernel().NewScaler(r, 1, n, 1)
	for j := range n {
		for i := range n {
			v := uint16(bg)
			if i == j {
				v = bg + amp
			}
			src.SetGray16(i, 0, color.Gray16{Y: v})
		}
		sc.Scale(dst, dst.Rect, src, src.Rect, draw.Src, nil)
		for y := range s {
			out[y*n+j] = float32((float64(dst.RGBA64At(off+y, 0).R) - bg) / amp)
		}
	}
	return out
}
