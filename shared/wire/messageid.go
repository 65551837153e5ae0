package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxMessageIDLength is the longest message id Service Bus accepts: "The
// message identifier ... is limited to 128 characters" (Microsoft's
// Service Bus message reference,
// https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messages-payloads).
// SQS's deduplication ids have the same bound.
const MaxMessageIDLength = 128

// MessageID names a message: its subject (a delivery, a notification or a
// drone), the generation of a rescheduled delivery (0 for none) and the
// step. The bus's duplicate detection and the steps' own idempotency both key
// on it, so the same step of the same subject always gets the same id, and a
// reschedule's messages are never taken for the earlier run's.
//
// An id that would pass MaxMessageIDLength keeps the start of its subject
// and replaces the rest by a digest of the whole subject, so it stays unique
// and the same for the same subject.
func MessageID(subject string, generation int, step string) string {
	suffix := ":" + step
	if generation > 0 {
		suffix = ":g" + strconv.Itoa(generation) + suffix
	}
	if len(subject)+len(suffix) > MaxMessageIDLength {
		subject = shorten(subject, MaxMessageIDLength-len(suffix))
	}
	return subject + suffix
}

// shorten fits subject into max bytes: a prefix cut at a rune boundary,
// "~" and 16 hex digits of the subject's SHA-256.
func shorten(subject string, max int) string {
	sum := sha256.Sum256([]byte(subject))
	digest := "~" + hex.EncodeToString(sum[:8])
	keep := max - len(digest)
	if keep < 0 {
		keep = 0
	}
	for keep > 0 && !utf8.RuneStart(subject[keep]) {
		keep--
	}
	return subject[:keep] + digest
}

// redeliveryStep marks the copies a runtime schedules of a message whose
// step failed transiently. It differs from the steps' own "retry-<n>" (the
// webhook step's), so that a runtime's copy of one of those can never take
// the id of the step's next attempt, which duplicate detection would drop.
const redeliveryStep = "redelivery-"

// RedeliveryID names the n-th scheduled copy (n ≥ 1) of the message named
// id, which may itself be a copy: the copies of one message are numbered
// from its first id.
func RedeliveryID(id string, n int) string {
	base, _ := Redelivery(id)
	return MessageID(base, 0, redeliveryStep+strconv.Itoa(n))
}

// Redelivery returns the id of the message a copy was made of and the
// copy's number, or id itself and 0 when id names no copy.
func Redelivery(id string) (base string, n int) {
	i := strings.LastIndex(id, ":"+redeliveryStep)
	if i < 0 {
		return id, 0
	}
	n, err := strconv.Atoi(id[i+1+len(redeliveryStep):])
	if err != nil || n < 1 || strconv.Itoa(n) != id[i+1+len(redeliveryStep):] {
		return id, 0
	}
	return id[:i], n
}
