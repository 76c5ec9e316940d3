package azqueue

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"net/url"
	"strings"
	"time"
)

// DefaultGroup is the group a subscription joins when it names none
// (no broker.Queue / server.SubscriberQueue option).
const DefaultGroup = "default"

// Queue metadata keys recording which (topic, group) a queue serves. Values
// are URL path-escaped so that any topic fits in an HTTP header.
const (
	metaTopic    = "azqueuetopic"
	metaGroup    = "azqueuegroup"
	metaPoisonOf = "azqueuepoisonof"
	// metaClaimed marks a queue a subscriber's group has claimed, with the
	// time of the claim; a queue without it was created by a publisher
	// before any group subscribed.
	metaClaimed = "azqueueclaimed"
)

// Limits of the queue-name mapping. A queue name has at most 63 characters
// and the poison queue appends "-poison" (7), so a group queue name has at
// most 56.
const (
	maxTopicPart  = 31 // readable topic characters in any name
	maxGroupPart  = 24 // group characters in a name without a hash
	hashLength    = 10 // base32 characters: 50 bits
	maxQueueName  = 56
	poisonSuffix  = "-poison"
	emptyTopicTag = "t" // topic part of a topic without letters or digits
)

// errEmptyTopic is the error of a publish or subscribe without a topic.
var errEmptyTopic = errors.New("azqueue: topic is empty")

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// queueNameFor maps a (topic, group) pair to its Azure queue name.
//
// When the topic consists of at most 31 lowercase letters and digits and the
// group of at most 24 lowercase letters, digits and single inner hyphens, the
// name is simply "<topic>-<group>" (the topic has no hyphen, so the split is
// unambiguous). Otherwise information would be lost, and the name is
// "<topic part>-<group part>-<hash>": each part lower-cased, every run of
// other characters turned into one hyphen, cut to fit, followed by a
// 10-character hash of the exact topic and group, so two different pairs
// never share a queue. Either way the name is valid: 3-56 characters of
// lowercase letters, digits and single hyphens, alphanumeric at both ends,
// and starts with topicPrefix(topic).
func queueNameFor(topic, group string) (string, error) {
	if topic == "" {
		return "", errEmptyTopic
	}
	if group == "" {
		group = DefaultGroup
	}
	topicPart := readableTopic(topic)
	groupPart := sanitize(group)
	if topicPart == topic && !strings.Contains(topic, "-") && groupPart == group && len(group) <= maxGroupPart {
		return topic + "-" + group, nil
	}
	hash := nameHash(topic + "\x00" + group)
	budget := maxQueueName - len(topicPart) - len(hash) - 2
	groupPart = strings.Trim(truncate(groupPart, budget), "-")
	if groupPart == "" {
		return topicPart + "-" + hash, nil
	}
	return topicPart + "-" + groupPart + "-" + hash, nil
}

// topicPrefix is the part every queue name of the topic starts with,
// including the joining hyphen: the prefix Publish lists queues by.
func topicPrefix(topic string) string {
	return readableTopic(topic) + "-"
}

// poisonQueueNameFor names the queue that receives a queue's poison messages.
func poisonQueueNameFor(queue string) string {
	return queue + poisonSuffix
}

// readableTopic is the sanitised topic cut to maxTopicPart characters.
func readableTopic(topic string) string {
	part := strings.TrimRight(truncate(sanitize(topic), maxTopicPart), "-")
	if part == "" {
		return emptyTopicTag
	}
	return part
}

// sanitize lower-cases name, keeps letters and digits, and turns every run
// of other characters between them into one hyphen.
func sanitize(name string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			hyphen = false
			b.WriteRune(r)
			continue
		}
		hyphen = true
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// nameHash returns a short, lowercase, collision-resistant hash of name.
func nameHash(name string) string {
	sum := sha256.Sum256([]byte(name))
	return lowerBase32.EncodeToString(sum[:])[:hashLength]
}

// queueMetadata records the exact topic and group in a queue's metadata.
func queueMetadata(topic, group string) map[string]string {
	if group == "" {
		group = DefaultGroup
	}
	return map[string]string{metaTopic: url.PathEscape(topic), metaGroup: url.PathEscape(group)}
}

// claimedMetadata is queueMetadata with the claim of a subscriber's group,
// made now.
func claimedMetadata(topic, group string) map[string]string {
	md := queueMetadata(topic, group)
	md[metaClaimed] = time.Now().UTC().Format(time.RFC3339)
	return md
}

// metadataValue returns the value recorded under key in a queue's metadata.
func metadataValue(md map[string]string, key string) (string, bool) {
	for k, v := range md {
		// The service may return metadata keys in another case.
		if strings.EqualFold(k, key) {
			value, err := url.PathUnescape(v)
			return value, err == nil
		}
	}
	return "", false
}
