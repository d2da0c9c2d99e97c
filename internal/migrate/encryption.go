package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/sqldb"
)

// keyTables are the encryption tables the target's keyring reads while
// blobs copy: the KEK versions with their check values, and the wrapped
// data keys. They are copied to the target before the blobs (and again,
// unchanged, with the rest of the metadata).
var keyTables = []string{"encryption_kek", "encryption_data_keys"}

// sourceEncrypted reports whether the source's content is encrypted, and
// refuses an encrypted source without its key, or one with referenced
// blobs that have no data key yet (stored before encryption was turned
// on, and not yet sealed by the encryption of existing content): sealed
// again in the target, their new data keys would not be in the copied
// metadata.
func sourceEncrypted(ctx context.Context, src *source, tables map[string]*table, key string) (bool, error) {
	if _, ok := tables["encryption_kek"]; !ok {
		return false, nil
	}
	var n int
	if err := src.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM encryption_kek`).Scan(&n); err != nil {
		return false, fmt.Errorf("source database %s: read encryption state: %w", src.name, err)
	}
	if n == 0 {
		return false, nil
	}
	if key == "" {
		return false, errors.New("the source registry's content is encrypted: pass --encryption-key with its key (as given to berth serve); the target is encrypted with the same key")
	}
	var bare int
	if err := src.db.QueryRowContext(ctx, `SELECT COUNT(DISTINCT digest) FROM repository_blobs
		WHERE digest NOT IN (SELECT digest FROM encryption_data_keys)`).Scan(&bare); err != nil {
		return false, fmt.Errorf("source database %s: read encryption state: %w", src.name, err)
	}
	if bare > 0 {
		return false, fmt.Errorf("%d blobs of the source were stored before encryption was turned on and are not encrypted yet: start the source with berth serve and its --encryption-key until berth encryption status shows the encryption of existing content done, then migrate", bare)
	}
	return true, nil
}

// targetKeyring copies the source's key tables to the target and opens
// the target's keyring with the key key names, checking it is the
// source's.
func targetKeyring(ctx context.Context, src *source, db *sqldb.DB, plan []planned, key string) (*encryption.Keyring, func(), error) {
	stx, err := src.db.BeginTx(ctx, src.d.SnapshotTx())
	if err != nil {
		return nil, nil, fmt.Errorf("read the source: %w", err)
	}
	defer stx.Rollback()
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		for i := len(keyTables) - 1; i >= 0; i-- {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+quote(keyTables[i])); err != nil {
				return fmt.Errorf("table %s: empty it: %w", keyTables[i], err)
			}
		}
		for _, name := range keyTables {
			i := slicesIndex(plan, name)
			if i < 0 {
				return fmt.Errorf("table %s: not planned", name)
			}
			if _, err := copyTable(ctx, stx, tx, plan[i]); err != nil {
				return fmt.Errorf("table %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("target database %s: copy the data keys: %w", db, err)
	}
	p, err := encryption.ParseKeySpec(key)
	if err != nil {
		return nil, nil, fmt.Errorf("--encryption-key: %w", err)
	}
	keys, err := encryption.OpenKeyring(ctx, db, p, nil)
	if err == nil {
		err = keys.Err()
	}
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("--encryption-key %s is not usable for the source's content: %w", p.ID(), err)
	}
	return keys, func() { p.Close() }, nil
}

func slicesIndex(plan []planned, name string) int {
	for i, p := range plan {
		if p.src.name == name {
			return i
		}
	}
	return -1
}
