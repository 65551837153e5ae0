package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// benchDeliveries is how many deliveries one benchmark run carries; the fleet
// is seeded larger so that no delivery waits for a drone.
const benchDeliveries = 3000

// BenchmarkChainStandalone measures deliveries per second accepted over HTTP
// and carried through all four steps to Scheduled by the standalone binary
// on the embedded backend, loaded from this (second) process on loopback.
// Run with -benchtime 1x; compare with BenchmarkBaselineHTTP from the same run.
func BenchmarkChainStandalone(b *testing.B) {
	for range b.N {
		dir := b.TempDir()
		p := startServe(b, dir, "-seed", fmt.Sprint(benchDeliveries*2))
		a := signUp(b, p.base)
		ids := make([]string, benchDeliveries)
		start := time.Now()
		post(b, p.base+"/api/deliveryrequests", a.key, benchDeliveries, 32, func(i int) []byte {
			ids[i] = fmt.Sprintf("bench-%d", i)
			body, _ := json.Marshal(deliveryRequest(ids[i], domain.Location{Latitude: 47.6062 + float64(i%100)*0.0003, Longitude: -122.3321},
				domain.Location{Latitude: 47.6162, Longitude: -122.3221}, "Small", 1))
			return body
		})
		accepted := time.Since(start)
		for _, id := range ids {
			for {
				var st struct {
					Stage domain.Stage `json:"stage"`
				}
				req, _ := http.NewRequest("GET", p.base+"/api/deliveries/"+id+"/status", nil)
				req.Header.Set("Authorization", "Bearer "+a.key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				if st.Stage == domain.StageScheduled {
					break
				}
				if st.Stage == domain.StageFailed {
					b.Fatalf("%s failed", id)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		total := time.Since(start)
		b.ReportMetric(benchDeliveries/accepted.Seconds(), "accepted/s")
		b.ReportMetric(benchDeliveries/total.Seconds(), "scheduled/s")
		p.kill()
	}
}

// BenchmarkBaselineHTTP is the same-run baseline: a bare net/http server that
// decodes and re-encodes a delivery request, driven by the same client.
func BenchmarkBaselineHTTP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(m)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	for range b.N {
		start := time.Now()
		post(b, "http://"+ln.Addr().String()+"/", "", benchDeliveries, 32, func(i int) []byte {
			body, _ := json.Marshal(deliveryRequest(fmt.Sprintf("bench-%d", i), domain.Location{Latitude: 47.6, Longitude: -122.3},
				domain.Location{Latitude: 47.61, Longitude: -122.31}, "Small", 1))
			return body
		})
		b.ReportMetric(benchDeliveries/time.Since(start).Seconds(), "accepted/s")
	}
}

// post sends n requests from workers concurrent clients, with key as the
// bearer token when given, and fails on any answer but 202.
func post(b *testing.B, url, key string, n, workers int, body func(i int) []byte) {
	var next atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				req, _ := http.NewRequest("POST", url, bytesReader(body(i)))
				req.Header.Set("Content-Type", "application/json")
				if key != "" {
					req.Header.Set("Authorization", "Bearer "+key)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
}
