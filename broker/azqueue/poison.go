package azqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// PoisonRecord is the text the broker writes to a poison queue: why and
// where a message was given up on, and its original text as published (an
// envelope without the lastError and handBacks fields the broker adds on
// failures and stops; a foreign or unreadable text unchanged), so it can be
// inspected and re-enqueued (RequeuePoisoned). When the record would exceed
// the 64 KiB limit the reason is shortened; if the original alone is at the
// limit, the poison queue receives the original text itself and the reason
// is only logged.
type PoisonRecord struct {
	Version       int       `json:"azqueuePoison"`
	Reason        string    `json:"reason"`
	Topic         string    `json:"topic"`
	Group         string    `json:"group"`
	Queue         string    `json:"queue"`
	MessageID     string    `json:"messageId"`
	DequeueCount  int64     `json:"dequeueCount"`
	InsertionTime time.Time `json:"insertionTime"`
	PoisonedAt    time.Time `json:"poisonedAt"`
	Original      string    `json:"original"`
}

// Poisoned describes a message moved to a poison queue, for OnPoison.
type Poisoned struct {
	Topic        string
	Group        string
	Queue        string // the queue the message was taken from
	PoisonQueue  string // where its PoisonRecord now is
	MessageID    string
	DequeueCount int64
	// Code says why in one word, for metrics and alerts; Reason in full.
	Code   PoisonReason
	Reason string
}

// poisonQueue is a subscription's poison queue, created on first use.
type poisonQueue struct {
	queue  storage.Queue
	source string

	mu      sync.Mutex
	created bool
}

// put writes the poison record of m. Poison messages never expire: giving
// up on a message must not become losing it a week later.
func (p *poisonQueue) put(m storage.Message, original, topic, group, reason string) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := p.ensure(ctx); err != nil {
		return err
	}
	text := poisonText(PoisonRecord{
		Version: 1, Reason: reason, Topic: topic, Group: group, Queue: p.source,
		MessageID: m.ID, DequeueCount: m.DequeueCount, InsertionTime: m.InsertionTime,
		PoisonedAt: time.Now().UTC(), Original: original,
	})
	err := p.queue.Enqueue(ctx, text, 0, NeverExpire)
	if storage.IsQueueNotFound(err) {
		p.mu.Lock()
		p.created = false
		p.mu.Unlock()
		if err := p.ensure(ctx); err != nil {
			return err
		}
		err = p.queue.Enqueue(ctx, text, 0, NeverExpire)
	}
	return err
}

func (p *poisonQueue) ensure(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.created {
		return nil
	}
	if err := p.queue.Create(ctx, map[string]string{metaPoisonOf: p.source}); err != nil {
		return err
	}
	p.created = true
	return nil
}

// poisonText encodes r, shrinking it to fit the size limit as PoisonRecord
// describes.
func poisonText(r PoisonRecord) string {
	for _, limit := range []int{len(r.Reason), 256, 0} {
		r.Reason = shorten(r.Reason, limit)
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r); err != nil {
			continue
		}
		if text := asciiJSON(bytes.TrimSuffix(b.Bytes(), []byte("\n"))); len(text) <= storage.MaxMessageSize {
			return string(text)
		}
	}
	return r.Original
}
