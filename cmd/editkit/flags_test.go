package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"5GB": 5_000_000_000, "500MB": 500_000_000, "2GiB": 2 << 30, "1048576": 1 << 20,
		"1.5gb": 1_500_000_000, "64 KiB": 64 << 10, "10k": 10_000, "200B": 200,
	}
	for in, want := range good {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GB", "-1GB", "0", "5XB", "abc", "0.1B", "1e30GB", "NaN"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) gave no error", in)
		}
	}
}

func TestExpandModels(t *testing.T) {
	tests := []struct{ in, want string }{
		{"merge --models a b c --method ties", "merge --models a --models b --models c --method ties"},
		{"merge --method ties --models a b", "merge --method ties --models a --models b"},
		{"merge --models=a b -o out", "merge --models=a --models b -o out"},
		{"merge --models a,b c", "merge --models a,b --models c"},
		{"merge --models a -- b", "merge --models a -- b"},
		{"apply --base b tv1 tv2", "apply --base b tv1 tv2"},
	}
	for _, tc := range tests {
		got := strings.Join(expandModels(strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("expandModels(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseFloats(t *testing.T) {
	got, err := parseFloats("lambda", "0.5, -1,2e-1")
	if err != nil || !slices.Equal(got, []float64{0.5, -1, 0.2}) {
		t.Errorf("parseFloats = %v, %v", got, err)
	}
	for _, in := range []string{"", "1,,2", "x", "NaN", "Inf"} {
		if _, err := parseFloats("lambda", in); err == nil || !strings.Contains(err.Error(), "--lambda") {
			t.Errorf("parseFloats(%q): error %v should name --lambda", in, err)
		}
	}
	if v, err := perMember("lambda", []float64{2}, 3, "task vectors"); err != nil || !slices.Equal(v, []float64{2, 2, 2}) {
		t.Errorf("perMember one value: %v, %v", v, err)
	}
	if _, err := perMember("lambda", []float64{1, 2}, 3, "task vectors"); err == nil || !strings.Contains(err.Error(), "2 values for 3 task vectors") {
		t.Errorf("perMember count mismatch: %v", err)
	}
}
