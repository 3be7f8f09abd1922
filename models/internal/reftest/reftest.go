// Package reftest reads the reference cases of models/testdata (written by
// tools/torchref) for the models' tests.
package reftest

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Tolerance is the largest absolute difference accepted between a float32
// output and the float64 reference.
const Tolerance = 1e-4

// Dir is the folder of a reference case, e.g. Dir("hf-vit"): models/testdata
// seen from the test's folder (models/vit, models/clip), else from this
// source file's build-time path.
func Dir(name string) string {
	for _, d := range []string{filepath.Join("..", "testdata", name), filepath.Join("testdata", name)} {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", name)
}

// IO holds a case's inputs and expected outputs (io.safetensors).
type IO struct {
	t  testing.TB
	ck *checkpoint.Checkpoint
}

// Open opens a case's io.safetensors; it is closed when the test ends.
func Open(t testing.TB, name string) *IO {
	t.Helper()
	ck, err := checkpoint.Open(filepath.Join(Dir(name), "io.safetensors"))
	if err != nil {
		t.Fatalf("reference case %s: %v (regenerate with tools/torchref)", name, err)
	}
	t.Cleanup(func() { ck.Close() })
	return &IO{t: t, ck: ck}
}

func (io *IO) info(name string) checkpoint.TensorInfo {
	io.t.Helper()
	info, ok := io.ck.Tensor(name)
	if !ok {
		io.t.Fatalf("%s has no tensor %q", io.ck.Path, name)
	}
	return info
}

func shapeOf(info checkpoint.TensorInfo) []int {
	d := make([]int, len(info.Shape))
	for i, s := range info.Shape {
		d[i] = int(s)
	}
	return d
}

// Float32 returns a float tensor.
func (io *IO) Float32(name string) *tensors.Tensor {
	io.t.Helper()
	info := io.info(name)
	data, _, err := io.ck.ReadFloat32(name, nil, nil)
	if err != nil {
		io.t.Fatal(err)
	}
	return tensors.FromFlatDataAndDimensions(data, shapeOf(info)...)
}

// Int64 returns an I64 tensor.
func (io *IO) Int64(name string) *tensors.Tensor {
	io.t.Helper()
	info := io.info(name)
	if info.DType != checkpoint.I64 {
		io.t.Fatalf("%s: tensor %q is %s, want I64", io.ck.Path, name, info.DType)
	}
	raw, err := io.ck.ReadRaw(name, nil)
	if err != nil {
		io.t.Fatal(err)
	}
	data := make([]int64, len(raw)/8)
	for i := range data {
		data[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return tensors.FromFlatDataAndDimensions(data, shapeOf(info)...)
}

// MaxAbsDiff is the largest absolute difference between two float32
// tensors of the same shape (+Inf when the shapes differ or a value is NaN).
func MaxAbsDiff(got, want *tensors.Tensor) float64 {
	if got == nil || want == nil || !slices.Equal(got.Shape().Dimensions, want.Shape().Dimensions) {
		return math.Inf(1)
	}
	g, w := tensors.MustCopyFlatData[float32](got), tensors.MustCopyFlatData[float32](want)
	d := 0.0
	for i := range g {
		x := math.Abs(float64(g[i]) - float64(w[i]))
		if math.IsNaN(x) {
			return math.Inf(1)
		}
		d = max(d, x)
	}
	return d
}
