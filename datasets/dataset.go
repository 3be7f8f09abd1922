package datasets

import (
	"fmt"
	"image"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// Image is one decoded image: Height×Width pixels, row-major, channels last,
// Channels 1 (gray) or 3 (RGB), uint8.
//
// Images of IDX datasets share the dataset's memory: do not modify Pix.
type Image struct {
	Height, Width, Channels int
	Pix                     []uint8 // len Height*Width*Channels
}

// At returns channel c of the pixel at row y, column x.
func (m Image) At(y, x, c int) uint8 { return m.Pix[(y*m.Width+x)*m.Channels+c] }

// Std returns the image as a standard library image: *image.Gray (sharing Pix)
// for gray images, *image.RGBA (a copy, alpha 255) for RGB ones.
func (m Image) Std() image.Image {
	r := image.Rect(0, 0, m.Width, m.Height)
	if m.Channels == 1 {
		return &image.Gray{Pix: m.Pix, Stride: m.Width, Rect: r}
	}
	out := image.NewRGBA(r)
	toRGBA(out.Pix, m)
	return out
}

// toRGBA writes the RGB image m into dst (len 4·H·W) with alpha 255.
func toRGBA(dst []uint8, m Image) {
	n := m.Height * m.Width
	if m.Channels == 1 {
		for i, v := range m.Pix[:n] {
			d := dst[4*i : 4*i+4 : 4*i+4]
			d[0], d[1], d[2], d[3] = v, v, v, 255
		}
		return
	}
	for i := range n {
		s := m.Pix[3*i : 3*i+3 : 3*i+3]
		d := dst[4*i : 4*i+4 : 4*i+4]
		d[0], d[1], d[2], d[3] = s[0], s[1], s[2], 255
	}
}

// store holds the examples of one file or folder split.
type store interface {
	len() int
	label(i int) int
	image(i int) (Image, error)
	// shape returns the image size when all images share it.
	shape() (h, w, c int, ok bool)
}

// pixelStore holds same-sized images in one buffer [N,H,W,C] (IDX files, FromPixels).
type pixelStore struct {
	h, w, c int
	pix     []uint8
	labels  []int32
}

func (s *pixelStore) len() int        { return len(s.labels) }
func (s *pixelStore) label(i int) int { return int(s.labels[i]) }
func (s *pixelStore) image(i int) (Image, error) {
	sz := s.h * s.w * s.c
	return Image{Height: s.h, Width: s.w, Channels: s.c, Pix: s.pix[i*sz : (i+1)*sz : (i+1)*sz]}, nil
}
func (s *pixelStore) shape() (h, w, c int, ok bool) { return s.h, s.w, s.c, true }

// Dataset is an indexed set of labelled images: a whole split, or a Subset of one.
// It is safe for concurrent reads.
type Dataset struct {
	name    string
	classes []string
	st      store
	index   []int // positions in st; nil means all of st in order
}

func newDataset(name string, classes []string, st store) *Dataset {
	return &Dataset{name: name, classes: classes, st: st}
}

// FromPixels makes an in-memory Dataset of n same-sized images stored in pix
// as [n, h, w, c] uint8 (c 1 or 3), with labels in [0, len(classes)).
// The Dataset keeps pix (no copy).
func FromPixels(name string, classes []string, h, w, c int, pix []uint8, labels []int) (*Dataset, error) {
	if h <= 0 || w <= 0 || (c != 1 && c != 3) {
		return nil, fmt.Errorf("datasets: FromPixels %s: shape %d×%d×%d, want positive height and width and 1 or 3 channels", name, h, w, c)
	}
	if len(pix) != len(labels)*h*w*c {
		return nil, fmt.Errorf("datasets: FromPixels %s: %d pixel bytes for %d labels of %d×%d×%d images, want %d",
			name, len(pix), len(labels), h, w, c, len(labels)*h*w*c)
	}
	lab := make([]int32, len(labels))
	for i, l := range labels {
		if l < 0 || l >= len(classes) {
			return nil, fmt.Errorf("datasets: FromPixels %s: label %d of example %d outside the %d classes", name, l, i, len(classes))
		}
		lab[i] = int32(l)
	}
	return newDataset(name, classes, &pixelStore{h: h, w: w, c: c, pix: pix, labels: lab}), nil
}

// Name says where the examples come from (e.g. "cifar10/val").
func (d *Dataset) Name() string { return d.name }

// Classes returns the class names; label l is Classes()[l]. Do not modify it.
func (d *Dataset) Classes() []string { return d.classes }

// NumClasses is len(Classes()).
func (d *Dataset) NumClasses() int { return len(d.classes) }

// Len is the number of examples.
func (d *Dataset) Len() int {
	if d.index != nil {
		return len(d.index)
	}
	return d.st.len()
}

// SourceIndex returns the position of example i in the file or folder it was
// read from (i itself unless d is a Subset).
func (d *Dataset) SourceIndex(i int) int {
	if d.index != nil {
		return d.index[i]
	}
	if i < 0 || i >= d.st.len() {
		panic(fmt.Sprintf("datasets: index %d out of range [0, %d) in %s", i, d.st.len(), d.name))
	}
	return i
}

// Label returns the class of example i, in [0, NumClasses()).
func (d *Dataset) Label(i int) int { return d.st.label(d.SourceIndex(i)) }

// Labels returns the classes of all examples, in order.
func (d *Dataset) Labels() []int {
	out := make([]int, d.Len())
	for i := range out {
		out[i] = d.Label(i)
	}
	return out
}

// Image returns example i. IDX images never fail; images of a folder are
// decoded from their file on each call, and a file that does not decode gives
// an error naming it.
func (d *Dataset) Image(i int) (Image, error) { return d.st.image(d.SourceIndex(i)) }

// Shape returns the image size when all images have the same one (IDX data);
// ok is false for image folders, whose images may differ in size.
func (d *Dataset) Shape() (h, w, c int, ok bool) { return d.st.shape() }

// Subset returns the examples at the given positions of d, in that order
// (repeats allowed). It panics on a position outside [0, Len()).
func (d *Dataset) Subset(indices []int) *Dataset {
	idx := make([]int, len(indices))
	for k, i := range indices {
		if i < 0 || i >= d.Len() {
			panic(fmt.Sprintf("datasets: Subset index %d out of range [0, %d) in %s", i, d.Len(), d.name))
		}
		idx[k] = d.SourceIndex(i)
	}
	return &Dataset{name: d.name, classes: d.classes, st: d.st, index: idx}
}

// rename returns d under another name (sharing everything).
func (d *Dataset) rename(name string) *Dataset {
	c := *d
	c.name = name
	return &c
}

// Permutation returns a pseudo-random permutation of 0…n-1 that depends on n
// and seed only, identically on every platform and Go release.
//
// Generator: math/rand/v2's PCG (PCG-DXSM, 128-bit state) made by
// rand.NewPCG(seed, 0); only its Uint64 outputs are used. The shuffle is
// Fisher–Yates from the top (for i = n-1 … 1: swap i with j uniform in [0, i]),
// with j drawn by Lemire's multiply-shift method with rejection. Both are
// written here rather than calling rand.Perm, whose algorithm Go does not promise to keep.
func Permutation(n int, seed uint64) []int {
	return permutation(n, seed, 0)
}

// permutation is Permutation with PCG's second seed word set to stream.
func permutation(n int, seed, stream uint64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	r := rand.NewPCG(seed, stream)
	for i := n - 1; i > 0; i-- {
		j := int(boundedUint64(r, uint64(i)+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// boundedUint64 returns a uniform value in [0, n), n > 0 (Lemire 2019).
func boundedUint64(r *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(r.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.Uint64(), n)
		}
	}
	return hi
}

// Reference-code defaults for the validation split (task_vectors'
// split_train_into_train_val with val_fraction 0.1, max_val_samples 5000, seed 0).
const (
	DefaultValidationFraction = 0.1
	DefaultMaxValidation      = 5000
)

// HoldOut splits positions 0…n-1 into train and validation as the task-vectors
// reference code does: the validation size is int(n·fraction), capped at
// maxVal (when maxVal > 0), and the split follows Permutation(n, seed): its
// first n-v entries train, the last v validation. Both lists are returned in
// increasing order.
func HoldOut(n int, fraction float64, maxVal int, seed uint64) (train, val []int) {
	v := int(float64(n) * fraction)
	if maxVal > 0 {
		v = min(v, maxVal)
	}
	v = max(0, min(v, n))
	p := Permutation(n, seed)
	train, val = p[:n-v:n-v], p[n-v:]
	slices.Sort(train)
	slices.Sort(val)
	return train, val
}
