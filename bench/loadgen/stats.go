package main

import (
	"math"
	"sort"
)

// percentile returns the p-quantile (0 <= p <= 1) of sorted latencies by the nearest-rank rule:
// the smallest sample such that at least p of all samples are at or below it. Nearest rank, not
// interpolation, so every reported figure is a latency some delivery really had.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// latencySummary is what the report prints about one run's latencies, in milliseconds.
type latencySummary struct {
	P50, P90, P99, Max, Mean float64
}

func summarize(samples []int64) latencySummary {
	if len(samples) == 0 {
		return latencySummary{}
	}
	sorted := append([]int64(nil), samples...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var total float64
	for _, s := range sorted {
		total += float64(s)
	}
	ms := func(ns int64) float64 { return math.Round(float64(ns)/1e4) / 100 }
	return latencySummary{
		P50:  ms(percentile(sorted, 0.50)),
		P90:  ms(percentile(sorted, 0.90)),
		P99:  ms(percentile(sorted, 0.99)),
		Max:  ms(sorted[len(sorted)-1]),
		Mean: math.Round(total/float64(len(sorted))/1e4) / 100,
	}
}
