package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// sseEvent is one server-sent event, or a comment (Comment set).
type sseEvent struct {
	Name, Data, Comment string
}

// pushFeed is what the tests read of a pushed feed.
type pushFeed struct {
	Stage domain.Stage `json:"stage"`
	Drone *struct {
		Location domain.Location `json:"location"`
	} `json:"drone"`
}

// openEvents opens the event stream at url and returns its answer and
// its events, in order; the channel closes when the stream does. The
// stream is read by hand: the contract client reads answers whole.
func openEvents(t *testing.T, url string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	events := make(chan sseEvent, 1024)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev.Comment = strings.TrimSpace(line[1:])
			case strings.HasPrefix(line, "event: "):
				ev.Name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.Data = line[len("data: "):]
			}
		}
	}()
	return resp, events
}

// nextEvent waits for the next event that is not a comment.
func nextEvent(t *testing.T, events <-chan sseEvent) (sseEvent, bool) {
	t.Helper()
	for {
		select {
		case ev, ok := <-events:
			if !ok || ev.Comment == "" {
				return ev, ok
			}
		case <-time.After(patience):
			t.Fatal("no event")
		}
	}
}

// TestTrackingEventsPushEveryChange follows a delivery on its event
// stream: the feed at once, one event per telemetry report (each with the
// drone where the report put it), keep-alive comments while nothing
// changes, and an end event once the delivery is Completed, after which
// the stream closes. Streams over the cap of one link get 429.
func TestTrackingEventsPushEveryChange(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, t.TempDir(), []string{"PUSH_KEEPALIVE=100ms", "MAX_STREAMS_PER_LINK=2"})
	a := signUp(t, p.base)
	trackingID := northFlight.schedule(t, a, "pusher", "pushed")

	track := p.base + "/api/track/" + trackingID
	var neg struct {
		Transport, URL string
		PollIntervalMs int
	}
	call(t, "GET", track+"/negotiate", nil).decode(t, &neg)
	require.Equal(t, "sse", neg.Transport)
	require.Equal(t, "/api/track/"+trackingID+"/events", neg.URL)
	assert.Equal(t, 2000, neg.PollIntervalMs)

	stream, events := openEvents(t, p.base+neg.URL)
	require.Equal(t, http.StatusOK, stream.StatusCode)
	assert.Equal(t, "text/event-stream", stream.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", stream.Header.Get("Cache-Control"))
	first, ok := nextEvent(t, events)
	require.True(t, ok)
	var f pushFeed
	require.NoError(t, json.Unmarshal([]byte(first.Data), &f))
	assert.Equal(t, domain.StageScheduled, f.Stage)
	// The pushed body is the feed's.
	feed := call(t, "GET", track+"/feed", nil)
	assert.JSONEq(t, string(feed.Body), first.Data)

	// Nothing changes for a while: the stream says it is alive.
	for ev := range events {
		if ev.Comment == "keep-alive" {
			break
		}
		t.Fatalf("an event while nothing changed: %+v", ev)
	}

	// A second watcher on the link is taken, a third is over its cap.
	second, _ := openEvents(t, p.base+neg.URL)
	require.Equal(t, http.StatusOK, second.StatusCode)
	third := call(t, "GET", p.base+neg.URL, nil)
	assert.Equal(t, http.StatusTooManyRequests, third.Status)
	// The same link written in another case, or with a trailing slash, is
	// the same link (raw, as the OpenAPI document spells paths one way).
	for _, path := range []string{"/API/Track/" + trackingID + "/Events", "/api/track/" + trackingID + "/events/"} {
		resp, err := http.Get(p.base + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, path)
	}
	second.Body.Close()

	clock := time.Now().UTC()
	route := northFlight.route(4, 5)
	for i, loc := range route {
		clock = clock.Add(15 * time.Second)
		postReport(t, a, "pusher", loc, float64(100-i), clock)
		// Each report is pushed, with the drone where it put it (the last
		// one Completes the delivery, whose feed then shows the drone where
		// it landed).
		for {
			ev, ok := nextEvent(t, events)
			require.True(t, ok, "the stream closed before report %d was pushed", i)
			require.Empty(t, ev.Name, "report %d", i)
			var got pushFeed
			require.NoError(t, json.Unmarshal([]byte(ev.Data), &got))
			if got.Drone != nil && got.Drone.Location == loc {
				break
			}
		}
	}
	end, ok := nextEvent(t, events)
	require.True(t, ok)
	assert.Equal(t, "end", end.Name)
	assert.JSONEq(t, `{"stage":"Completed"}`, end.Data)
	_, ok = nextEvent(t, events)
	assert.False(t, ok, "the stream closes after its end event")

	// An unknown link is 404, as the feed's is; a stream asked for on an
	// ended delivery is 204, after which an EventSource does not connect
	// again (one that ignored "end" came back every few seconds).
	assert.Equal(t, http.StatusNotFound, call(t, "GET", p.base+"/api/track/NOPE.pushed/events", nil).Status)
	after := call(t, "GET", p.base+neg.URL, nil)
	assert.Equal(t, http.StatusNoContent, after.Status)
	assert.Empty(t, string(after.Body))
}
