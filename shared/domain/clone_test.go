package domain_test

import (
	"fmt"
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

// Delivery.Clone is a deep copy: filled to the last pointer and slice, a
// delivery and its clone are equal and share no pointer and no slice's
// array, so a field added later that Clone does not copy fails here.
func TestDeliveryCloneSharesNothing(t *testing.T) {
	t.Parallel()
	d := &domain.Delivery{}
	fillAll(reflect.ValueOf(d).Elem(), 0)
	c := d.Clone()
	assert.Equal(t, d, c)
	var check func(path string, a, b reflect.Value)
	check = func(path string, a, b reflect.Value) {
		switch a.Kind() {
		case reflect.Pointer:
			if assert.False(t, a.IsNil(), "%s was not filled", path) {
				assert.NotEqual(t, a.Pointer(), b.Pointer(), "%s is shared", path)
				check(path, a.Elem(), b.Elem())
			}
		case reflect.Slice:
			if assert.NotZero(t, a.Len(), "%s was not filled", path) {
				assert.NotEqual(t, a.Pointer(), b.Pointer(), "%s shares its array", path)
				for i := range a.Len() {
					check(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i))
				}
			}
		case reflect.Map, reflect.Interface, reflect.Chan, reflect.Func:
			assert.Fail(t, "a field Clone does not know", "%s: a %s", path, a.Kind())
		case reflect.Struct:
			if a.Type() == reflect.TypeOf(time.Time{}) {
				return // a value; its location pointer is shared by design
			}
			for i := range a.NumField() {
				if a.Type().Field(i).IsExported() {
					check(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))
				}
			}
		}
	}
	check("Delivery", reflect.ValueOf(d).Elem(), reflect.ValueOf(c).Elem())

	// Changing the clone leaves the original as it was.
	before := d.Clone()
	*c.DroneAssignedAt = c.DroneAssignedAt.Add(time.Hour)
	*c.PlannedRoute.Pickup.Points[0].Altitude = -1
	c.History[0].Location.Latitude = -1
	c.Trail[0].Latitude = -1
	c.Subscriptions[0].ID = "changed"
	*c.Notifications[0].PickupETA = time.Time{}
	assert.Equal(t, before, d)
	assert.Nil(t, (&domain.Delivery{}).Clone().History, "nil stays nil")
}

// fillAll gives every exported field of v a non-zero value: pointers and
// slices (of one element) are allocated and filled in turn.
func fillAll(v reflect.Value, depth int) {
	if depth > 8 {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillAll(v.Elem(), depth+1)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fillAll(v.Index(0), depth+1)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillAll(v.Field(i), depth+1)
			}
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(1)
	case reflect.Float64, reflect.Float32:
		v.SetFloat(1.5)
	}
}
