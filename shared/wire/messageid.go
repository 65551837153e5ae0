package wire

import "strconv"

// MessageID names a message: its subject (a delivery, a notification or a
// drone), the generation of a rescheduled delivery (0 for none) and the
// step. The bus's duplicate detection and the steps' own idempotency both key
// on it, so the same step of the same subject always gets the same id, and a
// reschedule's messages are never taken for the earlier run's.
func MessageID(subject string, generation int, step string) string {
	if generation > 0 {
		return subject + ":g" + strconv.Itoa(generation) + ":" + step
	}
	return subject + ":" + step
}
