// Package infra holds the Bicep that deploys the function app and the tests
// that keep it, topology.json, function.json and shared/config in agreement.
// Bicep cannot be compiled in our build environment, so these tests read the
// templates as text and are the only guard against drift between them.
package infra
