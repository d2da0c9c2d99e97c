package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/federation"
	"github.com/berth-registry/berth/internal/sqldb"
)

// FederatedSlotPrefix starts the slot of access and refresh tokens issued
// for a federated login: "federated:<credential name>", so that deleting
// the credential revokes them as deleting a password revokes its own.
const FederatedSlotPrefix = "federated:"

// FederatedCredential is a federated credential of a token, as the faces
// show it: a workload whose OIDC token (JWT) has this issuer, a subject
// matching Subject, Audience among its audiences and the claims in Claims
// logs in as the token, without a password.
type FederatedCredential struct {
	Name     string            `json:"name"`
	Issuer   string            `json:"issuer"`
	Subject  string            `json:"subject"`
	Audience string            `json:"audience"`
	Claims   map[string]string `json:"claims,omitempty"`
	// JWKS holds the issuer's public keys for an issuer berth cannot
	// reach (a Kubernetes cluster's service-account issuer); without it,
	// berth fetches them by OIDC discovery.
	JWKS         json.RawMessage `json:"jwks,omitempty"`
	CreationTime time.Time       `json:"creationTime"`
}

// fedCred is a federated credential in memory.
type fedCred struct {
	def    FederatedCredential
	serial uint64
}

func (f *fedCred) credential(token string) federation.Credential {
	return federation.Credential{Token: token, Name: f.def.Name, Issuer: f.def.Issuer, Subject: f.def.Subject,
		Audience: f.def.Audience, Claims: f.def.Claims, JWKS: f.def.JWKS, Serial: f.serial}
}

// FederationComponent is the migration component of the federated
// credentials' table.
const FederationComponent = "federation"

// FederationSchemaVersion is the version of that component on engine e.
func FederationSchemaVersion(e sqldb.Engine) int { return len(federationMigrations[e]) }

var federationMigrations = map[sqldb.Engine][]string{
	sqldb.SQLite: {`CREATE TABLE federated_credentials (
		token TEXT NOT NULL,
		name TEXT NOT NULL,
		issuer TEXT NOT NULL,
		subject TEXT NOT NULL,
		audience TEXT NOT NULL,
		claims TEXT NOT NULL DEFAULT '{}',
		jwks TEXT NOT NULL DEFAULT '',
		serial INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (token, name)
	);`},
	sqldb.Postgres: {`CREATE TABLE federated_credentials (
		token TEXT COLLATE "C" NOT NULL,
		name TEXT COLLATE "C" NOT NULL,
		issuer TEXT NOT NULL,
		subject TEXT NOT NULL,
		audience TEXT NOT NULL,
		claims TEXT NOT NULL DEFAULT '{}',
		jwks TEXT NOT NULL DEFAULT '',
		serial BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (token, name)
	);`},
}

func migrateFederation(ctx context.Context, db *sqldb.DB) error {
	return db.Migrate(ctx, FederationComponent, federationMigrations[db.Engine()])
}

// readFederated reads the federated credentials of st's tokens (of those
// only names).
func (s *Service) readFederated(ctx context.Context, tx *sqldb.Tx, st *state, only *touchSet) (*state, error) {
	if only != nil && len(only.tokens()) == 0 {
		return st, nil
	}
	where, args := only.names("token", only.tokens())
	rows, err := tx.QueryContext(ctx, `SELECT token, name, issuer, subject, audience, claims, jwks, serial, created_at FROM federated_credentials`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load federated credentials: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var token, claims, jwks string
		var created int64
		f := &fedCred{}
		if err := rows.Scan(&token, &f.def.Name, &f.def.Issuer, &f.def.Subject, &f.def.Audience, &claims, &jwks, &f.serial, &created); err != nil {
			return nil, fmt.Errorf("load federated credentials: %w", err)
		}
		if claims != "" && claims != "{}" {
			if err := json.Unmarshal([]byte(claims), &f.def.Claims); err != nil {
				return nil, fmt.Errorf("load federated credential %s of token %s: %w", f.def.Name, token, err)
			}
		}
		if jwks != "" {
			f.def.JWKS = json.RawMessage(jwks)
		}
		f.def.CreationTime = time.UnixMilli(created).UTC()
		if p := st.tokens[token]; p != nil {
			if p.federated == nil {
				p.federated = map[string]*fedCred{}
			}
			p.federated[f.def.Name] = f
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load federated credentials: %w", err)
	}
	return st, nil
}

func federatedViews(p *principal) []FederatedCredential {
	out := make([]FederatedCredential, 0, len(p.federated))
	for _, f := range p.federated {
		out = append(out, f.def)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ListFederatedCredentials returns a token's federated credentials, by name.
func (s *Service) ListFederatedCredentials(actor auth.Identity, token string) ([]FederatedCredential, error) {
	if err := s.authorizeSome(actor, auth.ViewManagement); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.tokens[token]
	if p == nil {
		return nil, errf(ErrNotFound, "token %q not found", token)
	}
	if err := s.checkToken(actor, auth.ViewManagement, p); err != nil {
		return nil, err
	}
	return federatedViews(p), nil
}

// GetFederatedCredential returns one federated credential of a token.
func (s *Service) GetFederatedCredential(actor auth.Identity, token, name string) (FederatedCredential, error) {
	if err := s.authorizeSome(actor, auth.ViewManagement); err != nil {
		return FederatedCredential{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.tokens[token]
	if p == nil {
		return FederatedCredential{}, errf(ErrNotFound, "token %q not found", token)
	}
	if err := s.checkToken(actor, auth.ViewManagement, p); err != nil {
		return FederatedCredential{}, err
	}
	f := p.federated[name]
	if f == nil {
		return FederatedCredential{}, errf(ErrNotFound, "token %q has no federated credential %q", token, name)
	}
	return f.def, nil
}

// CreateFederatedCredential adds a federated credential to a token. An
// empty audience means the registry's name.
func (s *Service) CreateFederatedCredential(ctx context.Context, actor auth.Identity, token string, spec FederatedCredential) (FederatedCredential, error) {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return FederatedCredential{}, err
	}
	if spec.Audience == "" {
		spec.Audience = s.opts.RegistryName
	}
	if len(spec.Claims) == 0 {
		spec.Claims = nil
	}
	if len(spec.JWKS) > 0 {
		// Stored compact, so that the same keys are the same bytes.
		var v any
		if err := json.Unmarshal(spec.JWKS, &v); err != nil {
			return FederatedCredential{}, errf(ErrInvalid, "invalid JWKS: %v", err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return FederatedCredential{}, errf(ErrInvalid, "invalid JWKS: %v", err)
		}
		spec.JWKS = b
	}
	c := federation.Credential{Name: spec.Name, Issuer: spec.Issuer, Subject: spec.Subject, Audience: spec.Audience, Claims: spec.Claims, JWKS: spec.JWKS}
	if err := c.Validate(s.opts.FederationAllowHTTPLoopback); err != nil {
		return FederatedCredential{}, errf(ErrInvalid, "%v", err)
	}
	claims := "{}"
	if spec.Claims != nil {
		b, err := json.Marshal(spec.Claims)
		if err != nil {
			return FederatedCredential{}, err
		}
		claims = string(b)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := s.tokens[token]
	if p == nil {
		return FederatedCredential{}, errf(ErrNotFound, "token %q not found", token)
	}
	if err := s.checkToken(actor, auth.ManageTokens, p); err != nil {
		return FederatedCredential{}, err
	}
	for n := range p.federated {
		if strings.EqualFold(n, spec.Name) {
			return FederatedCredential{}, errf(ErrConflict, "token %q already has a federated credential %q (names are case-insensitive)", token, n)
		}
	}
	if len(p.federated) >= federation.MaxPerToken {
		return FederatedCredential{}, errf(ErrInvalid, "token %q has %d federated credentials, the most a token may have: delete one first", token, len(p.federated))
	}
	spec.CreationTime = s.now().UTC().Truncate(time.Millisecond)
	f := &fedCred{def: spec}
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchTokens(token)
		serial, err := nextSerial(ctx, tx)
		if err != nil {
			return err
		}
		f.serial = serial
		if _, err := tx.ExecContext(ctx, `INSERT INTO federated_credentials(token, name, issuer, subject, audience, claims, jwks, serial, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			token, spec.Name, spec.Issuer, spec.Subject, spec.Audience, claims, string(spec.JWKS), serial, spec.CreationTime.UnixMilli()); err != nil {
			return fmt.Errorf("store federated credential: %w", err)
		}
		desc := fmt.Sprintf("federated credential %s created: issuer %s, subject %s, audience %s", spec.Name, spec.Issuer, spec.Subject, spec.Audience)
		if len(spec.Claims) > 0 {
			desc += ", claims " + strings.Join(federation.FormatClaims(spec.Claims), " ")
		}
		return s.record(ctx, tx, actor, "token "+token, desc)
	})
	if err != nil {
		return FederatedCredential{}, err
	}
	s.apply(func() {
		if p.federated == nil {
			p.federated = map[string]*fedCred{}
		}
		p.federated[spec.Name] = f
	})
	return spec, nil
}

// DeleteFederatedCredential deletes a federated credential of a token; the
// access and refresh tokens issued through it stop working at once.
func (s *Service) DeleteFederatedCredential(ctx context.Context, actor auth.Identity, token, name string) error {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := s.tokens[token]
	if p == nil {
		return errf(ErrNotFound, "token %q not found", token)
	}
	if err := s.checkToken(actor, auth.ManageTokens, p); err != nil {
		return err
	}
	if p.federated[name] == nil {
		return errf(ErrNotFound, "token %q has no federated credential %q", token, name)
	}
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchTokens(token)
		if _, err := tx.ExecContext(ctx, `DELETE FROM federated_credentials WHERE token = ? AND name = ?`, token, name); err != nil {
			return fmt.Errorf("delete federated credential: %w", err)
		}
		return s.record(ctx, tx, actor, "token "+token, "federated credential "+name+" deleted")
	})
	if err != nil {
		return err
	}
	s.apply(func() { delete(p.federated, name) })
	return nil
}

// FederatedCandidates returns the federated credentials a JWT presented
// as the password of token is checked against; exists says whether the
// token exists (a token without any is logged in by password only).
func (s *Service) FederatedCandidates(token string) (creds []federation.Credential, exists bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.tokens[token]
	if p == nil {
		return nil, false
	}
	for _, f := range p.federated {
		creds = append(creds, f.credential(token))
	}
	return creds, true
}

// FederatedByIssuer returns every token's federated credentials that
// trust issuer: those a token exchange that names no token is checked
// against.
func (s *Service) FederatedByIssuer(issuer string) []federation.Credential {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []federation.Credential
	for name, p := range s.tokens {
		for _, f := range p.federated {
			if f.def.Issuer == issuer {
				out = append(out, f.credential(name))
			}
		}
	}
	return out
}

// LoginFederated completes a federated login whose JWT satisfied c (as
// FederatedCandidates returned it): the token as it is now, if it is
// enabled and c is still its credential. Access and refresh tokens issued
// for it name c, and refresh tokens last no longer than the JWT (expiry).
func (s *Service) LoginFederated(c federation.Credential, expiry time.Time) (Login, error) {
	if err := s.feed.current(); err != nil {
		return Login{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.tokens[c.Token]
	if p == nil {
		return Login{}, authErr("token deleted")
	}
	if f := p.federated[c.Name]; f == nil || f.serial != c.Serial {
		return Login{}, authErr("federated credential " + c.Name + " deleted")
	}
	if !p.enabled {
		return Login{}, authErr("token disabled")
	}
	s.markUsed(p, nil)
	id := auth.Identity{Kind: auth.KindToken, Name: p.name}
	if m := s.scopeMaps[p.scopeMap]; m != nil {
		id.Policy = m.policy
	}
	return Login{Identity: id, Subject: auth.Subject{Kind: auth.KindToken, Name: p.name, Slot: FederatedSlotPrefix + c.Name,
		Generation: p.generation, SlotSerial: c.Serial, Expiry: expiry}}, nil
}

// checkFederatedSlot checks that the federated credential an access or
// refresh token names is still p's. Call it with s.mu read-locked.
func checkFederatedSlot(p *principal, name string, serial uint64) error {
	if f := p.federated[name]; f == nil || f.serial != serial {
		return authErr("federated credential " + name + " deleted")
	}
	return nil
}
