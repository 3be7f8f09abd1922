package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
)

// srFixture is a base tiny ViT, fine-tuned models of it and the folders of
// a search test.
type srFixture struct {
	dir, data string
	c         vit.Config
	base      models.Weights
}

func newSRFixture(t *testing.T) *srFixture {
	f := &srFixture{dir: t.TempDir(), c: evTinyViT()}
	f.data = filepath.Join(f.dir, "data")
	return f
}

func (f *srFixture) path(name string) string { return filepath.Join(f.dir, name) }

// weightsLike returns a copy of w with fn applied to each tensor's values.
func weightsLike(w models.Weights, fn func(name string, v []float32)) models.Weights {
	out := models.Weights{}
	for name, t := range w {
		v := tensors.MustCopyFlatData[float32](t)
		fn(name, v)
		nt := tensors.FromShape(shapes.Make(t.DType(), t.Shape().Dimensions...))
		tensors.MustMutableFlatData(nt, func(dst []float32) { copy(dst, v) })
		out[name] = nt
	}
	return out
}

// srDataset writes a dataset whose validation examples (the positions
// HoldOut holds out of n training examples) carry valLabels; the other
// examples get class 0. Images are the noise prototype of their class plus
// a little noise of their own.
func (f *srFixture) srDataset(t *testing.T, name string, n, classes int, valLabels []int, seed uint64) {
	t.Helper()
	_, val := datasets.HoldOut(n, datasets.DefaultValidationFraction, datasets.DefaultMaxValidation, 0)
	if len(val) != len(valLabels) {
		t.Fatalf("%d validation examples, %d labels given", len(val), len(valLabels))
	}
	labels := make([]int, n)
	for i, p := range val {
		labels[p] = valLabels[i]
	}
	r := rand.New(rand.NewPCG(seed, 7))
	size := f.c.ImageSize
	sz := size * size * 3
	protos := evNoise(r, classes, size)
	pix := make([]uint8, 0, n*sz)
	for _, l := range labels {
		for j := range sz {
			v := int(protos[l*sz+j]) + r.IntN(41) - 20
			pix = append(pix, uint8(min(max(v, 0), 255)))
		}
	}
	dir := filepath.Join(f.data, name)
	evWriteIDX(t, dir, "train", size, size, pix, labels, classes)
	evWriteIDX(t, dir, "test", size, size, pix[:sz], labels[:1], classes)
}

// srHead saves a linear head without normalization.
func (f *srFixture) srHead(t *testing.T, name string, weight [][]float32, bias []float32) string {
	t.Helper()
	d := f.c.HiddenSize
	h := &heads.Head{Dim: d, Scale: 1, Bias: bias}
	for k, row := range weight {
		h.Classes = append(h.Classes, "class"+string(rune('A'+k)))
		full := make([]float32, d)
		copy(full, row)
		h.Weight = append(h.Weight, full...)
	}
	p := f.path(name + "-head.safetensors")
	if err := h.Save(p, false); err != nil {
		t.Fatal(err)
	}
	return p
}

func readRecord(t *testing.T, js string) *eval.Record {
	t.Helper()
	var rec eval.Record
	if err := json.Unmarshal([]byte(js), &rec); err != nil {
		t.Fatalf("search --json: %v\n%s", err, js)
	}
	return &rec
}

// readTensor reads one float tensor of a checkpoint.
func readTensor(t *testing.T, path, name string) []float32 {
	t.Helper()
	ck, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	v, _, err := ck.ReadFloat32(name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// knownPeakFamily builds models whose image features do not depend on the
// image: the base's final LayerNorm has gain 0, so the pooled feature is
// that LayerNorm's bias, and the task vectors put e₀ (task a) and e₁ (task
// b) there (with noise everywhere else, which the zero gain hides). Merged
// with coefficient λ, every image's feature is λ(e₀ + e₁); the heads turn
// thresholds on λ into classes, so the validation accuracy at each λ is the
// share of validation labels equal to the class predicted there.
func knownPeakFamily(t *testing.T, f *srFixture, signs float32) {
	m, err := vit.NewRandom(f.c, 11)
	if err != nil {
		t.Fatal(err)
	}
	gain, bias := f.c.Prefix+"layernorm.weight", f.c.Prefix+"layernorm.bias"
	f.base = weightsLike(m.Weights, func(name string, v []float32) {
		if name == gain || name == bias {
			clear(v)
		}
	})
	evSaveViT(t, f.c, f.base, f.path("base"))
	for i, name := range []string{"fta", "ftb"} {
		r := rand.New(rand.NewPCG(uint64(20+i), 1))
		ft := weightsLike(f.base, func(n string, v []float32) {
			switch n {
			case gain:
			case bias:
				v[i] += signs
			default:
				for j := range v {
					v[j] += float32(0.01 * r.NormFloat64())
				}
			}
		})
		evSaveViT(t, f.c, ft, f.path(name))
	}
}

// The validation labels of knownPeakFamily's tasks, 20 each: a: 7 × class
// 0, 8 × class 1, 5 × class 2; b: 8 × class 0, 12 × class 1.
var (
	peakLabelsA = []int{0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2}
	peakLabelsB = []int{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
)

// predictA and predictB are the classes the heads of knownPeakFamily give at
// coefficient λ (feature λ(e₀+e₁)): head a: logits 0, λ − 0.325, 2λ − 0.95;
// head b: 0, λ − 0.475.
func predictA(l float64) int {
	s := []float64{0, l - 0.325, 2*l - 0.95}
	return eval.Argmax([]float32{float32(s[0]), float32(s[1]), float32(s[2])})
}

func predictB(l float64) int {
	if l-0.475 > 0 {
		return 1
	}
	return 0
}

func share(labels []int, class int) float64 {
	n := 0
	for _, l := range labels {
		if l == class {
			n++
		}
	}
	return float64(n) / float64(len(labels))
}

// TestMergeSearchKnownPeak: task arithmetic and TIES on knownPeakFamily,
// where validation accuracy against λ is known in closed form and the mean
// normalized accuracy peaks at λ = 0.5 inside the grid.
func TestMergeSearchKnownPeak(t *testing.T) {
	f := newSRFixture(t)
	knownPeakFamily(t, f, 1)
	labA, labB := peakLabelsA, peakLabelsB
	f.srDataset(t, "a", 200, 3, labA, 1)
	f.srDataset(t, "b", 200, 2, labB, 2)
	headA := f.srHead(t, "a", [][]float32{{0}, {1}, {2}}, []float32{0, -0.325, -0.95})
	headB := f.srHead(t, "b", [][]float32{{0}, {0, 1}}, []float32{0, -0.475})

	// The independent computation: accuracies from the label shares,
	// normalized by the given fine-tuned accuracies, first maximum.
	ft := map[string]float64{"a": 0.5, "b": 0.8}
	want, bestScore := -1.0, -1.0
	expect := map[float64]map[string]float64{}
	for _, l := range eval.LambdaGrid() {
		acc := map[string]float64{"a": share(labA, predictA(l)), "b": share(labB, predictB(l))}
		expect[l] = acc
		if s := (acc["a"]/ft["a"] + acc["b"]/ft["b"]) / 2; s > bestScore+1e-12 {
			want, bestScore = l, s
		}
	}
	if want != 0.5 {
		t.Fatalf("fixture: the known peak is at %v, not 0.5", want)
	}

	for _, method := range []string{"task_arithmetic", "ties"} {
		t.Run(method, func(t *testing.T) {
			out := f.path("merged-" + method)
			args := []string{"merge", "--base", f.path("base"), "--models", f.path("fta"), f.path("ftb"), "--method", method,
				"--data", f.data, "-o", out, "--json", "-q", "--batch", "7"}
			if method == "ties" {
				args = append(args, "--search", "a="+headA+":0.5", "--search", "b="+headB+":0.8")
			} else {
				args = append(args, "--search", "a="+headA, "--search", "b="+headB, "--finetuned-acc", "a=0.5,b=0.8")
			}
			js, errOut, code := evRun(t, args...)
			if code != 0 {
				t.Fatalf("merge --search: %s", errOut)
			}
			rec := readRecord(t, js)
			if rec.Chosen != 0.5 || rec.Applied != 0.5 || rec.Coefficient != "lambda" {
				t.Errorf("chose %s = %v (applied %v), want λ = 0.5", rec.Coefficient, rec.Chosen, rec.Applied)
			}
			if len(rec.Search.Points) != len(eval.LambdaGrid()) {
				t.Fatalf("%d points, want the λ grid's %d", len(rec.Search.Points), len(eval.LambdaGrid()))
			}
			for _, p := range rec.Search.Points {
				for task, a := range expect[p.Coef] {
					if p.Accuracy[task] != a {
						t.Errorf("λ = %v, task %s: accuracy %v, want %v", p.Coef, task, p.Accuracy[task], a)
					}
				}
			}
			// Intervals: each point's accuracy, and its paired difference
			// with the chosen point (here λ = 0's against λ = 0.5's).
			p0, best := rec.Search.Points[0], rec.Search.Points[rec.Search.Best]
			if iv := best.Interval["a"]; iv.Value != expect[0.5]["a"] || !(iv.Lo <= iv.Value && iv.Value <= iv.Hi) || best.VsChosen != nil {
				t.Errorf("chosen point's interval %+v, vs itself %+v", iv, best.VsChosen)
			}
			if d := p0.VsChosen[eval.Average]; math.Abs(d.Value-((expect[0]["a"]+expect[0]["b"])-(expect[0.5]["a"]+expect[0.5]["b"]))/2) > 1e-12 {
				t.Errorf("λ = 0 − chosen: %+v", d)
			}
			if rec.Written["a"] != expect[0.5]["a"] || rec.Written["b"] != expect[0.5]["b"] {
				t.Errorf("written checkpoint's accuracy %v, want %v", rec.Written, expect[0.5])
			}
			if rec.Finetuned["a"] != 0.5 || rec.Finetuned["b"] != 0.8 {
				t.Errorf("fine-tuned accuracies %v", rec.Finetuned)
			}
			got := readTensor(t, out, f.c.Prefix+"layernorm.bias")
			if got[0] != 0.5 || got[1] != 0.5 || got[2] != 0 {
				t.Errorf("written layernorm.bias starts %v, want 0.5(e₀+e₁)", got[:3])
			}
			for _, p := range eval.RecordPaths(out) {
				if st, err := os.Stat(p); err != nil || st.Size() == 0 {
					t.Errorf("record file %s: %v", p, err)
				}
			}
			if md, _ := os.ReadFile(eval.RecordPaths(out)[1]); !strings.Contains(string(md), "| **λ = 0.5 (chosen)** | 40.0 (80.0) | 60.0 (75.0) | 50.0 (77.5) | score=0.775 |") {
				t.Errorf("markdown record:\n%s", md)
			}
			// What the search wrote is what a plain merge at λ = 0.5 writes.
			plain := f.path("plain-" + method)
			if _, errOut, code := evRun(t, "merge", "--base", f.path("base"), "--models", f.path("fta"), f.path("ftb"),
				"--method", method, "--lambda", "0.5", "-o", plain, "-q"); code != 0 {
				t.Fatal(errOut)
			}
			a, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
			b, _ := os.ReadFile(filepath.Join(plain, "model.safetensors"))
			if len(a) == 0 || !bytes.Equal(a, b) {
				t.Errorf("the searched merge (%d bytes) differs from merge --lambda 0.5 (%d bytes)", len(a), len(b))
			}
			// No scratch folder is left behind.
			ents, _ := os.ReadDir(f.dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".editkit-search-") {
					t.Errorf("scratch folder %s left behind", e.Name())
				}
			}
			// An existing record is not replaced without --force.
			if _, errOut, code := evRun(t, args...); code == 0 || !strings.Contains(errOut, "--force") {
				t.Errorf("second run without --force: code %d, %s", code, errOut)
			}
		})
	}
}

// TestMergeSearchLinesSingle: single-task LiNeS on knownPeakFamily's model
// a: the LayerNorm bias lies outside the blocks, so the feature is α·e₀ and
// the objective 2·acc_a/0.5 + acc_b/pre_b (b's feature stays 0: constant)
// is largest where task a's accuracy is, first at α = 0.4.
func TestMergeSearchLinesSingle(t *testing.T) {
	f := newSRFixture(t)
	knownPeakFamily(t, f, 1)
	labA, labB := peakLabelsA, peakLabelsB
	f.srDataset(t, "a", 200, 3, labA, 1)
	f.srDataset(t, "b", 200, 2, labB, 2)
	headA := f.srHead(t, "a", [][]float32{{0}, {1}, {2}}, []float32{0, -0.325, -0.95})
	headB := f.srHead(t, "b", [][]float32{{0}, {0, 1}}, []float32{0, -0.475})
	out := f.path("lines-a")
	js, errOut, code := evRun(t, "merge", "--base", f.path("base"), "--models", f.path("fta"), "--method", "task_arithmetic",
		"--search-lines", "--search", "a="+headA+":0.5", "--search", "b="+headB, "--data", f.data, "-o", out, "--json", "-q")
	if code != 0 {
		t.Fatalf("single-task LiNeS search: %s", errOut)
	}
	rec := readRecord(t, js)
	if rec.Coefficient != "lines_alpha" || rec.Chosen != 0.4 || len(rec.Search.Points) != len(eval.LinesAlphaGrid()) {
		t.Errorf("chose %s = %v over %d points, want lines_alpha 0.4 over %d", rec.Coefficient, rec.Chosen, len(rec.Search.Points), len(eval.LinesAlphaGrid()))
	}
	if rec.Pretrained["b"] != share(labB, 0) || rec.Finetuned["a"] != 0.5 {
		t.Errorf("pre-trained %v, fine-tuned %v", rec.Pretrained, rec.Finetuned)
	}
	if l, _ := rec.MergeParams["lines"].(map[string]any); l["alpha"] != 0.4 || math.Abs(l["beta"].(float64)-0.6) > 1e-12 {
		t.Errorf("written LiNeS parameters %v, want α 0.4, β 0.6", l)
	}
	if got := readTensor(t, out, f.c.Prefix+"layernorm.bias"); math.Abs(float64(got[0])-0.4) > 1e-7 || got[1] != 0 {
		t.Errorf("written layernorm.bias starts %v, want 0.4 e₀", got[:2])
	}
}

// TestMergeSearchNegation: θ₀ − λτ where the task vector carries −(e₀+e₁)
// in the gain-0 LayerNorm's bias, so the feature is λ(e₀+e₁). Target head:
// class 1 from λ = 0.25, class 2 from λ = 0.75; control head: class 1 from
// λ = 0.55. Target labels 14 × class 0, 6 × class 1; control all class 0
// (pre-trained accuracy 1). Feasible: λ ≤ 0.5; lowest target accuracy there
// is 0.3, first at λ = 0.25.
func TestMergeSearchNegation(t *testing.T) {
	f := newSRFixture(t)
	knownPeakFamily(t, f, -1)
	// A single fine-tuned model with −(e₀+e₁): merge fta and ftb's task
	// vectors into one checkpoint, θ₀ + τa + τb.
	if _, errOut, code := evRun(t, "merge", "--base", f.path("base"), "--models", f.path("fta"), f.path("ftb"),
		"--method", "task_arithmetic", "--lambda", "1", "-o", f.path("ft"), "-q"); code != 0 {
		t.Fatal(errOut)
	}
	labT := append(make([]int, 14), 1, 1, 1, 1, 1, 1)
	labC := make([]int, 20)
	f.srDataset(t, "target", 200, 3, labT, 3)
	f.srDataset(t, "control", 200, 2, labC, 4)
	headT := f.srHead(t, "target", [][]float32{{0}, {1}, {2}}, []float32{0, -0.225, -0.95})
	headC := f.srHead(t, "control", [][]float32{{0}, {0, 1}}, []float32{0, -0.525})
	out := f.path("forget")
	js, errOut, code := evRun(t, "merge", "--base", f.path("base"), "--models", f.path("ft"), "--method", "task_arithmetic",
		"--negate", "--search", "target="+headT, "--search", "control="+headC, "--data", f.data, "-o", out, "--json", "-q")
	if code != 0 {
		t.Fatalf("merge --negate --search: %s", errOut)
	}
	rec := readRecord(t, js)
	if rec.Chosen != 0.25 || rec.Applied != -0.25 {
		t.Errorf("negation chose λ = %v (applied %v), want 0.25 (−0.25)", rec.Chosen, rec.Applied)
	}
	if rec.Pretrained["control"] != 1 {
		t.Errorf("pre-trained control accuracy %v, want 1", rec.Pretrained)
	}
	for _, p := range rec.Search.Points {
		wantT := 0.7
		switch {
		case p.Coef >= 0.75:
			wantT = 0
		case p.Coef >= 0.25:
			wantT = 0.3
		}
		wantC, feasible := 1.0, true
		if p.Coef >= 0.55 {
			wantC, feasible = 0, false
		}
		if p.Accuracy["target"] != wantT || p.Accuracy["control"] != wantC || p.Feasible != feasible {
			t.Errorf("λ = %v: %+v, want target %v, control %v, feasible %v", p.Coef, p, wantT, wantC, feasible)
		}
	}
	if got := readTensor(t, out, f.c.Prefix+"layernorm.bias"); got[0] != 0.25 || got[1] != 0.25 {
		t.Errorf("written layernorm.bias starts %v, want 0.25(e₀+e₁)", got[:2])
	}
	// Checks on the command line.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--models", f.path("ft"), "--method", "task_arithmetic", "--negate", "--search", "target=" + headT}, "two --search tasks"},
		{[]string{"--models", f.path("fta"), f.path("ftb"), "--method", "task_arithmetic", "--search", "a=" + headT, "--lambda", "0.3"}, "--lambda is what --search chooses"},
		{[]string{"--models", f.path("fta"), f.path("ftb"), "--method", "model_stock", "--search", "target=" + headT, "--search", "control=" + headC}, "no merge coefficient"},
		{[]string{"--models", f.path("fta"), f.path("ftb"), "--method", "task_arithmetic", "--grid", "0:1:0.1"}, "applies to merge --search"},
		{[]string{"--models", f.path("fta"), f.path("ftb"), "--method", "task_arithmetic", "--search", "target=" + headT, "--grid", "1:0:0.1"}, "empty"},
		{[]string{"--models", f.path("fta"), f.path("ftb"), "--method", "task_arithmetic", "--search", "target=" + headT + ":91"}, "percentage"},
	} {
		args := append([]string{"merge", "--base", f.path("base"), "--data", f.data, "-o", f.path("bad")}, tc.args...)
		_, errOut, code := evRun(t, args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: code %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if _, err := os.Stat(f.path("bad")); err == nil {
		t.Error("a refused search left an output")
	}
}

// TestMergeSearchLinesIndependent: LiNeS's β search on a random family
// (every weight matters), checked against an independent computation: the
// test forms θ₀ + (α + β ℓ/(L−1))(τ₁ + τ₂) itself, with α = 1/2 (plain task
// arithmetic's multi-task α) and ℓ parsed from the tensor names, evaluates
// it on the validation split with its own loop, and normalizes by the
// fine-tuned models' accuracies it measures itself.
func TestMergeSearchLinesIndependent(t *testing.T) {
	f := newSRFixture(t)
	m, err := vit.NewRandom(f.c, 31)
	if err != nil {
		t.Fatal(err)
	}
	f.base = m.Weights
	evSaveViT(t, f.c, f.base, f.path("base"))
	var fts []models.Weights
	for i := range 2 {
		r := rand.New(rand.NewPCG(uint64(40+i), 1))
		ft := weightsLike(f.base, func(_ string, v []float32) {
			for j := range v {
				v[j] += float32(0.012 * r.NormFloat64())
			}
		})
		evSaveViT(t, f.c, ft, f.path(fmt.Sprintf("ft%d", i)))
		fts = append(fts, ft)
	}
	names := []string{"p", "q"}
	var headPaths []string
	var hs []*heads.Head
	var vals []*datasets.Dataset
	for i, name := range names {
		f.srDataset(t, name, 300, 3, []int{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}, uint64(50+i))
		val, err := datasets.Load(name, datasets.Validation, datasets.Options{DataDir: f.data})
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, val)
		// A prototype head from the fine-tuned model: the mean feature of
		// each class's first three validation images.
		ftm, err := vit.New(f.c, fts[i])
		if err != nil {
			t.Fatal(err)
		}
		feats, labels := srEncode(t, ftm, val)
		h := &heads.Head{Classes: []string{"classA", "classB", "classC"}, Dim: f.c.HiddenSize, Weight: make([]float32, 3*f.c.HiddenSize), Scale: 1, Normalize: true}
		for k, l := range labels[:9] {
			for j := range f.c.HiddenSize {
				h.Weight[l*f.c.HiddenSize+j] += feats[k*f.c.HiddenSize+j]
			}
		}
		hp := f.path(name + "-head.safetensors")
		if err := h.Save(hp, false); err != nil {
			t.Fatal(err)
		}
		headPaths, hs = append(headPaths, hp), append(hs, h)
	}

	acc := func(w models.Weights, i int) float64 {
		mm, err := vit.New(f.c, w)
		if err != nil {
			t.Fatal(err)
		}
		feats, labels := srEncode(t, mm, vals[i])
		logits, err := hs[i].Logits(feats, len(labels))
		if err != nil {
			t.Fatal(err)
		}
		right := 0
		for k, l := range labels {
			if eval.Argmax(logits[3*k:3*k+3]) == l {
				right++
			}
		}
		return float64(right) / float64(len(labels))
	}
	ft := map[string]float64{}
	for i, name := range names {
		ft[name] = acc(fts[i], i)
	}
	depth := func(name string) (int, bool) {
		rest, ok := strings.CutPrefix(name, "vit.encoder.layer.")
		if !ok {
			return 0, false
		}
		l, err := strconv.Atoi(rest[:strings.Index(rest, ".")])
		return l, err == nil
	}
	want, best := -1.0, -1.0
	expect := map[float64]map[string]float64{}
	for _, beta := range eval.LinesBetaGrid() {
		w := weightsLike(f.base, func(name string, v []float32) {
			s := 0.5
			if l, ok := depth(name); ok {
				s += beta * float64(l) / float64(f.c.NumHiddenLayers-1)
			}
			t1, t2 := fts[0][name], fts[1][name]
			a, b := tensors.MustCopyFlatData[float32](t1), tensors.MustCopyFlatData[float32](t2)
			for j := range v {
				v[j] += float32(s) * ((a[j] - v[j]) + (b[j] - v[j]))
			}
		})
		accs := map[string]float64{"p": acc(w, 0), "q": acc(w, 1)}
		expect[beta] = accs
		if sc := (accs["p"]/ft["p"] + accs["q"]/ft["q"]) / 2; sc > best+1e-12 {
			want, best = beta, sc
		}
	}
	t.Logf("independent: chosen β %v, accuracies %v, fine-tuned %v", want, expect, ft)

	out := f.path("lines")
	js, errOut, code := evRun(t, "merge", "--base", f.path("base"), "--models", f.path("ft0"), f.path("ft1"), "--method", "task_arithmetic",
		"--search", "p="+headPaths[0], "--search", "q="+headPaths[1], "--search-lines", "--data", f.data, "-o", out, "--json", "-q")
	if code != 0 {
		t.Fatalf("merge --search --search-lines: %s", errOut)
	}
	rec := readRecord(t, js)
	if rec.Coefficient != "lines_beta" || rec.Chosen != want {
		t.Errorf("chose %s = %v, the independent computation %v", rec.Coefficient, rec.Chosen, want)
	}
	if rec.LinesAlpha == nil || math.Abs(*rec.LinesAlpha-0.5) > 1e-6 {
		t.Errorf("LiNeS α %v, want 0.5", rec.LinesAlpha)
	}
	for _, name := range names {
		if rec.Finetuned[name] != ft[name] || !strings.HasPrefix(rec.FinetunedFrom[name], "evaluated") {
			t.Errorf("fine-tuned %s: %v from %q, want %v evaluated", name, rec.Finetuned[name], rec.FinetunedFrom[name], ft[name])
		}
	}
	for _, p := range rec.Search.Points {
		for task, a := range expect[p.Coef] {
			if p.Accuracy[task] != a {
				t.Errorf("β = %v, task %s: accuracy %v, independent %v", p.Coef, task, p.Accuracy[task], a)
			}
		}
	}
	for task, a := range expect[want] {
		if rec.Written[task] != a {
			t.Errorf("written checkpoint, task %s: accuracy %v, want %v", task, rec.Written[task], a)
		}
	}
	if l, _ := rec.MergeParams["lines"].(map[string]any); l["beta"] != want {
		t.Errorf("written merge's LiNeS parameters %v, want β %v", l, want)
	}

	// A given α is kept, and the searched models are the written ones.
	js, errOut, code = evRun(t, "merge", "--base", f.path("base"), "--models", f.path("ft0"), f.path("ft1"), "--method", "task_arithmetic",
		"--search", "p="+headPaths[0]+":1", "--search", "q="+headPaths[1]+":1", "--search-lines", "--lines-alpha", "0.3",
		"--data", f.data, "-o", f.path("lines-alpha"), "--json", "-q")
	if code != 0 {
		t.Fatalf("merge --search --search-lines --lines-alpha: %s", errOut)
	}
	rec = readRecord(t, js)
	l, _ := rec.MergeParams["lines"].(map[string]any)
	if rec.LinesAlpha == nil || *rec.LinesAlpha != 0.3 || l["alpha"] != 0.3 || l["beta"] != rec.Chosen {
		t.Errorf("α %v, written LiNeS %v, chosen β %v", rec.LinesAlpha, l, rec.Chosen)
	}
	for task, a := range rec.Search.Points[rec.Search.Best].Accuracy {
		if rec.Written[task] != a {
			t.Errorf("task %s: searched accuracy %v, written checkpoint's %v", task, a, rec.Written[task])
		}
	}
}

// srEncode returns the pooled features of a dataset's images, preprocessed
// as ViT's, and the labels.
func srEncode(t *testing.T, m *vit.Model, ds *datasets.Dataset) ([]float32, []int) {
	t.Helper()
	size := m.Config.ImageSize
	var pix []uint8
	for i := range ds.Len() {
		img, err := ds.Image(i)
		if err != nil {
			t.Fatal(err)
		}
		pix = append(pix, img.Pix...)
	}
	if len(pix) != ds.Len()*size*size*3 {
		t.Fatalf("images are not %d×%d RGB", size, size)
	}
	return evFeatures(t, m, pix, ds.Len()), ds.Labels()
}

// TestMergeSearchTall: --search-tall on knownPeakFamily. Each task's TALL
// mask keeps its own LayerNorm-bias entry (|τ_t| = 1 > λ·0) and drops the
// other's (0 > λ·1 fails), so θ₀ + m_t ⊙ τ_MTL has feature e_t whatever λ
// (the noise elsewhere is hidden by the zero gain): task a's head predicts
// class 2 and task b's class 1 at every λ, the accuracies are the label
// shares, and every task keeps the grid's first λ, 0.2.
func TestMergeSearchTall(t *testing.T) {
	f := newSRFixture(t)
	knownPeakFamily(t, f, 1)
	f.srDataset(t, "a", 200, 3, peakLabelsA, 1)
	f.srDataset(t, "b", 200, 2, peakLabelsB, 2)
	headA := f.srHead(t, "a", [][]float32{{0}, {1}, {2}}, []float32{0, -0.325, -0.95})
	headB := f.srHead(t, "b", [][]float32{{0}, {0, 1}}, []float32{0, -0.475})
	args := []string{"merge", "--base", f.path("base"), "--models", f.path("fta"), f.path("ftb"), "--method", "consensus",
		"--search", "a=" + headA + ":0.5", "--search", "b=" + headB + ":0.8", "--search-tall", "--data", f.data, "--json", "-q"}
	js, errOut, code := evRun(t, append(args, "-o", f.path("cons"))...)
	if code != 0 {
		t.Fatalf("merge --search-tall: %s", errOut)
	}
	rec := readRecord(t, js)
	if rec.Tall == nil || len(rec.Tall.Grid) != 5 || rec.Tall.Lambdas[0] != 0.2 || rec.Tall.Lambdas[1] != 0.2 {
		t.Fatalf("TALL search %+v", rec.Tall)
	}
	for k := range rec.Tall.Grid {
		if rec.Tall.Accuracy["a"][k] != share(peakLabelsA, 2) || rec.Tall.Accuracy["b"][k] != share(peakLabelsB, 1) {
			t.Errorf("λ %v: accuracies a %v b %v, want %v %v", rec.Tall.Grid[k], rec.Tall.Accuracy["a"][k], rec.Tall.Accuracy["b"][k], share(peakLabelsA, 2), share(peakLabelsB, 1))
		}
	}
	if tl, _ := rec.MergeParams["tall_lambda"].([]any); len(tl) != 2 || tl[0] != 0.2 || tl[1] != 0.2 {
		t.Errorf("written tall_lambda %v", rec.MergeParams["tall_lambda"])
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tall-lambda", "0.3"}, "drop --tall-lambda"},
		{[]string{"--method", "ties"}, "not a parameter of ties"},
	} {
		_, errOut, code := evRun(t, append(append(append([]string{}, args...), "-o", f.path("bad")), tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: code %d, %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}
