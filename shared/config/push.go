package config

import (
	"fmt"
	"net/url"
	"strings"
)

// The settings of push to the tracking page under the Functions host,
// which cannot hold the page's connection: Azure Web PubSub holds it.
const (
	WebPubSubEndpoint = "WEBPUBSUB_ENDPOINT"  // https://<resource>.webpubsub.azure.com; unset: no push under the host
	WebPubSubHub      = "WEBPUBSUB_HUB"       // default "tracking"
	WebPubSubClientID = "WEBPUBSUB_CLIENT_ID" // a user-assigned managed identity; unset: DefaultAzureCredential
)

// DefaultWebPubSubHub is the hub the tracking pages connect to.
const DefaultWebPubSubHub = "tracking"

// WebPubSub is how to reach Azure Web PubSub.
type WebPubSub struct {
	Endpoint, Hub string
	Identity      Connection
}

// LoadWebPubSub reads the Web PubSub settings; nil when none is set.
func LoadWebPubSub(env func(string) string) (*WebPubSub, error) {
	get := func(k string) string { return strings.TrimSpace(env(k)) }
	ep := get(WebPubSubEndpoint)
	if ep == "" {
		for _, k := range []string{WebPubSubHub, WebPubSubClientID} {
			if get(k) != "" {
				return nil, fmt.Errorf("%s is set but %s is not", k, WebPubSubEndpoint)
			}
		}
		return nil, nil
	}
	if u, err := url.Parse(ep); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%s %q must be a URL such as https://<resource>.webpubsub.azure.com", WebPubSubEndpoint, ep)
	}
	w := &WebPubSub{Endpoint: ep, Hub: get(WebPubSubHub)}
	if w.Hub == "" {
		w.Hub = DefaultWebPubSubHub
	}
	w.Identity = Connection{Prefix: "WEBPUBSUB", Endpoint: ep, ClientID: get(WebPubSubClientID), ManagedIdentity: get(WebPubSubClientID) != ""}
	return w, nil
}
