package datasets

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// WriteIDX writes x as an IDX file of uint8 elements (magic 0x0000080N,
// N = len(Dims)), the format ReadIDX reads; gz compresses it with gzip.
func WriteIDX(w io.Writer, x *IDX, gz bool) error {
	if len(x.Dims) == 0 || len(x.Dims) > 255 {
		return fmt.Errorf("datasets: an IDX file has 1 to 255 dimensions, not %d", len(x.Dims))
	}
	n := 1
	for _, d := range x.Dims {
		if d < 0 || d > 1<<32-1 {
			return fmt.Errorf("datasets: IDX dimension %d out of range", d)
		}
		n *= d
	}
	if n != len(x.Data) {
		return fmt.Errorf("datasets: IDX dimensions %v hold %d elements, the data has %d", x.Dims, n, len(x.Data))
	}
	head := make([]byte, 4+4*len(x.Dims))
	head[2], head[3] = idxUint8, byte(len(x.Dims))
	for i, d := range x.Dims {
		binary.BigEndian.PutUint32(head[4+4*i:], uint32(d))
	}
	out := w
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(w)
		out = zw
	}
	if _, err := out.Write(head); err != nil {
		return err
	}
	if _, err := out.Write(x.Data); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}

// EncodeIDX returns the gzipped IDX files of d, which must hold images of
// one size: images [N,H,W] (gray) or [N,H,W,3] (RGB), labels [N], under the
// file names a dataset folder uses for the given set ("train" or "test"),
// with classes.txt: a folder holding these files is a dataset that Open
// reads. Images are read through d, so a Transform's rewrites are what is
// written.
func EncodeIDX(d *Dataset, set string) (map[string][]byte, error) {
	if set != "train" && set != "test" {
		return nil, fmt.Errorf("datasets: IDX files are for the train or test set, not %q", set)
	}
	n := d.Len()
	if n == 0 {
		return nil, fmt.Errorf("datasets: %s is empty", d.Name())
	}
	if d.NumClasses() > 256 {
		return nil, fmt.Errorf("datasets: %s has %d classes; IDX labels are uint8 (at most 256)", d.Name(), d.NumClasses())
	}
	first, err := d.Image(0)
	if err != nil {
		return nil, fmt.Errorf("%s example 0: %w", d.Name(), err)
	}
	h, w, c := first.Height, first.Width, first.Channels
	per := h * w * c
	pix := make([]byte, 0, n*per)
	labels := make([]byte, n)
	for i := range n {
		img := first
		if i > 0 {
			if img, err = d.Image(i); err != nil {
				return nil, fmt.Errorf("%s example %d: %w", d.Name(), i, err)
			}
		}
		if img.Height != h || img.Width != w || img.Channels != c {
			return nil, fmt.Errorf("datasets: %s example %d is %d×%d×%d, example 0 %d×%d×%d: IDX files hold images of one size",
				d.Name(), i, img.Height, img.Width, img.Channels, h, w, c)
		}
		pix = append(pix, img.Pix...)
		labels[i] = byte(d.Label(i))
	}
	dims, kind := []int{n, h, w}, "3"
	if c == 3 {
		dims, kind = append(dims, 3), "4"
	}
	var ib, lb bytes.Buffer
	if err := WriteIDX(&ib, &IDX{Dims: dims, Data: pix}, true); err != nil {
		return nil, err
	}
	if err := WriteIDX(&lb, &IDX{Dims: []int{n}, Data: labels}, true); err != nil {
		return nil, err
	}
	return map[string][]byte{
		set + "-images-idx" + kind + "-ubyte.gz": ib.Bytes(),
		set + "-labels-idx1-ubyte.gz":            lb.Bytes(),
		"classes.txt":                            []byte(strings.Join(d.Classes(), "\n") + "\n"),
	}, nil
}
