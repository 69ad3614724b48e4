package main

import (
	"sync"
	"sync/atomic"
)

const (
	stateUnsent uint32 = iota
	stateSent
	stateAcked
	stateFailed
)

// ackBook is the publishers' ledger: which message numbers were sent, accepted by the server, or
// refused. Only accepted messages are expected at the receivers.
type ackBook struct {
	states  []atomic.Uint32
	sent    atomic.Int64
	acked   atomic.Int64
	failed  atomic.Int64
	closing atomic.Bool

	mu     sync.Mutex
	errors map[string]int
}

func newAckBook(messages int) *ackBook {
	return &ackBook{states: make([]atomic.Uint32, messages), errors: map[string]int{}}
}

func (b *ackBook) markSent(k int) {
	b.states[k].Store(stateSent)
	b.sent.Add(1)
}

func (b *ackBook) ack(k int) {
	if k >= 0 && k < len(b.states) && b.states[k].CompareAndSwap(stateSent, stateAcked) {
		b.acked.Add(1)
	}
}

func (b *ackBook) fail(k int, code string) {
	if k >= 0 && k < len(b.states) && b.states[k].CompareAndSwap(stateSent, stateFailed) {
		b.failed.Add(1)
	}
	b.note("refused: " + code)
}

func (b *ackBook) note(kind string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errors) < 20 || b.errors[kind] > 0 {
		b.errors[kind]++
	}
}

func (b *ackBook) lostPublisher(err error) {
	if !b.closing.Load() {
		b.note("publisher socket lost: " + err.Error())
	}
}

func (b *ackBook) answered() int64 { return b.acked.Load() + b.failed.Load() }

func (b *ackBook) isAcked(k int) bool { return b.states[k].Load() == stateAcked }

func (b *ackBook) errorKinds() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int, len(b.errors))
	for k, v := range b.errors {
		out[k] = v
	}
	return out
}
