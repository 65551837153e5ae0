// Package broken does not compile, on purpose.
package broken

import "testing"

func TestNeverBuilt(t *testing.T) { undefinedOnPurpose() }
