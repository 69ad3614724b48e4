package main

import "testing"

// Every "bench:<ns>:<k>" in a frame is found, also several in one frame (Centrifugo's batching),
// and text that only looks like the marker is skipped.
func TestScanMarkers(t *testing.T) {
	frame := []byte(`{"data":"bench:123:0"}` + "\n" + `{"data":"bench:456:7"} bench:x bench:9 bench:10:`)
	var got [][2]int64
	scanMarkers(frame, func(ns int64, k int) { got = append(got, [2]int64{ns, int64(k)}) })
	want := [][2]int64{{123, 0}, {456, 7}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("scanMarkers = %v, want %v", got, want)
	}
}
