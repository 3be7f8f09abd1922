// Package cpukernels makes GoMLX's pure-Go backend (simplego) run its
// heaviest ops on editkit's SIMD kernels (internal/simd).
//
// GoMLX v0.26's simplego computes every DotGeneral with scalar Go: it copies
// both operands into 32×32 blocks element by element and multiplies blocks
// with a kernel the compiler does not vectorize (about 7-15 GFLOP/s on two
// cores, 87% of a ViT forward pass). simplego picks each op's executor from
// a registry with priorities (generic, typed, arch, user); Install registers
// editkit's at the arch priority:
//
//   - DotGeneral reads the operands in place through strides (a copy only
//     when an operand's axes cannot be described by strides), packs them
//     into the panels of internal/simd's register-blocked AVX2/AVX-512
//     micro-kernels (bfloat16 widened to float32 while packing, so bfloat16
//     products accumulate in float32) and spreads the work over the cores.
//   - Add, Sub, Mul and Div with implicit broadcasting, Transpose and
//     BroadcastInDim merge axes into runs and loop over them, where
//     simplego advances an iterator per element (the next hot spots once
//     the products were fast); the arithmetic gives simplego's bits.
//   - Erf (GELU), Exp (softmax) and Logistic (SiLU, QuickGELU) use SIMD
//     polynomial approximations within a few ulp of float32.
//   - ReduceSum and ReduceMax reduce runs of contiguous axes.
//
// Each handles float32 (DotGeneral also bfloat16) and the shapes it knows;
// other dtypes and shapes go to simplego's own executor.
//
// The registry is unexported, so this file reaches it with go:linkname and
// reads the node's parameters by reflection. Everything that depends on
// simplego's internals is in this file, pinned to GoMLX v0.26.0 (the layout
// it was written against): in a binary built with another version, Install
// does nothing and simplego's own kernels run, correct but slow. Test
// binaries carry no dependency versions, so there the package's test checks
// go.mod instead and fails on any other version, which is the signal to
// check the names and types below against the new version and update the
// pin.
//
// Install also does nothing when the CPU has no AVX2+FMA or when
// EDITKIT_NOSIMD=1: simplego's pure-Go kernels are the fallback.
package cpukernels

import (
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"

	"github.com/editkit/editkit/internal/simd"
)

// GoMLXVersion is the only GoMLX version whose internals this file knows.
const GoMLXVersion = "v0.26.0"

// executor is simplego's nodeExecutor.
type executor = func(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error)

// simplego's op registry (exec.go): the executor of each op type and the
// priority it was registered with (registerPriority, an int).
var (
	//go:linkname nodeExecutors github.com/gomlx/gomlx/backends/simplego.nodeExecutors
	nodeExecutors [backends.OpTypeLast]executor
	//go:linkname nodeExecutorsPriority github.com/gomlx/gomlx/backends/simplego.nodeExecutorsPriority
	nodeExecutorsPriority [backends.OpTypeLast]int
)

// priorityArch is simplego's priority of architecture-specific executors.
const priorityArch = 10

var (
	installOnce sync.Once
	// builtins are simplego's executors of the replaced ops, which the
	// replacements call for what they do not handle (other dtypes).
	builtins  [backends.OpTypeLast]executor
	installed bool
	whyNot    string
)

// replacements are the executors Install registers.
var replacements = map[backends.OpType]executor{
	backends.OpTypeDotGeneral:     execDotGeneral,
	backends.OpTypeAdd:            binaryExecutor(backends.OpTypeAdd, addOp),
	backends.OpTypeSub:            binaryExecutor(backends.OpTypeSub, subOp),
	backends.OpTypeMul:            binaryExecutor(backends.OpTypeMul, mulOp),
	backends.OpTypeDiv:            binaryExecutor(backends.OpTypeDiv, divOp),
	backends.OpTypeErf:            unaryExecutor(backends.OpTypeErf, simd.Erf),
	backends.OpTypeExp:            unaryExecutor(backends.OpTypeExp, simd.Exp),
	backends.OpTypeLogistic:       unaryExecutor(backends.OpTypeLogistic, simd.Logistic),
	backends.OpTypeReduceSum:      reduceExecutor(backends.OpTypeReduceSum, sumReduction),
	backends.OpTypeReduceMax:      reduceExecutor(backends.OpTypeReduceMax, maxReduction),
	backends.OpTypeTranspose:      execTranspose,
	backends.OpTypeBroadcastInDim: execBroadcastInDim,
}

// Install registers the SIMD DotGeneral executor with simplego, for the
// whole process (package models calls it from its init). It is idempotent
// and safe to call concurrently; see the package comment for when it does
// nothing.
func Install() {
	installOnce.Do(func() {
		if simd.Active() < simd.AVX2 {
			whyNot = fmt.Sprintf("SIMD level %s (%s=1 or no AVX2+FMA)", simd.Active(), simd.NoSIMDEnv)
			return
		}
		if v, known := gomlxVersion(); known && v != GoMLXVersion {
			whyNot = fmt.Sprintf("built with GoMLX %q; the executor reaches into simplego %s's internals", v, GoMLXVersion)
			return
		}
		for op := range replacements {
			if nodeExecutorsPriority[op] > priorityArch || nodeExecutors[op] == nil {
				whyNot = fmt.Sprintf("simplego's %s executor is missing or already replaced at a higher priority", op)
				return
			}
		}
		for op, exec := range replacements {
			builtins[op] = nodeExecutors[op]
			nodeExecutors[op] = exec
			nodeExecutorsPriority[op] = priorityArch
		}
		installed = true
	})
}

// Installed reports whether the SIMD executor is registered, and if not,
// why.
func Installed() (bool, string) {
	Install()
	return installed, whyNot
}

// gomlxVersion is the GoMLX version the binary was built with, when its
// build information lists dependencies (test binaries' does not).
func gomlxVersion() (string, bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok || len(bi.Deps) == 0 {
		return "", false
	}
	for _, m := range bi.Deps {
		if m.Path == "github.com/gomlx/gomlx" {
			if m.Replace != nil {
				return m.Version + " replaced by " + m.Replace.Path + "@" + m.Replace.Version, true
			}
			return m.Version, true
		}
	}
	return "none", true
}

// execDotGeneral is the replacement executor.
func execDotGeneral(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error) {
	lhsShape, err := backend.BufferShape(inputs[0])
	if err != nil {
		return nil, err
	}
	dt := lhsShape.DType
	if dt != dtypes.Float32 && dt != dtypes.BFloat16 {
		return builtins[backends.OpTypeDotGeneral](backend, node, inputs, inputsOwned)
	}
	rhsShape, err := backend.BufferShape(inputs[1])
	if err != nil {
		return nil, err
	}
	p, err := dotParams(node)
	if err != nil {
		return nil, err
	}
	out := backend.NewBuffer(shapes.Make(dt, p.batch, p.lhsCross, p.rhsCross))
	lhs, err := backend.BufferData(inputs[0])
	if err != nil {
		return nil, err
	}
	rhs, err := backend.BufferData(inputs[1])
	if err != nil {
		return nil, err
	}
	flat, err := backend.BufferData(out)
	if err != nil {
		return nil, err
	}
	if err := dotGeneral(p, operand{lhsShape.Dimensions, lhs}, operand{rhsShape.Dimensions, rhs}, flat, workers(backend)); err != nil {
		backend.BufferFinalize(out)
		return nil, err
	}
	return out, nil
}

// binaryExecutor runs op on float32 operands (other dtypes and broadcasts
// it does not know go to simplego's executor). Like simplego, it writes
// into an input buffer of the output's shape that is not needed afterwards
// (the executor then must clear it from inputs).
func binaryExecutor(opType backends.OpType, op binaryOp) executor {
	return func(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error) {
		ls, err := backend.BufferShape(inputs[0])
		if err != nil {
			return nil, err
		}
		rs, err := backend.BufferShape(inputs[1])
		if err != nil {
			return nil, err
		}
		dims, ok := broadcastShape(ls.Dimensions, rs.Dimensions)
		if !ok || ls.DType != dtypes.Float32 || rs.DType != dtypes.Float32 {
			return builtins[opType](backend, node, inputs, inputsOwned)
		}
		l, err := backend.BufferData(inputs[0])
		if err != nil {
			return nil, err
		}
		r, err := backend.BufferData(inputs[1])
		if err != nil {
			return nil, err
		}
		var out *simplego.Buffer
		switch {
		case inputsOwned[0] && slices.Equal(ls.Dimensions, dims):
			out, inputs[0] = inputs[0], nil
		case inputsOwned[1] && slices.Equal(rs.Dimensions, dims):
			out, inputs[1] = inputs[1], nil
		default:
			out = backend.NewBuffer(shapes.Make(dtypes.Float32, dims...))
		}
		flat, err := backend.BufferData(out)
		if err != nil {
			return nil, err
		}
		binary(op, flat.([]float32), l.([]float32), r.([]float32), ls.Dimensions, rs.Dimensions, dims, workers(backend))
		return out, nil
	}
}

// unaryExecutor runs fn on float32 operands, in place when the input is
// not needed afterwards.
func unaryExecutor(opType backends.OpType, fn func(dst, src []float32)) executor {
	return func(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error) {
		s, err := backend.BufferShape(inputs[0])
		if err != nil {
			return nil, err
		}
		if s.DType != dtypes.Float32 {
			return builtins[opType](backend, node, inputs, inputsOwned)
		}
		in, err := backend.BufferData(inputs[0])
		if err != nil {
			return nil, err
		}
		out := inputs[0]
		if inputsOwned[0] {
			inputs[0] = nil
		} else {
			out = backend.NewBuffer(s)
		}
		flat, err := backend.BufferData(out)
		if err != nil {
			return nil, err
		}
		unary(fn, flat.([]float32), in.([]float32), workers(backend))
		return out, nil
	}
}

// reduceExecutor runs red on float32 operands whose reduced axes are one
// run (after dropping axes of size 1).
func reduceExecutor(opType backends.OpType, red reduction) executor {
	return func(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error) {
		s, err := backend.BufferShape(inputs[0])
		if err != nil {
			return nil, err
		}
		axes, err := nodeInts(node)
		if err != nil {
			return nil, err
		}
		outer, reduced, inner, ok := reducePlan(s.Dimensions, axes)
		if s.DType != dtypes.Float32 || !ok || len(axes) == 0 {
			return builtins[opType](backend, node, inputs, inputsOwned)
		}
		var dims []int
		for i, d := range s.Dimensions {
			if !slices.Contains(axes, i) {
				dims = append(dims, d)
			}
		}
		in, err := backend.BufferData(inputs[0])
		if err != nil {
			return nil, err
		}
		out := backend.NewBuffer(shapes.Make(dtypes.Float32, dims...))
		flat, err := backend.BufferData(out)
		if err != nil {
			return nil, err
		}
		reduce(red, flat.([]float32), in.([]float32), outer, reduced, inner, workers(backend))
		return out, nil
	}
}

// execTranspose permutes the axes of float32 operands (node data: the
// permutation, output axis i being input axis perm[i]).
func execTranspose(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error) {
	s, err := backend.BufferShape(inputs[0])
	if err != nil {
		return nil, err
	}
	if s.DType != dtypes.Float32 {
		return builtins[backends.OpTypeTranspose](backend, node, inputs, inputsOwned)
	}
	perm, err := nodeInts(node)
	if err != nil {
		return nil, err
	}
	dims, strides := transposeStrides(s.Dimensions, perm)
	return gatherInto(backend, inputs[0], dims, strides)
}

// execBroadcastInDim broadcasts float32 operands to the node's shape (node
// data: the output axis of each operand axis).
func execBroadcastInDim(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error) {
	s, err := backend.BufferShape(inputs[0])
	if err != nil {
		return nil, err
	}
	if s.DType != dtypes.Float32 {
		return builtins[backends.OpTypeBroadcastInDim](backend, node, inputs, inputsOwned)
	}
	axes, err := nodeInts(node)
	if err != nil {
		return nil, err
	}
	out, err := nodeShape(node)
	if err != nil {
		return nil, err
	}
	return gatherInto(backend, inputs[0], out.Dimensions, broadcastStrides(s.Dimensions, axes, out.Dimensions))
}

// gatherInto returns a new float32 buffer of dims read from in (see gather).
func gatherInto(backend *simplego.Backend, in *simplego.Buffer, dims, strides []int) (*simplego.Buffer, error) {
	src, err := backend.BufferData(in)
	if err != nil {
		return nil, err
	}
	out := backend.NewBuffer(shapes.Make(dtypes.Float32, dims...))
	flat, err := backend.BufferData(out)
	if err != nil {
		return nil, err
	}
	gather(flat.([]float32), src.([]float32), dims, strides, workers(backend))
	return out, nil
}

// nodeShape reads a node's output shape (simplego.Node.shape).
func nodeShape(node *simplego.Node) (shapes.Shape, error) {
	f := reflect.ValueOf(node).Elem().FieldByName("shape")
	if !f.IsValid() || f.Type() != reflect.TypeFor[shapes.Shape]() {
		return shapes.Shape{}, fmt.Errorf("cpukernels: simplego.Node has no shape field of type shapes.Shape; GoMLX's layout changed")
	}
	return *(*shapes.Shape)(unsafe.Pointer(f.UnsafeAddr())), nil
}

// nodeInts reads a node's data that is a []int (a reduce op's axes).
func nodeInts(node *simplego.Node) ([]int, error) {
	data := reflect.ValueOf(node).Elem().FieldByName("data")
	if !data.IsValid() || data.Kind() != reflect.Interface || data.IsNil() ||
		data.Elem().Kind() != reflect.Slice || data.Elem().Type().Elem().Kind() != reflect.Int {
		return nil, fmt.Errorf("cpukernels: simplego.Node.data is not the []int of a reduce op; GoMLX's layout changed")
	}
	d := data.Elem()
	out := make([]int, d.Len())
	for i := range out {
		out[i] = int(d.Index(i).Int())
	}
	return out, nil
}

// dotParams reads the node's *dotGeneralNodeData (dotgeneral.go).
func dotParams(node *simplego.Node) (dotGeneralParams, error) {
	var p dotGeneralParams
	data := reflect.ValueOf(node).Elem().FieldByName("data")
	if !data.IsValid() || data.Kind() != reflect.Interface || data.IsNil() {
		return p, fmt.Errorf("cpukernels: simplego.Node has no data field; GoMLX's layout changed")
	}
	d := data.Elem()
	if d.Kind() != reflect.Pointer || d.IsNil() || d.Elem().Kind() != reflect.Struct {
		return p, fmt.Errorf("cpukernels: DotGeneral node data is %s, not a struct pointer; GoMLX's layout changed", d.Type())
	}
	d = d.Elem()
	var bad []string
	ints := func(name string) []int {
		f := d.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Int {
			bad = append(bad, name)
			return nil
		}
		out := make([]int, f.Len())
		for i := range out {
			out[i] = int(f.Index(i).Int())
		}
		return out
	}
	integer := func(name string) int {
		f := d.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Int {
			bad = append(bad, name)
			return 0
		}
		return int(f.Int())
	}
	p.lhsContracting, p.lhsBatch = ints("lhsContractingAxes"), ints("lhsBatchAxes")
	p.rhsContracting, p.rhsBatch = ints("rhsContractingAxes"), ints("rhsBatchAxes")
	p.batch, p.lhsCross = integer("batchSize"), integer("lhsCrossSize")
	p.rhsCross, p.contracting = integer("rhsCrossSize"), integer("contractingSize")
	if bad != nil {
		return p, fmt.Errorf("cpukernels: %s lacks the fields %v; GoMLX's layout changed", d.Type(), bad)
	}
	return p, nil
}

// workers follows the backend's parallelism setting (workersPool's
// maxParallelism: 0 disables parallelism, negative means unlimited),
// capped by GOMAXPROCS.
func workers(backend *simplego.Backend) int {
	n := runtime.GOMAXPROCS(0)
	w := reflect.ValueOf(backend).Elem().FieldByName("workers")
	if !w.IsValid() || w.Kind() != reflect.Struct {
		return n
	}
	m := w.FieldByName("maxParallelism")
	if !m.IsValid() || m.Kind() != reflect.Int {
		return n
	}
	switch v := int(m.Int()); {
	case v == 0:
		return 1
	case v > 0:
		return min(v, n)
	}
	return n
}
