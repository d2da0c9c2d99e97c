package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
)

// ErrDatabaseNotSupported means the configured database engine cannot hold
// every part of berth yet.
var ErrDatabaseNotSupported = errors.New("database engine not supported for every part yet")

// openMeta opens the metadata store in the database cfg names: the
// embedded SQLite file under the data directory, or PostgreSQL.
//
// The metadata store runs on PostgreSQL, but identities (users, tokens,
// scope maps, passwords) and the audit log still keep their tables beside
// it in the embedded database only; serving with a node-local copy of them
// would let each node of a cluster grant different rights. So until they
// move, a PostgreSQL database is opened (checking that it is reachable and
// bringing its schema up to date) and then refused.
func openMeta(ctx context.Context, cfg config.Config) (*meta.Store, error) {
	db, err := sqldb.Open(ctx, cfg.Database, cfg.Data)
	if err != nil {
		return nil, err
	}
	md, err := meta.Open(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", db, err)
	}
	if db.Engine() != sqldb.SQLite {
		md.Close()
		return nil, fmt.Errorf("database %s: the metadata store is ready on %s, but identities (users, tokens, scope maps) and the audit log are not yet: serve with the embedded SQLite database (leave --database unset) until they are: %w",
			db, db.Engine(), ErrDatabaseNotSupported)
	}
	return md, nil
}
