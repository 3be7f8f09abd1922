package tasks_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/x448/float16"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// The helpers in this file write safetensors checkpoints by hand (JSON
// header plus little-endian data), without the checkpoint writer, and decode
// the outputs' bytes by hand, so the tests do not take their expectations
// from the code they check. Float values lie on a 1/64 grid with small
// numerators, so they, their differences and the combinations the tests use
// are exact in float32 (and in bfloat16 and float16 where stored so).

// tensorDef declares a tensor of a test model.
type tensorDef struct {
	name  string
	dtype checkpoint.DType
	shape []int64
}

// defs is the test model: float tensors of every float dtype, integer
// tensors between and after them, a zero-element tensor and a scalar.
var defs = []tensorDef{
	{"model.embed_tokens.weight", checkpoint.F32, []int64{5, 3}},
	{"model.layers.0.attn.weight", checkpoint.F32, []int64{4, 5}},
	{"model.layers.0.position_ids", checkpoint.I64, []int64{6}},
	{"model.layers.0.mlp.weight", checkpoint.BF16, []int64{17}},
	{"model.layers.1.attn.weight", checkpoint.F32, []int64{2, 3, 4}},
	{"model.layers.1.empty", checkpoint.F32, []int64{0}},
	{"model.layers.1.scale", checkpoint.F32, []int64{}},
	{"lm_head.weight", checkpoint.F16, []int64{9}},
	{"model.norm.weight", checkpoint.F32, []int64{13}},
	{"buffers.mask", checkpoint.U8, []int64{3}},
}

func isFloat(dt checkpoint.DType) bool {
	switch dt {
	case checkpoint.F16, checkpoint.BF16, checkpoint.F32, checkpoint.F64:
		return true
	}
	return false
}

func dtypeSize(dt checkpoint.DType) int64 {
	switch dt {
	case checkpoint.F16, checkpoint.BF16:
		return 2
	case checkpoint.F32:
		return 4
	case checkpoint.F64, checkpoint.I64:
		return 8
	case checkpoint.U8:
		return 1
	}
	panic(fmt.Sprintf("dtypeSize: %v", dt))
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// floatDefs lists the float tensors of ds in order.
func floatDefs(ds []tensorDef) []tensorDef {
	var out []tensorDef
	for _, d := range ds {
		if isFloat(d.dtype) {
			out = append(out, d)
		}
	}
	return out
}

// rawT is a tensor as stored.
type rawT struct {
	name  string
	dtype checkpoint.DType
	shape []int64
	data  []byte
}

// encode stores values in dtype dt, failing when one is not exact there.
func encode(t testing.TB, dt checkpoint.DType, vals []float64) []byte {
	t.Helper()
	out := make([]byte, int64(len(vals))*dtypeSize(dt))
	for i, v := range vals {
		f := float32(v)
		if float64(f) != v && !math.IsNaN(v) {
			t.Fatalf("encode: %v is not exact in float32", v)
		}
		switch dt {
		case checkpoint.F32:
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
		case checkpoint.BF16:
			b := math.Float32bits(f)
			if b&0xffff != 0 {
				t.Fatalf("encode: %v is not exact in bfloat16", v)
			}
			binary.LittleEndian.PutUint16(out[2*i:], uint16(b>>16))
		case checkpoint.F16:
			h := float16.Fromfloat32(f)
			if float64(h.Float32()) != v {
				t.Fatalf("encode: %v is not exact in float16", v)
			}
			binary.LittleEndian.PutUint16(out[2*i:], h.Bits())
		case checkpoint.F64:
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(v))
		default:
			t.Fatalf("encode: dtype %v", dt)
		}
	}
	return out
}

// decode reads little-endian float data of dtype dt.
func decode(t testing.TB, dt checkpoint.DType, raw []byte) []float64 {
	t.Helper()
	n := int64(len(raw)) / dtypeSize(dt)
	out := make([]float64, n)
	for i := range out {
		switch dt {
		case checkpoint.F32:
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
		case checkpoint.BF16:
			out[i] = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16))
		case checkpoint.F16:
			out[i] = float64(float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32())
		case checkpoint.F64:
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		default:
			t.Fatalf("decode: dtype %v", dt)
		}
	}
	return out
}

// fileBytes lays tensors back to back behind a header listing them.
func fileBytes(ts []rawT, meta map[string]string) []byte {
	type entry struct {
		DType   string   `json:"dtype"`
		Shape   []int64  `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	h := map[string]any{}
	if meta != nil {
		h["__metadata__"] = meta
	}
	var data []byte
	for _, t := range ts {
		off := int64(len(data))
		h[t.name] = entry{t.dtype.String(), append([]int64{}, t.shape...), [2]int64{off, off + int64(len(t.data))}}
		data = append(data, t.data...)
	}
	js, err := json.Marshal(h)
	if err != nil {
		panic(err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	return append(append(out, js...), data...)
}

// writeCkpt writes tensors as a .safetensors file (path ends so), a folder
// with model.safetensors (shards ≤ 1) or a folder of shards with an index.
func writeCkpt(t testing.TB, path string, ts []rawT, meta map[string]string, shards int) {
	t.Helper()
	write := func(p string, b []byte) {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if strings.HasSuffix(path, ".safetensors") {
		write(path, fileBytes(ts, meta))
		return
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if shards <= 1 {
		write(filepath.Join(path, "model.safetensors"), fileBytes(ts, meta))
		return
	}
	weightMap := map[string]string{}
	var total int
	per := (len(ts) + shards - 1) / shards
	for i := range shards {
		part := ts[min(i*per, len(ts)):min((i+1)*per, len(ts))]
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards)
		for _, r := range part {
			weightMap[r.name] = name
			total += len(r.data)
		}
		write(filepath.Join(path, name), fileBytes(part, meta))
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]int{"total_size": total}, "weight_map": weightMap})
	write(filepath.Join(path, "model.safetensors.index.json"), idx)
}

// model is a checkpoint the test generated: what it stores and the float
// values it holds.
type model struct {
	path string
	ts   []rawT
	vals map[string][]float64
	raw  map[string][]byte
}

// genModel draws values k/64, k in [−100, 100], for the float tensors and
// random bytes for the others; over changes the dtype of some tensors.
func genModel(t testing.TB, ds []tensorDef, seed uint64, over map[string]checkpoint.DType) *model {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	m := &model{vals: map[string][]float64{}, raw: map[string][]byte{}}
	for _, d := range ds {
		dt := d.dtype
		if o, ok := over[d.name]; ok {
			dt = o
		}
		n := numel(d.shape)
		var data []byte
		if isFloat(dt) {
			v := make([]float64, n)
			for i := range v {
				v[i] = float64(r.IntN(201)-100) / 64
			}
			m.vals[d.name] = v
			data = encode(t, dt, v)
		} else {
			data = make([]byte, n*dtypeSize(dt))
			for i := range data {
				data[i] = byte(r.Uint32())
			}
		}
		m.raw[d.name] = data
		m.ts = append(m.ts, rawT{d.name, dt, d.shape, data})
	}
	return m
}

func (m *model) write(t testing.TB, path string, meta map[string]string, shards int) *model {
	t.Helper()
	m.path = path
	writeCkpt(t, path, m.ts, meta, shards)
	return m
}

// fixture is a base (a folder with side files), two fine-tuned models (a
// single file whose BF16 tensor is stored as F32, and a sharded folder) and
// a task vector τ1 = ft1 − base written by hand.
type fixture struct {
	dir            string
	base, ft1, ft2 *model
	tv1            string
	config         []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), config: []byte(`{"model_type": "llama"}`)}
	f.base = genModel(t, defs, 1, nil).write(t, filepath.Join(f.dir, "base"), map[string]string{"format": "pt"}, 1)
	for name, data := range map[string][]byte{"config.json": f.config, "tokenizer.json": []byte(`{"v": 1}`)} {
		if err := os.WriteFile(filepath.Join(f.dir, "base", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.ft1 = genModel(t, defs, 2, map[string]checkpoint.DType{"model.layers.0.mlp.weight": checkpoint.F32}).
		write(t, filepath.Join(f.dir, "ft1.safetensors"), nil, 1)
	f.ft2 = genModel(t, defs, 3, nil).write(t, filepath.Join(f.dir, "ft2"), nil, 2)
	f.tv1 = filepath.Join(f.dir, "tv1.safetensors")
	f.writeTV(t, f.tv1, f.tau(f.ft1), checkpoint.F32, true)
	return f
}

// baseSize is the size of the base's only safetensors file.
func (f *fixture) baseSize(t testing.TB) int64 {
	st, err := os.Stat(filepath.Join(f.base.path, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// tau is m − base for every float tensor of the base, in float64.
func (f *fixture) tau(m *model) map[string][]float64 {
	out := map[string][]float64{}
	for _, d := range floatDefs(defs) {
		b, v := f.base.vals[d.name], m.vals[d.name]
		tau := make([]float64, len(b))
		for k := range tau {
			tau[k] = v[k] - b[k]
		}
		out[d.name] = tau
	}
	return out
}

// writeTV writes taus as a stored task vector of the base's float tensors;
// sized adds the base's size to the metadata.
func (f *fixture) writeTV(t testing.TB, path string, taus map[string][]float64, dt checkpoint.DType, sized bool) {
	t.Helper()
	var ts []rawT
	for _, d := range floatDefs(defs) {
		ts = append(ts, rawT{d.name, dt, d.shape, encode(t, dt, taus[d.name])})
	}
	meta := map[string]string{tasks.KindKey: tasks.KindTaskVector, tasks.BaseKey: f.base.path}
	if sized {
		meta[tasks.BaseSizeKey] = fmt.Sprint(f.baseSize(t))
	}
	writeCkpt(t, path, ts, meta, 1)
}

// combo is Σ_i c_i τ_i, in float64.
func combo(taus []map[string][]float64, c []float64) map[string][]float64 {
	out := map[string][]float64{}
	for _, d := range floatDefs(defs) {
		v := make([]float64, numel(d.shape))
		for i, tau := range taus {
			for k := range v {
				v[k] += c[i] * tau[d.name][k]
			}
		}
		out[d.name] = v
	}
	return out
}

func openSet(t testing.TB, base string, members ...string) *tasks.Set {
	t.Helper()
	s, err := tasks.OpenSet(base, members)
	if err != nil {
		t.Fatalf("OpenSet: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustOpen(t testing.TB, path string) *checkpoint.Checkpoint {
	t.Helper()
	c, err := checkpoint.Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readRaw(t testing.TB, c *checkpoint.Checkpoint, name string) []byte {
	t.Helper()
	raw, err := c.ReadRaw(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// readVals decodes a float tensor of c by hand.
func readVals(t testing.TB, c *checkpoint.Checkpoint, name string) []float64 {
	t.Helper()
	info, ok := c.Tensor(name)
	if !ok {
		t.Fatalf("%s has no tensor %q", c.Path, name)
	}
	return decode(t, info.DType, readRaw(t, c, name))
}

func names(c *checkpoint.Checkpoint) []string {
	var out []string
	for _, ti := range c.Tensors() {
		out = append(out, ti.Name)
	}
	return out
}

func defNames(ds []tensorDef) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.name)
	}
	return out
}

// sameVals compares exactly, NaN equal to NaN.
func sameVals(got, want []float64) bool {
	return slices.EqualFunc(got, want, func(a, b float64) bool {
		return a == b || (math.IsNaN(a) && math.IsNaN(b))
	})
}

// checkVals fails unless c's float tensors hold want exactly, tensor by
// tensor, and have dtype dt (any when 0).
func checkVals(t testing.TB, c *checkpoint.Checkpoint, want map[string][]float64, dt checkpoint.DType) {
	t.Helper()
	for _, d := range floatDefs(defs) {
		info, ok := c.Tensor(d.name)
		if !ok {
			t.Errorf("%s: no tensor %q", c.Path, d.name)
			continue
		}
		if dt != 0 && info.DType != dt {
			t.Errorf("%s: %q has dtype %v, want %v", c.Path, d.name, info.DType, dt)
		}
		if !slices.Equal(info.Shape, d.shape) {
			t.Errorf("%s: %q has shape %v, want %v", c.Path, d.name, info.Shape, d.shape)
		}
		if got := readVals(t, c, d.name); !sameVals(got, want[d.name]) {
			t.Errorf("%s: %q = %v, want %v", c.Path, d.name, got, want[d.name])
		}
	}
}

// wantErr fails unless err is non-nil and its message holds every want.
func wantErr(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// checkNoOutput fails when out, or a temporary beside it, exists.
func checkNoOutput(t testing.TB, out string) {
	t.Helper()
	if _, err := os.Lstat(out); err == nil {
		t.Errorf("output %s exists after a failed write", out)
	}
	es, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "."+filepath.Base(out)+".tmp-") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
}
