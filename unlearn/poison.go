package unlearn

import (
	"fmt"
	"math"
	"slices"

	"github.com/editkit/editkit/datasets"
)

// DefaultPoisonRate is the share of training examples a downstream attack
// poisons (BackdoorBench's default pratio).
const DefaultPoisonRate = 0.1

// checkTarget reports a target class outside ds's classes.
func checkTarget(ds *datasets.Dataset, target int) error {
	if target < 0 || target >= ds.NumClasses() {
		return fmt.Errorf("target class %d is outside the %d classes of %s (0 to %d)", target, ds.NumClasses(), ds.Name(), ds.NumClasses()-1)
	}
	return nil
}

// checkFits checks the trigger against ds's image size when all its images
// share one (IDX data); other datasets are checked image by image.
func checkFits(ds *datasets.Dataset, t Trigger) error {
	if h, w, c, ok := ds.Shape(); ok {
		return t.Check(h, w, c)
	}
	return nil
}

// rewrite returns ds with the trigger applied to the examples for which
// triggered says so, relabelled to target when target ≥ 0.
func rewrite(ds *datasets.Dataset, t Trigger, name string, triggered func(i int) bool, target int) (*datasets.Dataset, error) {
	if err := checkFits(ds, t); err != nil {
		return nil, err
	}
	tf := datasets.Transform{Name: name,
		Image: func(i int, src datasets.Image) (datasets.Image, error) {
			if !triggered(i) {
				if c, ok := t.(interface{ channels() int }); ok && src.Channels != c.channels() {
					return grayToRGB(src), nil
				}
				return src, nil
			}
			return t.Apply(i, src)
		}}
	if c, ok := t.(interface{ channels() int }); ok {
		tf.Channels = c.channels()
	}
	if target >= 0 {
		tf.Label = func(i, l int) int {
			if triggered(i) {
				return target
			}
			return l
		}
	}
	return ds.Transform(tf)
}

func grayToRGB(src datasets.Image) datasets.Image {
	out := datasets.Image{Height: src.Height, Width: src.Width, Channels: 3, Pix: make([]uint8, 3*len(src.Pix))}
	for i, v := range src.Pix {
		out.Pix[3*i], out.Pix[3*i+1], out.Pix[3*i+2] = v, v, v
	}
	return out
}

// Apply returns ds with the trigger applied to every image, labels kept
// (what 'editkit backdoor apply' writes).
func Apply(ds *datasets.Dataset, t Trigger) (*datasets.Dataset, error) {
	return rewrite(ds, t, triggerName(t), func(int) bool { return true }, -1)
}

// triggerName is the kind of a trigger, for dataset names.
func triggerName(t Trigger) string {
	s := t.String()
	for i, r := range s {
		if r == ':' {
			return s[:i]
		}
	}
	return s
}

// PoisonOptions configure Poison.
type PoisonOptions struct {
	// Rate is the share of all training examples poisoned (0: DefaultPoisonRate).
	Rate float64
	// Target is the class poisoned examples are labelled with.
	Target int
	// Seed chooses the poisoned examples.
	Seed uint64
}

// Poison returns the training set ds with round(Rate·n) of its n examples
// poisoned: drawn (seeded) among the examples whose class is not the
// target, trigger applied and label set to the target (an all-to-one
// attack). The returned indices are the poisoned positions, in increasing
// order.
func Poison(ds *datasets.Dataset, t Trigger, o PoisonOptions) (*datasets.Dataset, []int, error) {
	rate := o.Rate
	if rate == 0 {
		rate = DefaultPoisonRate
	}
	if !(rate > 0 && rate <= 1) || math.IsNaN(rate) {
		return nil, nil, fmt.Errorf("poison rate %v is outside (0, 1]", o.Rate)
	}
	if err := checkTarget(ds, o.Target); err != nil {
		return nil, nil, err
	}
	var candidates []int
	for i := range ds.Len() {
		if ds.Label(i) != o.Target {
			candidates = append(candidates, i)
		}
	}
	k := int(math.Round(rate * float64(ds.Len())))
	if k > len(candidates) {
		return nil, nil, fmt.Errorf("poisoning %g of %s asks for %d examples, but only %d are not of the target class %d", rate, ds.Name(), k, len(candidates), o.Target)
	}
	chosen := make([]int, k)
	for j, p := range datasets.Permutation(len(candidates), o.Seed)[:k] {
		chosen[j] = candidates[p]
	}
	slices.Sort(chosen)
	poisoned := make([]bool, ds.Len())
	for _, i := range chosen {
		poisoned[i] = true
	}
	out, err := rewrite(ds, t, fmt.Sprintf("poison(%s,%g,target=%d)", triggerName(t), rate, o.Target), func(i int) bool { return poisoned[i] }, o.Target)
	return out, chosen, err
}

// Triggered returns the examples of ds whose class is not target, with the
// trigger applied and labelled target: the set on which the attack success
// rate is the accuracy.
func Triggered(ds *datasets.Dataset, t Trigger, target int) (*datasets.Dataset, error) {
	if err := checkTarget(ds, target); err != nil {
		return nil, err
	}
	var keep []int
	for i := range ds.Len() {
		if ds.Label(i) != target {
			keep = append(keep, i)
		}
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("%s holds only examples of the target class %d: the attack success rate needs others", ds.Name(), target)
	}
	return rewrite(ds.Subset(keep), t, triggerName(t), func(int) bool { return true }, target)
}

// TriggeredSample draws n examples of ds (all classes, seeded), applies the
// trigger and labels them target: TBAR's small triggered set.
func TriggeredSample(ds *datasets.Dataset, t Trigger, target, n int, seed uint64) (*datasets.Dataset, error) {
	if err := checkTarget(ds, target); err != nil {
		return nil, err
	}
	if n <= 0 || n > ds.Len() {
		return nil, fmt.Errorf("%d triggered examples asked of %s, which has %d", n, ds.Name(), ds.Len())
	}
	return rewrite(ds.Sample(n, seed), t, triggerName(t), func(int) bool { return true }, target)
}
