package train

import (
	"math"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// TestOptimizerAdamByHand runs two Adam steps, β = (0.5, 0.9), on
// loss = Σ (x − c)² with c an input, against torch.optim.Adam's update
// computed by hand.
func TestOptimizerAdamByHand(t *testing.T) {
	spec := checkpoint.TensorSpec{Name: "x", DType: checkpoint.F32, Shape: []int64{2}}
	x0 := []float32{1, -2}
	loss := func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
		d := graph.Sub(p.Get("x"), in[0])
		return graph.ReduceAllSum(graph.Square(d)), graph.ReduceAllMax(d)
	}
	o, err := NewOptimizer([]checkpoint.TensorSpec{spec}, models.Weights{"x": tensors.FromFlatDataAndDimensions(x0, 2)}, loss, AdamOptions{Beta1: 0.5, Beta2: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	c := tensors.FromFlatDataAndDimensions([]float32{0.5, 0}, 2)
	x := []float64{1, -2}
	m, v := []float64{0, 0}, []float64{0, 0}
	for step := 1; step <= 2; step++ {
		lr := 0.1 * float64(step)
		wantLoss := math.Pow(x[0]-0.5, 2) + x[1]*x[1]
		gotLoss, aux, err := o.Step(lr, c)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(gotLoss-wantLoss) > 1e-5 || math.Abs(aux-(x[0]-0.5)) > 1e-6 {
			t.Errorf("step %d: loss %v aux %v, want %v and %v", step, gotLoss, aux, wantLoss, x[0]-0.5)
		}
		for i, ci := range []float64{0.5, 0} {
			g := 2 * (x[i] - ci)
			m[i] = 0.5*m[i] + 0.5*g
			v[i] = 0.9*v[i] + 0.1*g*g
			mh, vh := m[i]/(1-math.Pow(0.5, float64(step))), v[i]/(1-math.Pow(0.9, float64(step)))
			x[i] -= lr * mh / (math.Sqrt(vh) + 1e-8)
		}
	}
	w, err := o.Weights()
	if err != nil {
		t.Fatal(err)
	}
	got := tensors.MustCopyFlatData[float32](w["x"])
	for i := range x {
		if math.Abs(float64(got[i])-x[i]) > 1e-5 {
			t.Errorf("x[%d] = %v, want %v", i, got[i], x[i])
		}
	}
}
