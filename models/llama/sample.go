package llama

import (
	"math"
	"sort"
)

// Sampler picks the next token from logits exactly as llama2.c's run.c
// sample() does: greedy argmax at temperature 0; otherwise the logits are
// divided by the temperature, softmaxed (float32), and one coin from run.c's
// xorshift generator (random_f32) draws the token, from the whole
// distribution when TopP ≤ 0 or ≥ 1, else from the nucleus (the smallest
// set of most likely tokens whose probabilities sum past TopP, after
// run.c's cutoff (1 − TopP)/(n − 1)). Same seed, same logits: same tokens
// as run.c.
type Sampler struct {
	Temperature float32
	TopP        float32
	// State is run.c's rng_state: the seed, then advanced by each coin.
	State uint64
	probs []probIndex
}

type probIndex struct {
	prob  float32
	index int
}

// NewSampler is run.c's build_sampler. run.c replaces a seed of 0 by the
// time; that is the caller's choice here.
func NewSampler(temperature, topP float32, seed uint64) *Sampler {
	return &Sampler{Temperature: temperature, TopP: topP, State: seed}
}

// RandomU32 is run.c's random_u32 (xorshift*).
func (s *Sampler) RandomU32() uint32 {
	s.State ^= s.State >> 12
	s.State ^= s.State << 25
	s.State ^= s.State >> 27
	return uint32((s.State * 0x2545F4914F6CDD1D) >> 32)
}

// RandomF32 is run.c's random_f32: a float32 in [0, 1).
func (s *Sampler) RandomF32() float32 {
	return float32(s.RandomU32()>>8) / 16777216.0
}

// Sample returns the next token. Like run.c it overwrites logits (with the
// probabilities) unless the temperature is 0.
func (s *Sampler) Sample(logits []float32) int {
	if s.Temperature == 0 {
		return argmax(logits)
	}
	for i := range logits {
		logits[i] /= s.Temperature
	}
	softmax32(logits)
	coin := s.RandomF32()
	if s.TopP <= 0 || s.TopP >= 1 {
		return sampleMult(logits, coin)
	}
	return s.sampleTopP(logits, coin)
}

// argmax is run.c's sample_argmax: the first index of the largest value.
func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// softmax32 is run.c's softmax, in float32.
func softmax32(x []float32) {
	mx := x[0]
	for _, v := range x[1:] {
		if v > mx {
			mx = v
		}
	}
	var sum float32
	for i, v := range x {
		x[i] = float32(math.Exp(float64(v - mx)))
		sum += x[i]
	}
	for i := range x {
		x[i] /= sum
	}
}

// sampleMult is run.c's sample_mult.
func sampleMult(probs []float32, coin float32) int {
	var cdf float32
	for i, p := range probs {
		cdf += p
		if coin < cdf {
			return i
		}
	}
	return len(probs) - 1
}

// sampleTopP is run.c's sample_topp. Its qsort is glibc's merge sort
// (stable) for arrays of this size, hence the stable sort.
func (s *Sampler) sampleTopP(probs []float32, coin float32) int {
	n := len(probs)
	cutoff := (1 - s.TopP) / float32(n-1)
	s.probs = s.probs[:0]
	for i, p := range probs {
		if p >= cutoff {
			s.probs = append(s.probs, probIndex{p, i})
		}
	}
	if len(s.probs) == 0 { // one token, or NaN probabilities
		return sampleMult(probs, coin)
	}
	sort.SliceStable(s.probs, func(a, b int) bool { return s.probs[a].prob > s.probs[b].prob })
	var cum float32
	last := len(s.probs) - 1
	for i, pi := range s.probs {
		cum += pi.prob
		if cum > s.TopP {
			last = i
			break
		}
	}
	r := coin * cum
	var cdf float32
	for i := 0; i <= last; i++ {
		cdf += s.probs[i].prob
		if r < cdf {
			return s.probs[i].index
		}
	}
	return s.probs[last].index
}
