package tasks_test

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

func close64(a, b float64) bool { return math.Abs(a-b) <= 1e-12*max(1, math.Abs(b)) }

func TestStats(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	tau1, tau2 := f.tau(f.ft1), f.tau(f.ft2)
	neg := combo([]map[string][]float64{tau1}, []float64{-1})
	negPath := filepath.Join(dir, "neg.safetensors")
	f.writeTV(t, negPath, neg, checkpoint.BF16, true)
	zeroPath := filepath.Join(dir, "zero.safetensors")
	f.writeTV(t, zeroPath, combo(nil, nil), checkpoint.F32, true)
	// Members: ft1, ft2, τ1 stored, −τ1 stored, a zero vector.
	members := []string{f.ft1.path, f.ft2.path, f.tv1, negPath, zeroPath}
	taus := []map[string][]float64{tau1, tau2, tau1, neg, combo(nil, nil)}
	n := len(taus)
	fl := floatDefs(defs)

	for _, opts := range []tasks.StreamOptions{{}, {ChunkElems: 3, Workers: 4}, {Whole: true, Workers: 2}} {
		t.Run(fmt.Sprintf("%+v", opts), func(t *testing.T) {
			s := openSet(t, f.base.path, members...)
			stats, err := tasks.Stats(s, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(stats) != len(fl) {
				t.Fatalf("%d tensors, want %d", len(stats), len(fl))
			}
			// Sums of products of k/64 values are exact in float64, in any
			// order: compare with ==.
			var totL1, totSq []float64 = make([]float64, n), make([]float64, n)
			dots := make([][]float64, n)
			for i := range dots {
				dots[i] = make([]float64, n)
			}
			for k, d := range fl {
				ts := stats[k]
				if ts.Name != d.name {
					t.Errorf("stats[%d] is %q, want %q", k, ts.Name, d.name)
				}
				for i := range n {
					var l1, sq float64
					for _, v := range taus[i][d.name] {
						l1 += math.Abs(v)
						sq += v * v
					}
					totL1[i] += l1
					totSq[i] += sq
					if ts.L1[i] != l1 || ts.L2Sq[i] != sq {
						t.Errorf("%s member %d: L1 %v L2Sq %v, want %v %v", d.name, i, ts.L1[i], ts.L2Sq[i], l1, sq)
					}
					for j := range n {
						var dot float64
						for e, v := range taus[i][d.name] {
							dot += v * taus[j][d.name][e]
						}
						if j < i {
							if ts.Dots[i][j] != 0 {
								t.Errorf("%s: Dots[%d][%d] = %v below the diagonal", d.name, i, j, ts.Dots[i][j])
							}
							continue
						}
						dots[i][j] += dot
						if ts.Dots[i][j] != dot {
							t.Errorf("%s: Dots[%d][%d] = %v, want %v", d.name, i, j, ts.Dots[i][j], dot)
						}
					}
				}
			}

			tot := tasks.Totals(stats)
			for i := range n {
				if tot[i].L1 != totL1[i] || !close64(tot[i].L2, math.Sqrt(totSq[i])) {
					t.Errorf("Totals[%d] = %+v, want L1 %v L2 %v", i, tot[i], totL1[i], math.Sqrt(totSq[i]))
				}
			}

			cos := tasks.Cosine(stats)
			for i := range n {
				for j := range n {
					a, b := min(i, j), max(i, j)
					want := 0.0
					if den := math.Sqrt(dots[a][a]) * math.Sqrt(dots[b][b]); den > 0 {
						want = dots[a][b] / den
					}
					if !close64(cos[i][j], want) {
						t.Errorf("Cosine[%d][%d] = %v, want %v", i, j, cos[i][j], want)
					}
				}
			}
			for _, c := range []struct {
				i, j int
				want float64
			}{{0, 0, 1}, {0, 2, 1}, {2, 0, 1}, {0, 3, -1}, {3, 2, -1}, {1, 1, 1}, {4, 4, 0}, {0, 4, 0}} {
				if !close64(cos[c.i][c.j], c.want) {
					t.Errorf("Cosine[%d][%d] = %v, want %v", c.i, c.j, cos[c.i][c.j], c.want)
				}
			}
			if c := cos[0][1]; c <= -1 || c >= 1 || c == 0 {
				t.Errorf("Cosine of two independent vectors = %v", c)
			}

			layout, err := checkpoint.NewLayout(defNames(fl), "")
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				keys, norms := tasks.BlockNorms(stats, i, layout)
				wantKeys, l1, sq := blockGroups(fl, taus[i])
				if !slices.Equal(keys, wantKeys) {
					t.Errorf("member %d: BlockNorms keys %q, want %q", i, keys, wantKeys)
				}
				if len(norms) != len(wantKeys) {
					t.Errorf("member %d: %d groups, want %d", i, len(norms), len(wantKeys))
				}
				for _, k := range wantKeys {
					if norms[k].L1 != l1[k] || !close64(norms[k].L2, math.Sqrt(sq[k])) {
						t.Errorf("member %d: BlockNorms[%q] = %+v, want L1 %v L2 %v", i, k, norms[k], l1[k], math.Sqrt(sq[k]))
					}
				}
			}
		})
	}
}

// blockGroups groups a vector's norms by "model.layers.{i}" block, by
// parsing the names, in order of first appearance.
func blockGroups(ds []tensorDef, tau map[string][]float64) (keys []string, l1, sq map[string]float64) {
	l1, sq = map[string]float64{}, map[string]float64{}
	for _, d := range ds {
		key := "(outside blocks)"
		if rest, ok := strings.CutPrefix(d.name, "model.layers."); ok {
			key = "model.layers." + rest[:strings.IndexByte(rest, '.')]
		}
		if _, ok := l1[key]; !ok {
			keys = append(keys, key)
		}
		l1[key] += 0
		for _, v := range tau[d.name] {
			l1[key] += math.Abs(v)
			sq[key] += v * v
		}
	}
	return keys, l1, sq
}

func TestStatsEmpty(t *testing.T) {
	if got := tasks.Cosine(nil); got != nil {
		t.Errorf("Cosine(nil) = %v", got)
	}
	if got := tasks.Totals(nil); got != nil {
		t.Errorf("Totals(nil) = %v", got)
	}
	keys, norms := tasks.BlockNorms(nil, 0, &checkpoint.Layout{})
	if len(keys) != 0 || len(norms) != 0 {
		t.Errorf("BlockNorms(nil) = %v, %v", keys, norms)
	}
}

// Stats fails, naming the file, on a NaN in a member.
func TestStatsNonFinite(t *testing.T) {
	f := newFixture(t)
	tau := f.tau(f.ft1)
	tau["model.norm.weight"][11] = math.NaN()
	p := filepath.Join(t.TempDir(), "nan.safetensors")
	f.writeTV(t, p, tau, checkpoint.F32, true)
	_, err := tasks.Stats(openSet(t, f.base.path, p), tasks.StreamOptions{ChunkElems: 5})
	wantErr(t, err, p, `"model.norm.weight"`, "flat index 11)")
}
