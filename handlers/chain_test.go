package handlers_test

import (
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// The chain's table and the functions' bindings say the same thing.
func TestChainTableMatchesFunctionBindings(t *testing.T) {
	fns, err := functionapp.LoadFunctions(os.DirFS(".."), "functions")
	require.NoError(t, err)
	byName := map[string]functionapp.FunctionConfig{}
	for _, fc := range fns {
		byName[fc.Name] = fc
		trig := fc.Trigger()
		if trig.Type != "serviceBusTrigger" {
			continue
		}
		step, ok := topology.StepOf(fc.Name)
		if assert.True(t, ok, "%s reads a queue but is not in topology.Chain", fc.Name) {
			assert.Equal(t, trig.QueueName, step.Reads, "%s: the queue its binding reads", fc.Name)
		}
	}
	for _, s := range topology.Chain {
		fc, ok := byName[s.Function]
		if !assert.True(t, ok, "topology.Chain names %s, which has no function.json", s.Function) {
			continue
		}
		if s.Reads == "" {
			assert.Equal(t, "httpTrigger", fc.Trigger().Type, "%s reads no queue, so it is an HTTP function", s.Function)
		}
		for _, q := range s.Emits {
			assert.Contains(t, topology.Queues, q, "%s emits to an undeclared queue", s.Function)
		}
	}
}

// Every runtime's start-up check holds the bindings to the chain: a
// function.json whose trigger reads another queue than the table says is
// refused before anything is served.
func TestRegistryRefusesABindingTheChainDoesNotSay(t *testing.T) {
	fns, err := functionapp.LoadFunctions(os.DirFS(".."), "functions")
	require.NoError(t, err)
	reg := handlers.New(handlers.Deps{}).Registry()
	require.NoError(t, reg.Check(fns))
	for i, fc := range fns {
		if fc.Name != "ScheduleDrone" {
			continue
		}
		bindings := slices.Clone(fc.Bindings)
		for j := range bindings {
			if bindings[j].Type == "serviceBusTrigger" {
				bindings[j].QueueName = topology.QueuePackageUpdated
			}
		}
		fns[i].Bindings = bindings
	}
	err = reg.Check(fns)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ScheduleDrone")
	assert.Contains(t, err.Error(), topology.QueueDeliveryRequests)
}
