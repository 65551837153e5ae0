package wire

import (
	"encoding/json"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

type pauseWire struct {
	AreaID *string          `json:"areaId"`
	Reason *string          `json:"reason"`
	Until  *json.RawMessage `json:"until"`
}

// ParsePause decodes PUT /api/pauses/{id}: {areaId?, reason, until?}. An
// until, when given, is an RFC 3339 time after now; areaId names a service
// area (the caller checks that it exists).
func ParsePause(id string, body []byte, now time.Time) (*domain.Pause, error) {
	if err := domain.ValidID("id", id); err != nil {
		return nil, err
	}
	var w pauseWire
	if err := DecodeStrict(body, &w); err != nil {
		return nil, err
	}
	p := &domain.Pause{ID: id}
	var err error
	if p.Reason, err = Reason("reason", w.Reason); err != nil {
		return nil, err
	}
	if w.AreaID != nil {
		if err := domain.ValidID("areaId", *w.AreaID); err != nil {
			return nil, err
		}
		p.AreaID = *w.AreaID
	}
	if w.Until != nil && string(*w.Until) != "null" {
		var s string
		if json.Unmarshal(*w.Until, &s) != nil {
			return nil, domain.Invalid("until", "must be an RFC 3339 time")
		}
		t, err := parseRFC3339(s)
		if err != nil {
			return nil, domain.Invalid("until", "must be an RFC 3339 time")
		}
		if !t.After(now) {
			return nil, domain.Unprocessable("until", "must be in the future")
		}
		p.Until = t.UTC()
	}
	return p, nil
}

// PauseView is a pause as the API shows it: the stored pause and, since
// an expired one is kept until the next put removes it, whether it is in
// force.
type PauseView struct {
	*domain.Pause
	State domain.PauseState `json:"state"`
}

// NewPauseView returns the API's view of p at now.
func NewPauseView(p *domain.Pause, now time.Time) PauseView {
	return PauseView{Pause: p, State: p.StateAt(now)}
}
