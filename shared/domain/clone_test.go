package domain_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// Drone.Clone shares no pointer with the original, so that a store may
// hand out clones of the copy it keeps (the dispatch index, a unit of
// work) for callers to change.
func TestDroneCloneSharesNoPointer(t *testing.T) {
	t.Parallel()
	alt, at := 10.0, time.Now()
	d := &domain.Drone{Location: domain.Location{Altitude: &alt}, HomeBase: domain.Location{Altitude: &alt}}
	v := reflect.ValueOf(d).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && f.Type().Elem() == reflect.TypeOf(at) {
			f.Set(reflect.ValueOf(&at))
		}
	}
	c := reflect.ValueOf(d.Clone()).Elem()
	var check func(path string, a, b reflect.Value)
	check = func(path string, a, b reflect.Value) {
		switch a.Kind() {
		case reflect.Pointer:
			if !a.IsNil() {
				assert.NotEqual(t, a.Pointer(), b.Pointer(), "%s is shared", path)
			}
		case reflect.Struct:
			for i := range a.NumField() {
				if a.Type().Field(i).IsExported() {
					check(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))
				}
			}
		case reflect.Slice, reflect.Map:
			assert.Fail(t, "a field Clone does not know", "%s: a %s", path, a.Kind())
		}
	}
	check("Drone", v, c)
	assert.Equal(t, d, d.Clone())
}
