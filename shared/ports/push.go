package ports

import (
	"context"
	"time"
)

// Push relays messages to browsers that hold a connection to a service
// made for it (Azure Web PubSub), for a runtime that cannot hold such
// connections itself (the Functions host).
type Push interface {
	// SendToGroup sends body, a JSON document, to every connection in
	// group; a group with no connection drops it.
	SendToGroup(ctx context.Context, group string, body []byte) error
	// ClientURL returns the URL a browser opens a WebSocket to in order
	// to receive what is sent to group, and nothing else, for ttl.
	ClientURL(ctx context.Context, group string, ttl time.Duration) (string, error)
	// Origin is the scheme and host of the client URLs (wss://…), which
	// a page's Content-Security-Policy must let it connect to.
	Origin() string
}
