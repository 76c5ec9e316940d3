package azqueue

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/micro/go-micro/v2/broker"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

// envelopeVersion is the value of the "azqueue" field that marks a message
// text as the broker's envelope.
const envelopeVersion = 1

// envelopePrefix starts every envelope the broker writes; a text that starts
// with it but does not decode is damaged, not foreign.
const envelopePrefix = `{"azqueue":`

// envelope is the wire format of a message: go-micro's headers and body.
//
//	{"azqueue":1,"headers":{"Content-Type":"application/grpc+proto","Micro-Id":"…","Micro-Topic":"…"},"body":"<base64>"}
//
// lastError is added when a handler fails, so that the poison queue can say
// why a message was given up on, even when another process gives up.
// handBacks counts the deliveries a graceful stop handed back before a
// handler saw the message: they do not count towards MaxDequeueCount.
type envelope struct {
	Version   int               `json:"azqueue"`
	Headers   map[string]string `json:"headers,omitempty"`
	Body      []byte            `json:"body"`
	LastError string            `json:"lastError,omitempty"`
	HandBacks int64             `json:"handBacks,omitempty"`
}

// Headers the broker adds to every delivered message. The go-micro server
// passes them to handlers as metadata.
const (
	HeaderMessageID     = "Azqueue-Message-Id"
	HeaderDequeueCount  = "Azqueue-Dequeue-Count"
	HeaderInsertionTime = "Azqueue-Insertion-Time"
	HeaderQueue         = "Azqueue-Queue"
	// HeaderID is go-micro's message id header, set on publish when absent.
	HeaderID = "Micro-Id"
	// headerContentType is the header the go-micro server decodes by.
	headerContentType = "Content-Type"
)

// ErrMessageTooLarge is returned by Publish when the encoded message exceeds
// the service's 64 KiB limit.
var ErrMessageTooLarge = errors.New("azqueue: message too large")

// encodeMessage returns the text to enqueue for m: its envelope, base64
// encoded as a whole when asked, with a Micro-Id header added when m has
// none. m is not modified.
func encodeMessage(m *broker.Message, wholeBase64 bool) (text string, id string, err error) {
	headers := make(map[string]string, len(m.Header)+1)
	for k, v := range m.Header {
		headers[k] = v
	}
	id = headers[HeaderID]
	if id == "" {
		id = uuid.New().String()
		headers[HeaderID] = id
	}
	text, err = marshalEnvelope(envelope{Version: envelopeVersion, Headers: headers, Body: m.Body}, wholeBase64)
	if err != nil {
		return "", id, err
	}
	if len(text) > storage.MaxMessageSize {
		return "", id, fmt.Errorf("%w: %d bytes encoded (body %d bytes), the limit is %d bytes",
			ErrMessageTooLarge, len(text), len(m.Body), storage.MaxMessageSize)
	}
	return text, id, nil
}

func marshalEnvelope(e envelope, wholeBase64 bool) (string, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("encode envelope: %w", err)
	}
	b = asciiJSON(b)
	if wholeBase64 {
		return base64.StdEncoding.EncodeToString(b), nil
	}
	return string(b), nil
}

// asciiJSON rewrites every non-ASCII character of a JSON text as a \u
// escape. An ASCII envelope's length in bytes is its length however the
// service counts it, so the size check before sending is exact. Outside
// strings JSON is ASCII already, so only string contents change.
func asciiJSON(b []byte) []byte {
	i := 0
	for i < len(b) && b[i] < utf8.RuneSelf {
		i++
	}
	if i == len(b) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/4)
	out = append(out, b[:i]...)
	for _, r := range string(b[i:]) {
		switch {
		case r < utf8.RuneSelf:
			out = append(out, byte(r))
		case r <= 0xFFFF:
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		}
	}
	return out
}

// decoded is a received message text, understood.
type decoded struct {
	envelope
	// foreign is set for texts that are not an envelope: Body holds the
	// text (base64-decoded when whole-message base64 is on and it decodes)
	// and Headers is empty.
	foreign bool
	// base64 records that the envelope was base64 encoded as a whole, so a
	// rewrite keeps the encoding.
	base64 bool
}

// errUnreadable marks texts that claim to be an envelope but are damaged.
var errUnreadable = errors.New("unreadable envelope")

// decodeMessage interprets a message text. An envelope, plain or base64
// encoded as a whole, decodes to its headers and body. Any other text is
// foreign and delivered raw. A text that starts like an envelope but does not
// decode returns an error wrapping errUnreadable.
func decodeMessage(text string, wholeBase64 bool) (decoded, error) {
	if strings.HasPrefix(text, envelopePrefix) {
		return decodeEnvelope(text, false)
	}
	if b, err := base64.StdEncoding.DecodeString(text); err == nil {
		if bytes.HasPrefix(b, []byte(envelopePrefix)) {
			return decodeEnvelope(string(b), true)
		}
		if wholeBase64 {
			return decoded{envelope: envelope{Body: b}, foreign: true, base64: true}, nil
		}
	}
	return decoded{envelope: envelope{Body: []byte(text)}, foreign: true}, nil
}

// decodeEnvelope decodes a text that starts like an envelope: by
// parseEnvelope when it is in the form Publish writes, else by
// encoding/json, which gives the same result for every text parseEnvelope
// accepts.
func decodeEnvelope(text string, wholeBase64 bool) (decoded, error) {
	e, ok := parseEnvelope(text)
	if !ok {
		if err := json.Unmarshal([]byte(text), &e); err != nil {
			return decoded{}, fmt.Errorf("%w: %v", errUnreadable, shorten(err.Error(), 200))
		}
	}
	if e.Version != envelopeVersion {
		return decoded{}, fmt.Errorf("%w: unsupported version %d", errUnreadable, e.Version)
	}
	if e.Headers == nil {
		e.Headers = make(map[string]string)
	}
	return decoded{envelope: e, base64: wholeBase64}, nil
}

// parseEnvelope reads an envelope in exactly the form json.Marshal gives
// it (fields in declaration order, no spaces) whose strings need no
// unescaping, which is what Publish writes for go-micro's headers. It
// reports false for any other text, which encoding/json then decodes:
// json.Unmarshal took 15 µs and 20 allocations for a 1 KiB body, the
// largest part of a consumer's CPU per message outside the SDK.
func parseEnvelope(text string) (e envelope, ok bool) {
	rest, ok := strings.CutPrefix(text, envelopePrefix+"1,")
	if !ok {
		return envelope{}, false
	}
	e.Version = envelopeVersion
	if r, ok := strings.CutPrefix(rest, `"headers":{`); ok {
		// A plain string holds no '"', so the headers end at the first
		// `},"body":`; they are copied out of the text, so that headers a
		// handler keeps do not keep the whole text alive.
		end := strings.Index(r, `},"body":`)
		if end < 0 {
			return envelope{}, false
		}
		if e.Headers, ok = parseHeaders(strings.Clone(r[:end])); !ok {
			return envelope{}, false
		}
		rest = r[end+2:]
	}
	rest, ok = strings.CutPrefix(rest, `"body":`)
	if !ok {
		return envelope{}, false
	}
	body, rest, ok := plainString(rest)
	if !ok {
		return envelope{}, false
	}
	var err error
	if e.Body, err = base64.StdEncoding.DecodeString(body); err != nil {
		return envelope{}, false
	}
	if r, ok := strings.CutPrefix(rest, `,"lastError":`); ok {
		var last string
		if last, rest, ok = plainString(r); !ok {
			return envelope{}, false
		}
		e.LastError = strings.Clone(last)
	}
	if r, ok := strings.CutPrefix(rest, `,"handBacks":`); ok {
		end := strings.IndexByte(r, '}')
		n, err := strconv.ParseInt(r[:max(end, 0)], 10, 64)
		// encoding/json omits 0, and reads "+1" or "01" as errors.
		if end < 0 || err != nil || n <= 0 || r[0] == '+' || r[0] == '0' {
			return envelope{}, false
		}
		e.HandBacks, rest = n, r[end:]
	}
	return e, rest == "}"
}

// parseHeaders reads the members of a JSON object of plain strings, without
// its braces: `"k":"v","k2":"v2"`. A key given twice keeps its last value,
// as with encoding/json.
func parseHeaders(members string) (map[string]string, bool) {
	headers := make(map[string]string, strings.Count(members, `":"`))
	for rest := members; rest != ""; {
		k, r, ok := plainString(rest)
		if !ok {
			return nil, false
		}
		if r, ok = strings.CutPrefix(r, ":"); !ok {
			return nil, false
		}
		v, r, ok := plainString(r)
		if !ok {
			return nil, false
		}
		headers[k] = v
		if r == "" {
			break
		}
		if rest, ok = strings.CutPrefix(r, ","); !ok || rest == "" {
			return nil, false
		}
	}
	return headers, true
}

// plainString reads the JSON string s starts with when it needs no
// unescaping (ASCII, no control characters, no backslash) and returns its
// value and what follows it.
func plainString(s string) (value, rest string, ok bool) {
	if s == "" || s[0] != '"' {
		return "", "", false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[1:i], s[i+1:], true
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return "", "", false
		}
	}
	return "", "", false
}

// withLastError returns the message text rewritten to record reason, or ""
// when it cannot be (a foreign text is left as its author wrote it) or would
// exceed the size limit.
func (d decoded) withLastError(reason string) string {
	e := d.envelope
	e.LastError = shorten(reason, 1024)
	return d.rewritten(e)
}

// withHandBack returns the message text rewritten to count one more
// hand-back, or "" when it cannot be (see withLastError).
func (d decoded) withHandBack() string {
	e := d.envelope
	e.HandBacks++
	return d.rewritten(e)
}

// rewritten returns e as the text of d's message, or "" for a foreign text
// or one that would exceed the size limit.
func (d decoded) rewritten(e envelope) string {
	if d.foreign {
		return ""
	}
	text, err := marshalEnvelope(e, d.base64)
	if err != nil || len(text) > storage.MaxMessageSize {
		return ""
	}
	return text
}

// deliveries returns how many of the service's dequeueCount deliveries
// count towards MaxDequeueCount: all but the hand-backs.
func (d decoded) deliveries(dequeueCount int64) int64 {
	return max(dequeueCount-d.HandBacks, 1)
}

// publishedText returns text as it was published: an envelope without the
// lastError and handBacks fields the broker added on failures and stops
// (json.Marshal sorts the header keys, so re-encoding gives the published
// bytes back), or a foreign text itself.
func (d decoded) publishedText(text string) string {
	if d.foreign || d.LastError == "" && d.HandBacks == 0 {
		return text
	}
	e := d.envelope
	e.LastError, e.HandBacks = "", 0
	published, err := marshalEnvelope(e, d.base64)
	if err != nil {
		return text
	}
	return published
}

// shorten cuts s to at most n bytes on a rune boundary, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := strings.ToValidUTF8(s[:n], "")
	return cut + "…"
}
