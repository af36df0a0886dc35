package bench

import (
	"math"
	"slices"
	"sync"
	"time"
)

// quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted samples, by the
// nearest-rank method: the smallest sample with at least q of the samples
// at or below it.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// percentiles returns p50 and p99 of samples (which it sorts).
func percentiles(samples []float64) (p50, p99 float64) {
	slices.Sort(samples)
	return quantile(samples, 0.50), quantile(samples, 0.99)
}

var clockCost = sync.OnceValue(func() time.Duration {
	// The median cost of reading the clock twice: what every latency
	// sample carries on top of the operations it times.
	s := make([]time.Duration, 2001)
	for i := range s {
		t0 := time.Now()
		s[i] = time.Since(t0)
	}
	slices.Sort(s)
	return s[len(s)/2]
})

// latencyLoop runs op n times and returns one sample per k consecutive
// calls: the mean duration of a call in that group, less the cost of
// reading the clock. Grouping keeps the clock's own cost and resolution
// out of the samples of operations that take tens of nanoseconds; the
// driver picks k so that a sample lasts about a microsecond.
func latencyLoop(t timer, n, k int, op func() error) (measurement, error) {
	k = max(k, 1)
	over := clockCost()
	m := measurement{sampleOps: k, samples: make([]float64, 0, n/k+1)}
	t.StartTimer()
	start := time.Now()
	for done := 0; done < n; {
		kk := min(k, n-done)
		t0 := time.Now()
		for range kk {
			if err := op(); err != nil {
				t.StopTimer()
				return m, err
			}
		}
		d := time.Since(t0) - over
		m.samples = append(m.samples, float64(max(d, 0))/float64(kk))
		done += kk
	}
	m.elapsed = time.Since(start)
	t.StopTimer()
	m.ops = n
	return m, nil
}

// timer is the part of *testing.B a run uses to keep set-up out of the
// benchmark's own clock; outside tests it is noTimer.
type timer interface {
	StartTimer()
	StopTimer()
}

type noTimer struct{}

func (noTimer) StartTimer() {}
func (noTimer) StopTimer()  {}
