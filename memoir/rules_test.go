package memoir

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// TestCodebookRules runs GRACE's codebook update on hand-built 2-d keys
// with ε_init 1.
func TestCodebookRules(t *testing.T) {
	cb := &Codebook{EpsInit: 1}
	v := []float32{0}
	step := func(key []float32, label []int, action string, entry int) {
		t.Helper()
		a, e, within := cb.Update(key, label, v)
		if a != action || e != entry || !within {
			t.Fatalf("Update(%v, %v) = %s, entry %d, within %v; want %s, entry %d, within", key, label, a, e, within, action, entry)
		}
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-12 }
	step([]float32{0, 0}, []int{5}, ActionAdd, 0) // empty codebook
	step([]float32{3, 0}, []int{6}, ActionAdd, 1) // d = 3 > ε_init + ε₀ = 2
	if cb.Len() != 2 || cb.Eps[0] != 1 || cb.Eps[1] != 1 {
		t.Fatalf("after two adds: %d entries, ε %v", cb.Len(), cb.Eps)
	}
	// d(key 0) = 1.5 ≤ 2 and another label: split, radii 0.75 − 1e-5 and 0.75.
	step([]float32{0, 1.5}, []int{7}, ActionSplit, 2)
	if !near(cb.Eps[0], 0.75-1e-5) || !near(cb.Eps[2], 0.75) || cb.Eps[1] != 1 {
		t.Fatalf("after the split: ε %v, want [0.74999 1 0.75]", cb.Eps)
	}
	// d(key 1) = 1.5 ≤ 2, same label, beyond ε₁ = 1: ε₁ grows to 1.5.
	step([]float32{3, 1.5}, []int{6}, ActionExpand, 1)
	if !near(cb.Eps[1], 1.5) || cb.Len() != 3 {
		t.Fatalf("after the expansion: ε %v, %d entries", cb.Eps, cb.Len())
	}
	// d(key 1) = 0.5 ≤ ε₁, same label: nothing changes.
	step([]float32{3, 0.5}, []int{6}, ActionNone, 1)
	if cb.Len() != 3 || !near(cb.Eps[1], 1.5) {
		t.Fatalf("after a key within the radius: ε %v, %d entries", cb.Eps, cb.Len())
	}
	// Lookup: within key 0's radius; nearest key 2 (0.74 ≤ 0.75); far away.
	for _, tc := range []struct {
		q     []float32
		entry int
		ok    bool
	}{{[]float32{0, 0.5}, 0, true}, {[]float32{0, 0.76}, 2, true}, {[]float32{0, -0.8}, 0, false}, {[]float32{10, 10}, 1, false}} {
		if e, ok := cb.Lookup(tc.q); e != tc.entry || ok != tc.ok {
			t.Errorf("Lookup(%v) = %d, %v; want %d, %v", tc.q, e, ok, tc.entry, tc.ok)
		}
	}
	// A key identical to one of another label: the split leaves both radii
	// at about 0, and the nearest (the older, first of equals) has a
	// negative radius: the edit's value is not used.
	if a, _, within := cb.Update([]float32{0, 0}, []int{9}, v); a != ActionSplit || within {
		t.Errorf("identical key, other label: %s, within %v; want split, not within", a, within)
	}
}

func TestOptimizers(t *testing.T) {
	// Adam's first step moves each weight by lr against its gradient's sign.
	w := []float32{0, 0}
	newAdam(2, 0.5, 0).step(w, []float32{1, -2})
	if math.Abs(float64(w[0])+0.5) > 1e-6 || math.Abs(float64(w[1])-0.5) > 1e-6 {
		t.Errorf("Adam's first step: %v, want [-0.5 0.5]", w)
	}
	// SGD with clipping: ‖(3, 4)‖ = 5 is clipped to 1, then weight decay.
	w = []float32{1, 1}
	sgdStep(w, []float32{3, 4}, 1, 0.1, 1)
	c := 1 / (5 + 1e-6)
	if want := 1 - (3*c + 0.1); math.Abs(float64(w[0])-want) > 1e-6 {
		t.Errorf("SGD: %v, want [%v …]", w, want)
	}
	if want := 1 - (4*c + 0.1); math.Abs(float64(w[1])-want) > 1e-6 {
		t.Errorf("SGD: %v, want [… %v]", w, want)
	}
	// Below the clip norm the gradient is left alone.
	if s := clipScale([]float32{0.3, 0.4}, 1); s != 1 {
		t.Errorf("clip scale of a gradient of norm 0.5: %v, want 1", s)
	}
}

func TestMetrics(t *testing.T) {
	// A query of 6 tokens, 3 of prompt: targets ids[3:] = 12 13 14 are
	// predicted at positions 2, 3, 4.
	ids := []int{1, 10, 11, 12, 13, 14}
	pred := []int{7, 7, 12, 99, 14, 7}
	if got := TargetSpan(pred, 3, len(ids)); len(got) != 3 || got[0] != 12 || got[1] != 99 || got[2] != 14 {
		t.Errorf("TargetSpan = %v, want [12 99 14]", got)
	}
	if got := TokenAccuracy(pred, ids, 3); got != 2.0/3 {
		t.Errorf("TokenAccuracy = %v, want 2/3", got)
	}
	if got := TokenAccuracy([]int{0, 0, 12, 13, 14, 0}, ids, 3); got != 1 {
		t.Errorf("TokenAccuracy of a perfect prediction = %v", got)
	}
	// Locality: agreement of the post- and pre-edit target spans.
	pre := []int{5, 6, 7, 8, 9, 4}
	post := []int{0, 0, 7, 1, 9, 0}
	if got := Agreement(TargetSpan(post, 3, 6), TargetSpan(pre, 3, 6)); got != 2.0/3 {
		t.Errorf("locality = %v, want 2/3", got)
	}
	if got := Agreement(nil, nil); !math.IsNaN(got) {
		t.Errorf("agreement of empty spans = %v, want NaN", got)
	}
	g := 0.5
	r := &Result{Method: MethodMEMOIR, Edits: 10, Rates: Rates{1, 0.5, 0.875}, Active: Rates{1, 0.5, 0.1}, SecondsPerEdit: 4.25,
		Rephrased: 10, Localized: 10, PerEdit: []*EditResult{{Generalization: &g}}}
	md := Markdown([]*Result{r})
	if !strings.Contains(md, "| MEMOIR | 10 | 1.000 | 0.500 | 0.875 | 1.00 / 0.50 / 0.10 | 4.25 |") {
		t.Errorf("markdown:\n%s", md)
	}
	// Edits without rephrasings or locality prompts have no generalization
	// or locality: n/a in the table and null in JSON, not 0.
	r = &Result{Method: MethodGRACE, Edits: 3, Rates: Rates{Reliability: 1}, Active: Rates{Reliability: 1}}
	if md := Markdown([]*Result{r}); !strings.Contains(md, "| GRACE | 3 | 1.000 | n/a | n/a | 1.00 / n/a / n/a | – |") {
		t.Errorf("markdown without rephrasings and locality prompts:\n%s", md)
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"generalization":null,"locality":null,"active"`, `"active":{"reliability":1,"generalization":null,"locality":null}`, `"edits_with_rephrasings":0`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON %s lacks %s", js, want)
		}
	}
	r.Rephrased, r.Generalization = 2, 0.25
	if js, _ := json.Marshal(r); !strings.Contains(string(js), `"generalization":0.25,"locality":null`) {
		t.Errorf("JSON %s", js)
	}
	if m, err := ParseMethod("FT-L"); err != nil || m != MethodFTL {
		t.Errorf("ParseMethod(FT-L) = %v, %v", m, err)
	}
	if _, err := ParseMethod("rome"); err == nil {
		t.Error("ParseMethod(rome) accepted")
	}
}
