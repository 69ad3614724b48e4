package main

import "testing"

// The nearest-rank percentile of 1..100 is the value itself, and the ends are the extremes.
func TestPercentileNearestRank(t *testing.T) {
	sorted := make([]int64, 100)
	for i := range sorted {
		sorted[i] = int64(i + 1)
	}
	cases := map[float64]int64{0: 1, 0.01: 1, 0.5: 50, 0.9: 90, 0.99: 99, 0.995: 100, 1: 100}
	for p, want := range cases {
		if got := percentile(sorted, p); got != want {
			t.Errorf("percentile(1..100, %v) = %d, want %d", p, got, want)
		}
	}
}

// A single slow delivery among a hundred shows in the max but not in p99 (a real sample).
func TestPercentileOneOutlier(t *testing.T) {
	sorted := make([]int64, 100)
	for i := range sorted {
		sorted[i] = 10
	}
	sorted[99] = 5000
	if got := percentile(sorted, 0.99); got != 10 {
		t.Errorf("p99 = %d, want 10", got)
	}
	if got := percentile(sorted, 1); got != 5000 {
		t.Errorf("max = %d, want 5000", got)
	}
}

// No samples give zeros rather than a panic (a run where nothing was delivered still reports).
func TestSummarizeEmptyAndUnsorted(t *testing.T) {
	if got := summarize(nil); got != (latencySummary{}) {
		t.Errorf("summarize(nil) = %+v", got)
	}
	// 3 ms, 1 ms, 2 ms in nanoseconds, unsorted: p50 is 2 ms, max 3 ms, mean 2 ms.
	got := summarize([]int64{3_000_000, 1_000_000, 2_000_000})
	want := latencySummary{P50: 2, P90: 3, P99: 3, Max: 3, Mean: 2}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
}
