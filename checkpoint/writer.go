package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nlpodyssey/safetensors"
)

// DefaultShardSize is the shard size of Hugging Face's save_pretrained (5 GB).
const DefaultShardSize = 5_000_000_000

// TensorSpec declares a tensor to be written.
type TensorSpec struct {
	Name  string
	DType DType
	Shape []int64
}

// Bytes is the size of the tensor's data.
func (s TensorSpec) Bytes() int64 {
	n := int64(s.DType.Size())
	for _, d := range s.Shape {
		n *= d
	}
	return n
}

// WriteOptions configure [Create].
type WriteOptions struct {
	// ShardSize is the largest shard in bytes (DefaultShardSize when 0).
	// A single tensor larger than it gets a shard of its own.
	ShardSize int64
	// Metadata goes into every file's __metadata__, next to "format": "pt".
	Metadata map[string]string
	// Force replaces an existing output.
	Force bool
	// Inputs are paths the output must not overwrite or lie inside.
	Inputs []string
	// WriteFloat32 refuses the values a tensor's dtype cannot store as a
	// finite number (NaN, ±Inf, or beyond a 16-bit dtype's range, which
	// would become ±Inf), with an *UnencodableError, unless AllowNonfinite
	// writes them as they come (out-of-range values then become ±Inf) or
	// Saturate writes ±Inf and out-of-range values as the dtype's largest
	// finite value of the same sign, counting them in Saturated (when
	// set); a NaN is refused even then.
	AllowNonfinite bool
	Saturate       bool
	Saturated      *atomic.Int64
}

// Writer writes a checkpoint tensor by tensor, in the order its specs were
// declared. Nothing is visible at the target until Commit.
type Writer struct {
	target  string
	tmp     string // temporary folder or file
	single  bool   // target is a .safetensors file, not a folder
	force   bool
	specs   []TensorSpec
	shardOf []int
	shards  []shard
	next    int
	pos     int64 // bytes of specs[next] written so far
	cur     *os.File
	curIdx  int
	scratch []byte
	done    bool
	// WriteOptions.AllowNonfinite, Saturate and Saturated.
	allowNonfinite bool
	saturate       bool
	saturated      *atomic.Int64
	clamped        []float32 // scratch for saturated values
}

type shard struct {
	name   string
	first  int // index of its first spec
	header []byte
}

// Create starts writing a checkpoint at out: a .safetensors file when out ends
// in ".safetensors", else a folder (model.safetensors, or shards with
// model.safetensors.index.json when the data exceeds the shard size). It fails
// at once when out is an input, lies inside one, holds one, or exists without
// Force.
func Create(out string, specs []TensorSpec, opts WriteOptions) (*Writer, error) {
	if out == "" {
		return nil, errors.New("no output path given")
	}
	if err := CheckOutput(out, opts.Inputs, opts.Force); err != nil {
		return nil, err
	}
	w := &Writer{target: out, single: strings.HasSuffix(out, ".safetensors"), force: opts.Force, specs: specs,
		allowNonfinite: opts.AllowNonfinite, saturate: opts.Saturate, saturated: opts.Saturated}
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		if seen[s.Name] {
			return nil, fmt.Errorf("writing %s: tensor %s declared twice", out, QuoteName(s.Name))
		}
		seen[s.Name] = true
		if err := checkSpec(s); err != nil {
			return nil, fmt.Errorf("writing %s: tensor %s: %w", out, QuoteName(s.Name), err)
		}
	}
	shardSize := opts.ShardSize
	if shardSize <= 0 || w.single {
		shardSize = 1<<63 - 1
	}
	// Greedy sharding in declaration order, as save_pretrained does.
	var size int64
	w.shardOf = make([]int, len(specs))
	for i, s := range specs {
		if len(w.shards) == 0 || (size > 0 && size+s.Bytes() > shardSize) {
			w.shards = append(w.shards, shard{first: i})
			size = 0
		}
		size += s.Bytes()
		w.shardOf[i] = len(w.shards) - 1
	}
	if len(w.shards) == 0 {
		w.shards = append(w.shards, shard{})
	}
	meta := map[string]string{"format": "pt"}
	for k, v := range opts.Metadata {
		meta[k] = v
	}
	for i := range w.shards {
		sh := &w.shards[i]
		switch {
		case w.single:
			sh.name = filepath.Base(out)
		case len(w.shards) == 1:
			sh.name = SingleFile
		default:
			sh.name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(w.shards))
		}
		end := len(specs)
		if i+1 < len(w.shards) {
			end = w.shards[i+1].first
		}
		h, err := encodeHeader(specs[sh.first:end], meta)
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", out, err)
		}
		sh.header = h
	}
	dir, base := filepath.Split(filepath.Clean(out))
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the folder of output %s: %w", out, err)
	}
	var err error
	if w.tmp, err = newTemp(dir, tempPrefix(base), !w.single); err != nil {
		return nil, fmt.Errorf("creating output beside %s: %w", out, err)
	}
	w.curIdx = -1
	return w, nil
}

// checkSpec rejects specs that cannot be written: a name that collides with
// the header's metadata entry, an unknown dtype (whose Size would panic), a
// negative dimension or a size that overflows int64.
func checkSpec(s TensorSpec) error {
	if s.Name == "__metadata__" {
		return errors.New("the name __metadata__ is reserved for the header's metadata")
	}
	if i := firstInvalidUTF8([]byte(s.Name)); i >= 0 {
		return fmt.Errorf("the name is not valid UTF-8 (byte 0x%02x at byte %d of the name)", s.Name[i], i)
	}
	if s.DType > safetensors.U64 {
		return fmt.Errorf("unknown dtype %d", uint8(s.DType))
	}
	n := s.DType.Size()
	for _, d := range s.Shape {
		if d < 0 {
			return fmt.Errorf("shape %v has a negative dimension", s.Shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return fmt.Errorf("shape %v overflows", s.Shape)
		}
		n = lo
	}
	return nil
}

// createTemp creates a new empty file or folder with a unique name in dir.
// Unlike os.CreateTemp and os.MkdirTemp (0600 and 0700) it uses the modes of
// os.Create and os.Mkdir (0644 and 0755, less the umask): the temporary is
// renamed into place and becomes the output, which others may need to read.
func createTemp(dir, prefix string, isDir bool) (string, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64()&0xffffffffff, 36))
		var err error
		if isDir {
			err = os.Mkdir(name, 0o755)
		} else {
			var f *os.File
			if f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
				err = f.Close()
			}
		}
		if errors.Is(err, fs.ErrExist) && try < 1000 {
			continue
		}
		return name, err
	}
}

// encodeHeader lays out the tensors' data back to back and encodes the
// header, padded with spaces to a multiple of 8 bytes so data stays aligned.
func encodeHeader(specs []TensorSpec, meta map[string]string) ([]byte, error) {
	type entry struct {
		DType   string   `json:"dtype"`
		Shape   []int64  `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	entries := make(map[string]any, len(specs)+1)
	entries["__metadata__"] = meta
	var off int64
	for _, s := range specs {
		shape := s.Shape
		if shape == nil {
			shape = []int64{}
		}
		entries[s.Name] = entry{DType: s.DType.String(), Shape: shape, Offsets: [2]int64{off, off + s.Bytes()}}
		off += s.Bytes()
	}
	js, err := json.Marshal(entries)
	if err != nil {
		return nil, err
	}
	for (8+len(js))%8 != 0 {
		js = append(js, ' ')
	}
	out := make([]byte, 8+len(js))
	binary.LittleEndian.PutUint64(out, uint64(len(js)))
	copy(out[8:], js)
	return out, nil
}

// Specs returns the declared tensors.
func (w *Writer) Specs() []TensorSpec { return w.specs }

// Next returns the spec of the tensor Write expects next, and false when all
// were written.
func (w *Writer) Next() (TensorSpec, bool) {
	if w.next >= len(w.specs) {
		return TensorSpec{}, false
	}
	return w.specs[w.next], true
}

func (w *Writer) shardPath(i int) string {
	if w.single {
		return w.tmp
	}
	return filepath.Join(w.tmp, w.shards[i].name)
}

// Write writes the next tensor's raw bytes; name must be the next declared.
func (w *Writer) Write(name string, raw []byte) error {
	if s, ok := w.Next(); ok && s.Name == name && w.pos == 0 && int64(len(raw)) != s.Bytes() {
		return fmt.Errorf("writing %s: tensor %q has %d bytes, want %d for %s %v", w.target, name, len(raw), s.Bytes(), s.DType, s.Shape)
	}
	return w.WritePart(name, raw)
}

// WritePart appends the next part of the current tensor's raw bytes, so a
// tensor can be written in chunks; the tensor is complete when all its bytes
// have been written.
func (w *Writer) WritePart(name string, raw []byte) error {
	if w.done {
		return errors.New("write after commit or abort")
	}
	s, ok := w.Next()
	if !ok {
		return fmt.Errorf("writing %s: tensor %q written after all %d declared tensors", w.target, name, len(w.specs))
	}
	if s.Name != name {
		return fmt.Errorf("writing %s: tensor %q written out of order (expected %q)", w.target, name, s.Name)
	}
	if w.pos+int64(len(raw)) > s.Bytes() {
		return fmt.Errorf("writing %s: tensor %q gets %d bytes, more than the %d of %s %v", w.target, name, w.pos+int64(len(raw)), s.Bytes(), s.DType, s.Shape)
	}
	if si := w.shardOf[w.next]; si != w.curIdx {
		if err := w.closeShard(); err != nil {
			return err
		}
		var f *os.File
		err := withinTemp(func() (err error) {
			f, err = os.OpenFile(w.shardPath(si), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			return err
		})
		if err != nil {
			return fmt.Errorf("writing %s: %w", w.target, err)
		}
		w.cur, w.curIdx = f, si
		if _, err := f.Write(w.shards[si].header); err != nil {
			return fmt.Errorf("writing %s: %w", w.shardPath(si), err)
		}
	}
	if _, err := w.cur.Write(raw); err != nil {
		return fmt.Errorf("writing %s: %w", w.shardPath(w.curIdx), err)
	}
	w.pos += int64(len(raw))
	if w.pos == s.Bytes() {
		w.next++
		w.pos = 0
	}
	return nil
}

// WriteFloat32 encodes data in the declared dtype of the current tensor and
// appends it, like WritePart: a tensor may be written in several chunks. A
// value the dtype cannot store as a finite number is an *UnencodableError
// (its Index counted from the tensor's start), unless the writer allows or
// saturates it (see WriteOptions).
func (w *Writer) WriteFloat32(name string, data []float32) error {
	s, ok := w.Next()
	if !ok || s.Name != name {
		return w.WritePart(name, nil) // reports the ordering error
	}
	if !w.allowNonfinite {
		if i := FirstUnencodable(s.DType, data); i >= 0 {
			if !w.saturate {
				return fmt.Errorf("writing %s: %w", w.target, &UnencodableError{Tensor: name, DType: s.DType, Index: w.pos/int64(s.DType.Size()) + int64(i), Value: data[i]})
			}
			// The caller's data stays as it is.
			w.clamped = append(w.clamped[:0], data...)
			n, nan, ok := saturate(s.DType, w.clamped, i)
			if !ok {
				return fmt.Errorf("writing %s: %w", w.target, &UnencodableError{Tensor: name, DType: s.DType, Index: w.pos/int64(s.DType.Size()) + int64(nan), Value: data[nan]})
			}
			if w.saturated != nil {
				w.saturated.Add(n)
			}
			data = w.clamped
		}
	}
	if s.DType == F32 && littleEndianHost {
		return w.WritePart(name, float32Bytes(data))
	}
	var err error
	if w.scratch, err = EncodeFloat32(s.DType, data, w.scratch); err != nil {
		return fmt.Errorf("writing %s: tensor %q: %w", w.target, name, err)
	}
	return w.WritePart(name, w.scratch)
}

func (w *Writer) closeShard() error {
	if w.cur == nil {
		return nil
	}
	f := w.cur
	w.cur = nil
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return f.Close()
}

// AddFile adds a side file (config, YAML) to a folder output. It is
// ignored for a single-file output.
func (w *Writer) AddFile(name string, data []byte) error {
	if w.single {
		return nil
	}
	if name != filepath.Base(name) {
		return fmt.Errorf("side file name %q must be a plain file name", name)
	}
	return writeSynced(filepath.Join(w.tmp, name), data)
}

// writeSynced writes a file inside the writer's temporary.
func writeSynced(path string, data []byte) error {
	var f *os.File
	err := withinTemp(func() (err error) {
		f, err = os.Create(path)
		return err
	})
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// maxSideFile bounds the size of side files copied from a base folder.
const maxSideFile = 64 << 20

// weightSuffixes are file types that hold weights and are never copied.
var weightSuffixes = []string{".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".npz"}

// CopySideFiles copies config.json, tokenizer files and other small
// non-weight files from a checkpoint folder into a folder output.
func (w *Writer) CopySideFiles(c *Checkpoint) error {
	if w.single {
		return nil
	}
	if st, err := os.Stat(c.Path); err != nil || !st.IsDir() {
		return nil // a lone .safetensors file has no side files of its own
	}
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return fmt.Errorf("listing %s: %w", c.Dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || hasWeightSuffix(name) || hasWeightSuffix(strings.TrimSuffix(name, ".index.json")) {
			continue // weights, and weight indexes (model.safetensors.index.json, pytorch_model.bin.index.json)
		}
		// Stat follows symlinks: a Hugging Face cache snapshot is a folder of
		// links into its blob store.
		info, err := os.Stat(filepath.Join(c.Dir, name))
		if err != nil || !info.Mode().IsRegular() || info.Size() > maxSideFile {
			continue
		}
		if fileExists(filepath.Join(w.tmp, name)) {
			continue // files the writer was given take precedence
		}
		data, err := os.ReadFile(filepath.Join(c.Dir, name))
		if err != nil {
			return fmt.Errorf("copying %s: %w", name, err)
		}
		if err := writeSynced(filepath.Join(w.tmp, name), data); err != nil {
			return fmt.Errorf("copying %s: %w", name, err)
		}
	}
	return nil
}

func hasWeightSuffix(name string) bool {
	for _, s := range weightSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// Commit finishes the last shard, writes the index of a sharded output, syncs
// everything and renames it into place.
func (w *Writer) Commit() error {
	if w.done {
		return errors.New("commit after commit or abort")
	}
	if w.next < len(w.specs) {
		err := fmt.Errorf("writing %s: only %d of %d tensors were written (next: %q)", w.target, w.next, len(w.specs), w.specs[w.next].Name)
		w.Abort()
		return err
	}
	if err := w.finish(); err != nil {
		w.Abort()
		return err
	}
	w.done = true
	return nil
}

func (w *Writer) finish() error {
	if err := w.closeShard(); err != nil {
		return err
	}
	// Shards without tensors (an empty checkpoint) still get their header.
	for i := range w.shards {
		if !fileExists(w.shardPath(i)) || (w.single && w.curIdx < 0) {
			if err := writeSynced(w.shardPath(i), w.shards[i].header); err != nil {
				return err
			}
		}
	}
	if !w.single && len(w.shards) > 1 {
		var total int64
		weightMap := make(map[string]string, len(w.specs))
		for i, s := range w.specs {
			total += s.Bytes()
			weightMap[s.Name] = w.shards[w.shardOf[i]].name
		}
		idx := map[string]any{"metadata": map[string]int64{"total_size": total}, "weight_map": weightMap}
		js, err := json.MarshalIndent(idx, "", "  ")
		if err != nil {
			return err
		}
		if err := writeSynced(filepath.Join(w.tmp, IndexFile), append(js, '\n')); err != nil {
			return err
		}
	}
	if err := withinTemp(func() error { return replace(w.tmp, w.target, w.force) }); err != nil {
		return err
	}
	dropTemp(w.tmp)
	return nil
}

// replace renames tmp to target; an existing target (allowed by force) is
// moved aside first and removed only once the new one is in place.
func replace(tmp, target string, force bool) error {
	var old string
	if _, err := os.Lstat(target); err == nil {
		if !force {
			return fmt.Errorf("output %s appeared while writing: pass --force to replace it", target)
		}
		old = tmp + ".old"
		if err := os.Rename(target, old); err != nil {
			return fmt.Errorf("moving aside %s: %w", target, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		if old != "" {
			os.Rename(old, target)
		}
		return fmt.Errorf("renaming into %s: %w", target, err)
	}
	syncDir(filepath.Dir(target))
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Abort removes everything written so far. It is safe to call after Commit
// (then it does nothing), so `defer w.Abort()` is the usual pattern.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	if w.cur != nil {
		w.cur.Close()
		w.cur = nil
	}
	removeTemp(w.tmp)
}
