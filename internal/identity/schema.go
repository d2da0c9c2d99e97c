package identity

import (
	"context"
	"errors"
	"strings"

	"github.com/berth-registry/berth/internal/sqldb"
)

// Migrate brings the identity tables in db up to date (Open does it). On
// SQLite it follows the metadata store's migrations, which created the
// tables before components kept their own schema versions.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	if err := db.Migrate(ctx, "identity", migrations(db.Engine())); err != nil {
		return err
	}
	if err := db.Migrate(ctx, AssignmentsComponent, assignmentsMigrations[db.Engine()]); err != nil {
		return err
	}
	return migrateFederation(ctx, db)
}

// SchemaVersion is the version of the identity schema on engine e.
func SchemaVersion(e sqldb.Engine) int { return len(migrations(e)) }

func migrations(e sqldb.Engine) []string {
	if e == sqldb.Postgres {
		return postgresMigrations
	}
	return sqliteMigrations
}

// The rules the database enforces itself, so that two nodes changing
// identities at once cannot break them between them: names are unique
// without regard to case, the last enabled owner stays, and a scope map
// that tokens use is not deleted. Their triggers fail with these messages,
// which dbRule turns into the errors the faces show.
const (
	ruleLastOwner = "berth: the last enabled owner"
	ruleInUse     = "berth: scope map in use"
)

// principalNamesTable is where users and tokens share one login namespace:
// a docker login names exactly one of them, so no two may have names that
// differ only in case. Its primary key settles two nodes creating a user
// and a token of one name at once; the triggers on users and tokens keep
// it, so that no way of writing them can skip it. (The admin user's name
// comes from the configuration, which every node shares, and is checked
// against it.)
const principalNamesTable = `CREATE TABLE principal_names (
		name_lower TEXT PRIMARY KEY,
		kind TEXT NOT NULL,
		name TEXT NOT NULL
	);`

// ruleSharedName is the message of a migration refusing a database whose
// users and tokens already share names, and what the operator does about it.
const ruleSharedName = "berth: a user and a token have the same name (names are case-insensitive, and a docker login must name exactly one of them): " +
	"delete or recreate one of each pair under another name with the version of berth that wrote the database, then start this one again; " +
	"find them with SELECT lower(name) FROM users INTERSECT SELECT lower(name) FROM tokens"

// fillPrincipalNames fills principal_names from the users and tokens there
// are, after check has refused names the two share.
func fillPrincipalNames(check string) string {
	return check + `
	INSERT INTO principal_names(name_lower, kind, name) SELECT lower(name), 'user', name FROM users;
	INSERT INTO principal_names(name_lower, kind, name) SELECT lower(name), 'token', name FROM tokens;`
}

// sqliteMigrations start from the tables as the metadata store's
// migrations left them, or create them where those did not run.
var sqliteMigrations = []string{
	`CREATE TABLE IF NOT EXISTS scope_maps (
		name TEXT PRIMARY KEY,
		description TEXT NOT NULL DEFAULT '',
		actions TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE IF NOT EXISTS tokens (
		name TEXT PRIMARY KEY,
		scope_map TEXT NOT NULL,
		enabled INTEGER NOT NULL,
		generation INTEGER NOT NULL DEFAULT 1,
		created_at INTEGER NOT NULL,
		last_used INTEGER
	);
	CREATE TABLE IF NOT EXISTS users (
		name TEXT PRIMARY KEY,
		role TEXT NOT NULL,
		password_hash TEXT NOT NULL,
		enabled INTEGER NOT NULL,
		generation INTEGER NOT NULL DEFAULT 1,
		created_at INTEGER NOT NULL,
		last_used INTEGER
	);
	CREATE TABLE IF NOT EXISTS passwords (
		owner_kind TEXT NOT NULL,
		owner TEXT NOT NULL,
		slot TEXT NOT NULL,
		hash TEXT NOT NULL,
		serial INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER,
		last_used INTEGER,
		PRIMARY KEY (owner_kind, owner, slot)
	);
	CREATE TABLE IF NOT EXISTS settings (
		key TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE UNIQUE INDEX scope_maps_name_ci ON scope_maps(lower(name));
	CREATE UNIQUE INDEX tokens_name_ci ON tokens(lower(name));
	CREATE UNIQUE INDEX users_name_ci ON users(lower(name));
	CREATE TRIGGER users_last_owner_update BEFORE UPDATE OF role, enabled ON users
	WHEN OLD.role = 'owner' AND OLD.enabled AND NOT (NEW.role = 'owner' AND NEW.enabled)
		AND NOT EXISTS (SELECT 1 FROM users WHERE role = 'owner' AND enabled AND name <> OLD.name)
	BEGIN SELECT RAISE(ABORT, '` + ruleLastOwner + `'); END;
	CREATE TRIGGER users_last_owner_delete BEFORE DELETE ON users
	WHEN OLD.role = 'owner' AND OLD.enabled
		AND NOT EXISTS (SELECT 1 FROM users WHERE role = 'owner' AND enabled AND name <> OLD.name)
	BEGIN SELECT RAISE(ABORT, '` + ruleLastOwner + `'); END;
	CREATE TRIGGER scope_maps_in_use BEFORE DELETE ON scope_maps
	WHEN EXISTS (SELECT 1 FROM tokens WHERE scope_map = OLD.name)
	BEGIN SELECT RAISE(ABORT, '` + ruleInUse + `'); END;
	CREATE TABLE identity_state (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		version INTEGER NOT NULL
	);
	INSERT INTO identity_state(id, version) VALUES (1, 0);`,
	signingKeysTable("INTEGER"),
	portalSessionsTables("INTEGER"),
	loginLimitTables("INTEGER"),
	changesTable("INTEGER"),
	principalNamesTable + `
	CREATE TRIGGER users_principal_insert AFTER INSERT ON users
	BEGIN INSERT INTO principal_names(name_lower, kind, name) VALUES (lower(NEW.name), 'user', NEW.name); END;
	CREATE TRIGGER users_principal_rename AFTER UPDATE OF name ON users
	BEGIN UPDATE principal_names SET name_lower = lower(NEW.name), name = NEW.name WHERE name_lower = lower(OLD.name) AND kind = 'user'; END;
	CREATE TRIGGER users_principal_delete AFTER DELETE ON users
	BEGIN DELETE FROM principal_names WHERE name_lower = lower(OLD.name) AND kind = 'user'; END;
	CREATE TRIGGER tokens_principal_insert AFTER INSERT ON tokens
	BEGIN INSERT INTO principal_names(name_lower, kind, name) VALUES (lower(NEW.name), 'token', NEW.name); END;
	CREATE TRIGGER tokens_principal_rename AFTER UPDATE OF name ON tokens
	BEGIN UPDATE principal_names SET name_lower = lower(NEW.name), name = NEW.name WHERE name_lower = lower(OLD.name) AND kind = 'token'; END;
	CREATE TRIGGER tokens_principal_delete AFTER DELETE ON tokens
	BEGIN DELETE FROM principal_names WHERE name_lower = lower(OLD.name) AND kind = 'token'; END;` +
		// SQLite raises only in triggers: a temporary one refuses the
		// first shared name as the table fills.
		fillPrincipalNames(`
	CREATE TEMP TRIGGER principal_names_fill BEFORE INSERT ON main.principal_names
	WHEN EXISTS (SELECT 1 FROM main.principal_names WHERE name_lower = NEW.name_lower)
	BEGIN SELECT RAISE(ABORT, '`+ruleSharedName+`'); END;`) + `
	DROP TRIGGER temp.principal_names_fill;`,
	sqliteKeepOverwrite,
}

// keepOverwrite: content/overwrite (moving an existing tag) became an
// action of its own, off unless granted. A scope map written before it
// existed let its content/write rules move tags, and an upgrade must not
// take that away (a CI job pushing latest would start failing): each such
// rule gains content/overwrite on the same pattern. Rules with tag patterns
// are as new as the action and are left alone.
const sqliteKeepOverwrite = `UPDATE scope_maps SET actions = (
		SELECT json_group_array(CASE WHEN t IN ('object', 'array') THEN json(v) ELSE v END) FROM (
			SELECT key AS k, type AS t, value AS v FROM json_each(scope_maps.actions)
			UNION ALL
			SELECT 1000000 + key, 'text', substr(value, 1, length(value) - length('content/write')) || 'content/overwrite'
			FROM json_each(scope_maps.actions) AS w
			WHERE w.type = 'text' AND w.value LIKE '%/content/write'
				AND NOT EXISTS (SELECT 1 FROM json_each(scope_maps.actions) AS o WHERE o.type = 'text'
					AND o.value = substr(w.value, 1, length(w.value) - length('content/write')) || 'content/overwrite')
			ORDER BY k))
	WHERE EXISTS (SELECT 1 FROM json_each(scope_maps.actions) WHERE type = 'text' AND value LIKE '%/content/write');`

// postgresKeepOverwrite is sqliteKeepOverwrite on PostgreSQL.
const postgresKeepOverwrite = `UPDATE scope_maps SET actions = (
		SELECT jsonb_agg(e ORDER BY k)::text FROM (
			SELECT k, e FROM jsonb_array_elements(scope_maps.actions::jsonb) WITH ORDINALITY AS a(e, k)
			UNION ALL
			SELECT 1000000 + k, to_jsonb(left(e #>> '{}', -length('content/write')) || 'content/overwrite')
			FROM jsonb_array_elements(scope_maps.actions::jsonb) WITH ORDINALITY AS w(e, k)
			WHERE jsonb_typeof(e) = 'string' AND e #>> '{}' LIKE '%/content/write'
				AND NOT scope_maps.actions::jsonb @> jsonb_build_array(left(e #>> '{}', -length('content/write')) || 'content/overwrite')
		) AS rules)
	WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(scope_maps.actions::jsonb) AS e
		WHERE jsonb_typeof(e) = 'string' AND e #>> '{}' LIKE '%/content/write');`

// changesTable records what each identity version touched, so that other
// nodes reload only that.
func changesTable(bigint string) string {
	return `CREATE TABLE identity_changes (
		version ` + bigint + ` PRIMARY KEY,
		detail TEXT NOT NULL
	);`
}

// loginLimitTables hold the login limiter's counts where several nodes
// share them (see LimiterStore).
func loginLimitTables(bigint string) string {
	return `CREATE TABLE login_failures (
		key TEXT PRIMARY KEY,
		failures INTEGER NOT NULL,
		last_at ` + bigint + ` NOT NULL,
		until_at ` + bigint + ` NOT NULL
	);
	CREATE INDEX login_failures_last ON login_failures(last_at);
	CREATE TABLE login_known (
		key TEXT PRIMARY KEY,
		last_at ` + bigint + ` NOT NULL
	);`
}

// portalSessionsTables hold the portal's sessions where several nodes
// serve it (package ui keeps them in memory on a single node): by the
// SHA-256 of the session id, never the id itself, with the one-time form
// nonces each session has used.
func portalSessionsTables(bigint string) string {
	return `CREATE TABLE portal_sessions (
		id_hash TEXT PRIMARY KEY,
		user_name TEXT NOT NULL,
		generation ` + bigint + ` NOT NULL,
		csrf TEXT NOT NULL,
		created_at ` + bigint + ` NOT NULL,
		last_seen ` + bigint + ` NOT NULL,
		flash_kind TEXT NOT NULL DEFAULT '',
		flash_msg TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX portal_sessions_user ON portal_sessions(user_name, last_seen);
	CREATE INDEX portal_sessions_seen ON portal_sessions(last_seen);
	CREATE TABLE portal_nonces (
		id_hash TEXT NOT NULL,
		nonce TEXT NOT NULL,
		used_at ` + bigint + ` NOT NULL,
		PRIMARY KEY (id_hash, nonce)
	);`
}

// signingKeysTable holds the keys that sign and verify tokens, by key id
// (the JWT header's kid). Open moves the one key older databases kept in
// settings here.
func signingKeysTable(bigint string) string {
	return `CREATE TABLE signing_keys (
		kid TEXT PRIMARY KEY,
		private_key TEXT NOT NULL,
		created_at ` + bigint + ` NOT NULL,
		active_from ` + bigint + ` NOT NULL
	);`
}

// postgresMigrations create the schema as SQLite's is at version 1. The
// last-owner check takes a lock first, so that two transactions demoting
// two different owners take turns, and the second sees the first's
// change (each statement of a trigger function in READ COMMITTED sees
// what committed before it began).
var postgresMigrations = []string{
	`CREATE TABLE scope_maps (
		name TEXT COLLATE "C" PRIMARY KEY,
		description TEXT NOT NULL DEFAULT '',
		actions TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE tokens (
		name TEXT COLLATE "C" PRIMARY KEY,
		scope_map TEXT COLLATE "C" NOT NULL,
		enabled BOOLEAN NOT NULL,
		generation BIGINT NOT NULL DEFAULT 1,
		created_at BIGINT NOT NULL,
		last_used BIGINT
	);
	CREATE INDEX tokens_scope_map ON tokens(scope_map);
	CREATE TABLE users (
		name TEXT COLLATE "C" PRIMARY KEY,
		role TEXT NOT NULL,
		password_hash TEXT NOT NULL,
		enabled BOOLEAN NOT NULL,
		generation BIGINT NOT NULL DEFAULT 1,
		created_at BIGINT NOT NULL,
		last_used BIGINT
	);
	CREATE TABLE passwords (
		owner_kind TEXT COLLATE "C" NOT NULL,
		owner TEXT COLLATE "C" NOT NULL,
		slot TEXT COLLATE "C" NOT NULL,
		hash TEXT NOT NULL,
		serial BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT,
		last_used BIGINT,
		PRIMARY KEY (owner_kind, owner, slot)
	);
	CREATE TABLE settings (
		key TEXT COLLATE "C" PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE UNIQUE INDEX scope_maps_name_ci ON scope_maps(lower(name));
	CREATE UNIQUE INDEX tokens_name_ci ON tokens(lower(name));
	CREATE UNIQUE INDEX users_name_ci ON users(lower(name));
	CREATE FUNCTION berth_last_owner() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF OLD.role = 'owner' AND OLD.enabled AND (TG_OP = 'DELETE' OR NOT (NEW.role = 'owner' AND NEW.enabled)) THEN
			PERFORM pg_advisory_xact_lock(hashtextextended('berth owners', 0));
			IF NOT EXISTS (SELECT 1 FROM users WHERE role = 'owner' AND enabled AND name <> OLD.name) THEN
				RAISE EXCEPTION '` + ruleLastOwner + `' USING ERRCODE = 'P0001';
			END IF;
		END IF;
		IF TG_OP = 'DELETE' THEN
			RETURN OLD;
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER users_last_owner BEFORE UPDATE OF role, enabled OR DELETE ON users
		FOR EACH ROW EXECUTE FUNCTION berth_last_owner();
	CREATE FUNCTION berth_scope_map_in_use() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT 1 FROM tokens WHERE scope_map = OLD.name) THEN
			RAISE EXCEPTION '` + ruleInUse + `' USING ERRCODE = 'P0001';
		END IF;
		RETURN OLD;
	END $$;
	CREATE TRIGGER scope_maps_in_use BEFORE DELETE ON scope_maps
		FOR EACH ROW EXECUTE FUNCTION berth_scope_map_in_use();
	CREATE TABLE identity_state (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		version BIGINT NOT NULL
	);
	INSERT INTO identity_state(id, version) VALUES (1, 0);
	CREATE TABLE identity_nodes (
		node TEXT COLLATE "C" PRIMARY KEY,
		applied_version BIGINT NOT NULL,
		seen_at BIGINT NOT NULL
	);`,
	signingKeysTable("BIGINT"),
	portalSessionsTables("BIGINT"),
	loginLimitTables("BIGINT"),
	changesTable("BIGINT"),
	strings.Replace(principalNamesTable, "TEXT PRIMARY KEY", `TEXT COLLATE "C" PRIMARY KEY`, 1) + `
	CREATE FUNCTION berth_principal_names() RETURNS trigger LANGUAGE plpgsql AS $$
	DECLARE
		k TEXT := CASE TG_TABLE_NAME WHEN 'users' THEN 'user' ELSE 'token' END;
	BEGIN
		IF TG_OP IN ('UPDATE', 'DELETE') THEN
			DELETE FROM principal_names WHERE name_lower = lower(OLD.name) AND kind = k;
		END IF;
		IF TG_OP IN ('INSERT', 'UPDATE') THEN
			INSERT INTO principal_names(name_lower, kind, name) VALUES (lower(NEW.name), k, NEW.name);
		END IF;
		RETURN NULL;
	END $$;
	CREATE TRIGGER users_principal_names AFTER INSERT OR UPDATE OF name OR DELETE ON users
		FOR EACH ROW EXECUTE FUNCTION berth_principal_names();
	CREATE TRIGGER tokens_principal_names AFTER INSERT OR UPDATE OF name OR DELETE ON tokens
		FOR EACH ROW EXECUTE FUNCTION berth_principal_names();` +
		fillPrincipalNames(`
	DO $$ BEGIN
		IF EXISTS (SELECT lower(name) FROM users INTERSECT SELECT lower(name) FROM tokens) THEN
			RAISE EXCEPTION '`+ruleSharedName+`' USING ERRCODE = 'P0001',
				DETAIL = (SELECT string_agg(n, ', ' ORDER BY n) FROM (SELECT lower(name) AS n FROM users INTERSECT SELECT lower(name) FROM tokens) AS shared);
		END IF;
	END $$;`),
	postgresKeepOverwrite,
}

// dbRule turns the database refusing a change for one of its rules into
// the error the faces show for it; other errors pass unchanged.
func dbRule(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	switch msg := err.Error(); {
	case strings.Contains(msg, ruleLastOwner):
		return errf(ErrForbidden, "this change would leave no enabled owner: make another user owner first")
	case strings.Contains(msg, ruleInUse):
		return errf(ErrInUse, "the scope map is used by tokens: assign them another scope map first, or force the deletion (CLI --force, API ?force=true)")
	case sqldb.IsUniqueViolation(err) && strings.Contains(msg, "principal_names"):
		return errf(ErrConflict, "the name is already a user's or a token's: usernames and token names are docker usernames and must be unique (names are case-insensitive)")
	case sqldb.IsUniqueViolation(err):
		return errf(ErrConflict, "the name is already taken (names are case-insensitive)")
	}
	return err
}
