package meta

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
)

// migrationFixtures insert, into a database at schema version v, rows
// valid at that version: fixtures[i] applies from version i+1 on.
var migrationFixtures = []func(v int) []string{
	// 1: repositories, blob links (no referenced_at before 4), manifests, tags.
	func(v int) []string {
		link := `INSERT INTO repository_blobs(repository_id, digest, size, created_at) VALUES (1, '` + fixtureBlob + `', 42, 1000)`
		if v >= 4 {
			link = `INSERT INTO repository_blobs(repository_id, digest, size, created_at, referenced_at) VALUES (1, '` + fixtureBlob + `', 42, 1000, 5000)`
		}
		return []string{
			`INSERT INTO repositories(id, name, created_at, list_enabled) VALUES (1, 'team/app', 1000, 0)`,
			link,
			`INSERT INTO manifests(repository_id, digest, media_type, artifact_type, subject, size, content, annotations, created_at, write_enabled)
				VALUES (1, '` + fixtureManifest + `', 'application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.config.v1+json', '', 2, x'7b7d', '{"a":"b"}', 2000, 0)`,
			`INSERT INTO tags(repository_id, name, digest, updated_at) VALUES (1, 'v1', '` + fixtureManifest + `', 2000)`,
		}
	},
	// 2: identities and the audit log (their packages read them; here they
	// must only survive).
	func(int) []string {
		return []string{
			`INSERT INTO users(name, role, password_hash, enabled, created_at) VALUES ('owner', 'owner', 'hash', 1, 1000)`,
			`INSERT INTO audit(time, kind, result) VALUES (1000, 'login', 'ok')`,
		}
	},
	// 3: audit records count repeats.
	func(int) []string {
		return []string{`INSERT INTO audit(time, kind, result, count) VALUES (2000, 'login', 'fail', 7)`}
	},
	// 4: referenced_at (covered by 1's link).
	func(int) []string { return nil },
	// 5: manifest summaries (a second manifest, stored with one).
	func(int) []string {
		return []string{`INSERT INTO manifests(repository_id, digest, media_type, size, content, created_at, summary)
			VALUES (1, '` + digest.FromString("second").String() + `', 'application/vnd.oci.image.manifest.v1+json', 3, x'7b7d0a', 3000, '{"size":99}')`}
	},
	// 6: the time of an audit record's last folded event.
	func(int) []string {
		return []string{`INSERT INTO audit(time, kind, result, count, last_time) VALUES (3000, 'login', 'fail', 2, 4000)`}
	},
	// 7: upload sessions.
	func(int) []string {
		return []string{`INSERT INTO uploads(id, repository, owner, state, size, started_at, updated_at) VALUES ('u1', 'team/app', 'owner', x'0102', 5, 1000, 3000)`}
	},
	// 8: claims on upload sessions (1's session is unclaimed).
	func(int) []string { return nil },
	// 9: blob content references.
	func(int) []string {
		return []string{`INSERT INTO blobs(digest, referenced_at) VALUES ('` + fixtureBlob + `', 5000)`}
	},
	// 10: the images whose platforms are to be filled in (those of 1 and 5).
	func(int) []string { return nil },
}

var (
	fixtureBlob     = digest.FromString("layer").String()
	fixtureManifest = digest.FromString("{}").String()
)

// TestMigrationsFromEveryVersion builds a database at each earlier schema
// version with rows valid there, opens it with the current code and reads
// the rows back.
func TestMigrationsFromEveryVersion(t *testing.T) {
	if len(migrationFixtures) != len(sqliteMigrations) {
		t.Fatalf("%d fixtures for %d migrations: add the fixture of the new version", len(migrationFixtures), len(sqliteMigrations))
	}
	ctx := context.Background()
	for k := range len(sqliteMigrations) {
		t.Run(fmt.Sprint("from", k), func(t *testing.T) {
			dir := t.TempDir()
			db, err := sqldb.OpenSQLite(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx, "meta", sqliteMigrations[:k]); err != nil {
				t.Fatal(err)
			}
			for i := range k {
				for _, q := range migrationFixtures[i](k) {
					if _, err := db.W().ExecContext(ctx, q); err != nil {
						t.Fatalf("fixture %d at version %d: %v\n%s", i+1, k, err, q)
					}
				}
			}
			db.Close()

			s, err := OpenSQLite(ctx, dir)
			if err != nil {
				t.Fatalf("open at version %d: %v", k, err)
			}
			defer s.Close()
			if v, err := s.db.Version(ctx, "meta"); err != nil || v != len(sqliteMigrations) {
				t.Fatalf("version %d, %v after open; want %d", v, err, len(sqliteMigrations))
			}
			if k >= 1 {
				checkV1Rows(t, s, k)
			}
			if k >= 2 {
				var users, audits int
				s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&users)
				s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit WHERE count = 1`).Scan(&audits)
				if users != 1 || audits != 1 {
					t.Errorf("%d users, %d audit records with count 1; want 1, 1", users, audits)
				}
			}
			if k >= 5 {
				m, err := s.Manifest(ctx, "team/app", digest.FromString("second").String())
				if err != nil || m.Summary.Size != 99 {
					t.Errorf("manifest stored with a summary: %+v, %v", m.Summary, err)
				}
			}
			if k >= 6 {
				var last int64
				s.r.QueryRowContext(ctx, `SELECT last_time FROM audit WHERE count = 2`).Scan(&last)
				if last != 4000 {
					t.Errorf("audit last_time = %d, want 4000", last)
				}
			}
			if k >= 7 {
				u, err := s.Upload(ctx, "u1")
				if err != nil || u.Size != 5 || string(u.State) != "\x01\x02" || u.Owner != "owner" {
					t.Errorf("upload = %+v, %v", u, err)
				}
			}
			if k >= 7 {
				if _, err := s.ClaimUpload(ctx, "u1", "token", time.Minute); err != nil {
					t.Errorf("claim of a session from before claims: %v", err)
				}
			}
			// Images stored before platforms were recorded are to be filled.
			fills, err := s.PlatformFills(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if k >= 1 {
				want = 1
			}
			if k >= 5 {
				want = 2
			}
			if len(fills) != want {
				t.Errorf("%d images to fill in, want %d", len(fills), want)
			}
			// What the latest migrations added works on a migrated database.
			if err := s.CreateUpload(ctx, Upload{ID: "new", Repository: "team/app", Owner: "owner"}, storage.UploadLimits{}); err != nil {
				t.Errorf("CreateUpload: %v", err)
			}
			if err := s.LinkBlob(ctx, "team/app", digest.FromString("new"), 1); err != nil {
				t.Errorf("LinkBlob: %v", err)
			}
		})
	}
}

func checkV1Rows(t *testing.T, s *Store, k int) {
	t.Helper()
	ctx := context.Background()
	r, err := s.Repository(ctx, "team/app")
	if err != nil || r.Attributes.ListEnabled || !r.Attributes.WriteEnabled || r.CreatedAt.UnixMilli() != 1000 {
		t.Errorf("repository = %+v, %v", r, err)
	}
	m, err := s.Manifest(ctx, "team/app", "v1")
	// Stored before summaries, it has one worked out at open.
	if err != nil || m.Digest.String() != fixtureManifest || string(m.Content) != "{}" || m.Annotations["a"] != "b" || m.Attributes.WriteEnabled || !m.Attributes.DeleteEnabled || m.Summary.Size != 2 {
		t.Errorf("manifest = %+v, %v", m, err)
	}
	if n, err := s.Blob(ctx, "team/app", digest.Digest(fixtureBlob)); err != nil || n != 42 {
		t.Errorf("blob = %d, %v", n, err)
	}
	var ref int64
	if err := s.r.QueryRowContext(ctx, `SELECT referenced_at FROM repository_blobs`).Scan(&ref); err != nil {
		t.Fatal(err)
	}
	// Links from before referenced_at count as referenced when made.
	want := int64(1000)
	if k >= 4 {
		want = 5000
	}
	if ref != want {
		t.Errorf("referenced_at = %d, want %d", ref, want)
	}
}
