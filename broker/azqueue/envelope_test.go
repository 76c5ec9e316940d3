package azqueue

import (
	"bytes"
	"encoding/base64"
	"errors"
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

// FuzzDecodeMessage checks that no text panics the decoder, that every
// text is either delivered (envelope or foreign) or reported unreadable, and
// that envelopes survive a re-encode.
func FuzzDecodeMessage(f *testing.F) {
	good, _, _ := encodeMessage(&broker.Message{Header: map[string]string{"Content-Type": "application/json"}, Body: []byte(`{"say":"x"}`)}, false)
	for _, seed := range []string{good, good[:20], base64.StdEncoding.EncodeToString([]byte(good)), `{"azqueue":1}`, `{"azqueue":"1"}`, "", "\x00\xff", `{"say":"hi"}`} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, text string, wholeBase64 bool) {
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
