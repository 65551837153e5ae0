package keylock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/keylock"
)

func TestOneTurnPerKey(t *testing.T) {
	t.Parallel()
	var ts keylock.Turns
	var mu sync.Mutex
	inside, most := 0, 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			end, err := ts.Take(context.Background(), "doc")
			require.NoError(t, err)
			mu.Lock()
			inside++
			most = max(most, inside)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			inside--
			mu.Unlock()
			end()
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, most, "never two writers of one key at once")

	end, err := ts.Take(context.Background(), "a")
	require.NoError(t, err)
	other, err := ts.Take(context.Background(), "b")
	require.NoError(t, err, "another key has its own turn")
	other()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = ts.Take(ctx, "a")
	assert.ErrorIs(t, err, context.DeadlineExceeded, "waiting ends with the context")
	end()
	again, err := ts.Take(context.Background(), "a")
	require.NoError(t, err, "the turn is free again")
	again()
}
