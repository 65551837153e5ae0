package embedded

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/fabrikam/dronedelivery/shared/topology"
)

// statements are prepared once at Open: compiling SQL costs more than
// running these statements, and the hot paths run them thousands of times
// a second. Writer statements are prepared on the writer so they run on its
// single connection; reader statements on the read pool.
type statements struct {
	docFind, docInsert, docUpdate          *sql.Stmt
	docCheck                               *sql.Stmt
	droneList, droneListAny, droneLoad     *sql.Stmt
	msgDedupe, msgInsert, msgPrune         *sql.Stmt
	msgPick, msgExpire, msgLock            *sql.Stmt
	msgPickID                              *sql.Stmt
	msgComplete, msgAbandon, msgDeadLetter *sql.Stmt
	msgNext, msgCount, msgReady            *sql.Stmt
	msgBrowse                              *sql.Stmt
	workBegin, workUndo, workEnd           *sql.Stmt // a unit of work's savepoint
	idxPut, idxPage, idxPageStage, idxList *sql.Stmt
	docDelete, zoneBump, zoneList          *sql.Stmt
	aggMark, aggAdd, aggMonth              *sql.Stmt
	pauseList, pauseDeleteIf               *sql.Stmt
	all                                    []*sql.Stmt
}

// dronesWhere names the collection literally so the planner can use the
// partial status index, which a bound parameter would not let it prove
// applicable.
const dronesWhere = "collection = '" + topology.ContainerDrones + "'"

func (s *statements) prepare(ctx context.Context, w, r *sql.DB) error {
	for _, p := range []struct {
		db    *sql.DB
		stmt  **sql.Stmt
		query string
	}{
		{r, &s.docFind, `SELECT version, body FROM documents WHERE collection = ? AND id = ?`},
		{w, &s.docInsert, `INSERT INTO documents (collection, id, version, body, updated_at) VALUES (?, ?, 1, ?, ?)
			ON CONFLICT (collection, id) DO NOTHING`},
		{w, &s.docUpdate, `UPDATE documents SET version = version + 1, body = ?, updated_at = ?
			WHERE collection = ? AND id = ? AND version = ?`},

		// A unit of work's check of a document it read from a cache.
		{w, &s.docCheck, `SELECT version FROM documents WHERE collection = ? AND id = ?`},
		{w, &s.docDelete, `DELETE FROM documents WHERE collection = ? AND id = ?`},
		{w, &s.zoneBump, `INSERT INTO documents (collection, id, version, body, updated_at)
			VALUES ('` + topology.ContainerAirspace + `', '` + zoneVersionID + `', 1, '{}', ?1)
			ON CONFLICT (collection, id) DO UPDATE SET version = version + 1, updated_at = excluded.updated_at`},
		{r, &s.zoneList, `SELECT id, body FROM documents WHERE ` + zonesWhere + ` AND id > ? AND id GLOB ? ORDER BY id LIMIT ?`},
		{r, &s.pauseList, `SELECT id, body FROM documents WHERE collection = '` + topology.ContainerPauses + `' ORDER BY id`},
		// Removes a pause only as it was read: its JSON changes with every
		// put (updatedAt), so a pause put again since is kept.
		{w, &s.pauseDeleteIf, `DELETE FROM documents WHERE collection = '` + topology.ContainerPauses + `' AND id = ? AND body = ?`},

		{r, &s.droneList, `SELECT body FROM documents WHERE ` + dronesWhere + ` AND status = ? AND id > ? ORDER BY id LIMIT ?`},
		{r, &s.droneListAny, `SELECT body FROM documents WHERE ` + dronesWhere + ` AND id > ? ORDER BY id LIMIT ?`},
		{r, &s.droneLoad, `SELECT id, version, body FROM documents WHERE ` + dronesWhere + ` AND status = ?`},

		// A remembered id is taken over once it has expired, so the row
		// count says whether the message is new.
		{w, &s.msgDedupe, `INSERT INTO message_ids (queue, id, expires_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (queue, id) DO UPDATE SET expires_at = excluded.expires_at
			WHERE message_ids.expires_at <= ?4`},
		{w, &s.msgInsert, `INSERT INTO messages (queue, id, body, correlation_id, operation, not_before, enqueued_at, visible_at, trace_parent, trace_state)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{w, &s.msgPrune, `DELETE FROM message_ids WHERE (queue, id) IN
			(SELECT queue, id FROM message_ids WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)`},

		// A locked message's visible_at is its lock expiry, so one index
		// serves fresh, delayed and expired-lock messages alike.
		{w, &s.msgPickID, `SELECT seq FROM messages WHERE queue = ? AND id = ? AND visible_at <= ? ORDER BY seq LIMIT 1`},
		{w, &s.msgPick, `SELECT seq, delivery_count FROM messages
			WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, seq LIMIT ?`},
		{w, &s.msgExpire, `UPDATE messages SET queue = ?1, dl_reason = ?2, dl_description = ?3, visible_at = ?4, lock_token = NULL
			WHERE seq IN (SELECT value FROM json_each(?5))`},
		{w, &s.msgLock, `UPDATE messages
			SET delivery_count = delivery_count + 1, lock_token = lower(hex(randomblob(16))), visible_at = ?1
			WHERE seq IN (SELECT value FROM json_each(?2))
			RETURNING seq, id, body, correlation_id, operation, not_before, enqueued_at, delivery_count, lock_token, dl_reason, dl_description, trace_parent, trace_state`},
		{w, &s.msgComplete, `DELETE FROM messages WHERE seq = ?1 AND queue = ?2 AND lock_token = ?3 AND visible_at > ?4`},
		// An abandon that uses up the last delivery dead-letters at once,
		// as Service Bus does, rather than waiting for the next receive.
		{w, &s.msgAbandon, `UPDATE messages SET lock_token = NULL, visible_at = ?4,
				queue          = CASE WHEN delivery_count >= ?5 THEN ?6 ELSE queue END,
				dl_reason      = CASE WHEN delivery_count >= ?5 THEN ?7 ELSE dl_reason END,
				dl_description = CASE WHEN delivery_count >= ?5 THEN ?8 ELSE dl_description END
			WHERE seq = ?1 AND queue = ?2 AND lock_token = ?3 AND visible_at > ?4
			RETURNING queue`},
		{w, &s.msgDeadLetter, `UPDATE messages SET queue = ?5, dl_reason = ?6, dl_description = ?7, visible_at = ?4, lock_token = NULL
			WHERE seq = ?1 AND queue = ?2 AND lock_token = ?3 AND visible_at > ?4`},
		{w, &s.workBegin, `SAVEPOINT work`},
		{w, &s.workUndo, `ROLLBACK TO work`},
		{w, &s.workEnd, `RELEASE work`},
		// A delivery's stage changes a few times in its life, against
		// many writes; the WHERE leaves the row alone, unwritten, when it
		// did not change.
		{w, &s.idxPut, `INSERT INTO delivery_index (id, owner, created, stage) VALUES (?1, ?2, ?3, ?4)
			ON CONFLICT (owner, created, id) DO UPDATE SET stage = excluded.stage WHERE stage IS NOT excluded.stage`},
		// A listing page: a range of one owner's index rows, newest first,
		// each joined to its document by primary key. CROSS JOIN keeps the
		// index as the outer loop.
		// Analytics: a contribution is added when its marker is new.
		{w, &s.aggMark, `INSERT INTO analytics_applied (delivery, stage) VALUES (?1, ?2) ON CONFLICT DO NOTHING`},
		{w, &s.aggAdd, `INSERT INTO analytics (bucket, month, day, count, completed, cancelled, failed, on_time, duration_ms, traveled_m, assigned_ms)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
			ON CONFLICT (bucket, month, day) DO UPDATE SET
				count = count + excluded.count, completed = completed + excluded.completed,
				cancelled = cancelled + excluded.cancelled, failed = failed + excluded.failed,
				on_time = on_time + excluded.on_time, duration_ms = duration_ms + excluded.duration_ms,
				traveled_m = traveled_m + excluded.traveled_m, assigned_ms = assigned_ms + excluded.assigned_ms`},
		{r, &s.aggMonth, `SELECT day, count, completed, cancelled, failed, on_time, duration_ms, traveled_m, assigned_ms
			FROM analytics WHERE bucket = ? AND month = ?`},
		{r, &s.idxPage, deliveryPageQuery("")},
		{r, &s.idxPageStage, deliveryPageQuery("AND i.stage = ?6")},
		{r, &s.idxList, deliveryListQuery},

		{r, &s.msgNext, `SELECT visible_at FROM messages WHERE queue = ? ORDER BY visible_at LIMIT 1`},
		{r, &s.msgCount, `SELECT count(*) FROM messages WHERE queue = ?`},
		{r, &s.msgBrowse, `SELECT seq, id, body, correlation_id, operation, not_before, enqueued_at, delivery_count,
			dl_reason, dl_description, trace_parent, trace_state FROM messages WHERE queue = ? ORDER BY seq LIMIT ?`},
		// Messages a consumer could receive now: a range of messages_visible.
		{r, &s.msgReady, `SELECT count(*) FROM messages WHERE queue = ? AND visible_at <= ?`},
	} {
		st, err := p.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.stmt = st
		s.all = append(s.all, st)
	}
	return nil
}

// deliveryPageQuery selects a page of an owner's deliveries: ?1 the owner,
// [?2, ?3] the creation times, ?4 when not NULL the id below which rows
// created at ?3 are kept (the position a page starts after), ?5 the most
// rows; extra adds a condition. The position is folded into the upper
// bound by the caller, so the index range starts where the page does
// rather than at the owner's newest delivery.
func deliveryPageQuery(extra string) string {
	return `SELECT i.created, i.id, d.body FROM delivery_index i CROSS JOIN documents d
		ON d.collection = '` + topology.ContainerDeliveries + `' AND d.id = i.id
		WHERE i.owner = ?1 AND i.created >= ?2 AND i.created <= ?3 AND (i.created < ?3 OR ?4 IS NULL OR i.id < ?4) ` + extra + `
		ORDER BY i.created DESC, i.id DESC LIMIT ?5`
}

// deliveryListQuery selects an owner's deliveries oldest first: ?1 the
// owner, [?2, ?3] the creation times, ?4 the most rows.
const deliveryListQuery = `SELECT i.id, d.body FROM delivery_index i CROSS JOIN documents d
	ON d.collection = '` + topology.ContainerDeliveries + `' AND d.id = i.id
	WHERE i.owner = ?1 AND i.created >= ?2 AND i.created <= ?3
	ORDER BY i.created, i.id LIMIT ?4`

func (s *statements) close() {
	for _, st := range s.all {
		st.Close()
	}
}
