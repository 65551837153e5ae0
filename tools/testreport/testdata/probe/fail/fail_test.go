// Package fail fails on purpose: testreport's test compares what go test
// prints for it with and without -json.
package fail

import "testing"

func TestPasses(t *testing.T) { t.Log("hidden when it passes") }

func TestFails(t *testing.T) {
	t.Log("shown: the test failed")
	t.Run("bad", func(t *testing.T) {
		t.Log("first")
		t.Error("second")
	})
	t.Run("good", func(t *testing.T) { t.Log("hidden") })
	t.Run("deeper", func(t *testing.T) {
		t.Run("worse", func(t *testing.T) { t.Fatal("nested") })
	})
	t.Log("after the subtests")
}

func TestFailsInParallel(t *testing.T) {
	t.Parallel()
	t.Errorf("a parallel failure")
}
