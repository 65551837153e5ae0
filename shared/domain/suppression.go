package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Suppression records that a person ended, by the unsubscribe link of a
// message, every message of one business to one address: that business's
// messages to it stop, and it cannot subscribe the address again. Only a
// hash of the address is kept (SuppressionKey), so the record holds no
// address of someone who asked to hear no more.
type Suppression struct {
	ID        string    `json:"id"`
	AccountID string    `json:"accountId"`
	Channel   Channel   `json:"channel"`
	CreatedAt time.Time `json:"createdAt"`
}

// SuppressionKey is the key of the suppression of address on channel for
// account: the account, then a hash of the channel and the address as
// messages are sent to it (an e-mail address in any letter case is one
// address here).
func SuppressionKey(accountID string, ch Channel, address string) string {
	sum := sha256.Sum256([]byte(string(ch) + ":" + strings.ToLower(strings.TrimSpace(address))))
	return accountID + ":" + hex.EncodeToString(sum[:16])
}

// Suppress returns the suppressions that the unsubscribe of s from a
// delivery of account records, one for each of its addresses.
func (s *Subscription) Suppress(account string, now time.Time) []Suppression {
	var out []Suppression
	for _, ch := range s.Channels() {
		out = append(out, Suppression{ID: SuppressionKey(account, ch, s.Address(ch)), AccountID: account, Channel: ch, CreatedAt: now})
	}
	return out
}
