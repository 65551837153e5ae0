package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

func TestWaiterRanking(t *testing.T) {
	t.Parallel()
	old, young := now.Add(-time.Hour), now
	cases := []struct {
		name string
		a, b domain.Waiter
	}{
		{"expedited first", domain.Waiter{DeliveryID: "a", Expedited: true, Held: 9, CreatedAt: young}, domain.Waiter{DeliveryID: "b", Held: 0, CreatedAt: old}},
		{"fewest held next", domain.Waiter{DeliveryID: "a", Held: 0, CreatedAt: young}, domain.Waiter{DeliveryID: "b", Held: 5, CreatedAt: old}},
		{"then the oldest", domain.Waiter{DeliveryID: "b", Held: 2, CreatedAt: old}, domain.Waiter{DeliveryID: "a", Held: 2, CreatedAt: young}},
		{"then by id", domain.Waiter{DeliveryID: "a", CreatedAt: old}, domain.Waiter{DeliveryID: "b", CreatedAt: old}},
	}
	for _, tc := range cases {
		assert.True(t, tc.a.Outranks(tc.b), tc.name)
		assert.False(t, tc.b.Outranks(tc.a), tc.name)
	}
	assert.Equal(t, domain.AreaOf(near(0, 0)), domain.AreaOf(near(0.001, 0.001)))
	assert.NotEqual(t, domain.AreaOf(near(0, 0)), domain.AreaOf(near(1, 0)))
}

func TestAreasAroundAreALocationsAreaAndItsNeighbours(t *testing.T) {
	t.Parallel()
	here := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	around := domain.AreasAround(here)
	assert.Len(t, around, 9)
	assert.Equal(t, domain.AreaOf(here), around[0])
	for _, d := range [][2]float64{{0.25, 0}, {-0.25, 0}, {0, 0.25}, {0.25, -0.25}} {
		assert.Contains(t, around, domain.AreaOf(domain.Location{Latitude: here.Latitude + d[0], Longitude: here.Longitude + d[1]}))
	}
	assert.NotContains(t, around, domain.AreaOf(domain.Location{Latitude: here.Latitude + 0.5, Longitude: here.Longitude}))
}
