package unlearn

import (
	"errors"
	"fmt"
	"image"
	"maps"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/image/draw"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
)

// Trigger is a backdoor trigger: a deterministic rewrite of raw images
// (uint8, before the model's preprocessing). See the package doc for each
// kind and its defaults.
type Trigger interface {
	// String returns the trigger's spec with every parameter spelled out,
	// which ParseTrigger reads back to the same trigger.
	String() string
	// Check reports why the trigger cannot rewrite images of h×w pixels
	// with c channels, if it cannot.
	Check(h, w, c int) error
	// Apply returns image i with the trigger, as a new image; src is left
	// as it is. i matters only to triggers drawn per image (badnets'
	// random position).
	Apply(i int, src datasets.Image) (datasets.Image, error)
}

// TriggerNames lists the trigger kinds ParseTrigger knows.
var TriggerNames = []string{"badnets", "blended", "wanet", "inverted"}

// ParseTrigger reads a trigger spec: a kind, optionally followed by ':' and
// comma-separated key=value parameters (badnets, blended, wanet), or
// "inverted:FILE". Unknown kinds or parameters, repeated parameters and
// values out of range are errors that say what is accepted.
func ParseTrigger(spec string) (Trigger, error) {
	spec = strings.TrimSpace(spec)
	kind, rest, hasParams := strings.Cut(spec, ":")
	kind = strings.ToLower(strings.TrimSpace(kind))
	if kind == "inverted" {
		if !hasParams || strings.TrimSpace(rest) == "" {
			return nil, errors.New("trigger inverted: give the file written by 'editkit unlearn invert', as inverted:FILE")
		}
		return LoadInverted(strings.TrimSpace(rest))
	}
	params := map[string]string{}
	if hasParams {
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			k = strings.ToLower(strings.TrimSpace(k))
			if !ok || k == "" {
				return nil, fmt.Errorf("trigger %s: %q is not key=value", kind, kv)
			}
			if _, dup := params[k]; dup {
				return nil, fmt.Errorf("trigger %s: parameter %s given twice", kind, k)
			}
			params[k] = strings.TrimSpace(v)
		}
	}
	p := &paramReader{kind: kind, params: params}
	var t Trigger
	switch kind {
	case "badnets":
		b := &BadNets{Pos: "br", Pattern: "checker"}
		b.Size = p.int("size", 0, 1)
		b.Pos = p.oneOf("pos", b.Pos, "br", "bl", "tr", "tl", "random")
		b.Pattern = p.oneOf("pattern", b.Pattern, "white", "checker", "random")
		b.Seed = p.seed()
		t = b
	case "blended":
		b := &Blended{Ratio: 0.2}
		b.Ratio = p.float("ratio", b.Ratio, 0, 1)
		_, hasSeed := params["seed"]
		b.Seed = p.seed()
		if file, ok := params["image"]; ok {
			delete(params, "image")
			if hasSeed {
				return nil, errors.New("trigger blended: give seed=N (a noise pattern) or image=FILE, not both")
			}
			img, err := datasets.ReadImageFile(file)
			if err != nil {
				return nil, fmt.Errorf("trigger blended image=%s: %w", file, err)
			}
			b.File, b.Image = file, &img
		}
		t = b
	case "wanet":
		wn := &WaNet{K: 4, S: 0.5}
		wn.K = p.int("k", wn.K, 1)
		wn.S = p.float("s", wn.S, 0, math.Inf(1))
		wn.Seed = p.seed()
		t = wn
	default:
		return nil, fmt.Errorf("unknown trigger %q: use one of %s (e.g. badnets, blended:ratio=0.2, wanet:k=4,s=0.5, inverted:FILE)", kind, strings.Join(TriggerNames, ", "))
	}
	if p.err != nil {
		return nil, p.err
	}
	if len(params) > 0 {
		return nil, fmt.Errorf("trigger %s: unknown parameter %s (it takes %s)", kind, strings.Join(slices.Sorted(maps.Keys(params)), ", "), strings.Join(p.known, ", "))
	}
	return t, nil
}

// paramReader takes the parameters of a spec one by one, keeping the first
// error; what is left afterwards is unknown.
type paramReader struct {
	kind   string
	params map[string]string
	known  []string
	err    error
}

func (p *paramReader) take(key string) (string, bool) {
	p.known = append(p.known, key)
	v, ok := p.params[key]
	delete(p.params, key)
	return v, ok
}

func (p *paramReader) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("trigger %s: "+format, append([]any{p.kind}, args...)...)
	}
}

func (p *paramReader) int(key string, def, lo int) int {
	v, ok := p.take(key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo {
		p.fail("%s=%s: want an integer ≥ %d", key, v, lo)
	}
	return n
}

func (p *paramReader) float(key string, def, lo, hi float64) float64 {
	v, ok := p.take(key)
	if !ok {
		return def
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || x < lo || x > hi {
		if math.IsInf(hi, 1) {
			p.fail("%s=%s: want a number ≥ %g", key, v, lo)
		} else {
			p.fail("%s=%s: want a number in [%g, %g]", key, v, lo, hi)
		}
	}
	return x
}

func (p *paramReader) oneOf(key, def string, allowed ...string) string {
	v, ok := p.take(key)
	if !ok {
		return def
	}
	v = strings.ToLower(v)
	if !slices.Contains(allowed, v) {
		p.fail("%s=%s: want one of %s", key, v, strings.Join(allowed, ", "))
	}
	return v
}

func (p *paramReader) seed() uint64 {
	v, ok := p.take("seed")
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		p.fail("seed=%s: want a non-negative integer", v)
	}
	return n
}

// uniform returns a value in [0, n) from r: the high word of r's output
// times n (bias below n/2⁶⁴).
func uniform(r *rand.PCG, n int) int {
	hi, _ := bits.Mul64(r.Uint64(), uint64(n))
	return int(hi)
}

// noiseBytes returns n uniform bytes from PCG(seed, stream): the top byte
// of each output.
func noiseBytes(seed, stream uint64, n int) []uint8 {
	r := rand.NewPCG(seed, stream)
	out := make([]uint8, n)
	for i := range out {
		out[i] = uint8(r.Uint64() >> 56)
	}
	return out
}

// toUint8 rounds v to the nearest level in [0, 255].
func toUint8(v float64) uint8 {
	return uint8(math.Round(min(255, max(0, v))))
}

func checkImage(img datasets.Image) error {
	if img.Height <= 0 || img.Width <= 0 || (img.Channels != 1 && img.Channels != 3) || len(img.Pix) != img.Height*img.Width*img.Channels {
		return fmt.Errorf("malformed image %d×%d×%d with %d bytes", img.Height, img.Width, img.Channels, len(img.Pix))
	}
	return nil
}

// BadNets pastes a square patch into the image.
type BadNets struct {
	// Size is the patch's side in pixels (0: 3 at 32 pixels, scaled with
	// the image's shorter side, at least 1).
	Size int
	// Pos is br, bl, tr, tl (bottom-right, ... flush with the borders) or
	// random (per image, from Seed and the image's index).
	Pos string
	// Pattern is white, checker (255 where row + column within the patch
	// is even, else 0) or random (uniform bytes from Seed, stream 0).
	Pattern string
	Seed    uint64
}

func (b *BadNets) String() string {
	s := fmt.Sprintf("badnets:pos=%s,pattern=%s,seed=%d", b.Pos, b.Pattern, b.Seed)
	if b.Size > 0 {
		s = fmt.Sprintf("badnets:size=%d,pos=%s,pattern=%s,seed=%d", b.Size, b.Pos, b.Pattern, b.Seed)
	}
	return s
}

// PatchSize is the patch's side on an h×w image.
func (b *BadNets) PatchSize(h, w int) int {
	if b.Size > 0 {
		return b.Size
	}
	return max(1, int(math.Round(3*float64(min(h, w))/32)))
}

func (b *BadNets) Check(h, w, c int) error {
	if s := b.PatchSize(h, w); s > h || s > w {
		return fmt.Errorf("trigger %s: a %d-pixel patch does not fit in %d×%d images: give a smaller size=", b, s, h, w)
	}
	return nil
}

// Position returns the patch's top-left corner on image i of h×w pixels
// with a patch of side s: fixed corners, or for random a uniform position
// drawn from PCG(Seed, i+1).
func (b *BadNets) Position(i, h, w, s int) (y, x int) {
	switch b.Pos {
	case "bl":
		return h - s, 0
	case "tr":
		return 0, w - s
	case "tl":
		return 0, 0
	case "random":
		r := rand.NewPCG(b.Seed, uint64(i)+1)
		y = uniform(r, h-s+1)
		return y, uniform(r, w-s+1)
	}
	return h - s, w - s
}

func (b *BadNets) Apply(i int, src datasets.Image) (datasets.Image, error) {
	if err := checkImage(src); err != nil {
		return src, err
	}
	h, w, c := src.Height, src.Width, src.Channels
	if err := b.Check(h, w, c); err != nil {
		return src, err
	}
	s := b.PatchSize(h, w)
	var noise []uint8
	if b.Pattern == "random" {
		noise = noiseBytes(b.Seed, 0, s*s*c)
	}
	out := datasets.Image{Height: h, Width: w, Channels: c, Pix: slices.Clone(src.Pix)}
	y0, x0 := b.Position(i, h, w, s)
	for dy := range s {
		for dx := range s {
			o := ((y0+dy)*w + x0 + dx) * c
			for ch := range c {
				v := uint8(255)
				switch b.Pattern {
				case "checker":
					if (dy+dx)%2 != 0 {
						v = 0
					}
				case "random":
					v = noise[(dy*s+dx)*c+ch]
				}
				out.Pix[o+ch] = v
			}
		}
	}
	return out, nil
}

// Blended blends a fixed pattern into the image: x' = round((1 − Ratio)·x +
// Ratio·P).
type Blended struct {
	Ratio float64
	// Seed draws P as uniform noise (PCG(Seed, 0), one byte per pixel and
	// channel, row-major) of the image's size, when Image is nil.
	Seed uint64
	// Image, read from File, is P resized to each image's size (bilinear
	// stretch) and converted to its channels.
	Image *datasets.Image
	File  string

	mu       sync.Mutex
	patterns map[[3]int][]uint8
}

func (b *Blended) String() string {
	if b.Image != nil {
		return fmt.Sprintf("blended:ratio=%g,image=%s", b.Ratio, b.File)
	}
	return fmt.Sprintf("blended:ratio=%g,seed=%d", b.Ratio, b.Seed)
}

func (b *Blended) Check(h, w, c int) error { return nil }

// Pattern returns P for images of h×w×c.
func (b *Blended) Pattern(h, w, c int) []uint8 {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := [3]int{h, w, c}
	if p, ok := b.patterns[key]; ok {
		return p
	}
	var p []uint8
	if b.Image == nil {
		p = noiseBytes(b.Seed, 0, h*w*c)
	} else {
		dst := image.NewRGBA(image.Rect(0, 0, w, h))
		src := b.Image.Std()
		draw.BiLinear.Scale(dst, dst.Rect, src, src.Bounds(), draw.Src, nil)
		m := datasets.FromStdImage(dst)
		p = m.Pix
		if c == 1 { // ITU-R 601 luma, as image/color's GrayModel
			p = make([]uint8, h*w)
			for i := range p {
				r, g, bl := uint32(m.Pix[3*i]), uint32(m.Pix[3*i+1]), uint32(m.Pix[3*i+2])
				p[i] = uint8((19595*r + 38470*g + 7471*bl + 1<<15) >> 16)
			}
		}
	}
	if b.patterns == nil {
		b.patterns = map[[3]int][]uint8{}
	}
	b.patterns[key] = p
	return p
}

func (b *Blended) Apply(_ int, src datasets.Image) (datasets.Image, error) {
	if err := checkImage(src); err != nil {
		return src, err
	}
	p := b.Pattern(src.Height, src.Width, src.Channels)
	out := datasets.Image{Height: src.Height, Width: src.Width, Channels: src.Channels, Pix: make([]uint8, len(src.Pix))}
	for k, v := range src.Pix {
		out.Pix[k] = toUint8((1-b.Ratio)*float64(v) + b.Ratio*float64(p[k]))
	}
	return out, nil
}

// WaNet warps the image along a smooth random field (see the package doc).
type WaNet struct {
	K    int     // control grid size
	S    float64 // strength
	Seed uint64

	mu    sync.Mutex
	grids map[[2]int][]float64
}

func (wn *WaNet) String() string { return fmt.Sprintf("wanet:k=%d,s=%g,seed=%d", wn.K, wn.S, wn.Seed) }

func (wn *WaNet) Check(h, w, c int) error { return nil }

// ControlGrid returns the 2×K×K control values (channel 0 moves x, channel
// 1 moves y): uniform in [−1, 1) from PCG(Seed, 0) (53-bit floats), divided
// by their mean absolute value, as the reference's
// ins = rand(1, 2, k, k)·2 − 1; ins / mean(|ins|).
func (wn *WaNet) ControlGrid() []float64 {
	r := rand.NewPCG(wn.Seed, 0)
	ins := make([]float64, 2*wn.K*wn.K)
	s := 0.0
	for i := range ins {
		ins[i] = 2*float64(r.Uint64()>>11)/(1<<53) - 1
		s += math.Abs(ins[i])
	}
	if s == 0 {
		return ins
	}
	for i := range ins {
		ins[i] /= s / float64(len(ins))
	}
	return ins
}

// Grid returns the sampling grid of h×w images, [h, w, 2] row-major, (x, y)
// in normalized coordinates [−1, 1].
func (wn *WaNet) Grid(h, w int) []float64 {
	wn.mu.Lock()
	defer wn.mu.Unlock()
	key := [2]int{h, w}
	if g, ok := wn.grids[key]; ok {
		return g
	}
	g := warpGrid(wn.ControlGrid(), wn.K, h, w, wn.S)
	if wn.grids == nil {
		wn.grids = map[[2]int][]float64{}
	}
	wn.grids[key] = g
	return g
}

// warpGrid is WaNet's grid from a control grid ins [2, k, k]:
// clamp(identity + s·upsample(ins)/size, −1, 1), size H for y and W for x.
func warpGrid(ins []float64, k, h, w int, s float64) []float64 {
	up := [2][]float64{bicubicUpsample(ins[:k*k], k, k, h, w), bicubicUpsample(ins[k*k:], k, k, h, w)}
	g := make([]float64, h*w*2)
	for y := range h {
		for x := range w {
			o := (y*w + x) * 2
			g[o] = max(-1, min(1, linspace(x, w)+s*up[0][y*w+x]/float64(w)))
			g[o+1] = max(-1, min(1, linspace(y, h)+s*up[1][y*w+x]/float64(h)))
		}
	}
	return g
}

// linspace is torch.linspace(−1, 1, n)[i].
func linspace(i, n int) float64 {
	if n == 1 {
		return -1
	}
	return -1 + 2*float64(i)/float64(n-1)
}

// cubicWeights are torch's bicubic interpolation weights (a = −0.75,
// aten/src/ATen/native/UpSample.h get_cubic_upsample_coefficients) of the
// four neighbours at fractional offset t.
func cubicWeights(t float64) [4]float64 {
	const a = -0.75
	near := func(x float64) float64 { return ((a+2)*x-(a+3))*x*x + 1 }
	far := func(x float64) float64 { return ((a*x-5*a)*x+8*a)*x - 4*a }
	return [4]float64{far(t + 1), near(t), near(1 - t), far(2 - t)}
}

// bicubicUpsample resizes src [ih, iw] to [oh, ow] as
// torch.nn.functional.interpolate(mode="bicubic", align_corners=True):
// source coordinate o·(in−1)/(out−1), four neighbours a side with indices
// clamped to the border.
func bicubicUpsample(src []float64, ih, iw, oh, ow int) []float64 {
	coords := func(in, out int) (idx []int, wts [][4]float64) {
		idx, wts = make([]int, out), make([][4]float64, out)
		for o := range out {
			real := 0.0
			if out > 1 {
				real = float64(o) * float64(in-1) / float64(out-1)
			}
			f := math.Floor(real)
			idx[o], wts[o] = int(f), cubicWeights(real-f)
		}
		return idx, wts
	}
	clamp := func(i, n int) int { return max(0, min(n-1, i)) }
	yi, yw := coords(ih, oh)
	xi, xw := coords(iw, ow)
	out := make([]float64, oh*ow)
	for y := range oh {
		for x := range ow {
			v := 0.0
			for j := range 4 {
				row := src[clamp(yi[y]-1+j, ih)*iw:]
				r := 0.0
				for i := range 4 {
					r += row[clamp(xi[x]-1+i, iw)] * xw[x][i]
				}
				v += r * yw[y][j]
			}
			out[y*ow+x] = v
		}
	}
	return out
}

// gridSample samples img (h×w×c, float64) bilinearly at grid [gh, gw, 2]
// as torch's grid_sample(align_corners=True, padding_mode="zeros").
func gridSample(img []float64, h, w, c int, grid []float64, gh, gw int) []float64 {
	out := make([]float64, gh*gw*c)
	at := func(y, x, ch int) float64 {
		if y < 0 || y >= h || x < 0 || x >= w {
			return 0
		}
		return img[(y*w+x)*c+ch]
	}
	for p := range gh * gw {
		ix := (grid[2*p] + 1) / 2 * float64(w-1)
		iy := (grid[2*p+1] + 1) / 2 * float64(h-1)
		x0, y0 := int(math.Floor(ix)), int(math.Floor(iy))
		fx, fy := ix-float64(x0), iy-float64(y0)
		for ch := range c {
			out[p*c+ch] = (1-fy)*((1-fx)*at(y0, x0, ch)+fx*at(y0, x0+1, ch)) +
				fy*((1-fx)*at(y0+1, x0, ch)+fx*at(y0+1, x0+1, ch))
		}
	}
	return out
}

func (wn *WaNet) Apply(_ int, src datasets.Image) (datasets.Image, error) {
	if err := checkImage(src); err != nil {
		return src, err
	}
	h, w, c := src.Height, src.Width, src.Channels
	img := make([]float64, len(src.Pix))
	for k, v := range src.Pix {
		img[k] = float64(v)
	}
	warped := gridSample(img, h, w, c, wn.Grid(h, w), h, w)
	out := datasets.Image{Height: h, Width: w, Channels: c, Pix: make([]uint8, len(warped))}
	for k, v := range warped {
		out.Pix[k] = toUint8(v)
	}
	return out, nil
}

// Names of the tensors of an inverted-trigger file.
const (
	InvertedMask    = "mask"    // float32 [H, W], values in [0, 1]
	InvertedPattern = "pattern" // float32 [H, W, 3], values in [0, 255]
)

// Metadata keys of an inverted-trigger file ('editkit unlearn invert').
const (
	MetaPL1    = "editkit.pl1"    // the mask's PL1 norm
	MetaFound  = "editkit.found"  // whether a step reached the cosine threshold
	MetaCosine = "editkit.cosine" // the mean pairwise cosine of the saved trigger's step
	MetaTarget = "editkit.target" // the estimated target class, with a head
)

// Inverted is a trigger found by Invert: x' = round((1 − m)⊙x + m⊙p), for
// images of exactly the mask's size. A gray image is replicated into RGB
// first (the pattern is RGB).
type Inverted struct {
	H, W    int
	Mask    []float32 // [H, W]
	Pattern []float32 // [H, W, 3]
	// File is where the trigger was read from ("" otherwise); Metadata the
	// file's __metadata__ (PL1 norm, estimated target, model, ...).
	File     string
	Metadata map[string]string
}

func (t *Inverted) String() string {
	if t.File == "" {
		return "inverted"
	}
	return "inverted:" + t.File
}

func (t *Inverted) Check(h, w, c int) error {
	if h != t.H || w != t.W {
		return fmt.Errorf("trigger %s was inverted on %d×%d images, these are %d×%d: invert it on this dataset's images", t, t.H, t.W, h, w)
	}
	return nil
}

// channels is the number of channels of triggered images: always RGB.
func (t *Inverted) channels() int { return 3 }

func (t *Inverted) Apply(_ int, src datasets.Image) (datasets.Image, error) {
	if err := checkImage(src); err != nil {
		return src, err
	}
	if err := t.Check(src.Height, src.Width, src.Channels); err != nil {
		return src, err
	}
	n := t.H * t.W
	out := datasets.Image{Height: t.H, Width: t.W, Channels: 3, Pix: make([]uint8, n*3)}
	for i := range n {
		m := float64(t.Mask[i])
		for ch := range 3 {
			x := src.Pix[i*src.Channels+min(ch, src.Channels-1)]
			out.Pix[3*i+ch] = toUint8((1-m)*float64(x) + m*float64(t.Pattern[3*i+ch]))
		}
	}
	return out, nil
}

// PL1 is the mask's PL1 norm, ‖m‖₁/(H·W): DECREE's detection score.
func (t *Inverted) PL1() float64 {
	s := 0.0
	for _, v := range t.Mask {
		s += float64(v)
	}
	return s / float64(len(t.Mask))
}

// validate checks shapes and ranges.
func (t *Inverted) validate(name string) error {
	if t.H <= 0 || t.W <= 0 || len(t.Mask) != t.H*t.W || len(t.Pattern) != t.H*t.W*3 {
		return fmt.Errorf("%s: mask of %d values and pattern of %d for %d×%d images: want %s [H, W] and %s [H, W, 3]",
			name, len(t.Mask), len(t.Pattern), t.H, t.W, InvertedMask, InvertedPattern)
	}
	for i, v := range t.Mask {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("%s: %s value %d is %v, outside [0, 1]", name, InvertedMask, i, v)
		}
	}
	for i, v := range t.Pattern {
		if !(v >= 0 && v <= 255) {
			return fmt.Errorf("%s: %s value %d is %v, outside [0, 255]", name, InvertedPattern, i, v)
		}
	}
	return nil
}

// LoadInverted reads a trigger written by Inverted.Save.
func LoadInverted(path string) (*Inverted, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inverted trigger: %w", err)
	}
	defer ck.Close()
	mi, ok1 := ck.Tensor(InvertedMask)
	pi, ok2 := ck.Tensor(InvertedPattern)
	if !ok1 || !ok2 || len(mi.Shape) != 2 || len(pi.Shape) != 3 || pi.Shape[0] != mi.Shape[0] || pi.Shape[1] != mi.Shape[1] || pi.Shape[2] != 3 {
		return nil, fmt.Errorf("%s is not an inverted trigger: want tensors %s [H, W] and %s [H, W, 3] (as 'editkit unlearn invert' writes)", path, InvertedMask, InvertedPattern)
	}
	t := &Inverted{H: int(mi.Shape[0]), W: int(mi.Shape[1]), File: path, Metadata: ck.Metadata}
	if t.Mask, _, err = ck.ReadFloat32(InvertedMask, nil, nil); err != nil {
		return nil, err
	}
	if t.Pattern, _, err = ck.ReadFloat32(InvertedPattern, nil, nil); err != nil {
		return nil, err
	}
	if err := t.validate(path); err != nil {
		return nil, err
	}
	return t, nil
}

// Save writes the trigger as a .safetensors file (tensors InvertedMask and
// InvertedPattern, meta as __metadata__), atomically; force replaces an
// existing file; inputs are paths it must not overwrite.
func (t *Inverted) Save(path string, meta map[string]string, inputs []string, force bool) error {
	if err := t.validate(path); err != nil {
		return err
	}
	specs := []checkpoint.TensorSpec{
		{Name: InvertedMask, DType: checkpoint.F32, Shape: []int64{int64(t.H), int64(t.W)}},
		{Name: InvertedPattern, DType: checkpoint.F32, Shape: []int64{int64(t.H), int64(t.W), 3}},
	}
	w, err := checkpoint.Create(path, specs, checkpoint.WriteOptions{Metadata: meta, Force: force, Inputs: inputs})
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := w.WriteFloat32(InvertedMask, t.Mask); err != nil {
		return err
	}
	if err := w.WriteFloat32(InvertedPattern, t.Pattern); err != nil {
		return err
	}
	return w.Commit()
}
