package datasets

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
)

// IDX is the content of one IDX file: its dimensions and its uint8 elements
// in row-major order (the last dimension varies fastest).
type IDX struct {
	Dims []int  // sizes from the header, outermost first
	Data []byte // prod(Dims) elements
}

// IDX element type codes (third byte of the magic number). Images and
// labels are idxUint8; group files (GTSRB's tracks) idxInt32.
const (
	idxUint8   = 0x08
	idxInt32   = 0x0C
	idxHeadMax = 4 + 4*255

	// maxIDXBytes bounds the data an IDX header may declare (16 GiB), so that a
	// corrupt header is reported instead of attempting an absurd allocation.
	maxIDXBytes = 1 << 34
	// firstAlloc is the largest buffer allocated before any data is read; a
	// larger declared size grows the buffer as data actually arrives, so a
	// header that lies costs no more memory than the bytes the file holds.
	firstAlloc = 256 << 20
)

var idxTypeNames = map[byte]string{
	0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64",
}

// ReadIDXFile reads an IDX file, gzipped or plain (recognised by the gzip
// magic bytes, not by the name). Errors name the file and say what to do.
func ReadIDXFile(path string) (*IDX, error) {
	return readIDXFile(path, idxUint8)
}

func readIDXFile(path string, elem byte) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	defer f.Close()
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return readIDX(f, path, size, elem)
}

// ReadIDX reads an IDX stream, gzipped or plain; name is used in error messages.
func ReadIDX(r io.Reader, name string) (*IDX, error) {
	return readIDX(r, name, -1, idxUint8)
}

// ReadIDXInt32File reads an IDX file of big-endian int32 elements (magic
// 0x00000C0N, gzipped or plain), such as a group file, and returns its
// dimensions and values.
func ReadIDXInt32File(path string) (dims []int, values []int32, err error) {
	x, err := readIDXFile(path, idxInt32)
	if err != nil {
		return nil, nil, err
	}
	values = make([]int32, len(x.Data)/4)
	for i := range values {
		values[i] = int32(binary.BigEndian.Uint32(x.Data[4*i:]))
	}
	return x.Dims, values, nil
}

// readIDX reads from r an IDX file of element type elem (idxUint8 or
// idxInt32; Data holds the raw big-endian bytes); fileSize is the size of
// the underlying file when known (-1 otherwise), used to report truncation
// of plain files before reading.
func readIDX(r io.Reader, name string, fileSize int64, elem byte) (*IDX, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var src io.Reader = br
	gzipped := false
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, idxErr(name, "corrupt gzip header (%v); download the file again", err)
		}
		defer zr.Close()
		src, gzipped = zr, true
	}

	var magic [4]byte
	if n, err := io.ReadFull(src, magic[:]); err != nil {
		if gzipped && !isEOF(err) {
			return nil, idxErr(name, "corrupt gzip data (%v); download the file again", err)
		}
		return nil, idxErr(name, "truncated: %d bytes, too short for the 4-byte IDX magic number; the file is incomplete, download it again", n)
	}
	if magic[0] != 0 || magic[1] != 0 || magic[3] == 0 {
		hint := "is this an IDX file (MNIST format)?"
		if magic[0] == 0x1f && magic[1] == 0x8b {
			hint = "the file is gzipped twice; gunzip it once"
		}
		return nil, idxErr(name, "bad magic number 0x%08x: an IDX file starts with 0x00 0x00, the element type (0x08 for uint8) and the number of dimensions; %s",
			binary.BigEndian.Uint32(magic[:]), hint)
	}
	if magic[2] != elem {
		tn, ok := idxTypeNames[magic[2]]
		if !ok {
			return nil, idxErr(name, "bad magic number 0x%08x: unknown IDX element type 0x%02x; is this an IDX file (MNIST format)?", binary.BigEndian.Uint32(magic[:]), magic[2])
		}
		if elem == idxInt32 {
			return nil, idxErr(name, "IDX element type %s (0x%02x) is not supported: a group file must be int32 (magic 0x00000C01)", tn, magic[2])
		}
		return nil, idxErr(name, "IDX element type %s (0x%02x) is not supported: images and labels must be uint8 (magic 0x0000080N)", tn, magic[2])
	}
	esize := uint64(1)
	if elem == idxInt32 {
		esize = 4
	}
	ndim := int(magic[3])
	hdr := make([]byte, 4*ndim)
	if n, err := io.ReadFull(src, hdr); err != nil {
		if gzipped && !isEOF(err) {
			return nil, idxErr(name, "corrupt gzip data (%v); download the file again", err)
		}
		return nil, idxErr(name, "truncated header: %d dimensions declared but only %d of their %d size bytes present; the file is incomplete, download it again", ndim, n, len(hdr))
	}
	dims := make([]int, ndim)
	total := esize
	for i := range dims {
		d := binary.BigEndian.Uint32(hdr[4*i:])
		dims[i] = int(d)
		hi, lo := bits.Mul64(total, uint64(d))
		if hi != 0 || lo > maxIDXBytes {
			return nil, idxErr(name, "header declares dimensions %v, over %d GiB of data; the header is corrupt", dims[:i+1], maxIDXBytes>>30)
		}
		total = lo
	}
	headLen := int64(4 + 4*ndim)
	if !gzipped && fileSize >= 0 {
		have := fileSize - headLen
		if have < int64(total) {
			return nil, idxErr(name, "truncated: header declares %v = %d bytes of %s data but the file holds %d; the file is incomplete, download it again", dims, total, idxTypeNames[elem], have)
		}
		if have > int64(total) {
			return nil, idxErr(name, "%d bytes after the %v = %d bytes of data the header declares; the file is corrupt or not an IDX file", have-int64(total), dims, total)
		}
	}

	data, err := readN(src, int(total))
	if err != nil {
		if gzipped && !isEOF(err) {
			return nil, idxErr(name, "corrupt gzip data after %d of %d bytes (%v); download the file again", len(data), total, err)
		}
		return nil, idxErr(name, "truncated: header declares %v = %d bytes of %s data but the file holds %d; the file is incomplete, download it again", dims, total, idxTypeNames[elem], len(data))
	}
	// Read to the end: gzip verifies its checksum there, and trailing bytes
	// mean the header and the content disagree.
	var one [1]byte
	n, err := io.ReadFull(src, one[:])
	switch {
	case n > 0:
		extra, _ := io.Copy(io.Discard, src)
		return nil, idxErr(name, "%d bytes after the %v = %d bytes of data the header declares; the file is corrupt or not an IDX file", extra+1, dims, total)
	case err != nil && !isEOF(err):
		return nil, idxErr(name, "corrupt gzip data (%v); download the file again", err)
	}
	return &IDX{Dims: dims, Data: data}, nil
}

// readN reads exactly n bytes, allocating at most firstAlloc before the data arrives.
func readN(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, min(n, firstAlloc))
	got := 0
	for {
		m, err := io.ReadFull(r, buf[got:])
		got += m
		if err != nil {
			return buf[:got], err
		}
		if got == n {
			return buf, nil
		}
		grown := make([]byte, min(n, 2*len(buf)))
		copy(grown, buf)
		buf = grown
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func idxErr(name, format string, args ...any) error {
	return fmt.Errorf("datasets: %s: "+format, append([]any{name}, args...)...)
}

// idxImages checks that x holds images, [N,H,W] (gray), [N,H,W,1] (gray) or
// [N,H,W,3] (RGB), and returns N, H, W and the number of channels.
func idxImages(x *IDX, name string) (n, h, w, c int, err error) {
	switch {
	case len(x.Dims) == 3:
		return x.Dims[0], x.Dims[1], x.Dims[2], 1, nil
	case len(x.Dims) == 4 && (x.Dims[3] == 3 || x.Dims[3] == 1):
		return x.Dims[0], x.Dims[1], x.Dims[2], x.Dims[3], nil
	}
	return 0, 0, 0, 0, fmt.Errorf("datasets: %s: images must have dimensions [N,H,W] (gray, magic 0x00000803) or [N,H,W,3] (RGB, magic 0x00000804), the file has %v; is it a labels file given as images?",
		name, x.Dims)
}

// ReadIDXImages reads an images file ([N,H,W] or [N,H,W,3] uint8) and its
// labels file ([N] uint8) into a Dataset whose class names are classes (nil:
// "0", "1", … up to the largest label). Counts, dimensions and label range are checked.
func ReadIDXImages(imagesPath, labelsPath string, classes []string) (*Dataset, error) {
	imgs, err := ReadIDXFile(imagesPath)
	if err != nil {
		return nil, err
	}
	n, h, w, c, err := idxImages(imgs, imagesPath)
	if err != nil {
		return nil, err
	}
	lab, err := ReadIDXFile(labelsPath)
	if err != nil {
		return nil, err
	}
	if len(lab.Dims) != 1 {
		return nil, fmt.Errorf("datasets: %s: labels must have dimensions [N] (magic 0x00000801), the file has %v; is it an images file given as labels?", labelsPath, lab.Dims)
	}
	if lab.Dims[0] != n {
		return nil, fmt.Errorf("datasets: %s has %d images but %s has %d labels; the two files must come from the same dataset and split: download both again",
			imagesPath, n, labelsPath, lab.Dims[0])
	}
	labels := make([]int32, n)
	maxLabel := -1
	for i, v := range lab.Data {
		labels[i] = int32(v)
		maxLabel = max(maxLabel, int(v))
	}
	if classes == nil {
		classes = numberedClasses(maxLabel + 1)
	} else if maxLabel >= len(classes) {
		for i, v := range lab.Data {
			if int(v) >= len(classes) {
				return nil, fmt.Errorf("datasets: %s: label %d of example %d is outside the %d classes listed; classes.txt needs one class name a line, for every label",
					labelsPath, v, i, len(classes))
			}
		}
	}
	name := filepath.Base(imagesPath)
	return newDataset(name, classes, &pixelStore{h: h, w: w, c: c, pix: imgs.Data, labels: labels}), nil
}

func numberedClasses(k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}
