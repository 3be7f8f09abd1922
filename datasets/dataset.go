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
	// relabel maps a stored label to the dataset's (KeepClasses); nil is
	// the identity.
	relabel []int
	// groups holds each stored example's group (a GTSRB track), nil when
	// the dataset has no group file.
	groups []int32
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
func (d *Dataset) Label(i int) int {
	l := d.st.label(d.SourceIndex(i))
	if d.relabel != nil {
		return d.relabel[l]
	}
	return l
}

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
	c := *d
	c.index = idx
	return &c
}

// Head returns the first n examples of d, or d itself when n ≤ 0 or n ≥
// Len() (a --limit's meaning everywhere).
func (d *Dataset) Head(n int) *Dataset {
	if n <= 0 || n >= d.Len() {
		return d
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return d.Subset(idx)
}

// Sample returns n examples of d drawn without replacement by
// Permutation(Len(), seed), kept in d's order, or d itself when n ≤ 0 or
// n ≥ Len() (a seeded --limit).
func (d *Dataset) Sample(n int, seed uint64) *Dataset {
	if n <= 0 || n >= d.Len() {
		return d
	}
	idx := Permutation(d.Len(), seed)[:n]
	slices.Sort(idx)
	return d.Subset(idx)
}

// KeepClasses returns the examples of the given classes only, relabelled:
// class keep[k] becomes label k, and Classes() lists the kept names in that
// order. Examples keep their order.
func (d *Dataset) KeepClasses(keep []int) (*Dataset, error) {
	relabel := make([]int, len(d.classes))
	for i := range relabel {
		relabel[i] = -1
	}
	names := make([]string, len(keep))
	for k, c := range keep {
		if c < 0 || c >= len(d.classes) {
			return nil, fmt.Errorf("datasets: %s: class %d outside the %d classes", d.name, c, len(d.classes))
		}
		if relabel[c] >= 0 {
			return nil, fmt.Errorf("datasets: %s: class %d (%s) kept twice", d.name, c, d.classes[c])
		}
		relabel[c], names[k] = k, d.classes[c]
	}
	var idx []int
	for i := range d.Len() {
		if relabel[d.Label(i)] >= 0 {
			idx = append(idx, i)
		}
	}
	c := *d.Subset(idx)
	// Compose with an earlier relabelling: stored label → old → new.
	stored := make([]int, d.storedClasses())
	for l := range stored {
		old := l
		if d.relabel != nil {
			old = d.relabel[l]
		}
		stored[l] = -1
		if old >= 0 {
			stored[l] = relabel[old]
		}
	}
	c.relabel, c.classes = stored, names
	return &c, nil
}

// storedClasses is the number of labels the store can hold.
func (d *Dataset) storedClasses() int {
	if d.relabel != nil {
		return len(d.relabel)
	}
	return len(d.classes)
}

// Group returns the group of example i (a GTSRB track: frames of one
// physical sign) and true, or false when the dataset has no group file.
func (d *Dataset) Group(i int) (int, bool) {
	if d.groups == nil {
		return 0, false
	}
	return int(d.groups[d.SourceIndex(i)]), true
}

// HasGroups reports whether the examples carry groups (see Group).
func (d *Dataset) HasGroups() bool { return d.groups != nil }

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

// HoldOutGroups is HoldOut for examples in groups (groups[i] is example
// i's): whole groups go to validation, so near-duplicates (the frames of
// one GTSRB track) never sit on both sides. The validation target is
// int(n·fraction) examples capped at maxVal, as HoldOut's; the distinct
// groups are shuffled by Permutation(number of groups, seed) and taken from
// the end of that order while validation holds fewer than the target, so
// it overshoots by less than one group. Both lists are in increasing order.
func HoldOutGroups(groups []int, fraction float64, maxVal int, seed uint64) (train, val []int) {
	n := len(groups)
	v := int(float64(n) * fraction)
	if maxVal > 0 {
		v = min(v, maxVal)
	}
	members, order := groupMembers(groups)
	p := Permutation(len(order), seed)
	inVal := make([]bool, n)
	count := 0
	for k := len(p) - 1; k >= 0 && count < v; k-- {
		for _, i := range members[order[p[k]]] {
			inVal[i] = true
			count++
		}
	}
	for i := range n {
		if inVal[i] {
			val = append(val, i)
		} else {
			train = append(train, i)
		}
	}
	return train, val
}

// groupMembers lists each group's positions, and the groups in order of
// first appearance.
func groupMembers(groups []int) (map[int][]int, []int) {
	members := map[int][]int{}
	var order []int
	for i, g := range groups {
		if _, ok := members[g]; !ok {
			order = append(order, g)
		}
		members[g] = append(members[g], i)
	}
	return members, order
}

// Shares splits d into disjoint parts of about the given sizes, drawn in a
// random order fixed by seed (Permutation): example by example, or, when d
// has groups, group by group, so that no group is split between parts (a
// part then overshoots its size by less than one group). A part gets fewer
// examples only when d runs out. Examples keep d's order within a part.
func Shares(d *Dataset, sizes []int, seed uint64) []*Dataset {
	n := d.Len()
	groups := make([]int, n)
	for i := range groups {
		groups[i] = i
		if g, ok := d.Group(i); ok {
			groups[i] = g
		}
	}
	members, order := groupMembers(groups)
	p := Permutation(len(order), seed)
	out := make([]*Dataset, len(sizes))
	k := 0
	for s, size := range sizes {
		var idx []int
		for ; k < len(p) && len(idx) < size; k++ {
			idx = append(idx, members[order[p[k]]]...)
		}
		slices.Sort(idx)
		out[s] = d.Subset(idx)
	}
	return out
}

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
