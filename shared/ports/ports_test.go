package ports_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/ports"
)

func TestByQueueKeepsTheOrderOfQueuesAndOfMessages(t *testing.T) {
	msgs := []ports.Message{{ID: "1", Queue: "b"}, {ID: "2", Queue: "a"}, {ID: "3", Queue: "b"}, {ID: "4", Queue: "a"}, {ID: "5", Queue: "c"}}
	groups, err := ports.ByQueue(msgs, func(*ports.Message) error { return nil })
	require.NoError(t, err)
	got := map[string][]string{}
	var order []string
	for _, g := range groups {
		order = append(order, g.Queue)
		for _, m := range g.Msgs {
			got[g.Queue] = append(got[g.Queue], m.ID)
		}
	}
	require.Equal(t, []string{"b", "a", "c"}, order)
	require.Equal(t, map[string][]string{"a": {"2", "4"}, "b": {"1", "3"}, "c": {"5"}}, got)
	require.Same(t, &msgs[2], groups[0].Msgs[1], "the groups point into msgs")
}

func TestByQueueStopsAtTheFirstRefusal(t *testing.T) {
	refused := errors.New("refused")
	var seen []string
	_, err := ports.ByQueue([]ports.Message{{ID: "1", Queue: "a"}, {ID: "2"}, {ID: "3", Queue: "a"}}, func(m *ports.Message) error {
		seen = append(seen, m.ID)
		if m.Queue == "" {
			return refused
		}
		return nil
	})
	require.ErrorIs(t, err, refused)
	require.Equal(t, []string{"1", "2"}, seen)
}
