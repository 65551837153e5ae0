// Package platform implements the clock and id ports with the operating system's
// clock and random source.
package platform

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"time"

	"github.com/google/uuid"
)

// Clock is the wall clock, in UTC.
type Clock struct{}

// Now returns the current time in UTC.
func (Clock) Now() time.Time { return time.Now().UTC() }

// IDs draws identifiers from crypto/rand.
type IDs struct{}

// NewID returns a UUID of version 7 (RFC 9562, section 5.7) as 32
// lowercase hex digits: 48 bits of Unix time in milliseconds, then a
// sub-millisecond sequence, then 62 random bits. Ids made close in time
// sort close together, so the B-trees keyed on them (a delivery's row in
// the embedded store's primary key, its analytics contributions, its
// messages' duplicate-detection entries) gain their new keys in the pages
// that the deliveries in flight already touch, rather than each in a page
// of its own. Cosmos DB places documents by a hash of their partition key
// ("Azure Cosmos DB uses hash-based partitioning to spread logical
// partitions across physical partitions", Microsoft's partitioning
// overview, https://learn.microsoft.com/azure/cosmos-db/partitioning-overview),
// so ids that sort by time do not crowd one partition there. An id is a
// name, not a secret: secrets come from NewTrackingID.
func (IDs) NewID() string {
	// NewV7 fails only when crypto/rand does, which never happens on the
	// platforms Go supports.
	u := uuid.Must(uuid.NewV7())
	return hex.EncodeToString(u[:])
}

var trackingEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTrackingID returns 160 random bits in base32: unguessable, and easy to
// read aloud or type from a text message.
func (IDs) NewTrackingID() string {
	var b [20]byte
	rand.Read(b[:])
	return trackingEncoding.EncodeToString(b[:])
}
