package memoir

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models/llama"
)

// A memory file is one safetensors file holding an editor's state, its
// settings in the header's __metadata__ (strings):
//
//	editkit.memory  "1" (the format's version)
//	method          memoir | grace | ft-l
//	layer, edits    the edited layer, the number of edits applied
//	config          the method's settings (JSON)
//	model           the model it was made for (JSON: sizes and a digest of
//	                the edited layer's down_proj), checked when loading
//	templates       MEMOIR's augmentation templates (JSON list)
//	labels          GRACE's key labels, target token ids (JSON lists)
//
// plus what SaveOptions.Metadata adds (the CLI records the edit file and
// EditsDigest of the edits). Tensors:
//
//	MEMOIR  memoir.memory      F32 [hidden, intermediate]  W_m
//	        memoir.permutation I64 [intermediate]          π
//	        memoir.background  F32 [intermediate]          μ_bg
//	        memoir.masks       U8  [edits, ⌈intermediate/8⌉] bit-packed masks
//	GRACE   grace.keys         F32 [entries, intermediate]
//	        grace.values       F32 [entries, hidden]
//	        grace.epsilons     F64 [entries]
//	FT-L    ftl.delta          F32 [hidden, intermediate]  edited − original down_proj
const memoryFormat = "1"

// SaveOptions configure Editor.Save.
type SaveOptions struct {
	// Force replaces an existing file.
	Force bool
	// Metadata is added to the file's metadata.
	Metadata map[string]string
	// Inputs are paths the output must not overwrite.
	Inputs []string
}

type tensorData struct {
	spec checkpoint.TensorSpec
	raw  []byte
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func f64Bytes(v []float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

func spec(name string, dt checkpoint.DType, shape ...int) checkpoint.TensorSpec {
	s := checkpoint.TensorSpec{Name: name, DType: dt}
	for _, d := range shape {
		s.Shape = append(s.Shape, int64(d))
	}
	return s
}

// writeMemory writes tensors and metadata as one safetensors file.
func writeMemory(path string, o SaveOptions, meta map[string]string, ts []tensorData) error {
	all := map[string]string{"editkit.memory": memoryFormat}
	for k, v := range o.Metadata {
		all[k] = v
	}
	for k, v := range meta {
		all[k] = v
	}
	specs := make([]checkpoint.TensorSpec, len(ts))
	for i, t := range ts {
		specs[i] = t.spec
	}
	w, err := checkpoint.Create(path, specs, checkpoint.WriteOptions{Metadata: all, Force: o.Force, Inputs: o.Inputs})
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := w.Write(t.spec.Name, t.raw); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

func jsonString(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(data)
}

func commonMeta(method Method, layer, edits int, cfg any, info modelInfo) map[string]string {
	return map[string]string{
		"method": string(method), "layer": strconv.Itoa(layer), "edits": strconv.Itoa(edits),
		"config": jsonString(cfg), "model": jsonString(info),
	}
}

// Save writes W_m, π, μ_bg, the masks and the settings.
func (m *MEMOIR) Save(path string, o SaveOptions) error {
	mc := m.base.Model.Config
	n, nb := mc.IntermediateSize, MaskBytes(mc.IntermediateSize)
	perm := make([]byte, 8*n)
	for i, p := range m.hash.Perm {
		binary.LittleEndian.PutUint64(perm[8*i:], uint64(p))
	}
	masks := make([]byte, 0, len(m.masks)*nb)
	for _, mk := range m.masks {
		masks = append(masks, mk...)
	}
	meta := commonMeta(MethodMEMOIR, m.cfg.Layer, len(m.masks), m.cfg, m.info)
	meta["templates"] = jsonString(m.templates)
	return writeMemory(path, o, meta, []tensorData{
		{spec(memoryName, checkpoint.F32, mc.HiddenSize, n), f32Bytes(m.memory)},
		{spec("memoir.permutation", checkpoint.I64, n), perm},
		{spec("memoir.background", checkpoint.F32, n), f32Bytes(m.background)},
		{spec("memoir.masks", checkpoint.U8, len(m.masks), nb), masks},
	})
}

// Save writes the codebook and the settings.
func (g *GRACE) Save(path string, o SaveOptions) error {
	mc := g.base.Model.Config
	n := g.book.Len()
	var keys, values []float32
	for i := range n {
		keys = append(keys, g.book.Keys[i]...)
		values = append(values, g.book.Values[i]...)
	}
	labels := g.book.Labels
	if labels == nil {
		labels = [][]int{}
	}
	meta := commonMeta(MethodGRACE, g.cfg.Layer, g.edits, g.cfg, g.info)
	meta["labels"] = jsonString(labels)
	return writeMemory(path, o, meta, []tensorData{
		{spec("grace.keys", checkpoint.F32, n, mc.IntermediateSize), f32Bytes(keys)},
		{spec("grace.values", checkpoint.F32, n, mc.HiddenSize), f32Bytes(values)},
		{spec("grace.epsilons", checkpoint.F64, n), f64Bytes(g.book.Eps)},
	})
}

// Save writes the down_proj delta and the settings.
func (f *FTL) Save(path string, o SaveOptions) error {
	mc := f.base.Model.Config
	return writeMemory(path, o, commonMeta(MethodFTL, f.cfg.Layer, f.edits, f.cfg, f.info), []tensorData{
		{spec("ftl.delta", checkpoint.F32, mc.HiddenSize, mc.IntermediateSize), f32Bytes(f.Delta())},
	})
}

// MemoryInfo is what a memory file's metadata says.
type MemoryInfo struct {
	Method   Method
	Layer    int
	Edits    int
	Metadata map[string]string
}

// ReadMemoryInfo reads a memory file's metadata.
func ReadMemoryInfo(path string) (*MemoryInfo, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	return memoryInfo(ck)
}

func memoryInfo(ck *checkpoint.Checkpoint) (*MemoryInfo, error) {
	md := ck.Metadata
	if md["editkit.memory"] == "" {
		return nil, fmt.Errorf("%s is not an editkit memory file (no editkit.memory metadata): give a file written by 'editkit memoir edit'", ck.Path)
	}
	if v := md["editkit.memory"]; v != memoryFormat {
		return nil, fmt.Errorf("%s: memory format version %q, this editkit reads %q", ck.Path, v, memoryFormat)
	}
	method, err := ParseMethod(md["method"])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ck.Path, err)
	}
	layer, err1 := strconv.Atoi(md["layer"])
	edits, err2 := strconv.Atoi(md["edits"])
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("%s: bad layer or edits metadata: %w", ck.Path, err)
	}
	return &MemoryInfo{Method: method, Layer: layer, Edits: edits, Metadata: md}, nil
}

// Load reads a memory file written by an Editor's Save and binds it to
// base, which must be the model it was made for.
func Load(path string, base *Base) (Editor, *MemoryInfo, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer ck.Close()
	info, err := memoryInfo(ck)
	if err != nil {
		return nil, nil, err
	}
	md := info.Metadata
	if err := base.checkLayer(info.Layer); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var want modelInfo
	if err := json.Unmarshal([]byte(md["model"]), &want); err != nil {
		return nil, nil, fmt.Errorf("%s: bad model metadata: %w", path, err)
	}
	if got := base.info(info.Layer); got != want {
		return nil, nil, fmt.Errorf("%s was made for another model (%s), not this one (%s)", path, md["model"], jsonString(got))
	}
	r := &reader{ck: ck}
	var ed Editor
	switch info.Method {
	case MethodMEMOIR:
		ed, err = loadMEMOIR(r, base, info)
	case MethodGRACE:
		ed, err = loadGRACE(r, base, info)
	case MethodFTL:
		ed, err = loadFTL(r, base, info)
	}
	if err == nil {
		err = r.err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return ed, info, nil
}

// reader reads tensors, keeping the first error.
type reader struct {
	ck  *checkpoint.Checkpoint
	err error
}

func (r *reader) raw(name string, dt checkpoint.DType, shape ...int) []byte {
	if r.err != nil {
		return nil
	}
	t, ok := r.ck.Tensor(name)
	if !ok {
		r.err = fmt.Errorf("no tensor %q", name)
		return nil
	}
	want := spec(name, dt, shape...)
	if t.DType != dt || fmt.Sprint(t.Shape) != fmt.Sprint(want.Shape) {
		r.err = fmt.Errorf("tensor %q is %s %v, want %s %v", name, t.DType, t.Shape, dt, want.Shape)
		return nil
	}
	b, err := r.ck.ReadRaw(name, nil)
	r.err = err
	return b
}

func (r *reader) f32(name string, shape ...int) []float32 {
	b := r.raw(name, checkpoint.F32, shape...)
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func (r *reader) f64(name string, shape ...int) []float64 {
	b := r.raw(name, checkpoint.F64, shape...)
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

func loadMEMOIR(r *reader, base *Base, info *MemoryInfo) (*MEMOIR, error) {
	var c Config
	if err := json.Unmarshal([]byte(info.Metadata["config"]), &c); err != nil {
		return nil, fmt.Errorf("bad config metadata: %w", err)
	}
	m, err := newMEMOIR(base, c)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(info.Metadata["templates"]), &m.templates); err != nil {
		return nil, fmt.Errorf("bad templates metadata: %w", err)
	}
	mc := base.Model.Config
	n, nb := mc.IntermediateSize, MaskBytes(mc.IntermediateSize)
	m.memory = r.f32(memoryName, mc.HiddenSize, n)
	m.background = r.f32("memoir.background", n)
	perm := r.raw("memoir.permutation", checkpoint.I64, n)
	masks := r.raw("memoir.masks", checkpoint.U8, info.Edits, nb)
	if r.err != nil {
		return nil, r.err
	}
	for i := range m.hash.Perm {
		m.hash.Perm[i] = int(int64(binary.LittleEndian.Uint64(perm[8*i:])))
	}
	if err := m.hash.Check(); err != nil {
		return nil, err
	}
	for i := range info.Edits {
		m.masks = append(m.masks, Mask(masks[i*nb:(i+1)*nb]))
	}
	return m, nil
}

func loadGRACE(r *reader, base *Base, info *MemoryInfo) (*GRACE, error) {
	var c GRACEConfig
	if err := json.Unmarshal([]byte(info.Metadata["config"]), &c); err != nil {
		return nil, fmt.Errorf("bad config metadata: %w", err)
	}
	g, err := NewGRACE(base, c)
	if err != nil {
		return nil, err
	}
	var labels [][]int
	if err := json.Unmarshal([]byte(info.Metadata["labels"]), &labels); err != nil {
		return nil, fmt.Errorf("bad labels metadata: %w", err)
	}
	mc := base.Model.Config
	n := len(labels)
	keys := r.f32("grace.keys", n, mc.IntermediateSize)
	values := r.f32("grace.values", n, mc.HiddenSize)
	eps := r.f64("grace.epsilons", n)
	if r.err != nil {
		return nil, r.err
	}
	for i := range n {
		g.book.Keys = append(g.book.Keys, keys[i*mc.IntermediateSize:(i+1)*mc.IntermediateSize])
		g.book.Values = append(g.book.Values, values[i*mc.HiddenSize:(i+1)*mc.HiddenSize])
	}
	g.book.Eps, g.book.Labels, g.edits = eps, labels, info.Edits
	return g, nil
}

func loadFTL(r *reader, base *Base, info *MemoryInfo) (*FTL, error) {
	var c FTLConfig
	if err := json.Unmarshal([]byte(info.Metadata["config"]), &c); err != nil {
		return nil, fmt.Errorf("bad config metadata: %w", err)
	}
	f, err := NewFTL(base, c)
	if err != nil {
		return nil, err
	}
	mc := base.Model.Config
	delta := r.f32("ftl.delta", mc.HiddenSize, mc.IntermediateSize)
	if r.err != nil {
		return nil, r.err
	}
	for i := range f.w {
		f.w[i] = f.w0[i] + delta[i]
	}
	f.edits = info.Edits
	return f, f.update()
}

// ModelForGeneration returns the model to continue prompt with under a
// memory: MEMOIR routes the prompt (the memory under the matched edit's
// mask, or the unedited model), FT-L is the edited weight. GRACE's
// codebook replaces one token's output and is not supported here. desc
// says what was chosen.
func ModelForGeneration(ed Editor, prompt []int) (m *llama.Model, desc string, err error) {
	switch e := ed.(type) {
	case *MEMOIR:
		m, r, err := e.ModelFor(prompt)
		if err != nil {
			return nil, "", err
		}
		if !r.Active {
			if r.Index < 0 {
				return m, "MEMOIR: the memory holds no edits; unedited model", nil
			}
			return m, fmt.Sprintf("MEMOIR: best mask overlap %.3f (edit %d) < τ %.3f; unedited model", r.Overlap, r.Index, e.Threshold()), nil
		}
		return m, fmt.Sprintf("MEMOIR: routed to edit %d (mask overlap %.3f ≥ τ %.3f)", r.Index, r.Overlap, e.Threshold()), nil
	case *FTL:
		return e.Model(), fmt.Sprintf("FT-L: down_proj of layer %d fine-tuned on %d edits", e.cfg.Layer, e.edits), nil
	}
	return nil, "", fmt.Errorf("generation with a %s memory is not supported (its codebook replaces the output at the last prompt token only; evaluate it with 'editkit memoir eval')", ed.Method())
}
