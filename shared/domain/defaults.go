package domain

// positiveOr returns v, or def when v is zero or negative: the rule every
// WithDefaults applies to a field left unset.
func positiveOr[T ~int | ~int64 | ~float64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
