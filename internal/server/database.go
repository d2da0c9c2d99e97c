package server

import (
	"context"
	"fmt"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
)

// openMeta opens the metadata store in the database cfg names: the
// embedded SQLite file under the data directory, or PostgreSQL, which
// several nodes may share (identities and the audit log live beside it).
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
	return md, nil
}
