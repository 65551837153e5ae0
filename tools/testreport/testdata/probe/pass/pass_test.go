package pass

import "testing"

func TestQuiet(t *testing.T) { t.Log("only -v shows this") }

func TestParallel(t *testing.T) {
	t.Parallel()
	t.Run("one", func(t *testing.T) { t.Parallel() })
	t.Run("two", func(t *testing.T) { t.Parallel() })
}

func TestSkipped(t *testing.T) { t.Skip("not here") }
