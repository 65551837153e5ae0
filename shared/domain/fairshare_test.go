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
