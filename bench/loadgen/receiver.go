package main

import (
	"bytes"
	"io"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// marker starts the text of every benchmark message: "bench:<send time ns>:<message number>".
var marker = []byte("bench:")

// scanMarkers calls fn for every "bench:<ns>:<k>" in a frame. Scanning the raw bytes instead of
// decoding JSON keeps the receivers cheap and finds every message whether a server sends one
// message per WebSocket frame (chatstack) or several lines in one (Centrifugo batches replies).
func scanMarkers(frame []byte, fn func(ns int64, k int)) {
	for {
		i := bytes.Index(frame, marker)
		if i < 0 {
			return
		}
		frame = frame[i+len(marker):]
		ns, rest, ok := leadingInt(frame)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			continue
		}
		k, rest, ok := leadingInt(rest[1:])
		if !ok {
			continue
		}
		fn(ns, int(k))
		frame = rest
	}
}

func leadingInt(b []byte) (int64, []byte, bool) {
	var n int64
	i := 0
	for i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	return n, b[i:], i > 0
}

// receiver is one socket of the room: it counts each message it gets (by number, so a duplicate
// or a missing one shows) and keeps the latency of each first arrival.
type receiver struct {
	conn       *websocket.Conn
	proto      protocol
	seen       []uint8
	latencies  []int64
	slow       [][2]int64 // (send time, latency) of first arrivals slower than slowNs, in ns
	distinct   int
	duplicates int
	outOfRange int
	frameBytes int64
	lastNs     int64
	lost       error // why the socket ended before the run did
	closing    atomic.Bool
	done       chan struct{}
}

// Arrivals slower than this are kept with their send time for LOADGEN_SLOW_LOG (main.go).
const slowNs = int64(50 * time.Millisecond)

func newReceiver(conn *websocket.Conn, proto protocol, messages int) *receiver {
	return &receiver{
		conn:      conn,
		proto:     proto,
		seen:      make([]uint8, messages),
		latencies: make([]int64, 0, messages),
		done:      make(chan struct{}),
	}
}

// run reads until the socket ends; only this goroutine touches the counters until done closes.
func (r *receiver) run(delivered *atomic.Int64) {
	defer close(r.done)
	buf := make([]byte, 0, 4096)
	for {
		_, rd, err := r.conn.NextReader()
		if err == nil {
			buf, err = readAll(rd, buf[:0])
		}
		if err != nil {
			if !r.closing.Load() {
				r.lost = err
			}
			return
		}
		now := time.Now().UnixNano()
		r.frameBytes += int64(len(buf))
		scanMarkers(buf, func(ns int64, k int) {
			if k < 0 || k >= len(r.seen) {
				r.outOfRange++
				return
			}
			if r.seen[k] > 0 {
				r.duplicates++
				return
			}
			r.seen[k] = 1
			r.distinct++
			r.latencies = append(r.latencies, now-ns)
			if now-ns > slowNs && len(r.slow) < 10000 {
				r.slow = append(r.slow, [2]int64{ns, now - ns})
			}
			r.lastNs = now
			delivered.Add(1)
		})
		r.proto.onReceiverFrame(r.conn, buf)
	}
}

func (r *receiver) close() {
	r.closing.Store(true)
	_ = r.conn.Close()
	<-r.done
}

// readAll reads one frame into buf's storage, growing it only when a frame is larger than any
// before (no allocation per frame).
func readAll(rd io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
