package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// chatstack speaks the relay's protocol (docs/api.md): the token in the Authorization header,
// a hello frame first (sent once the relay's subscription is confirmed), then message frames.
type chatstack struct {
	url     string
	channel string
	dialer  *websocket.Dialer
}

func (c *chatstack) dial(ctx context.Context, token string) (*websocket.Conn, error) {
	header := http.Header{"Authorization": {"Bearer " + token}}
	conn, resp, err := c.dialer.DialContext(ctx, c.url, header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("handshake: HTTP %d", resp.StatusCode)
		}
		return nil, err
	}
	// The first frame is hello, or a close (1013 when memberships could not be read in time).
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	_, first, err := conn.ReadMessage()
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("before hello: %w", err)
	}
	if !bytes.Contains(first, []byte(`"hello"`)) {
		_ = conn.Close()
		return nil, fmt.Errorf("first frame is not hello: %.80s", first)
	}
	return conn, nil
}

func (c *chatstack) dialReceiver(ctx context.Context, token string) (*websocket.Conn, error) {
	return c.dial(ctx, token)
}

func (c *chatstack) onReceiverFrame(*websocket.Conn, []byte) {}

func (c *chatstack) dialPublisher(ctx context.Context, token string, book *ackBook) (publisher, error) {
	conn, err := c.dial(ctx, token)
	if err != nil {
		return nil, err
	}
	p := &chatstackPublisher{conn: conn, channel: c.channel, to: "*", book: book, done: make(chan struct{})}
	go p.readAcks()
	return p, nil
}

type chatstackPublisher struct {
	conn    *websocket.Conn
	channel string
	to      string // "*" (the room) or the user id of a direct message
	book    *ackBook
	mu      sync.Mutex
	buf     []byte
	done    chan struct{}
}

func (p *chatstackPublisher) send(k int, ns int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := append(p.buf[:0], `{"channel_id":`...)
	b = strconv.AppendQuote(b, p.channel)
	b = append(b, `,"to":`...)
	b = strconv.AppendQuote(b, p.to)
	b = append(b, `,"type":"text","data":"bench:`...)
	b = strconv.AppendInt(b, ns, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, `","client_msg_id":"b`...)
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, `"}`...)
	p.buf = b
	return p.conn.WriteMessage(websocket.TextMessage, b)
}

// readAcks matches each ack or error frame to its message by client_msg_id "b<k>". The
// publisher is a member of the room too, so it also reads (and ignores) the fan-out.
func (p *chatstackPublisher) readAcks() {
	defer close(p.done)
	var frame struct {
		Type        string `json:"type"`
		ClientMsgID string `json:"client_msg_id"`
		Code        string `json:"code"`
	}
	for {
		_, data, err := p.conn.ReadMessage()
		if err != nil {
			p.book.lostPublisher(err)
			return
		}
		if !bytes.Contains(data, []byte(`"ack"`)) && !bytes.Contains(data, []byte(`"error"`)) {
			continue
		}
		frame.Type, frame.ClientMsgID, frame.Code = "", "", ""
		if json.Unmarshal(data, &frame) != nil || len(frame.ClientMsgID) < 2 {
			continue
		}
		k, err := strconv.Atoi(frame.ClientMsgID[1:])
		if err != nil {
			continue
		}
		switch frame.Type {
		case "ack":
			p.book.ack(k)
		case "error":
			p.book.fail(k, frame.Code)
		}
	}
}

func (p *chatstackPublisher) close() {
	p.book.closing.Store(true)
	_ = p.conn.Close()
	<-p.done
}
