package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/apiclient"
	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// signUp registers a business and returns its API key; the service asks
// for one by answering 401.
func signUp(ctx context.Context, c *loadgen.Client) (loadgen.Credentials, error) {
	acct, err := c.API().SignUp(ctx, apiclient.Registration{Name: "Bench Co", ContactEmail: "bench@example.com"})
	if err != nil {
		return loadgen.Credentials{}, err
	}
	return loadgen.Credentials{Key: acct.APIKey, Owner: acct.AccountID}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// --- requests -----------------------------------------------------------

// requestBody is delivery request i of a run: a pickup somewhere in the
// city and a dropoff a short hop away, mostly small parcels, so every
// request is one some nearby drone can take. An empty id leaves the naming
// of the delivery to the service.
func requestBody(id, owner string, i int) []byte {
	return requestBodyWithin(id, owner, i, benchPickupRadiusKm)
}

// requestBodyWithin is requestBody with pickups within radiusKm of the centre.
func requestBodyWithin(id, owner string, i int, radiusKm float64) []byte {
	pickup := offsetKm(benchCenter, radiusKm*math.Sqrt(unit(i, 1)), 2*math.Pi*unit(i, 2))
	drop := offsetKm(pickup, benchDropoffKm*(0.05+0.95*unit(i, 3)), 2*math.Pi*unit(i, 4)) // never at the pickup
	size := "Small"
	if i%4 == 3 {
		size = "Medium"
	}
	b := make([]byte, 0, 320)
	b = append(b, '{')
	if id != "" {
		b = append(b, `"deliveryId":"`...)
		b = append(b, id...)
		b = append(b, `",`...)
	}
	b = append(b, `"ownerId":"`...)
	b = append(b, owner...)
	b = append(b, `","pickupLocation":{"latitude":`...)
	b = strconv.AppendFloat(b, pickup.Latitude, 'f', 6, 64)
	b = append(b, `,"longitude":`...)
	b = strconv.AppendFloat(b, pickup.Longitude, 'f', 6, 64)
	b = append(b, `},"dropOffLocation":{"latitude":`...)
	b = strconv.AppendFloat(b, drop.Latitude, 'f', 6, 64)
	b = append(b, `,"longitude":`...)
	b = strconv.AppendFloat(b, drop.Longitude, 'f', 6, 64)
	b = append(b, `},"packageInfo":{"size":"`...)
	b = append(b, size...)
	b = append(b, `","weight":`...)
	b = strconv.AppendFloat(b, 1+float64(i%10)/10, 'f', 1, 64)
	b = append(b, `,"tag":"bench"}}`...)
	return b
}

// unit is a deterministic pseudo-random number in [0,1) for request i.
func unit(i, salt int) float64 {
	x := uint64(i)*0x9e3779b97f4a7c15 + uint64(salt)*0xbf58476d1ce4e5b9
	x ^= x >> 31
	x *= 0x94d049bb133111eb
	x ^= x >> 29
	return float64(x>>11) / (1 << 53)
}

// offsetKm moves from c by km along bearing (radians from north) on a
// flat-earth approximation, plenty for a few kilometres.
func offsetKm(c domain.Location, km, bearing float64) domain.Location {
	dLat := km * math.Cos(bearing) / 111.32
	dLon := km * math.Sin(bearing) / (111.32 * math.Cos(c.Latitude*math.Pi/180))
	return domain.Location{Latitude: c.Latitude + dLat, Longitude: c.Longitude + dLon}
}

// ingestOp posts delivery request i, its pickup within radiusKm of the
// centre. It leaves the delivery's id to the service, as a client that does
// not name its deliveries does; ids, when not nil, gets at i the id of the
// delivery the service accepted.
func ingestOp(c *loadgen.Client, radiusKm float64, ids []string) loadgen.Op {
	return func(ctx context.Context, i int) error {
		status, body, err := c.Do(ctx, http.MethodPost, "/api/deliveryrequests", func(owner string) []byte {
			return requestBodyWithin("", owner, i, radiusKm)
		}, ids != nil)
		if err != nil {
			return err
		}
		if status == http.StatusServiceUnavailable {
			// Shed for a backlog: a well-behaved client waits before its
			// next request rather than hammering a service that said no.
			time.Sleep(time.Second)
			return errors.New("status 503 (shed)")
		}
		if status != http.StatusAccepted {
			return fmt.Errorf("status %d", status)
		}
		if ids != nil {
			var a apiclient.Accepted
			if err := json.Unmarshal(body, &a); err != nil || a.DeliveryID == "" {
				return fmt.Errorf("202 without a deliveryId: %.200s", body)
			}
			ids[i] = a.DeliveryID
		}
		return nil
	}
}

// --- scenarios ----------------------------------------------------------
