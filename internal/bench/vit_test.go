package bench

import (
	"bytes"
	"math"
	"testing"

	"github.com/google/pprof/profile"
)

// ViT-B/32 is 4.41 GMACs per 224×224 image (as timm and fvcore count it):
// 8.82 GFLOP with a multiply-add counted as 2.
func TestViTFLOPs(t *testing.T) {
	if got := ViTB32.FLOPs(); math.Abs(got/8.82e9-1) > 0.005 {
		t.Errorf("ViT-B/32 forward = %.4g FLOP per image, want about 8.82e9", got)
	}
}

// TestSummarizeProfile: flat time goes to the leaf function, or to the
// function an asynchronous preemption interrupted; cumulative time counts a
// function once per sample.
func TestSummarizeProfile(t *testing.T) {
	fn := func(id uint64, name string) *profile.Function { return &profile.Function{ID: id, Name: name} }
	kernel := fn(1, "github.com/gomlx/gomlx/backends/simplego.execDotGeneralKernel")
	preempt := fn(2, "runtime.asyncPreempt")
	gc := fn(3, "runtime.gcDrain")
	exec := fn(4, "github.com/gomlx/gomlx/backends/simplego.(*Executable).Execute")
	loc := func(id uint64, f *profile.Function) *profile.Location {
		return &profile.Location{ID: id, Line: []profile.Line{{Function: f}}}
	}
	lk, lp, lg, le := loc(1, kernel), loc(2, preempt), loc(3, gc), loc(4, exec)
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     1e7,
		Sample: []*profile.Sample{
			{Location: []*profile.Location{lk, le}, Value: []int64{5, 5e7}},
			{Location: []*profile.Location{lp, lk, le}, Value: []int64{3, 3e7}},
			{Location: []*profile.Location{lg}, Value: []int64{2, 2e7}},
		},
		Location: []*profile.Location{lk, lp, lg, le},
		Function: []*profile.Function{kernel, preempt, gc, exec},
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	s, err := SummarizeProfile(buf.Bytes(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(s.Seconds-0.1) > 1e-12 || len(s.Top) != 2 {
		t.Fatalf("summary %+v", s)
	}
	if s.Top[0].Name != kernel.Name || math.Abs(s.Top[0].Flat-0.8) > 1e-12 || math.Abs(s.Top[0].Cum-0.8) > 1e-12 {
		t.Errorf("top function %+v, want the kernel at 80%% flat and cumulative", s.Top[0])
	}
	if s.Top[1].Name != gc.Name || math.Abs(s.Top[1].Flat-0.2) > 1e-12 {
		t.Errorf("second function %+v", s.Top[1])
	}
	if s.Breakdown[0].Category != "matrix products" || math.Abs(s.Breakdown[0].Share-0.8) > 1e-12 {
		t.Errorf("breakdown %+v", s.Breakdown)
	}
}
