package azqueue

import (
	"fmt"
	"math/rand"
	"regexp"
	"strings"
	"testing"
)

// validQueueName is Azure's rule: 3-63 characters, lowercase letters,
// digits and single hyphens, alphanumeric at both ends.
var validQueueName = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9])*$`)

func checkQueueName(t *testing.T, name string) {
	t.Helper()
	if len(name) < 3 || len(name) > maxQueueName || !validQueueName.MatchString(name) {
		t.Fatalf("queue name %q (%d chars) is not a valid name of at most %d chars", name, len(name), maxQueueName)
	}
	if poison := poisonQueueNameFor(name); len(poison) > 63 || !validQueueName.MatchString(poison) {
		t.Fatalf("poison queue name %q is not valid", poison)
	}
}

func TestQueueNameFor(t *testing.T) {
	tests := []struct {
		topic, group string
		want         string // exact name, or a prefix ending in "-" when hashed
	}{
		{"events", "", "events-default"},
		{"events", "billing", "events-billing"},
		{"events", "billing-eu", "events-billing-eu"},
		{"abc", "x", "abc-x"},
		{"example.events", "", "example-events-default-"},
		{"Example.Events", "", "example-events-default-"},
		{"go.micro.topic", "Workers", "go-micro-topic-workers-"},
		{"a-b", "c", "a-b-c-"}, // a hyphen in the topic would make the split ambiguous
		{"...", "", "t-default-"},
		{"événements", "", "v-nements-default-"},
		{strings.Repeat("long", 20), "", strings.Repeat("long", 7) + "lon-default-"},
		{"events", strings.Repeat("g", 30), "events-" + strings.Repeat("g", 30) + "-"},
		{strings.Repeat("t", 40), strings.Repeat("g", 30), strings.Repeat("t", 31) + "-" + strings.Repeat("g", 13) + "-"},
		{"events", "--", "events-"},
	}
	for _, tt := range tests {
		t.Run(tt.topic+"/"+tt.group, func(t *testing.T) {
			name, err := queueNameFor(tt.topic, tt.group)
			if err != nil {
				t.Fatal(err)
			}
			checkQueueName(t, name)
			if strings.HasSuffix(tt.want, "-") {
				if !strings.HasPrefix(name, tt.want) || len(name) != len(tt.want)+hashLength {
					t.Errorf("queueNameFor(%q, %q) = %q, want %q followed by a %d-character hash", tt.topic, tt.group, name, tt.want, hashLength)
				}
			} else if name != tt.want {
				t.Errorf("queueNameFor(%q, %q) = %q, want %q", tt.topic, tt.group, name, tt.want)
			}
			if !strings.HasPrefix(name, topicPrefix(tt.topic)) {
				t.Errorf("name %q does not start with the topic prefix %q", name, topicPrefix(tt.topic))
			}
		})
	}
	if _, err := queueNameFor("", "g"); err == nil {
		t.Error("empty topic: want an error")
	}
}

// TestQueueNameMappingProperties checks, on a large generated set of
// similar topics and groups, that every name is valid, that the mapping is
// deterministic and that no two different pairs share a name.
func TestQueueNameMappingProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []rune("abcXYZ019.-_:/ é")
	randomName := func(maxLen int) string {
		n := 1 + rng.Intn(maxLen)
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteRune(alphabet[rng.Intn(len(alphabet))])
		}
		return b.String()
	}
	type pair struct{ topic, group string }
	seen := make(map[string]pair)
	const pairs = 100000
	for i := 0; i < pairs; i++ {
		p := pair{randomName(70), randomName(30)}
		if i%3 == 0 {
			p.group = "" // the default group
		}
		if p.group == DefaultGroup {
			continue // the same pair as the empty group, by definition
		}
		name, err := queueNameFor(p.topic, p.group)
		if err != nil {
			t.Fatal(err)
		}
		checkQueueName(t, name)
		again, _ := queueNameFor(p.topic, p.group)
		if again != name {
			t.Fatalf("queueNameFor(%q, %q) not deterministic: %q then %q", p.topic, p.group, name, again)
		}
		if other, dup := seen[name]; dup && other != p {
			t.Fatalf("pairs %+v and %+v share queue %q", other, p, name)
		}
		seen[name] = p
	}
	if len(seen) < pairs/2 {
		t.Fatalf("only %d distinct names generated; the generator is too narrow", len(seen))
	}
}

func TestQueueMetadataRoundTrip(t *testing.T) {
	for _, topic := range []string{"events", "a b/c?d", "événements", "x%2Fy"} {
		md := queueMetadata(topic, "")
		got, ok := metadataValue(md, metaTopic)
		if !ok || got != topic {
			t.Errorf("topic %q round-tripped to %q (ok=%v)", topic, got, ok)
		}
		for k, v := range md {
			for _, r := range v {
				if r < 0x20 || r > 0x7e {
					t.Errorf("metadata %s=%q is not printable ASCII", k, v)
				}
			}
		}
		// The service may return keys in another case.
		upper := map[string]string{strings.ToUpper(metaGroup): md[metaGroup]}
		if g, ok := metadataValue(upper, metaGroup); !ok || g != DefaultGroup {
			t.Errorf("group lookup ignoring case: got %q, %v", g, ok)
		}
	}
}

func ExampleSettings() {
	for _, s := range Settings()[:2] {
		fmt.Printf("%s %s %s %s\n", s.Option, s.Env, s.Default, s.Range)
	}
	// Output:
	// BatchSize AZQUEUE_BATCH_SIZE 32 1..32
	// Concurrency AZQUEUE_CONCURRENCY 0 0..1024
}

// FuzzQueueNameFor checks, for any two (topic, group) pairs, that the name
// of each is a valid queue name of at most maxQueueName characters whose
// poison queue's name is valid too, that it starts with the topic's prefix
// (which Publish lists queues by), that mapping is deterministic, and that
// two different pairs get different names. An empty group is the default
// group, so ("t", "") and ("t", "default") are the same pair.
func FuzzQueueNameFor(f *testing.F) {
	for _, seed := range [][4]string{
		{"events", "", "events", "default"},
		{"events", "billing", "events", "billing-eu"},
		{"example.events", "", "example-events", ""},
		{"a-b", "c", "a", "b-c"},
		{"Events", "default", "events", "default"},
		{"...", "", "---", ""},
		{"événements", "x", "evenements", "x"},
		{strings.Repeat("long", 20), strings.Repeat("g", 30), strings.Repeat("long", 20), strings.Repeat("g", 31)},
		{"abc", "x-abcdefghij", "abc", "X"},
		{"t", "--", "t", "-"},
		{"", "g", "t", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, topic, group, topic2, group2 string) {
		name, err := queueNameFor(topic, group)
		if topic == "" {
			if err == nil {
				t.Fatalf("queueNameFor(\"\", %q) = %q, want an error", group, name)
			}
			return
		}
		if err != nil {
			t.Fatalf("queueNameFor(%q, %q): %v", topic, group, err)
		}
		checkQueueName(t, name)
		if !strings.HasPrefix(name, topicPrefix(topic)) {
			t.Fatalf("queueNameFor(%q, %q) = %q does not start with the topic prefix %q", topic, group, name, topicPrefix(topic))
		}
		if again, _ := queueNameFor(topic, group); again != name {
			t.Fatalf("queueNameFor(%q, %q) gave %q, then %q", topic, group, name, again)
		}
		if topic2 == "" {
			return
		}
		name2, err := queueNameFor(topic2, group2)
		if err != nil {
			t.Fatalf("queueNameFor(%q, %q): %v", topic2, group2, err)
		}
		same := topic == topic2 && orDefault(group) == orDefault(group2)
		if same != (name == name2) {
			t.Fatalf("(%q, %q) -> %q and (%q, %q) -> %q: different pairs must get different names, the same pair the same name", topic, group, name, topic2, group2, name2)
		}
	})
}

func orDefault(group string) string {
	if group == "" {
		return DefaultGroup
	}
	return group
}
