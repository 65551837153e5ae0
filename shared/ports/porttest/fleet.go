package porttest

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/stretchr/testify/require"
)

// Fleet checks the drone queries of a store: listing by status with a
// cursor, and the nearest-available search with the claims and releases a
// scheduler makes while it walks the answer. open may return one shared
// store or a new one per test.
func Fleet(t *testing.T, open func(t *testing.T) ports.Store) {
	setup := func(t *testing.T) ports.Fleet {
		t.Parallel()
		return open(t).Fleet
	}
	// around starts a nearest-drone test: its fleet, a context, a centre
	// of its own and a fresh prefix for the ids of the drones it places.
	around := func(t *testing.T, name string) (ports.Fleet, context.Context, domain.Location, string) {
		return setup(t), ctxFor(t), randomCenter(), unique(name)
	}

	t.Run("ListByStatusWithCursor", func(t *testing.T) {
		f := setup(t)
		ctx := ctxFor(t)
		// Ids sharing a fresh prefix sort together right after it, so the
		// first answers after that cursor are this test's, whatever else
		// a shared store holds.
		prefix := unique("list")
		statuses := []domain.DroneStatus{domain.DroneAvailable, domain.DroneCharging, domain.DroneAvailable,
			domain.DroneMaintenance, domain.DroneAvailable}
		var all []string
		for i, s := range statuses {
			id := fmt.Sprintf("%s-%d", prefix, i)
			d := drone(id, domain.Location{Latitude: -88, Longitude: float64(i)})
			d.Status = s
			require.NoError(t, f.Create(ctx, id, d), "create")
			all = append(all, id)
		}
		available := []string{all[0], all[2], all[4]}

		list := func(status domain.DroneStatus, after string, limit int) []string {
			t.Helper()
			got, err := f.List(ctx, status, after, limit)
			require.NoError(t, err, "list")
			require.LessOrEqual(t, len(got), limit, "drones a list with the limit returned")
			var ids []string
			for _, d := range got {
				if status != "" {
					require.Equal(t, status, d.Status, "the status of %s in the list", d.ID)
				}
				if strings.HasPrefix(d.ID, prefix) {
					ids = append(ids, d.ID)
				}
			}
			return ids
		}
		require.Equal(t, all, list("", prefix, len(all)), "all drones in id order")
		require.Equal(t, available, list(domain.DroneAvailable, prefix, 10), "available drones in id order")
		require.Equal(t, []string{all[1]}, list(domain.DroneCharging, prefix, 10), "charging drones")

		// Page through the available ones two at a time.
		require.Equal(t, available[:2], list(domain.DroneAvailable, prefix, 2), "first page")
		require.Equal(t, available[2:], list(domain.DroneAvailable, available[1], 2), "second page")
		require.Equal(t, all[1:2], list("", all[0], 1), "one drone after a cursor")
		require.Empty(t, list("", prefix, 0), "a list with limit 0")
	})

	t.Run("NearestAvailableOnlyAvailableNearestFirst", func(t *testing.T) {
		f, ctx, center, prefix := around(t, "near")
		// The unavailable drones are the nearest, so yielding any of them
		// would put it among the first answers.
		for i, s := range []domain.DroneStatus{domain.DroneCharging, domain.DroneAssigned, domain.DroneMaintenance, domain.DroneInFlight} {
			id := fmt.Sprintf("%s-busy-%d", prefix, i)
			d := drone(id, offset(center, 0.05*float64(i+1), 0.05))
			d.Status = s
			if s == domain.DroneAssigned || s == domain.DroneInFlight {
				d.CurrentDeliveryID = "del-" + id
			}
			require.NoError(t, f.Create(ctx, id, d), "create")
		}
		want := placeAvailable(t, f, center, prefix, []float64{0.6, 1.1, 1.9, 2.7, 3.4, 4.8})

		Eventually(t, "nearest available drones", func() error {
			got := nearest(ctx, f, center, prefix, len(want))
			if err := sameDrones(want, got); err != nil {
				return err
			}
			for _, y := range got {
				if km := domain.DistanceKm(center, y.d.Location); math.Abs(km-y.km) > 1e-6 {
					return fmt.Errorf("%s yielded at %v km, but it is %v km away", y.d.ID, y.km, km)
				}
			}
			return nil
		})
	})

	t.Run("NearestAvailableStopsWhenCallerBreaks", func(t *testing.T) {
		f, ctx, center, prefix := around(t, "break")
		placeAvailable(t, f, center, prefix, []float64{0.5, 1, 1.5})
		Eventually(t, "a first drone", func() error {
			n := 0
			for range f.NearestAvailable(ctx, center) {
				n++
				break // a range-over-func iterator that kept yielding would panic here
			}
			if n != 1 {
				return fmt.Errorf("got %d drones", n)
			}
			return nil
		})
	})

	t.Run("NearestAvailableYieldsCopies", func(t *testing.T) {
		f, ctx, center, prefix := around(t, "copy")
		want := placeAvailable(t, f, center, prefix, []float64{0.5})
		Eventually(t, "the drone", func() error { return sameDrones(want, nearest(ctx, f, center, prefix, 1)) })
		for d := range f.NearestAvailable(ctx, center) {
			d.Status = domain.DroneMaintenance
			d.Location = offset(center, 100, 100)
			if d.Location.Altitude != nil {
				*d.Location.Altitude = -1
			}
			if strings.HasPrefix(d.ID, prefix) {
				break
			}
		}
		require.NoError(t, sameDrones(want, nearest(ctx, f, center, prefix, 1)), "after changing what NearestAvailable yielded")
	})

	t.Run("NearestAvailableReflectsClaimAndRelease", func(t *testing.T) {
		f, ctx, center, prefix := around(t, "claim")
		want := placeAvailable(t, f, center, prefix, []float64{0.5, 1.5, 2.5})
		Eventually(t, "the drones", func() error { return sameDrones(want, nearest(ctx, f, center, prefix, len(want))) })

		claimed := want[0].ID
		_, err := f.Update(ctx, claimed, func(d *domain.Drone) error {
			d.Status, d.CurrentDeliveryID = domain.DroneAssigned, "del-"+claimed
			return nil
		})
		require.NoError(t, err, "claim")
		// The claimed drone was the nearest, so it would come first.
		Eventually(t, "the drones left after a claim", func() error {
			return sameDrones(want[1:], nearest(ctx, f, center, prefix, len(want)-1))
		})

		_, err = f.Update(ctx, claimed, func(d *domain.Drone) error {
			d.Status, d.CurrentDeliveryID = domain.DroneAvailable, ""
			return nil
		})
		require.NoError(t, err, "release")
		Eventually(t, "the drones after a release", func() error {
			return sameDrones(want, nearest(ctx, f, center, prefix, len(want)))
		})
	})

	t.Run("NearestAwaitingTakeoffHoldsClaimedDronesUntilTheyReport", func(t *testing.T) {
		f, ctx, center, prefix := around(t, "takeoff")
		drones := placeAvailable(t, f, center, prefix, []float64{0.5, 1.5})
		waiting := func(n int) []yielded {
			var out []yielded
			for d, km := range f.NearestAwaitingTakeoff(ctx, center) {
				if strings.HasPrefix(d.ID, prefix) {
					out = append(out, yielded{d, km})
				}
				if len(out) == n {
					break
				}
			}
			return out
		}
		require.NoError(t, sameDrones(nil, waiting(0)), "no drone awaits takeoff before a claim")

		for _, d := range drones {
			_, err := f.Update(ctx, d.ID, func(cur *domain.Drone) error {
				cur.Status, cur.CurrentDeliveryID = domain.DroneAssigned, "del-"+cur.ID
				return nil
			})
			require.NoError(t, err, "claim")
			d.Status, d.CurrentDeliveryID = domain.DroneAssigned, "del-"+d.ID
		}
		Eventually(t, "both claimed drones, nearest first", func() error { return sameDrones(drones, waiting(2)) })

		_, err := f.Update(ctx, drones[0].ID, func(cur *domain.Drone) error {
			cur.Status = domain.DroneInFlight
			return nil
		})
		require.NoError(t, err, "first report")
		Eventually(t, "the drone still on the ground", func() error { return sameDrones(drones[1:], waiting(0)) })

		_, err = f.Update(ctx, drones[1].ID, func(cur *domain.Drone) error {
			cur.Status, cur.CurrentDeliveryID = domain.DroneAvailable, ""
			return nil
		})
		require.NoError(t, err, "release")
		Eventually(t, "none after the release", func() error { return sameDrones(nil, waiting(0)) })
	})

	t.Run("NearestAvailableToleratesUpdateInLoop", func(t *testing.T) {
		f, ctx, center, prefix := around(t, "loop")
		want := placeAvailable(t, f, center, prefix, []float64{0.3, 0.9, 1.7, 2.2, 3.1})
		Eventually(t, "the drones", func() error { return sameDrones(want, nearest(ctx, f, center, prefix, len(want))) })

		// Claim every drone of this test from inside the loop, as a
		// scheduler claims its pick; ctx bounds a deadlocked iterator.
		claimed := map[string]bool{}
		for d := range f.NearestAvailable(ctx, center) {
			if !strings.HasPrefix(d.ID, prefix) || claimed[d.ID] {
				continue
			}
			_, err := f.Update(ctx, d.ID, func(cur *domain.Drone) error {
				if cur.Status != domain.DroneAvailable {
					return fmt.Errorf("drone %s is %s", cur.ID, cur.Status)
				}
				cur.Status, cur.CurrentDeliveryID = domain.DroneAssigned, "del-"+cur.ID
				return nil
			})
			require.NoError(t, err, "claim inside the loop")
			claimed[d.ID] = true
			if len(claimed) == len(want) {
				break
			}
		}
		require.NoError(t, ctx.Err(), "walk with claims")
		require.Len(t, claimed, len(want), "drones claimed inside the loop")
		Eventually(t, "no drones after claiming all", func() error {
			return sameDrones(nil, nearest(ctx, f, center, prefix, 0))
		})
	})
}

// drone returns an available drone at loc.
func drone(id string, loc domain.Location) *domain.Drone {
	alt := 30.0
	loc.Altitude = &alt
	return &domain.Drone{ID: id, Location: loc, HomeBase: loc, MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge,
		RangeKm: 40, CruiseSpeedMps: 20, BatteryPercent: 90, Status: domain.DroneAvailable, UpdatedAt: at}
}

// placeAvailable creates available drones at the given distances from
// center in random directions and returns them nearest first.
func placeAvailable(t *testing.T, f ports.Fleet, center domain.Location, prefix string, kms []float64) []*domain.Drone {
	t.Helper()
	var out []*domain.Drone
	for i, km := range kms {
		bearing := rand.Float64() * 2 * math.Pi
		d := drone(fmt.Sprintf("%s-%d", prefix, i), offset(center, km*math.Cos(bearing), km*math.Sin(bearing)))
		require.NoError(t, f.Create(ctxFor(t), d.ID, d), "create")
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *domain.Drone) int {
		return cmp.Compare(domain.DistanceKm(center, a.Location), domain.DistanceKm(center, b.Location))
	})
	return out
}

type yielded struct {
	d  *domain.Drone
	km float64
}

// nearest walks NearestAvailable and returns the drones whose ids start
// with prefix, stopping after n of them (n = 0: walking to the end); other
// tests' drones in a shared store are passed over.
func nearest(ctx context.Context, f ports.Fleet, center domain.Location, prefix string, n int) []yielded {
	var out []yielded
	for d, km := range f.NearestAvailable(ctx, center) {
		if !strings.HasPrefix(d.ID, prefix) {
			continue
		}
		out = append(out, yielded{d, km})
		if len(out) == n {
			break
		}
	}
	return out
}

// sameDrones reports how got differs from want, which is nearest first.
func sameDrones(want []*domain.Drone, got []yielded) error {
	var gotIDs, wantIDs []string
	for _, y := range got {
		gotIDs = append(gotIDs, y.d.ID)
	}
	for _, d := range want {
		wantIDs = append(wantIDs, d.ID)
	}
	if !slices.Equal(gotIDs, wantIDs) {
		return fmt.Errorf("yielded %v, want %v", gotIDs, wantIDs)
	}
	for i, y := range got {
		if show(y.d) != show(want[i]) {
			return fmt.Errorf("yielded %s, want %s", show(y.d), show(want[i]))
		}
		if i > 0 && y.km < got[i-1].km {
			return fmt.Errorf("%s yielded at %v km after %s at %v km", y.d.ID, y.km, got[i-1].d.ID, got[i-1].km)
		}
	}
	return nil
}

// randomCenter spreads the tests of a shared store over the globe, away from
// the poles where the Collections suite parks its drones.
func randomCenter() domain.Location {
	return domain.Location{Latitude: rand.Float64()*120 - 60, Longitude: rand.Float64()*340 - 170}
}

// offset moves loc by the given kilometres, near enough for a few km.
func offset(loc domain.Location, northKm, eastKm float64) domain.Location {
	const kmPerDeg = 111.195
	lat := loc.Latitude + northKm/kmPerDeg
	lon := loc.Longitude + eastKm/(kmPerDeg*math.Cos(loc.Latitude*math.Pi/180))
	return domain.Location{Latitude: lat, Longitude: lon}
}
