package netrule

import (
	"context"

	"github.com/berth-registry/berth/internal/sqldb"
)

// Migrate brings the network rule tables in db up to date (component
// "netrule"). The identity tables must exist: a trigger deletes a token's
// allowed addresses with the token, so that a new token of its name does
// not inherit them.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	return db.Migrate(ctx, "netrule", migrations(db.Engine()))
}

// SchemaVersion is the version of the network rule schema on engine e.
func SchemaVersion(e sqldb.Engine) int { return len(migrations(e)) }

func migrations(e sqldb.Engine) []string {
	if e == sqldb.Postgres {
		return postgresMigrations
	}
	return sqliteMigrations
}

// network_settings has at most one row; none means the default action is
// Allow. Rules are stored in their normalised spelling (ParsePrefix).
var sqliteMigrations = []string{
	`CREATE TABLE network_settings (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		default_action TEXT NOT NULL CHECK (default_action IN ('Allow', 'Deny'))
	);
	CREATE TABLE network_rules (
		prefix TEXT PRIMARY KEY,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE token_network_rules (
		token TEXT NOT NULL,
		prefix TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (token, prefix)
	);
	CREATE TRIGGER tokens_network_rules_delete AFTER DELETE ON tokens
	BEGIN DELETE FROM token_network_rules WHERE token = OLD.name; END;`,
}

var postgresMigrations = []string{
	`CREATE TABLE network_settings (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		default_action TEXT NOT NULL CHECK (default_action IN ('Allow', 'Deny'))
	);
	CREATE TABLE network_rules (
		prefix TEXT COLLATE "C" PRIMARY KEY,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE token_network_rules (
		token TEXT COLLATE "C" NOT NULL,
		prefix TEXT COLLATE "C" NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (token, prefix)
	);
	CREATE FUNCTION berth_token_network_rules() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		DELETE FROM token_network_rules WHERE token = OLD.name;
		RETURN OLD;
	END $$;
	CREATE TRIGGER tokens_network_rules_delete AFTER DELETE ON tokens
		FOR EACH ROW EXECUTE FUNCTION berth_token_network_rules();`,
}
