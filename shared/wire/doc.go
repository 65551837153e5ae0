// Package wire turns what arrives over the network into domain values: HTTP
// request bodies (delivery requests, reschedules, sign-ups, drones,
// telemetry, confirmations) and the JSON envelopes of queue messages. Its
// strict decoder refuses invalid UTF-8, unknown and duplicate fields,
// excessive nesting and trailing data, and names the offending field in
// every error, so the domain never sees JSON.
package wire
