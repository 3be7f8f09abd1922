package datasets

import (
	"slices"
	"testing"
)

func isPermutation(p []int) bool {
	seen := make([]bool, len(p))
	for _, v := range p {
		if v < 0 || v >= len(p) || seen[v] {
			return false
		}
		seen[v] = true
	}
	return true
}

func TestPermutation(t *testing.T) {
	for _, n := range []int{0, 1, 2, 10, 1000} {
		p := Permutation(n, 0)
		if len(p) != n || !isPermutation(p) {
			t.Fatalf("Permutation(%d, 0) = %v is not a permutation", n, p)
		}
		if !slices.Equal(p, Permutation(n, 0)) {
			t.Fatalf("Permutation(%d, 0) differs between calls", n)
		}
	}
	if slices.Equal(Permutation(1000, 0), Permutation(1000, 1)) {
		t.Error("seeds 0 and 1 give the same permutation")
	}
	// Golden values, computed by an independent Python implementation of
	// PCG-DXSM (Go's rand.PCG), Lemire's bounded integers and Fisher–Yates:
	// the permutation must not change between Go releases or platforms (it
	// picks the validation examples).
	for _, g := range []struct {
		n            int
		seed, stream uint64
		want         []int
	}{
		{10, 0, 0, []int{4, 8, 1, 5, 0, 7, 3, 9, 6, 2}},
		{10, 42, 0, []int{6, 2, 5, 3, 4, 7, 0, 1, 9, 8}},
		{12, 7, 3, []int{8, 0, 10, 6, 1, 5, 4, 3, 7, 2, 11, 9}},
	} {
		if got := permutation(g.n, g.seed, g.stream); !slices.Equal(got, g.want) {
			t.Errorf("permutation(%d, %d, %d) = %v, want %v", g.n, g.seed, g.stream, got, g.want)
		}
	}
	// Rough uniformity: each of 5 values lands first about 1/5 of the time.
	counts := make([]int, 5)
	for s := range uint64(5000) {
		counts[Permutation(5, s)[0]]++
	}
	for v, c := range counts {
		if c < 850 || c > 1150 {
			t.Errorf("value %d first in %d of 5000 permutations", v, c)
		}
	}
}

func TestHoldOut(t *testing.T) {
	for _, c := range []struct{ n, val int }{
		{60000, 5000}, // MNIST, Fashion-MNIST: 10% = 6000, capped
		{10000, 1000}, // cifar10 (shared subset)
		{11430, 1143}, // gtsrb (shared subset)
		{9, 0},
		{0, 0},
	} {
		tr, val := HoldOut(c.n, DefaultValidationFraction, DefaultMaxValidation, 0)
		if len(val) != c.val || len(tr) != c.n-c.val {
			t.Errorf("n=%d: %d train, %d val; want %d, %d", c.n, len(tr), len(val), c.n-c.val, c.val)
		}
		if !slices.IsSorted(tr) || !slices.IsSorted(val) {
			t.Errorf("n=%d: lists not sorted", c.n)
		}
		all := slices.Concat(tr, val)
		slices.Sort(all)
		if len(slices.Compact(all)) != c.n || (c.n > 0 && (all[0] != 0 || all[c.n-1] != c.n-1)) {
			t.Errorf("n=%d: train and val overlap or miss examples", c.n)
		}
		tr2, val2 := HoldOut(c.n, DefaultValidationFraction, DefaultMaxValidation, 0)
		if !slices.Equal(tr, tr2) || !slices.Equal(val, val2) {
			t.Errorf("n=%d: not deterministic", c.n)
		}
	}
	// The held-out set is the tail of Permutation(n, seed).
	p := Permutation(100, 3)
	_, val := HoldOut(100, 0.1, 0, 3)
	tail := slices.Clone(p[90:])
	slices.Sort(tail)
	if !slices.Equal(val, tail) {
		t.Errorf("val %v, want the sorted tail of the permutation %v", val, tail)
	}
	if _, v := HoldOut(60000, 0.1, -1, 0); len(v) != 6000 {
		t.Errorf("uncapped: %d", len(v))
	}
}

func TestFromPixelsAndSubset(t *testing.T) {
	pix := seq(4 * 2 * 3 * 1)
	d, err := FromPixels("toy", []string{"a", "b"}, 2, 3, 1, pix, []int{0, 1, 1, 0})
	if err != nil {
		t.Fatal(err)
	}
	s := d.Subset([]int{3, 1})
	if s.Len() != 2 || s.Label(0) != 0 || s.Label(1) != 1 || s.SourceIndex(0) != 3 {
		t.Errorf("subset: len %d labels %v", s.Len(), s.Labels())
	}
	for _, tc := range []struct{ n, want int }{{2, 2}, {0, 4}, {-1, 4}, {4, 4}, {9, 4}} {
		if h := d.Head(tc.n); h.Len() != tc.want || h.SourceIndex(h.Len()-1) != tc.want-1 {
			t.Errorf("Head(%d): %d examples ending at %d, want the first %d", tc.n, h.Len(), h.SourceIndex(h.Len()-1), tc.want)
		}
	}
	for _, n := range []int{0, -1, 4, 9} {
		if d.Sample(n, 7) != d {
			t.Errorf("Sample(%d) is not the whole dataset", n)
		}
	}
	a, b := d.Sample(2, 7), d.Sample(2, 7)
	if a.Len() != 2 || a.SourceIndex(0) >= a.SourceIndex(1) || a.SourceIndex(0) != b.SourceIndex(0) || a.SourceIndex(1) != b.SourceIndex(1) {
		t.Errorf("Sample(2, 7): sources %d %d, again %d %d; want 2 in order, the same each time", a.SourceIndex(0), a.SourceIndex(1), b.SourceIndex(0), b.SourceIndex(1))
	}
	ss := s.Subset([]int{1})
	if ss.SourceIndex(0) != 1 {
		t.Errorf("subset of subset maps to %d, want 1", ss.SourceIndex(0))
	}
	img, _ := ss.Image(0)
	if !slices.Equal(img.Pix, pix[6:12]) || img.At(1, 2, 0) != pix[11] {
		t.Errorf("image = %v", img.Pix)
	}
	if _, err := FromPixels("bad", []string{"a"}, 2, 3, 1, pix, []int{0, 1, 1, 0}); err == nil {
		t.Error("label outside classes accepted")
	}
	if _, err := FromPixels("bad", []string{"a"}, 2, 3, 2, pix, []int{0}); err == nil {
		t.Error("2 channels accepted")
	}
	if _, err := FromPixels("bad", []string{"a"}, 2, 3, 1, pix, []int{0}); err == nil {
		t.Error("pixel count mismatch accepted")
	}
	defer func() {
		if recover() == nil {
			t.Error("Subset out of range did not panic")
		}
	}()
	d.Subset([]int{4})
}

func TestHoldOutGroups(t *testing.T) {
	// 100 examples in groups of 1–7, interleaved as GTSRB's tracks are not.
	var groups []int
	for g := 0; len(groups) < 100; g++ {
		for range 1 + g%7 {
			groups = append(groups, 1000+g)
		}
	}
	groups = groups[:100]
	size := map[int]int{}
	for _, g := range groups {
		size[g]++
	}
	tr, val := HoldOutGroups(groups, 0.1, 5000, 0)
	if len(tr)+len(val) != 100 || len(val) < 10 || len(val) >= 10+7 {
		t.Fatalf("train %d val %d: want val in [10, 17)", len(tr), len(val))
	}
	inVal := map[int]int{}
	for _, i := range val {
		inVal[groups[i]]++
	}
	for g, n := range inVal {
		if n != size[g] {
			t.Errorf("group %d split: %d of %d in validation", g, n, size[g])
		}
	}
	if !slices.IsSorted(tr) || !slices.IsSorted(val) {
		t.Error("lists not sorted")
	}
	// Deterministic, seed-dependent, and the cap applies.
	_, again := HoldOutGroups(groups, 0.1, 5000, 0)
	_, other := HoldOutGroups(groups, 0.1, 5000, 1)
	if !slices.Equal(val, again) || slices.Equal(val, other) {
		t.Error("not deterministic per seed")
	}
	if _, capped := HoldOutGroups(groups, 0.5, 3, 0); len(capped) < 3 || len(capped) >= 3+7 {
		t.Errorf("cap 3: %d held out", len(capped))
	}
	// One group per example is HoldOut's size exactly.
	ids := make([]int, 50)
	for i := range ids {
		ids[i] = i
	}
	if _, v := HoldOutGroups(ids, 0.1, 0, 0); len(v) != 5 {
		t.Errorf("singleton groups: %d held out, want 5", len(v))
	}
}

func TestKeepClassesAndShares(t *testing.T) {
	labels := []int{0, 1, 2, 3, 0, 1, 2, 3, 2, 2}
	pix := make([]uint8, len(labels))
	for i := range pix {
		pix[i] = uint8(10 * i)
	}
	d, err := FromPixels("toy", []string{"a", "b", "c", "d"}, 1, 1, 1, pix, labels)
	if err != nil {
		t.Fatal(err)
	}
	k, err := d.KeepClasses([]int{2, 0})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k.Classes(), []string{"c", "a"}) || !slices.Equal(k.Labels(), []int{1, 0, 1, 0, 0, 0}) {
		t.Errorf("kept classes %v labels %v", k.Classes(), k.Labels())
	}
	if img, _ := k.Image(2); img.Pix[0] != 40 { // the 5th example (label a)
		t.Errorf("kept example 2 is image %d", img.Pix[0])
	}
	// Keeping again composes, also through a Subset.
	kk, err := k.Subset([]int{0, 1, 2, 3, 4, 5}).KeepClasses([]int{0})
	if err != nil || !slices.Equal(kk.Labels(), []int{0, 0, 0, 0}) || kk.Classes()[0] != "c" || kk.SourceIndex(3) != 9 {
		t.Errorf("kept twice: %v %v %v", kk.Labels(), kk.Classes(), err)
	}
	if _, err := d.KeepClasses([]int{4}); err == nil {
		t.Error("class outside the dataset: no error")
	}
	if _, err := d.KeepClasses([]int{1, 1}); err == nil {
		t.Error("class kept twice: no error")
	}

	// Shares without groups: disjoint chunks of one permutation.
	parts := Shares(d, []int{3, 4, 10}, 5)
	if parts[0].Len() != 3 || parts[1].Len() != 4 || parts[2].Len() != 3 {
		t.Errorf("share sizes %d %d %d", parts[0].Len(), parts[1].Len(), parts[2].Len())
	}
	seen := map[int]bool{}
	for _, p := range parts {
		for i := range p.Len() {
			if seen[p.SourceIndex(i)] {
				t.Fatal("shares overlap")
			}
			seen[p.SourceIndex(i)] = true
		}
	}
	// With groups, whole groups.
	d.groups = []int32{7, 7, 7, 8, 8, 9, 9, 9, 9, 6}
	parts = Shares(d, []int{2, 2}, 5)
	for _, p := range parts {
		n := map[int]int{}
		for i := range p.Len() {
			g, _ := p.Group(i)
			n[g]++
		}
		for g, c := range n {
			want := 0
			for _, x := range d.groups {
				if int(x) == g {
					want++
				}
			}
			if c != want {
				t.Errorf("group %d split: %d of %d in a share", g, c, want)
			}
		}
	}
}
