package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/editkit/editkit/internal/simd"
)

// File names of the Hugging Face checkpoint layout.
const (
	SingleFile = "model.safetensors"
	IndexFile  = "model.safetensors.index.json"
)

// Checkpoint is an open checkpoint whose tensors are read on demand.
// It is safe for concurrent reads.
type Checkpoint struct {
	// Path is the path the checkpoint was opened from.
	Path string
	// Dir is the folder that holds the checkpoint's side files
	// (config.json, tokenizer files).
	Dir string
	// Metadata is the __metadata__ of the first file.
	Metadata map[string]string

	files   []*os.File
	sizes   []int64
	tensors []TensorInfo
	index   map[string]int
	// borrowed: the files belong to other checkpoints (see Compose).
	borrowed bool
}

// Open opens a .safetensors file, a folder holding model.safetensors, or a
// sharded folder with model.safetensors.index.json, and validates every
// header. It reads no tensor data. A folder holding both model.safetensors
// and an index opens model.safetensors, as transformers' from_pretrained
// does (modeling_utils: the single file is looked for before the index).
// Files that are not regular files (a named pipe, a device) are refused
// before they are opened, since reading one could block forever.
func Open(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("checkpoint %s does not exist: give a .safetensors file or a folder holding %s or %s", path, SingleFile, IndexFile)
		}
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	c := &Checkpoint{Path: path, index: make(map[string]int)}
	var files []string
	var weightMap map[string]string
	switch {
	case !st.IsDir():
		if err := checkRegular(path, st); err != nil {
			return nil, err
		}
		c.Dir = filepath.Dir(path)
		files = []string{path}
	case fileExists(filepath.Join(path, SingleFile)):
		c.Dir = path
		files = []string{filepath.Join(path, SingleFile)}
	case fileExists(filepath.Join(path, IndexFile)):
		c.Dir = path
		files, weightMap, err = readIndex(filepath.Join(path, IndexFile))
		if err != nil {
			return nil, err
		}
	default:
		for _, name := range []string{SingleFile, IndexFile} {
			if st, err := os.Stat(filepath.Join(path, name)); err == nil && !st.IsDir() {
				if err := checkRegular(filepath.Join(path, name), st); err != nil {
					return nil, err
				}
			}
		}
		return nil, fmt.Errorf("checkpoint folder %s holds neither %s nor %s", path, SingleFile, IndexFile)
	}
	for _, name := range files {
		if err := c.addFile(name); err != nil {
			c.Close()
			return nil, err
		}
	}
	if weightMap != nil {
		if err := c.checkWeightMap(weightMap); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// fileExists reports whether p is a regular file (after symlinks), as
// Python's os.path.isfile, which transformers uses to find weights.
func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// checkRegular refuses a path that is not a regular file.
func checkRegular(path string, st fs.FileInfo) error {
	if st.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("%s is not a regular file (%s): give a .safetensors file or a checkpoint folder", path, describeMode(st.Mode()))
}

// describeMode names a non-regular file's type.
func describeMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a folder"
	}
	return "type " + m.Type().String()
}

// CheckReadable refuses a path that exists but is neither a regular file
// nor a folder: reading a named pipe or a device could block forever or
// never end. A missing path is not an error here (the reader reports it).
func CheckReadable(path string) error {
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("%s is %s, not a file or folder: give a regular file", path, describeMode(st.Mode()))
}

// readIndex reads a sharded checkpoint's index and returns its shard files in
// name order and its weight map.
func readIndex(path string) ([]string, map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading index: %w", err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, nil, fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, nil, fmt.Errorf("%s: no weight_map entries", path)
	}
	dir := filepath.Dir(path)
	seen := make(map[string]bool)
	var files []string
	for tensor, f := range idx.WeightMap {
		if f == "" || filepath.IsAbs(f) || strings.Contains(f, "..") || strings.ContainsRune(f, os.PathSeparator) {
			return nil, nil, fmt.Errorf("%s: tensor %s maps to shard %s, which is not a file name in the same folder", path, QuoteName(tensor), QuoteName(f))
		}
		if !seen[f] {
			seen[f] = true
			p := filepath.Join(dir, f)
			if !fileExists(p) {
				return nil, nil, fmt.Errorf("%s: shard %s (holding %s) is missing", path, p, QuoteName(tensor))
			}
			files = append(files, p)
		}
	}
	sort.Strings(files)
	return files, idx.WeightMap, nil
}

func (c *Checkpoint) addFile(name string) error {
	if st, err := os.Stat(name); err == nil {
		if err := checkRegular(name, st); err != nil {
			return err
		}
	}
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("opening checkpoint file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	h, err := parseHeader(f, st.Size(), name)
	if err != nil {
		f.Close()
		return err
	}
	c.files = append(c.files, f)
	c.sizes = append(c.sizes, st.Size())
	if c.Metadata == nil {
		c.Metadata = h.metadata
	}
	for _, t := range h.tensors {
		if i, dup := c.index[t.Name]; dup {
			return fmt.Errorf("tensor %s is stored twice: in %s and in %s", QuoteName(t.Name), c.tensors[i].File, name)
		}
		c.index[t.Name] = len(c.tensors)
		c.tensors = append(c.tensors, t)
	}
	return nil
}

func (c *Checkpoint) checkWeightMap(wm map[string]string) error {
	for _, t := range c.tensors {
		f, ok := wm[t.Name]
		if !ok {
			return fmt.Errorf("%s: tensor %s of %s is not listed in the index's weight_map", filepath.Join(c.Dir, IndexFile), QuoteName(t.Name), t.File)
		}
		if f != filepath.Base(t.File) {
			return fmt.Errorf("%s: the index puts tensor %s in %s, but it is in %s", filepath.Join(c.Dir, IndexFile), QuoteName(t.Name), QuoteName(f), t.File)
		}
	}
	if len(wm) != len(c.tensors) {
		for name, f := range wm {
			if _, ok := c.index[name]; !ok {
				return fmt.Errorf("%s: tensor %s is listed in the index but missing from shard %s", filepath.Join(c.Dir, IndexFile), QuoteName(name), ShortName(f))
			}
		}
	}
	return nil
}

// Close closes the checkpoint's files.
func (c *Checkpoint) Close() error {
	if c.borrowed {
		c.files = nil
		return nil
	}
	var first error
	for _, f := range c.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	c.files = nil
	return first
}

// Tensors lists the tensors in storage order (shard by shard, by offset).
func (c *Checkpoint) Tensors() []TensorInfo { return c.tensors }

// Tensor returns the named tensor's description.
func (c *Checkpoint) Tensor(name string) (TensorInfo, bool) {
	i, ok := c.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return c.tensors[i], true
}

// Files lists the safetensors files and their sizes in bytes.
func (c *Checkpoint) Files() (paths []string, sizes []int64) {
	for _, f := range c.files {
		paths = append(paths, f.Name())
	}
	return paths, append([]int64(nil), c.sizes...)
}

// Size is the total size of the checkpoint's safetensors files in bytes.
func (c *Checkpoint) Size() int64 {
	var n int64
	for _, s := range c.sizes {
		n += s
	}
	return n
}

func (c *Checkpoint) file(t TensorInfo) *os.File {
	for _, f := range c.files {
		if f.Name() == t.File {
			return f
		}
	}
	return nil
}

// ReadRaw reads the named tensor's bytes into buf (grown when too small).
func (c *Checkpoint) ReadRaw(name string, buf []byte) ([]byte, error) {
	t, ok := c.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %s", c.Path, QuoteName(name))
	}
	return c.readBytes(t, 0, t.Bytes, buf)
}

func (c *Checkpoint) readBytes(t TensorInfo, off, n int64, buf []byte) ([]byte, error) {
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	f := c.file(t)
	if f == nil {
		return nil, fmt.Errorf("%s: checkpoint is closed", c.Path)
	}
	if _, err := f.ReadAt(buf, t.Offset+off); err != nil {
		return nil, fmt.Errorf("%s: reading tensor %s: %w (was the file changed or truncated after opening?)", t.File, QuoteName(t.Name), err)
	}
	return buf, nil
}

// ReadRawRange reads the raw bytes of elements [start, start+n) of a tensor
// into buf (grown when too small), and returns them with the tensor's
// description.
func (c *Checkpoint) ReadRawRange(name string, start, n int64, buf []byte) ([]byte, TensorInfo, error) {
	t, ok := c.Tensor(name)
	if !ok {
		return nil, t, fmt.Errorf("%s: no tensor %s", c.Path, QuoteName(name))
	}
	if err := checkRange(t, start, n); err != nil {
		return nil, t, err
	}
	size := int64(t.DType.Size())
	buf, err := c.readBytes(t, start*size, n*size, buf)
	return buf, t, err
}

// ReadFloat32 reads a whole float tensor as float32; see ReadFloat32Range.
func (c *Checkpoint) ReadFloat32(name string, raw []byte, dst []float32) ([]float32, []byte, error) {
	t, ok := c.Tensor(name)
	if !ok {
		return nil, raw, fmt.Errorf("%s: no tensor %s", c.Path, QuoteName(name))
	}
	return c.ReadFloat32Range(name, 0, t.NumElements(), raw, dst)
}

// ReadFloat32Range reads elements [start, start+n) of a float tensor, in
// flat order, as float32. raw and dst are scratch buffers reused when large
// enough; the result aliases dst's storage and the returned raw buffer is
// the one to pass next time.
func (c *Checkpoint) ReadFloat32Range(name string, start, n int64, raw []byte, dst []float32) ([]float32, []byte, error) {
	t, ok := c.Tensor(name)
	if !ok {
		return nil, raw, fmt.Errorf("%s: no tensor %s", c.Path, QuoteName(name))
	}
	if !IsFloat(t.DType) {
		return nil, raw, fmt.Errorf("%s: tensor %s has dtype %s, not a float type", t.File, QuoteName(name), t.DType)
	}
	if err := checkRange(t, start, n); err != nil {
		return nil, raw, err
	}
	size := int64(t.DType.Size())
	if t.DType == F32 && int64(cap(dst)) >= n {
		// Read straight into dst's storage, no second buffer.
		out := dst[:n]
		if _, err := c.readBytes(t, start*size, n*size, float32Bytes(out)); err != nil {
			return nil, raw, err
		}
		fixEndianF32(out)
		return out, raw, nil
	}
	raw, err := c.readBytes(t, start*size, n*size, raw)
	if err != nil {
		return nil, raw, err
	}
	out, err := DecodeFloat32(t.DType, raw, dst)
	return out, raw, err
}

// CheckFinite returns an error naming the tensor and the first offending
// index when data holds NaN or ±Inf.
func CheckFinite(file, name string, data []float32) error {
	if i := FirstNonFinite(data); i >= 0 {
		return fmt.Errorf("%s: tensor %s holds a non-finite value (%v at flat index %d): fix the checkpoint, or pass --allow-nonfinite to merge it anyway", file, QuoteName(name), data[i], i)
	}
	return nil
}

// FirstNonFinite returns the index of the first NaN or ±Inf in data, or −1.
// It tests exponent bits (all ones means Inf or NaN), 32 values at a time
// with SIMD.
func FirstNonFinite(data []float32) int { return simd.FirstNonFinite(data) }

// checkRange rejects element ranges outside the tensor, written so that
// start+n cannot overflow past the check.
func checkRange(t TensorInfo, start, n int64) error {
	if total := t.NumElements(); start < 0 || n < 0 || start > total || n > total-start {
		return fmt.Errorf("%s: tensor %s: range of %d elements from %d lies outside its %d elements", t.File, QuoteName(t.Name), n, start, total)
	}
	return nil
}

// ReadSideFile reads a small file that sits beside a checkpoint's tensors
// (config.json, a tokenizer): like os.ReadFile, its errors keep os.ErrNotExist,
// but a named pipe, socket or device is refused rather than read, since
// reading one could block forever.
func ReadSideFile(path string) ([]byte, error) {
	if err := CheckReadable(path); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}
