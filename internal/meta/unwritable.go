package meta

import (
	"errors"
	"syscall"

	"github.com/berth-registry/berth/internal/sqldb"
)

// The reasons a database write can fail that no retry fixes until an
// operator acts.
var (
	ErrNoSpace  = errors.New("the database's storage is full")
	ErrReadOnly = errors.New("the database's storage is read-only")
)

// SQLite's primary result codes for a full disk ("database or disk is
// full") and a read-only database; the driver reports these instead of the
// system's error numbers.
const (
	sqliteReadOnly = 8
	sqliteFull     = 13
)

// Unwritable returns ErrNoSpace when err says the database's disk is full
// (SQLITE_FULL, PostgreSQL's disk_full, or ENOSPC or EDQUOT from the
// system), ErrReadOnly when it is read-only (SQLITE_READONLY, a PostgreSQL
// server in recovery or read-only, EROFS), and nil for any other error.
func Unwritable(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case sqldb.IsDiskFull(err):
		return ErrNoSpace
	case sqldb.IsReadOnly(err):
		return ErrReadOnly
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		switch coded.Code() & 0xff { // extended codes keep the primary code in the low byte
		case sqliteFull:
			return ErrNoSpace
		case sqliteReadOnly:
			return ErrReadOnly
		}
	}
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrNoSpace
	case errors.Is(err, syscall.EROFS):
		return ErrReadOnly
	}
	return nil
}
