package migrate

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/sqldb"
)

// Bounds of one multi-row INSERT: rows, placeholders (SQLite allows 32766)
// and bytes held (a manifest may be megabytes).
const (
	batchRows   = 500
	batchParams = 30000
	batchBytes  = 8 << 20
)

// copyMetadata copies every planned table in one transaction on the
// target, sets the target's id sequences past what the source handed
// out, and marks the run complete in the same transaction: the target
// holds either all of the metadata or none.
func copyMetadata(ctx context.Context, src *source, db *sqldb.DB, plan []planned, floors map[string]int64, srcID string, rep *Report) error {
	// One snapshot of the source throughout (it is stopped, but a
	// PostgreSQL source could still have a stray writer).
	stx, err := src.db.BeginTx(ctx, src.d.SnapshotTx())
	if err != nil {
		return fmt.Errorf("read the source: %w", err)
	}
	defer stx.Rollback()
	return db.InTx(ctx, func(tx *sqldb.Tx) error {
		// The target is empty but for rows its migrations insert; those go,
		// children before parents.
		for i := len(plan) - 1; i >= 0; i-- {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+quote(plan[i].dst.name)); err != nil {
				return fmt.Errorf("table %s: empty it: %w", plan[i].dst.name, err)
			}
		}
		for _, p := range plan {
			n, err := copyTable(ctx, stx, tx, p)
			if err != nil {
				return fmt.Errorf("table %s: %w", p.src.name, err)
			}
			var want, got int64
			if err := stx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quote(p.src.name)).Scan(&want); err != nil {
				return fmt.Errorf("table %s: count the source's rows: %w", p.src.name, err)
			}
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quote(p.dst.name)).Scan(&got); err != nil {
				return fmt.Errorf("table %s: count the target's rows: %w", p.dst.name, err)
			}
			if got != want || n != want {
				return fmt.Errorf("table %s: the source has %d rows, %d were copied and the target has %d", p.src.name, want, n, got)
			}
			rep.Rows[p.src.name] = n
			if err := setSequence(ctx, tx, p.dst, floors[p.src.name]); err != nil {
				return fmt.Errorf("table %s: %w", p.dst.name, err)
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE `+progressTable+` SET completed_at = ? WHERE source = ?`, time.Now().UnixMilli(), srcID)
		return err
	})
}

// copyTable copies every row of p's source table into the target's, in
// multi-row INSERTs, and returns the number copied.
func copyTable(ctx context.Context, stx queryer, tx *sqldb.Tx, p planned) (int64, error) {
	names := make([]string, len(p.cols))
	for i, c := range p.cols {
		names[i] = quote(c.name)
	}
	list := strings.Join(names, ", ")
	rows, err := stx.QueryContext(ctx, `SELECT `+list+` FROM `+quote(p.src.name))
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	defer rows.Close()
	head := `INSERT INTO ` + quote(p.dst.name) + ` (` + list + `)`
	if tx.Dialect().Engine() == sqldb.Postgres && hasIdentity(p.dst) {
		// Identity columns are GENERATED ALWAYS: the copied ids are kept.
		head += ` OVERRIDING SYSTEM VALUE`
	}
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(p.cols)), ", ") + ")"
	perBatch := max(1, min(batchRows, batchParams/len(p.cols)))
	var args []any
	var rowsInBatch, size int
	var n int64
	flush := func() error {
		if rowsInBatch == 0 {
			return nil
		}
		q := head + " VALUES " + strings.TrimSuffix(strings.Repeat(one+", ", rowsInBatch), ", ")
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		args, rowsInBatch, size = args[:0], 0, 0
		return nil
	}
	vals := make([]any, len(p.cols))
	ptrs := make([]any, len(p.cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("read: %w", err)
		}
		for i, v := range vals {
			c, err := convert(v, p.cols[i].kind)
			if err != nil {
				return n, fmt.Errorf("column %s: %w", p.cols[i].name, err)
			}
			switch x := c.(type) {
			case []byte:
				size += len(x)
			case string:
				size += len(x)
			}
			args = append(args, c)
		}
		rowsInBatch++
		n++
		if rowsInBatch >= perBatch || size >= batchBytes {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read: %w", err)
	}
	return n, flush()
}

func hasIdentity(t *table) bool {
	for _, c := range t.cols {
		if c.identity {
			return true
		}
	}
	return false
}

// setSequence makes the target hand out ids past the copied ones and past
// floor, the highest the source ever handed out: PostgreSQL's identity
// sequences do not move when ids are inserted, and SQLite's AUTOINCREMENT
// counter only follows the largest id inserted.
func setSequence(ctx context.Context, tx *sqldb.Tx, t *table, floor int64) error {
	if tx.Dialect().Engine() == sqldb.Postgres {
		for _, c := range t.cols {
			if !c.identity {
				continue
			}
			var top int64
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(`+quote(c.name)+`), 0) FROM `+quote(t.name)).Scan(&top); err != nil {
				return fmt.Errorf("read the largest %s: %w", c.name, err)
			}
			if v := max(top, floor); v > 0 {
				if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence(?, ?), ?, true)`, quote(t.name), c.name, v); err != nil {
					return fmt.Errorf("set the sequence of %s: %w", c.name, err)
				}
			}
		}
		return nil
	}
	if !t.autoincrement || floor <= 0 {
		return nil
	}
	res, err := tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = ? WHERE name = ? AND seq < ?`, floor, t.name, floor)
	if err != nil {
		return fmt.Errorf("set the id counter: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var rows int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_sequence WHERE name = ?`, t.name).Scan(&rows); err != nil {
		return fmt.Errorf("read the id counter: %w", err)
	}
	if rows == 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)`, t.name, floor); err != nil {
			return fmt.Errorf("set the id counter: %w", err)
		}
	}
	return nil
}
