package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Suppression records that a person ended, by the unsubscribe link of a
// message, every message of this service to an address: no business's
// subscription of it is sent anything more. Only a hash of the address is
// stored (SuppressionKey), not the address itself.
type Suppression struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"createdAt"`
}

// SuppressionKey is the key of the suppression of address on channel: a
// hash of the channel and the address as it reaches its mailbox. An e-mail
// address is taken in lower case and without a "+tag" after its local part
// (bob+x@example.com reaches bob@example.com at most providers); other
// aliases a provider may keep (dots in the local part, at some) are other
// addresses here. Phone numbers are E.164 already.
func SuppressionKey(ch Channel, address string) string {
	a := strings.ToLower(strings.TrimSpace(address))
	if ch == ChannelEmail {
		if local, domain, ok := strings.Cut(a, "@"); ok {
			local, _, _ = strings.Cut(local, "+")
			a = local + "@" + domain
		}
	}
	sum := sha256.Sum256([]byte(string(ch) + ":" + a))
	return hex.EncodeToString(sum[:16])
}

// SuppressionKeys are the SuppressionKey of each of the subscription's
// addresses.
func (s *Subscription) SuppressionKeys() []string {
	var out []string
	for _, ch := range s.Channels() {
		out = append(out, SuppressionKey(ch, s.Address(ch)))
	}
	return out
}
