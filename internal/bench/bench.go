// Package bench generates synthetic checkpoint families and measures
// streaming weight-space work against a raw read of the same files.
//
// Timings use wall-clock time in one process, phase after phase on the same
// files (warm in the page cache after generation), so the ratio to the raw
// read isolates editkit's own cost. Peak RSS per phase comes from VmHWM,
// reset through /proc/self/clear_refs before each phase (Linux).
package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/editkit/editkit/checkpoint"
)

// Family describes a LLaMA-shaped synthetic model family.
type Family struct {
	Hidden, Intermediate, Vocab, Layers int
}

// FamilyForBytes picks the number of layers of a LLaMA-like model (hidden
// 1024, intermediate 2816, vocabulary 32000) whose bf16 checkpoint is about
// size bytes.
func FamilyForBytes(size int64) Family {
	f := Family{Hidden: 1024, Intermediate: 2816, Vocab: 32000}
	perLayer := int64(4*f.Hidden*f.Hidden+3*f.Hidden*f.Intermediate+2*f.Hidden) * 2
	fixed := int64(2*f.Vocab*f.Hidden+f.Hidden) * 2
	f.Layers = max(1, int((size-fixed)/perLayer))
	return f
}

// Specs lists the tensors of the family in HF LLaMA naming, in bf16.
func (f Family) Specs() []checkpoint.TensorSpec {
	h, m := int64(f.Hidden), int64(f.Intermediate)
	bf := checkpoint.BF16
	specs := []checkpoint.TensorSpec{{Name: "model.embed_tokens.weight", DType: bf, Shape: []int64{int64(f.Vocab), h}}}
	for i := range f.Layers {
		p := "model.layers." + strconv.Itoa(i) + "."
		specs = append(specs,
			checkpoint.TensorSpec{Name: p + "input_layernorm.weight", DType: bf, Shape: []int64{h}},
			checkpoint.TensorSpec{Name: p + "self_attn.q_proj.weight", DType: bf, Shape: []int64{h, h}},
			checkpoint.TensorSpec{Name: p + "self_attn.k_proj.weight", DType: bf, Shape: []int64{h, h}},
			checkpoint.TensorSpec{Name: p + "self_attn.v_proj.weight", DType: bf, Shape: []int64{h, h}},
			checkpoint.TensorSpec{Name: p + "self_attn.o_proj.weight", DType: bf, Shape: []int64{h, h}},
			checkpoint.TensorSpec{Name: p + "post_attention_layernorm.weight", DType: bf, Shape: []int64{h}},
			checkpoint.TensorSpec{Name: p + "mlp.gate_proj.weight", DType: bf, Shape: []int64{m, h}},
			checkpoint.TensorSpec{Name: p + "mlp.up_proj.weight", DType: bf, Shape: []int64{m, h}},
			checkpoint.TensorSpec{Name: p + "mlp.down_proj.weight", DType: bf, Shape: []int64{h, m}},
		)
	}
	return append(specs,
		checkpoint.TensorSpec{Name: "model.norm.weight", DType: bf, Shape: []int64{h}},
		checkpoint.TensorSpec{Name: "lm_head.weight", DType: bf, Shape: []int64{int64(f.Vocab), h}},
	)
}

// Generate writes the base (member −1) or fine-tuned model member of the
// family into dir: weights ~ U(−0.05, 0.05), fine-tuned models add
// U(−0.005, 0.005), from a fixed per-member generator.
func Generate(dir string, f Family, member int) error {
	specs := f.Specs()
	w, err := checkpoint.Create(dir, specs, checkpoint.WriteOptions{Force: true})
	if err != nil {
		return err
	}
	defer w.Abort()
	var vals []float32
	for ti, s := range specs {
		n := s.Bytes() / 2
		vals = grow(vals, n)
		fill(vals, uint64(ti)*7919+1, 0.05)
		if member >= 0 {
			delta := make([]float32, n)
			fill(delta, uint64(ti)*7919+uint64(member+2)*104729, 0.005)
			for i := range vals {
				vals[i] += delta[i]
			}
		}
		if err := w.WriteFloat32(s.Name, vals); err != nil {
			return err
		}
	}
	return w.Commit()
}

func grow(b []float32, n int64) []float32 {
	if int64(cap(b)) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// fill writes uniform values in [−scale, scale) from an xorshift stream:
// fast enough to make gigabytes of weights in seconds.
func fill(v []float32, seed uint64, scale float32) {
	x := seed*0x9e3779b97f4a7c15 | 1
	for i := range v {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		v[i] = (float32(x>>40)/(1<<24)*2 - 1) * scale
	}
}

// Phase is one measured piece of work.
type Phase struct {
	Name       string
	Seconds    float64
	InputBytes int64
	PeakRSS    int64 // bytes, 0 when unknown
	Passes     int   // streaming passes over the inputs, for merges
}

// GBps is the input throughput in GB/s (10⁹ bytes).
func (p Phase) GBps() float64 { return float64(p.InputBytes) / p.Seconds / 1e9 }

// Measure runs fn and reports its wall time and peak resident memory.
func Measure(name string, inputBytes int64, fn func() error) (Phase, error) {
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS()
	start := time.Now()
	err := fn()
	p := Phase{Name: name, Seconds: time.Since(start).Seconds(), InputBytes: inputBytes, PeakRSS: peakRSS()}
	return p, err
}

// RawRead reads the files sequentially in 8 MiB blocks and discards the
// data: the floor any streaming pass over them pays.
func RawRead(paths []string) (int64, error) {
	buf := make([]byte, 8<<20)
	var total int64
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return total, err
		}
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		f.Close()
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// SafetensorsFiles lists the .safetensors files of a checkpoint folder.
func SafetensorsFiles(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err == nil && len(m) == 0 {
		err = fmt.Errorf("no .safetensors files in %s", dir)
	}
	return m, err
}

func resetPeakRSS() {
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

func peakRSS() int64 { return statusBytes("VmHWM:") }

// statusBytes reads a memory field of /proc/self/status (e.g. "VmHWM:",
// "VmRSS:") in bytes, 0 where unknown.
func statusBytes(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// MiB formats bytes in MiB.
func MiB(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// DropPageCache writes back dirty pages and drops the page cache, so the
// next read comes from disk. It needs root on Linux.
func DropPageCache() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("dropping the page cache for a cold-cache run (needs root on Linux): %w", err)
	}
	return nil
}
