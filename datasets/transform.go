package datasets

import "fmt"

// Transform rewrites the examples of a Dataset as they are read: the raw
// image (before any Preprocess) and the label of example i. Backdoor
// triggers and data poisoning (package unlearn) are Transforms, so every
// consumer of a Dataset — batches for training and evaluation, image
// writers — sees the rewritten examples through the one data path.
type Transform struct {
	// Name is appended to the dataset's name after a '+'
	// ("cifar10/test+badnets").
	Name string
	// Image, when set, returns example i's image made from the stored one,
	// src. It must not modify src.Pix (IDX images share the dataset's
	// memory), must keep src's height and width, and must return images of
	// Channels channels (src's own when Channels is 0). It must be safe for
	// concurrent use and give the same image for the same (i, src).
	Image func(i int, src Image) (Image, error)
	// Label, when set, returns example i's class from the stored one.
	Label func(i, label int) int
	// Channels is the number of channels of the images Image returns (0:
	// those of the stored images).
	Channels int
}

// Transform returns a view of d whose example i is example i of d rewritten
// by t; i is the example's position in d. Labels are checked at once: a
// label outside d's classes is an error. Subsets of the view index the view.
func (d *Dataset) Transform(t Transform) (*Dataset, error) {
	if t.Channels != 0 && t.Channels != 1 && t.Channels != 3 {
		return nil, fmt.Errorf("datasets: transform %s makes %d-channel images, want 1 or 3", t.Name, t.Channels)
	}
	st := &viewStore{base: d, t: t}
	if t.Label != nil {
		st.labels = make([]int32, d.Len())
		for i := range st.labels {
			l := t.Label(i, d.Label(i))
			if l < 0 || l >= d.NumClasses() {
				return nil, fmt.Errorf("datasets: transform %s gives example %d of %s the label %d, outside its %d classes", t.Name, i, d.Name(), l, d.NumClasses())
			}
			st.labels[i] = int32(l)
		}
	}
	name := d.name
	if t.Name != "" {
		name += "+" + t.Name
	}
	return newDataset(name, d.classes, st), nil
}

// viewStore is a Dataset rewritten by a Transform.
type viewStore struct {
	base   *Dataset
	t      Transform
	labels []int32 // nil: the base's
}

func (s *viewStore) len() int { return s.base.Len() }

func (s *viewStore) label(i int) int {
	if s.labels != nil {
		return int(s.labels[i])
	}
	return s.base.Label(i)
}

func (s *viewStore) image(i int) (Image, error) {
	src, err := s.base.Image(i)
	if err != nil || s.t.Image == nil {
		return src, err
	}
	out, err := s.t.Image(i, src)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", s.t.Name, err)
	}
	c := s.t.Channels
	if c == 0 {
		c = src.Channels
	}
	if out.Height != src.Height || out.Width != src.Width || out.Channels != c || len(out.Pix) != out.Height*out.Width*out.Channels {
		return Image{}, fmt.Errorf("%s: made a %d×%d×%d image with %d bytes of a %d×%d×%d one, want %d×%d×%d",
			s.t.Name, out.Height, out.Width, out.Channels, len(out.Pix), src.Height, src.Width, src.Channels, src.Height, src.Width, c)
	}
	return out, nil
}

func (s *viewStore) shape() (h, w, c int, ok bool) {
	h, w, c, ok = s.base.Shape()
	if s.t.Channels != 0 {
		c = s.t.Channels
	}
	return h, w, c, ok
}
