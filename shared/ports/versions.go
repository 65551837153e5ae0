package ports

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
)

// VersionsProperty is the name under which the bus adapters carry
// Message.Versions: a Service Bus application property, an SQS message
// attribute.
const VersionsProperty = "documentVersions"

// MaxCarriedVersions bounds the versions a message carries: a step writes
// or reads a few documents (the delivery, its drone), and the newest win.
const MaxCarriedVersions = 4

// Versions is what one step knows of the versions of the documents it
// handled: the ones its message carried (Message.Versions) and the ones
// its store read or wrote since. A store that remembers documents by
// version (Cosmos DB's ETags) uses it to skip the read of a document whose
// version the message names when that is the version it remembers, and to
// tell the step's outputs which versions it left behind; a store without
// versions (the embedded one, whose units of work check what they read)
// ignores it. It is a hint: a bus may drop it, and a version a store does
// not recognise costs a read, as before.
//
// A step that starts from a carried version acts as if it had run at the
// moment its message was sent. That is sound only for a step whose every
// effect is a conditional write (which fails when the document changed
// since) or a message; a step that acts outside the store (a webhook, an
// e-mail) must read what is stored now, and is not given the carried
// versions (see functionapp.CarryVersions).
type Versions struct {
	mu      sync.Mutex
	carried map[string]string // from the message: document → version
	// seen is every version noted in this step, oldest first.
	seen []noted
}

type noted struct{ doc, version string }

type versionsKey struct{}

// WithVersions returns ctx with a Versions that starts from carried, the
// Message.Versions of the message being handled ("" for none, or for a
// step that must read). A carried value that does not decode is ignored.
func WithVersions(ctx context.Context, carried string) (context.Context, *Versions) {
	v := &Versions{}
	if carried != "" {
		var m map[string]string
		if json.Unmarshal([]byte(carried), &m) == nil && len(m) <= MaxCarriedVersions {
			v.carried = m
		}
	}
	return context.WithValue(ctx, versionsKey{}, v), v
}

func versionsOf(ctx context.Context) *Versions {
	v, _ := ctx.Value(versionsKey{}).(*Versions)
	return v
}

func docKey(collection, id string) string { return collection + "/" + id }

// CarriedVersion returns the version of a document that the message being
// handled in ctx names, if it names one.
func CarriedVersion(ctx context.Context, collection, id string) (string, bool) {
	v := versionsOf(ctx)
	if v == nil {
		return "", false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	got, ok := v.carried[docKey(collection, id)]
	return got, ok && got != ""
}

// NoteVersion records, for the step handled in ctx (if any), that its
// store read or wrote this version of a document.
func NoteVersion(ctx context.Context, collection, id, version string) {
	v := versionsOf(ctx)
	if v == nil || version == "" {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	doc := docKey(collection, id)
	v.seen = slices.DeleteFunc(v.seen, func(n noted) bool { return n.doc == doc })
	v.seen = append(v.seen, noted{doc, version})
}

// Encode returns what the step's outputs carry (Message.Versions): the
// versions noted in this step, and those of its message it did not
// handle, at most MaxCarriedVersions, the newest first; "" for none.
func (v *Versions) Encode() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.seen) == 0 && len(v.carried) == 0 {
		return ""
	}
	out := map[string]string{}
	for _, n := range slices.Backward(v.seen) {
		if len(out) == MaxCarriedVersions {
			break
		}
		out[n.doc] = n.version
	}
	for doc, version := range v.carried {
		if len(out) == MaxCarriedVersions {
			break
		}
		if _, ok := out[doc]; !ok {
			out[doc] = version
		}
	}
	if len(out) == 0 {
		return ""
	}
	b, _ := json.Marshal(out) // a map of strings always encodes
	return string(b)
}

// StampVersions sets Message.Versions on each message that has none from
// the Versions ctx carries, if any: how an HTTP function's messages (an
// accepted delivery's first) tell the next step what was written.
func StampVersions(ctx context.Context, msgs []Message) {
	v := versionsOf(ctx)
	if v == nil {
		return
	}
	carried := v.Encode()
	for i := range msgs {
		if msgs[i].Versions == "" {
			msgs[i].Versions = carried
		}
	}
}
