package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// centrifugo speaks Centrifugo v6's JSON client protocol: a connect command with the connection
// JWT, a subscribe command for the room, then publication pushes. Replies and pushes may come
// several to a frame, one JSON object a line.
type centrifugo struct {
	url     string
	channel string
	dialer  *websocket.Dialer
	// Publishing: "client" sends publish commands over the publisher's own WebSocket (like a
	// chatstack client sending a message); "api" POSTs each message to apiURL.
	publishVia string
	apiURL     string
	apiKey     string
	// recoverable counts subscriptions whose reply said recovery is on (force_recovery): proof
	// that history is kept for every publication while the run measures.
	mu          sync.Mutex
	recoverable int
}

const connectID = 1 << 30

type reply struct {
	ID    uint32          `json:"id"`
	Error *replyError     `json:"error"`
	Sub   *subscribeReply `json:"subscribe"`
}

type replyError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type subscribeReply struct {
	Recoverable bool `json:"recoverable"`
}

// command sends one command and reads until its reply, or fails after handshakeTimeout.
func (c *centrifugo) command(conn *websocket.Conn, id uint32, cmd string) (reply, error) {
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	if err := conn.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
		return reply{}, err
	}
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return reply{}, err
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var r reply
			if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &r) != nil || r.ID != id {
				continue
			}
			if r.Error != nil {
				return r, fmt.Errorf("centrifugo error %d: %s", r.Error.Code, r.Error.Message)
			}
			return r, nil
		}
	}
}

func (c *centrifugo) connect(ctx context.Context, token string) (*websocket.Conn, error) {
	conn, resp, err := c.dialer.DialContext(ctx, c.url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("handshake: HTTP %d", resp.StatusCode)
		}
		return nil, err
	}
	cmd := fmt.Sprintf(`{"id":%d,"connect":{"token":%q,"name":"loadgen"}}`, connectID, token)
	if _, err := c.command(conn, connectID, cmd); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

func (c *centrifugo) dialReceiver(ctx context.Context, token string) (*websocket.Conn, error) {
	conn, err := c.connect(ctx, token)
	if err != nil {
		return nil, err
	}
	r, err := c.command(conn, 1, fmt.Sprintf(`{"id":1,"subscribe":{"channel":%q}}`, c.channel))
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if r.Sub != nil && r.Sub.Recoverable {
		c.mu.Lock()
		c.recoverable++
		c.mu.Unlock()
	}
	return conn, nil
}

// onReceiverFrame answers the server's ping (an empty object) with a pong (an empty object).
func (c *centrifugo) onReceiverFrame(conn *websocket.Conn, frame []byte) {
	if isPing(frame) {
		_ = conn.WriteMessage(websocket.TextMessage, []byte("{}"))
	}
}

func isPing(frame []byte) bool {
	for _, line := range bytes.Split(frame, []byte("\n")) {
		if string(bytes.TrimSpace(line)) == "{}" {
			return true
		}
	}
	return false
}

// envelope renders a publication's data as the fields of a chatstack message frame that a
// Centrifugo push does not already carry (it has the channel, the offset for seq, and the
// publisher's user in info for from), so both servers deliver the same information.
func envelope(b []byte, k int, ns int64) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, fmt.Sprintf("%032x", k)...)
	b = append(b, `","to":"*","type":"text","data":"bench:`...)
	b = strconv.AppendInt(b, ns, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, `","ts":"`...)
	b = time.Unix(0, ns).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	return append(b, `"}`...)
}

func (c *centrifugo) dialPublisher(ctx context.Context, token string, book *ackBook) (publisher, error) {
	if c.publishVia == "api" {
		return &apiPublisher{c: c, book: book, client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64},
		}, inflight: make(chan struct{}, 256)}, nil
	}
	conn, err := c.connect(ctx, token)
	if err != nil {
		return nil, err
	}
	p := &clientPublisher{conn: conn, c: c, book: book, done: make(chan struct{})}
	go p.readReplies()
	return p, nil
}

// clientPublisher publishes with the client protocol's publish command; the reply (empty on
// success) comes once the publication is in the channel's history and handed to the broker.
type clientPublisher struct {
	conn *websocket.Conn
	c    *centrifugo
	book *ackBook
	mu   sync.Mutex
	buf  []byte
	done chan struct{}
}

func (p *clientPublisher) send(k int, ns int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := append(p.buf[:0], `{"id":`...)
	b = strconv.AppendInt(b, int64(k)+1, 10)
	b = append(b, `,"publish":{"channel":`...)
	b = strconv.AppendQuote(b, p.c.channel)
	b = append(b, `,"data":`...)
	b = envelope(b, k, ns)
	b = append(b, `}}`...)
	p.buf = b
	return p.conn.WriteMessage(websocket.TextMessage, b)
}

func (p *clientPublisher) readReplies() {
	defer close(p.done)
	for {
		_, data, err := p.conn.ReadMessage()
		if err != nil {
			p.book.lostPublisher(err)
			return
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if string(line) == "{}" {
				p.mu.Lock()
				_ = p.conn.WriteMessage(websocket.TextMessage, []byte("{}"))
				p.mu.Unlock()
				continue
			}
			var r reply
			if len(line) == 0 || json.Unmarshal(line, &r) != nil || r.ID == 0 || r.ID == connectID {
				continue
			}
			if r.Error != nil {
				p.book.fail(int(r.ID)-1, strconv.Itoa(r.Error.Code)+" "+r.Error.Message)
			} else {
				p.book.ack(int(r.ID) - 1)
			}
		}
	}
}

func (p *clientPublisher) close() {
	p.book.closing.Store(true)
	_ = p.conn.Close()
	<-p.done
}

// apiPublisher POSTs each publication to the HTTP server API without waiting for the previous
// answer (at most 256 in flight).
type apiPublisher struct {
	c        *centrifugo
	book     *ackBook
	client   *http.Client
	inflight chan struct{}
	wg       sync.WaitGroup
}

func (p *apiPublisher) send(k int, ns int64) error {
	b := append([]byte(`{"channel":`), strconv.Quote(p.c.channel)...)
	b = append(b, `,"data":`...)
	b = envelope(b, k, ns)
	b = append(b, '}')
	p.inflight <- struct{}{}
	p.wg.Add(1)
	go func() {
		defer func() { <-p.inflight; p.wg.Done() }()
		req, err := http.NewRequest(http.MethodPost, p.c.apiURL, bytes.NewReader(b))
		if err != nil {
			p.book.fail(k, err.Error())
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", p.c.apiKey)
		resp, err := p.client.Do(req)
		if err != nil {
			p.book.fail(k, "http: "+err.Error())
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var answer struct {
			Error *replyError `json:"error"`
		}
		switch {
		case resp.StatusCode != http.StatusOK:
			p.book.fail(k, "HTTP "+strconv.Itoa(resp.StatusCode))
		case json.Unmarshal(body, &answer) != nil:
			p.book.fail(k, "unreadable answer")
		case answer.Error != nil:
			p.book.fail(k, strconv.Itoa(answer.Error.Code)+" "+answer.Error.Message)
		default:
			p.book.ack(k)
		}
	}()
	return nil
}

func (p *apiPublisher) close() { p.wg.Wait() }
