// Package sys implements the clock and id ports with the operating system's
// clock and random source.
package platform

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"time"
)

// Clock is the wall clock, in UTC.
type Clock struct{}

// Now returns the current time in UTC.
func (Clock) Now() time.Time { return time.Now().UTC() }

// IDs draws identifiers from crypto/rand.
type IDs struct{}

// NewID returns 128 random bits as 32 lowercase hex digits.
func (IDs) NewID() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

var trackingEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTrackingID returns 160 random bits in base32: unguessable, and easy to
// read aloud or type from a text message.
func (IDs) NewTrackingID() string {
	var b [20]byte
	rand.Read(b[:])
	return trackingEncoding.EncodeToString(b[:])
}
