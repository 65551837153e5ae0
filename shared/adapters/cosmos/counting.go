package cosmos

import (
	"net/http"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// The operation names CountingPolicy uses for document requests; other
// requests are named the same way, method then resource kind.
const (
	OpRead    = "GET docs"         // a point read
	OpCreate  = "POST docs"        // a create
	OpUpsert  = "POST docs upsert" // a blind upsert (this adapter sends none)
	OpQuery   = "POST docs query"  // a query page
	OpReplace = "PUT docs"         // a replace, conditional on an ETag here
	OpPatch   = "PATCH docs"       // a partial update (this adapter sends none)
	OpDelete  = "DELETE docs"      // a delete (only of an owner index entry made for an id another owner holds)
	OpAccount = "GET account"      // the SDK's account metadata refresh
	OpBatch   = "POST docs batch"  // a transactional batch (the analytics' marker and aggregate)
	// OpChangeFeed is a read of a container's change feed (the drone
	// index's), told from a point read by its A-IM header.
	OpChangeFeed = "GET docs feed"
	opUnknown    = "OTHER"
)

// CountingPolicy counts a Cosmos client's requests by operation, so tests and
// benchmarks can state what a delivery costs in Cosmos calls.
//
// Added to azcosmos.ClientOptions.PerCallPolicies it sits above the SDK's
// retry policy, so it counts each logical operation (and each query page)
// once however often a 429 or 5xx makes the SDK resend it; the zero value is
// ready to use.
type CountingPolicy struct {
	mu     sync.Mutex
	counts map[string]int
}

var _ policy.Policy = (*CountingPolicy)(nil)

// Do implements policy.Policy.
func (p *CountingPolicy) Do(req *policy.Request) (*http.Response, error) {
	op := Operation(req.Raw())
	p.mu.Lock()
	if p.counts == nil {
		p.counts = make(map[string]int)
	}
	p.counts[op]++
	p.mu.Unlock()
	return req.Next()
}

// Snapshot returns a copy of the counts by operation name.
func (p *CountingPolicy) Snapshot() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Total returns the number of requests counted.
func (p *CountingPolicy) Total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.counts {
		n += v
	}
	return n
}

// Operation names a Cosmos REST request: its method and the kind of the
// resource it addresses ("docs", "colls", "dbs", "pkranges", or "account"
// for the root), with "query", "upsert" or "batch" appended for the POSTs
// the headers make special, and "feed" for change feed reads.
func Operation(r *http.Request) string {
	if r == nil || r.URL == nil {
		return opUnknown
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	kind := "account"
	switch n := len(segs); {
	case n == 1 && segs[0] == "":
	case n%2 == 1:
		kind = segs[n-1] // a feed, as in POST /dbs/d/colls/c/docs
	default:
		kind = segs[n-2] // one resource, as in GET /dbs/d/colls/c/docs/id
	}
	op := r.Method + " " + kind
	if r.Method == http.MethodGet && r.Header.Get("A-IM") != "" {
		op += " feed"
	}
	if r.Method == http.MethodPost {
		switch {
		case isTrue(r.Header.Get("x-ms-documentdb-isquery")) || r.Header.Get("Content-Type") == "application/query+json":
			op += " query"
		case isTrue(r.Header.Get("x-ms-documentdb-is-upsert")):
			op += " upsert"
		case isTrue(r.Header.Get("x-ms-cosmos-is-batch-request")):
			op += " batch"
		}
	}
	return op
}

func isTrue(s string) bool { return strings.EqualFold(s, "true") }
