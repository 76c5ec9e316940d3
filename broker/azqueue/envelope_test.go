package azqueue

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/micro/go-micro/v2/broker"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	tests := []struct {
		name   string
		msg    broker.Message
		base64 bool
	}{
		{"proto body with go-micro headers", broker.Message{
			Header: map[string]string{"Content-Type": "application/grpc+proto", "Micro-Topic": "example.events", "Micro-From-Service": "poc.pub"},
			Body:   []byte{0x0a, 0x05, 'h', 'e', 'l', 'l', 'o'}}, false},
		{"binary body", broker.Message{Header: map[string]string{"Micro-Id": "fixed-id"}, Body: binary}, false},
		{"whole-message base64", broker.Message{Header: map[string]string{"A": "b"}, Body: []byte("x")}, true},
		{"no headers, empty body", broker.Message{}, false},
		{"non-ASCII and markup in headers", broker.Message{Header: map[string]string{"Say": "héllo <&> \"q\" 😀"}, Body: []byte("é")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, id, err := encodeMessage(&tt.msg, tt.base64)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(text); i++ {
				if text[i] >= utf8.RuneSelf {
					t.Fatalf("encoded text is not ASCII at byte %d: %q", i, text)
				}
			}
			if want := tt.msg.Header[HeaderID]; want != "" && id != want {
				t.Errorf("id = %q, want the caller's %q", id, want)
			}
			d, err := decodeMessage(text, false)
			if err != nil {
				t.Fatal(err)
			}
			if d.foreign || d.base64 != tt.base64 {
				t.Fatalf("decoded foreign=%v base64=%v, want an envelope with base64=%v", d.foreign, d.base64, tt.base64)
			}
			if !bytes.Equal(d.Body, tt.msg.Body) {
				t.Errorf("body = %x, want %x", d.Body, tt.msg.Body)
			}
			for k, v := range tt.msg.Header {
				if d.Headers[k] != v {
					t.Errorf("header %s = %q, want %q", k, d.Headers[k], v)
				}
			}
			if d.Headers[HeaderID] != id || id == "" {
				t.Errorf("Micro-Id header %q, returned id %q", d.Headers[HeaderID], id)
			}
			if len(d.Headers) != len(tt.msg.Header)+boolInt(tt.msg.Header[HeaderID] == "") {
				t.Errorf("headers %v: want exactly the message's plus Micro-Id", d.Headers)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestEncodeDoesNotModifyCallerHeaders(t *testing.T) {
	m := &broker.Message{Header: map[string]string{"A": "b"}}
	if _, _, err := encodeMessage(m, false); err != nil {
		t.Fatal(err)
	}
	if len(m.Header) != 1 {
		t.Fatalf("caller's headers changed: %v", m.Header)
	}
}

func TestEncodeSizeLimit(t *testing.T) {
	// The envelope of an empty-header message adds a fixed overhead to the
	// base64 body; find the largest body that fits, then one byte more.
	fits := 0
	for size := 48000; size < 50000; size++ {
		text, _, err := encodeMessage(&broker.Message{Header: map[string]string{HeaderID: "id"}, Body: make([]byte, size)}, false)
		if err != nil {
			break
		}
		if len(text) > storage.MaxMessageSize {
			t.Fatalf("encoded %d bytes without error", len(text))
		}
		fits = size
	}
	if fits == 0 {
		t.Fatal("no body size between 48000 and 50000 fits")
	}
	_, _, err := encodeMessage(&broker.Message{Header: map[string]string{HeaderID: "id"}, Body: make([]byte, fits+3)}, false)
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("err = %v, want ErrMessageTooLarge", err)
	}
	for _, want := range []string{"65536", "bytes encoded", "body 4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestDecodeForeignAndDamaged(t *testing.T) {
	envelopeText, _, _ := encodeMessage(&broker.Message{Body: []byte("b")}, false)
	tests := []struct {
		name       string
		text       string
		base64     bool
		foreign    bool
		body       string
		unreadable bool
	}{
		{"plain JSON from another tool", `{"say":"hi"}`, false, true, `{"say":"hi"}`, false},
		{"plain text", "hello world", false, true, "hello world", false},
		{"empty", "", false, true, "", false},
		{"base64 text, base64 off", "aGVsbG8=", false, true, "aGVsbG8=", false},
		{"base64 text, base64 on", "aGVsbG8=", true, true, "hello", false},
		{"invalid base64, base64 on", "not base64!", true, true, "not base64!", false},
		{"base64 envelope, base64 off", base64.StdEncoding.EncodeToString([]byte(envelopeText)), false, false, "b", false},
		{"truncated envelope", envelopeText[:len(envelopeText)-5], false, false, "", true},
		{"future version", `{"azqueue":2,"body":""}`, false, false, "", true},
		{"bad body base64", `{"azqueue":1,"body":"%%%"}`, false, false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decodeMessage(tt.text, tt.base64)
			if tt.unreadable {
				if !errors.Is(err, errUnreadable) {
					t.Fatalf("err = %v, want errUnreadable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.foreign != tt.foreign || string(d.Body) != tt.body {
				t.Errorf("foreign=%v body=%q, want foreign=%v body=%q", d.foreign, d.Body, tt.foreign, tt.body)
			}
		})
	}
}

func TestHandBacksAreCountedAndLeftOutOfThePublishedText(t *testing.T) {
	text, _, _ := encodeMessage(&broker.Message{Header: map[string]string{"K": "v"}, Body: []byte("body")}, false)
	d, _ := decodeMessage(text, false)
	for i := 1; i <= 3; i++ {
		rewritten := d.withHandBack()
		var err error
		if d, err = decodeMessage(rewritten, false); err != nil {
			t.Fatal(err)
		}
		if d.HandBacks != int64(i) || string(d.Body) != "body" {
			t.Fatalf("after %d hand-backs: %+v", i, d)
		}
		if got := d.deliveries(int64(i + 1)); got != 1 {
			t.Errorf("dequeued %d times with %d hand-backs: %d deliveries counted, want 1", i+1, i, got)
		}
		if published := d.publishedText(rewritten); published != text {
			t.Errorf("publishedText = %q, want the text as published %q", published, text)
		}
	}
	if failed := d.withLastError("boom"); !strings.Contains(failed, `"handBacks":3`) {
		t.Errorf("recording an error dropped the hand-backs: %s", failed)
	}
	foreign, _ := decodeMessage("raw", false)
	if got := foreign.withHandBack(); got != "" {
		t.Errorf("a foreign text was rewritten to %q", got)
	}
}

func TestWithLastError(t *testing.T) {
	text, _, _ := encodeMessage(&broker.Message{Header: map[string]string{"K": "v"}, Body: []byte("body")}, true)
	d, _ := decodeMessage(text, false)
	rewritten := d.withLastError("boom: " + strings.Repeat("x", 5000))
	again, err := decodeMessage(rewritten, false)
	if err != nil {
		t.Fatal(err)
	}
	if !again.base64 || string(again.Body) != "body" || again.Headers["K"] != "v" {
		t.Errorf("rewrite lost the message or its encoding: %+v", again)
	}
	if !strings.HasPrefix(again.LastError, "boom: ") || len(again.LastError) > 1100 {
		t.Errorf("lastError = %d bytes %.20q…, want the shortened reason", len(again.LastError), again.LastError)
	}
	if published := again.publishedText(rewritten); published != text {
		t.Errorf("publishedText = %q, want the text as published %q", published, text)
	}
	foreign, _ := decodeMessage("raw", false)
	if got := foreign.withLastError("boom"); got != "" {
		t.Errorf("a foreign text was rewritten to %q", got)
	}
	if got := foreign.publishedText("raw"); got != "raw" {
		t.Errorf("a foreign text's published text is %q", got)
	}
}

// parseEnvelopeCases are texts for the envelope parser: the forms Publish
// writes, which it must read itself, and near misses, which it must leave
// to encoding/json.
var parseEnvelopeCases = []struct {
	name, text string
	parsed     bool // read by parseEnvelope rather than encoding/json
}{
	{"go-micro's headers", `{"azqueue":1,"headers":{"Content-Type":"application/grpc+proto","Micro-Id":"1","Micro-Topic":"t"},"body":"CgV4eHh4eA=="}`, true},
	{"no headers", `{"azqueue":1,"body":"eA=="}`, true},
	{"empty headers object", `{"azqueue":1,"headers":{},"body":""}`, true},
	{"last error", `{"azqueue":1,"headers":{"A":"b"},"body":"eA==","lastError":"boom: it failed"}`, true},
	{"key given twice", `{"azqueue":1,"headers":{"A":"1","A":"2"},"body":""}`, true},
	{"hand-backs", `{"azqueue":1,"body":"eA==","handBacks":3}`, true},
	{"last error and hand-backs", `{"azqueue":1,"body":"eA==","lastError":"boom","handBacks":12}`, true},
	{"hand-backs with a leading zero", `{"azqueue":1,"body":"eA==","handBacks":03}`, false},
	{"hand-backs signed", `{"azqueue":1,"body":"eA==","handBacks":+3}`, false},
	{"zero hand-backs, which Publish omits", `{"azqueue":1,"body":"eA==","handBacks":0}`, false},
	{"hand-backs in exponent form", `{"azqueue":1,"body":"eA==","handBacks":1e1}`, false},
	{"hand-backs unterminated", `{"azqueue":1,"body":"eA==","handBacks":3`, false},
	{"braces and commas in values", `{"azqueue":1,"headers":{"A":"},{,:","B":"x}"},"body":""}`, true},
	{"escaped quote", `{"azqueue":1,"headers":{"A":"say \"hi\""},"body":""}`, false},
	{"escaped markup", `{"azqueue":1,"headers":{"A":"\u003c\u0026\u003e"},"body":""}`, false},
	{"false end of headers inside an escaped value", `{"azqueue":1,"headers":{"A":"x\"},\"body\":\""},"body":"eA=="}`, false},
	{"UTF-8 in a value", `{"azqueue":1,"headers":{"A":"héllo"},"body":""}`, false},
	{"invalid UTF-8 in a value", "{\"azqueue\":1,\"headers\":{\"A\":\"\xff\"},\"body\":\"\"}", false},
	{"control character in a value", "{\"azqueue\":1,\"headers\":{\"A\":\"\t\"},\"body\":\"\"}", false},
	{"null body", `{"azqueue":1,"body":null}`, false},
	{"null headers", `{"azqueue":1,"headers":null,"body":""}`, false},
	{"no body", `{"azqueue":1,"headers":{"A":"b"}}`, false},
	{"fields in another order", `{"azqueue":1,"body":"eA==","headers":{"A":"b"}}`, false},
	{"spaces", `{"azqueue": 1, "body": "eA=="}`, false},
	{"trailing space", `{"azqueue":1,"body":"eA=="} `, false},
	{"trailing comma in headers", `{"azqueue":1,"headers":{"A":"b",},"body":""}`, false},
	{"number header value", `{"azqueue":1,"headers":{"A":1},"body":""}`, false},
	{"unknown field", `{"azqueue":1,"body":"","other":2}`, false},
	{"version 10", `{"azqueue":10,"body":""}`, false},
	{"bad base64 body", `{"azqueue":1,"body":"%%%"}`, false},
	{"body with an escaped slash", `{"azqueue":1,"body":"a\/b="}`, false},
	{"truncated", `{"azqueue":1,"headers":{"A":"b"},"body":"eA=`, false},
}

func TestParseEnvelopeAgreesWithEncodingJSON(t *testing.T) {
	for _, tt := range parseEnvelopeCases {
		t.Run(tt.name, func(t *testing.T) {
			_, parsed := parseEnvelope(tt.text)
			if parsed != tt.parsed {
				t.Errorf("parseEnvelope read it: %v, want %v", parsed, tt.parsed)
			}
			checkParseAgrees(t, tt.text)
		})
	}
	// Whatever go-micro and Publish put in an envelope must take the fast
	// path, or the consumer pays encoding/json's price on every message.
	m := &broker.Message{
		Header: map[string]string{"Content-Type": "application/grpc+proto", "Micro-Topic": "example.events", "Micro-From-Service": "poc.pub"},
		Body:   []byte("\n\x05hello"),
	}
	text, _, err := encodeMessage(m, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := parseEnvelope(text); !ok {
		t.Errorf("parseEnvelope does not read what Publish writes: %s", text)
	}
	checkParseAgrees(t, text)
}

// checkParseAgrees fails t when parseEnvelope reads text differently from
// encoding/json.
func checkParseAgrees(t *testing.T, text string) {
	t.Helper()
	got, ok := parseEnvelope(text)
	if !ok {
		return
	}
	var want envelope
	if err := json.Unmarshal([]byte(text), &want); err != nil {
		t.Fatalf("parseEnvelope read %q, which encoding/json refuses: %v", text, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseEnvelope read %q as %+v, encoding/json as %+v", text, got, want)
	}
}

// FuzzDecodeMessage checks that no text panics the decoder, that every
// text is either delivered (envelope or foreign) or reported unreadable,
// that envelopes survive a re-encode, and that the envelope parser reads
// what it accepts as encoding/json does.
func FuzzDecodeMessage(f *testing.F) {
	good, _, _ := encodeMessage(&broker.Message{Header: map[string]string{"Content-Type": "application/json"}, Body: []byte(`{"say":"x"}`)}, false)
	for _, seed := range []string{good, good[:20], base64.StdEncoding.EncodeToString([]byte(good)), `{"azqueue":1}`, `{"azqueue":"1"}`, "", "\x00\xff", `{"say":"hi"}`} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	for _, c := range parseEnvelopeCases {
		f.Add(c.text, false)
	}
	f.Fuzz(func(t *testing.T, text string, wholeBase64 bool) {
		checkParseAgrees(t, text)
		d, err := decodeMessage(text, wholeBase64)
		if err != nil {
			if !errors.Is(err, errUnreadable) {
				t.Fatalf("error %v is not errUnreadable", err)
			}
			return
		}
		if d.foreign {
			return
		}
		again, _, err := encodeMessage(&broker.Message{Header: d.Headers, Body: d.Body}, false)
		if err != nil {
			if errors.Is(err, ErrMessageTooLarge) {
				return
			}
			t.Fatal(err)
		}
		d2, err := decodeMessage(again, false)
		if err != nil || !bytes.Equal(d2.Body, d.Body) {
			t.Fatalf("re-encoded envelope does not decode to the same body: %v", err)
		}
	})
}
