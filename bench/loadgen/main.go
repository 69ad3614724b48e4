// Command loadgen is the fan-out load generator of bench/compare.py: N receivers in one room on
// one WebSocket server, publishers sending M messages a second for S seconds, each message
// carrying its send time; it prints one JSON line with deliveries, latencies and its own CPU.
//
//	loadgen -target chatstack -url ws://127.0.0.1:8103/v1/ws -tokens tokens.json -channel TEAM \
//	        -rate 30 -seconds 10
//
// tokens.json is {"receivers": ["<jwt>", ...], "publishers": ["<jwt>", ...]}: one token per
// socket, minted by the driver. With -dm (chatstack only) it also has "dm_to": publisher i sends
// direct messages to that user id, whose socket is receivers[i]; each message then has one
// receiver instead of the whole room (bench/pipeline.py dm). With -control the run waits for "start" on stdin after
// connecting (printing {"event":"ready"}) and for "finish" after draining (printing
// {"event":"drained"}), so the driver samples the servers' CPU over exactly the workload.
// LOADGEN_SLOW_LOG=<file> writes every arrival slower than 50 ms there (send time in ms since the
// start, latency in ms), to see whether a run's tail comes in periodic stalls.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

type protocol interface {
	// dialReceiver returns a socket that is in the room and will get every later message.
	dialReceiver(ctx context.Context, token string) (*websocket.Conn, error)
	// onReceiverFrame lets the protocol answer control frames (pings) on a receiver's socket.
	onReceiverFrame(conn *websocket.Conn, frame []byte)
	dialPublisher(ctx context.Context, token string, book *ackBook) (publisher, error)
}

// handshakeTimeout bounds each step of opening a socket (handshake, hello, connect, subscribe).
const handshakeTimeout = 10 * time.Second

type publisher interface {
	send(k int, ns int64) error
	close()
}

type config struct {
	target, url, tokens, channel string
	rate, seconds                float64
	parallel, attempts           int
	drain                        time.Duration
	control                      bool
	publishVia, apiURL, apiKey   string
	publishURL                   string
	procs                        int
	cpuProfile                   string
	dm                           bool
}

type tokenFile struct {
	Receivers  []string `json:"receivers"`
	Publishers []string `json:"publishers"`
	DMTo       []string `json:"dm_to"`
}

// result is the one JSON line a run prints; bench/compare.py reads these field names.
type result struct {
	Target              string  `json:"target"`
	Receivers           int     `json:"receivers"`
	Publishers          int     `json:"publishers"`
	PublishVia          string  `json:"publish_via"`
	Rate                float64 `json:"rate"`
	Seconds             float64 `json:"seconds"`
	Sent                int64   `json:"sent"`
	Acked               int64   `json:"acked"`
	Refused             int64   `json:"refused"`
	Unanswered          int64   `json:"unanswered"`
	Expected            int64   `json:"expected"`
	Delivered           int64   `json:"delivered"`
	Undelivered         int64   `json:"undelivered"`
	Duplicates          int64   `json:"duplicates"`
	ReceiversIncomplete int     `json:"receivers_incomplete"`
	ReceiversLost       int     `json:"receivers_lost"`
	DeliveriesPerS      float64 `json:"deliveries_per_s"`
	P50                 float64 `json:"p50_ms"`
	P90                 float64 `json:"p90_ms"`
	P99                 float64 `json:"p99_ms"`
	Max                 float64 `json:"max_ms"`
	Mean                float64 `json:"mean_ms"`
	FrameBytes          float64 `json:"frame_bytes_mean"`
	SendLagMaxMs        float64 `json:"send_lag_max_ms"`
	MeasuredS           float64 `json:"measured_s"`
	ConnectS            float64 `json:"connect_s"`
	ConnectRetries      int64   `json:"connect_retries"`
	// Per receiver socket: from its first handshake attempt to its hello (retries included).
	ConnectP50      float64        `json:"connect_p50_ms"`
	ConnectP99      float64        `json:"connect_p99_ms"`
	ConnectMax      float64        `json:"connect_max_ms"`
	Recoverable     int            `json:"recoverable_subscriptions,omitempty"`
	LoadgenCPU      float64        `json:"loadgen_cpu_s"`
	LoadgenCPUTotal float64        `json:"loadgen_cpu_total_s"`
	Errors          map[string]int `json:"errors,omitempty"`
}

func main() {
	var cfg config
	flag.StringVar(&cfg.target, "target", "chatstack", `"chatstack" or "centrifugo"`)
	flag.StringVar(&cfg.url, "url", "", "receivers' WebSocket URL")
	flag.StringVar(&cfg.publishURL, "publish-url", "", "publishers' WebSocket URL (default: -url)")
	flag.StringVar(&cfg.tokens, "tokens", "", "JSON file of receiver and publisher tokens")
	flag.StringVar(&cfg.channel, "channel", "", "room: team id (chatstack) or channel (centrifugo)")
	flag.Float64Var(&cfg.rate, "rate", 30, "messages per second into the room, all publishers together")
	flag.Float64Var(&cfg.seconds, "seconds", 10, "how long to publish")
	flag.IntVar(&cfg.parallel, "connect-parallel", 50, "handshakes in flight while connecting")
	flag.IntVar(&cfg.attempts, "connect-attempts", 10, "tries per socket (a refused handshake is retried)")
	flag.DurationVar(&cfg.drain, "drain", 30*time.Second, "how long to wait for late deliveries")
	flag.BoolVar(&cfg.control, "control", false, "wait for start/finish lines on stdin (see above)")
	flag.StringVar(&cfg.publishVia, "centrifugo-publish", "client", `"client" (publish command) or "api" (HTTP)`)
	flag.StringVar(&cfg.apiURL, "api-url", "", "Centrifugo's /api/publish URL (with -centrifugo-publish api)")
	flag.StringVar(&cfg.apiKey, "api-key", "", "Centrifugo's HTTP API key")
	flag.IntVar(&cfg.procs, "procs", 0, "GOMAXPROCS for the load generator (0: Go's default, every core)")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the measured window here")
	flag.BoolVar(&cfg.dm, "dm", false, "direct messages: publisher i to the user dm_to[i], read by receivers[i]")
	flag.Parse()
	if cfg.procs > 0 {
		runtime.GOMAXPROCS(cfg.procs)
	}
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func run(cfg config) (*result, error) {
	if cfg.url == "" || cfg.tokens == "" || cfg.channel == "" || cfg.rate <= 0 || cfg.seconds <= 0 {
		return nil, errors.New("-url, -tokens, -channel and a positive -rate and -seconds are required")
	}
	raw, err := os.ReadFile(cfg.tokens)
	if err != nil {
		return nil, err
	}
	var tokens tokenFile
	if err := json.Unmarshal(raw, &tokens); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.tokens, err)
	}
	if len(tokens.Receivers) == 0 || len(tokens.Publishers) == 0 {
		return nil, errors.New("the token file needs receivers and publishers")
	}
	if cfg.dm && (cfg.target != "chatstack" || len(tokens.DMTo) != len(tokens.Publishers) ||
		len(tokens.Receivers) != len(tokens.Publishers)) {
		return nil, errors.New("-dm needs -target chatstack and as many receivers and dm_to as publishers")
	}
	if cfg.publishURL == "" {
		cfg.publishURL = cfg.url
	}
	dialer := &websocket.Dialer{HandshakeTimeout: handshakeTimeout, ReadBufferSize: 4096, WriteBufferSize: 1024}
	var recvProto, pubProto protocol
	var cf *centrifugo
	switch cfg.target {
	case "chatstack":
		recvProto = &chatstack{url: cfg.url, channel: cfg.channel, dialer: dialer}
		pubProto = &chatstack{url: cfg.publishURL, channel: cfg.channel, dialer: dialer}
		cfg.publishVia = "websocket"
	case "centrifugo":
		if cfg.publishVia != "client" && cfg.publishVia != "api" {
			return nil, fmt.Errorf("-centrifugo-publish %q: want client or api", cfg.publishVia)
		}
		cf = &centrifugo{url: cfg.url, channel: cfg.channel, dialer: dialer,
			publishVia: cfg.publishVia, apiURL: cfg.apiURL, apiKey: cfg.apiKey}
		recvProto, pubProto = cf, cf
	default:
		return nil, fmt.Errorf("-target %q: want chatstack or centrifugo", cfg.target)
	}

	messages := int(math.Ceil(cfg.rate*cfg.seconds)) + 1
	book := newAckBook(messages)
	ctx := context.Background()
	connectStart := time.Now()
	var retries atomic.Int64
	receivers, connectNs, err := connectAll(ctx, tokens.Receivers, cfg, &retries, func(t string) (*receiver, error) {
		conn, err := recvProto.dialReceiver(ctx, t)
		if err != nil {
			return nil, err
		}
		return newReceiver(conn, recvProto, messages), nil
	})
	if err != nil {
		return nil, err
	}
	publishers, _, err := connectAll(ctx, tokens.Publishers, cfg, &retries, func(t string) (publisher, error) {
		return pubProto.dialPublisher(ctx, t, book)
	})
	if err != nil {
		return nil, err
	}
	if cfg.dm {
		for i, p := range publishers {
			p.(*chatstackPublisher).to = tokens.DMTo[i]
		}
	}
	connectS := time.Since(connectStart).Seconds()
	var delivered atomic.Int64
	for _, r := range receivers {
		go r.run(&delivered)
	}
	stdin := bufio.NewScanner(os.Stdin)
	if err := handshake(cfg.control, stdin, "ready", "start"); err != nil {
		return nil, err
	}

	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	cpu0 := cpuSeconds()
	started := time.Now()
	interval := time.Duration(float64(time.Second) / cfg.rate)
	deadline := started.Add(time.Duration(cfg.seconds * float64(time.Second)))
	var lagMax time.Duration
	for k := 0; k < messages; k++ {
		due := started.Add(time.Duration(k) * interval)
		if !due.Before(deadline) {
			break
		}
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		} else if -wait > lagMax {
			lagMax = -wait
		}
		book.markSent(k)
		if err := publishers[k%len(publishers)].send(k, time.Now().UnixNano()); err != nil {
			book.fail(k, "send: "+err.Error())
		}
	}
	sent := book.sent.Load()

	// Drain: every message answered, then every accepted one at every receiver, or the deadline.
	drainUntil := time.Now().Add(cfg.drain)
	for book.answered() < sent && time.Now().Before(drainUntil) {
		time.Sleep(10 * time.Millisecond)
	}
	expected := book.acked.Load() * int64(len(receivers))
	if cfg.dm {
		expected = book.acked.Load()
	}
	for delivered.Load() < expected && time.Now().Before(drainUntil) {
		time.Sleep(10 * time.Millisecond)
	}
	measured := time.Since(started)
	cpu1 := cpuSeconds()
	if cfg.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err := handshake(cfg.control, stdin, "drained", "finish"); err != nil {
		return nil, err
	}
	for _, p := range publishers {
		p.close()
	}
	for _, r := range receivers {
		r.close()
	}

	connect := summarize(connectNs)
	res := &result{
		Target: cfg.target, Receivers: len(receivers), Publishers: len(publishers),
		PublishVia: cfg.publishVia, Rate: cfg.rate, Seconds: cfg.seconds, Sent: sent,
		Acked: book.acked.Load(), Refused: book.failed.Load(), Expected: expected,
		SendLagMaxMs: round2(lagMax.Seconds() * 1000), MeasuredS: round2(measured.Seconds()),
		ConnectS: round2(connectS), ConnectRetries: retries.Load(),
		ConnectP50: connect.P50, ConnectP99: connect.P99, ConnectMax: connect.Max,
		LoadgenCPU: round2(cpu1 - cpu0), LoadgenCPUTotal: round2(cpuSeconds()),
		Errors: book.errorKinds(),
	}
	res.Unanswered = sent - res.Acked - res.Refused
	tally(res, receivers, book, started, cfg.dm)
	if cf != nil {
		res.Recoverable = cf.recoverable
	}
	return res, nil
}

// tally counts, per receiver, which accepted messages arrived, and merges the latencies.
// With dm, receiver i is sent only the messages of publisher i (k % publishers == i).
func tally(res *result, receivers []*receiver, book *ackBook, started time.Time, dm bool) {
	var latencies []int64
	var frameBytes, lastNs int64
	for i, r := range receivers {
		missing := 0
		for k := 0; k < int(res.Sent); k++ {
			if dm && k%len(receivers) != i {
				continue
			}
			if book.isAcked(k) && r.seen[k] == 0 {
				missing++
			}
		}
		if missing > 0 {
			res.ReceiversIncomplete++
		}
		res.Undelivered += int64(missing)
		res.Delivered += int64(r.distinct)
		res.Duplicates += int64(r.duplicates)
		if r.lost != nil {
			res.ReceiversLost++
			book.note("receiver socket lost: " + r.lost.Error())
		}
		frameBytes += r.frameBytes
		if r.lastNs > lastNs {
			lastNs = r.lastNs
		}
		latencies = append(latencies, r.latencies...)
	}
	res.Errors = book.errorKinds()
	if path := os.Getenv("LOADGEN_SLOW_LOG"); path != "" {
		writeSlowLog(path, receivers, started)
	}
	sum := summarize(latencies)
	res.P50, res.P90, res.P99, res.Max, res.Mean = sum.P50, sum.P90, sum.P99, sum.Max, sum.Mean
	if res.Delivered > 0 {
		res.FrameBytes = round2(float64(frameBytes) / float64(res.Delivered))
	}
	// Throughput over the span from the first send to the last delivery.
	if span := float64(lastNs-started.UnixNano()) / 1e9; span > 0 {
		res.DeliveriesPerS = math.Round(float64(res.Delivered) / span)
	}
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

func handshake(enabled bool, stdin *bufio.Scanner, event, want string) error {
	if !enabled {
		return nil
	}
	fmt.Printf("{\"event\":%q}\n", event)
	for stdin.Scan() {
		if stdin.Text() == want {
			return nil
		}
	}
	return fmt.Errorf("stdin closed while waiting for %q", want)
}

// connectAll opens one socket per token, cfg.parallel at a time, retrying refused handshakes
// with a growing pause (a relay under a connection storm closes some with 1013). It also returns
// how long each socket took from its first attempt to being open (hello read), in nanoseconds.
func connectAll[T any](ctx context.Context, tokens []string, cfg config, retries *atomic.Int64,
	open func(string) (T, error)) ([]T, []int64, error) {
	out := make([]T, len(tokens))
	took := make([]int64, len(tokens))
	errs := make([]error, len(tokens))
	sem := make(chan struct{}, max(1, cfg.parallel))
	var wg sync.WaitGroup
	for i, tok := range tokens {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, tok string) {
			defer func() { <-sem; wg.Done() }()
			began := time.Now()
			for attempt := 0; attempt < cfg.attempts; attempt++ {
				if attempt > 0 {
					retries.Add(1)
					time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
				}
				v, err := open(tok)
				if err == nil {
					out[i], errs[i] = v, nil
					took[i] = time.Since(began).Nanoseconds()
					return
				}
				errs[i] = err
			}
		}(i, tok)
	}
	wg.Wait()
	var failed []string
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return nil, nil, fmt.Errorf("%d of %d sockets could not connect; first: %s", len(failed), len(tokens), failed[0])
	}
	return out, took, nil
}

// writeSlowLog writes, for diagnosis, one line per arrival slower than slowNs: the send time in
// ms since the run started and the latency in ms, ordered by send time (stalls show as runs of
// lines; their spacing says whether something periodic causes them).
func writeSlowLog(path string, receivers []*receiver, started time.Time) {
	var rows [][2]int64
	for _, r := range receivers {
		rows = append(rows, r.slow...)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slow log:", err)
		return
	}
	defer f.Close()
	for _, row := range rows {
		fmt.Fprintf(f, "%d %d\n", (row[0]-started.UnixNano())/1e6, row[1]/1e6)
	}
}
