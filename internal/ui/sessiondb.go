package ui

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/sqldb"
)

// sharedSessions keeps sessions in the database (table portal_sessions),
// for several nodes behind one load balancer: a session begun on one node
// is good on every other, and ending it (sign-out, a password change)
// ends it everywhere. Rows are keyed by the SHA-256 of the session id.
type sharedSessions struct {
	db  *sqldb.DB
	log *slog.Logger
}

// touchEvery is how stale a session's last_seen may get before a request
// writes it again: idle timeouts are an hour, so minutes do not matter,
// and most requests then write nothing.
const touchEvery = 30 * time.Second

func hashHex(k [32]byte) string { return hex.EncodeToString(k[:]) }

// dbTimeout bounds each session query.
const dbTimeout = 5 * time.Second

func (d *sharedSessions) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), dbTimeout)
}

// unavailable marks a session lookup the database could not answer: the
// page answers 503, never as if the session were gone.
func unavailable(err error) error {
	return fmt.Errorf("%w: portal session: %v", identity.ErrUnavailable, err)
}

func (d *sharedSessions) create(s *sessions, id string, sess *session) error {
	ctx, cancel := d.ctx()
	defer cancel()
	k := hashHex(sessionKey(id))
	return d.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO portal_sessions(id_hash, user_name, generation, csrf, created_at, last_seen) VALUES (?, ?, ?, ?, ?, ?)`,
			k, sess.user, int64(sess.gen), sess.csrf, sess.created.UnixMilli(), sess.lastSeen.UnixMilli()); err != nil {
			return err
		}
		// The user's least recently used sessions beyond the cap end, and
		// expired ones of anyone.
		if _, err := tx.ExecContext(ctx, `DELETE FROM portal_sessions WHERE id_hash IN (SELECT id_hash FROM portal_sessions WHERE user_name = ? ORDER BY last_seen DESC OFFSET ?)`,
			sess.user, maxUserSessions); err != nil {
			return err
		}
		now := s.now()
		if _, err := tx.ExecContext(ctx, `DELETE FROM portal_sessions WHERE last_seen < ? OR created_at < ?`,
			now.Add(-s.idle).UnixMilli(), now.Add(-s.ttl).UnixMilli()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM portal_nonces WHERE used_at < ?`, now.Add(-s.ttl).UnixMilli())
		return err
	})
}

func (d *sharedSessions) get(s *sessions, id string) (*session, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	key := sessionKey(id)
	k := hashHex(key)
	var sess session
	var gen, created, seen int64
	err := d.db.R().QueryRowContext(ctx, `SELECT user_name, generation, csrf, created_at, last_seen, flash_kind, flash_msg FROM portal_sessions WHERE id_hash = ?`, k).
		Scan(&sess.user, &gen, &sess.csrf, &created, &seen, &sess.flash.Kind, &sess.flash.Msg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, http.ErrNoCookie
	}
	if err != nil {
		return nil, unavailable(err)
	}
	sess.key, sess.gen, sess.created, sess.lastSeen = key, uint64(gen), time.UnixMilli(created), time.UnixMilli(seen)
	now := s.now()
	if s.expired(&sess, now) {
		d.delete(key)
		return nil, errSessionExpired
	}
	if now.Sub(sess.lastSeen) >= touchEvery {
		if _, err := d.db.W().ExecContext(ctx, `UPDATE portal_sessions SET last_seen = ? WHERE id_hash = ?`, now.UnixMilli(), k); err != nil {
			d.log.Warn("portal session: record use", "err", err)
		}
		sess.lastSeen = now
	}
	return &sess, nil
}

func (d *sharedSessions) exec(what, q string, args ...any) {
	ctx, cancel := d.ctx()
	defer cancel()
	if _, err := d.db.W().ExecContext(ctx, q, args...); err != nil {
		d.log.Warn("portal session: "+what, "err", err)
	}
}

func (d *sharedSessions) delete(key [32]byte) {
	k := hashHex(key)
	d.exec("end", `DELETE FROM portal_sessions WHERE id_hash = ?`, k)
	d.exec("end", `DELETE FROM portal_nonces WHERE id_hash = ?`, k)
}

func (d *sharedSessions) deleteUser(user string, keep *session) {
	except := ""
	if keep != nil {
		except = hashHex(keep.key)
	}
	d.exec("end the user's sessions", `DELETE FROM portal_sessions WHERE user_name = ? AND id_hash <> ?`, user, except)
}

func (d *sharedSessions) setGeneration(sess *session, gen uint64) {
	d.exec("confirm", `UPDATE portal_sessions SET generation = ? WHERE id_hash = ?`, int64(gen), hashHex(sess.key))
}

func (d *sharedSessions) setFlash(sess *session, f flash) {
	d.exec("flash", `UPDATE portal_sessions SET flash_kind = ?, flash_msg = ? WHERE id_hash = ?`, f.Kind, f.Msg, hashHex(sess.key))
}

// useNonce records nonce as used by sess; only the first use, on any node,
// inserts the row.
func (d *sharedSessions) useNonce(sess *session, nonce string) bool {
	ctx, cancel := d.ctx()
	defer cancel()
	res, err := d.db.W().ExecContext(ctx, `INSERT INTO portal_nonces(id_hash, nonce, used_at) VALUES (?, ?, ?) ON CONFLICT(id_hash, nonce) DO NOTHING`,
		hashHex(sess.key), nonce, time.Now().UnixMilli())
	if err != nil {
		// Refuse: a repeated one-time form must not run twice.
		d.log.Warn("portal session: record form nonce", "err", err)
		return false
	}
	n, err := res.RowsAffected()
	return err == nil && n == 1
}
