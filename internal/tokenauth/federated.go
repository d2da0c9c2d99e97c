package tokenauth

import (
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/federation"
	"github.com/berth-registry/berth/internal/identity"
)

// RFC 8693 (OAuth 2.0 Token Exchange) names.
const (
	GrantTokenExchange    = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeJWT          = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken      = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeAccessToken  = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeRefreshToken = "urn:ietf:params:oauth:token-type:refresh_token"
)

// passwordLogin is the way a password is checked: a JWT presented as the
// password of a token with federated credentials is verified as a
// federated login; a berth refresh token of the same identity is checked
// as one (what `berth credential-provider` hands the kubelet); anything
// else is a password. ok is false for a password.
func (s *Service) passwordLogin(r *http.Request, user, pass string, viaTokenEndpoint bool) (identity.Login, *failure, bool) {
	if !federation.LooksLikeJWT(pass) {
		return identity.Login{}, nil, false
	}
	if c, err := s.id.Verifier().VerifyRefresh(pass); err == nil && c.Subject == user {
		login, f := s.refreshAsPassword(r, c, viaTokenEndpoint)
		return login, f, true
	}
	creds, ok := s.id.FederatedCandidates(user)
	if !ok || len(creds) == 0 {
		return identity.Login{}, nil, false
	}
	login, f := s.federatedLogin(r, user, pass, creds, viaTokenEndpoint)
	return login, f, true
}

// refreshAsPassword logs in with a berth refresh token given as the
// password: it is checked against the identity's current state, as a
// refresh_token grant checks it.
func (s *Service) refreshAsPassword(r *http.Request, c *auth.Claims, viaTokenEndpoint bool) (identity.Login, *failure) {
	start := s.now()
	login, err := s.id.ResolveRefresh(c)
	if errors.Is(err, identity.ErrUnavailable) {
		return identity.Login{}, unavailable(err)
	}
	if err != nil {
		s.observe("refresh", "failure")
		s.recordLogin(r, c.Subject, c.Kind.String(), c.Slot, audit.ResultFailure, "refresh token as password no longer valid: "+err.Error(), start, c.ID)
		return identity.Login{}, &failure{reason: err.Error(), message: "credential no longer valid: " + err.Error()}
	}
	s.observe("refresh", "success")
	login.Identity.Bearer = nil
	if viaTokenEndpoint || s.firstBasicThisMinute(c.Subject, c.Slot, s.urls.ClientIP(r)) {
		s.recordLogin(r, c.Subject, c.Kind.String(), c.Slot, audit.ResultSuccess, "", start, c.ID)
	}
	return login, nil
}

// federatedLogin verifies jwt against creds, the federated credentials of
// one token (user) or, for a token exchange naming no token, of every token
// trusting its issuer. Every refusal is audited with the check that failed;
// the JWT itself is never logged or stored. A JWT cannot be guessed, so
// refusals do not count towards the password limiter; what a stream of
// them can cost is bounded by the verifier (cached keys, bounded fetches).
func (s *Service) federatedLogin(r *http.Request, user, jwt string, creds []federation.Credential, viaTokenEndpoint bool) (identity.Login, *failure) {
	start := s.now()
	kind := auth.KindToken.String()
	res, vf := s.fed.Verify(r.Context(), jwt, creds)
	if vf != nil {
		s.observe("federated", "failure")
		s.recordLogin(r, user, kind, "", audit.ResultFailure, "federated login: "+vf.Error(), start, "")
		return identity.Login{}, &failure{reason: "federated login: " + vf.Error(), message: federatedMessage(vf)}
	}
	// The credentials satisfied, by token then name: one token is meant.
	sort.Slice(res.Matches, func(i, j int) bool {
		a, b := res.Matches[i], res.Matches[j]
		return a.Token < b.Token || a.Token == b.Token && a.Name < b.Name
	})
	var tokens []string
	for _, m := range res.Matches {
		if !slices.Contains(tokens, m.Token) {
			tokens = append(tokens, m.Token)
		}
	}
	if len(tokens) > 1 {
		reason := "federated login: the JWT satisfies federated credentials of several tokens (" + strings.Join(tokens, ", ") + ")"
		s.observe("federated", "failure")
		s.recordLogin(r, user, kind, "", audit.ResultFailure, reason, start, res.ID)
		return identity.Login{}, &failure{reason: reason, message: reason + ": name one with client_id"}
	}
	m := res.Matches[0]
	login, err := s.id.LoginFederated(m, res.Expiry)
	if errors.Is(err, identity.ErrUnavailable) {
		return identity.Login{}, unavailable(err)
	}
	slot := identity.FederatedSlotPrefix + m.Name
	if err != nil {
		reason := err.Error()
		var ae *identity.AuthError
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		s.observe("federated", "failure")
		s.recordLogin(r, m.Token, kind, slot, audit.ResultFailure, "federated login: "+reason, start, res.ID)
		return identity.Login{}, &failure{reason: "federated login: " + reason, message: "federated login refused: " + reason}
	}
	s.observe("federated", "success")
	if viaTokenEndpoint || s.firstBasicThisMinute(m.Token, slot, s.urls.ClientIP(r)) {
		s.recordLogin(r, m.Token, kind, slot, audit.ResultSuccess, "", start, res.ID)
	}
	return login, nil
}

// federatedMessage tells the client which check its JWT failed. The
// details of the times and the JWT's shape are its own; what the
// credentials expect (their subjects, audiences, claims) stays in the
// audit log.
func federatedMessage(f *federation.Failure) string {
	switch f.Check {
	case federation.CheckMalformed, federation.CheckExpired, federation.CheckNotYet, federation.CheckLifetime, federation.CheckAlgorithm:
		return "federated login refused: " + f.Error()
	case federation.CheckKeys:
		return "federated login refused: the issuer's keys are unavailable"
	}
	return "federated login refused: the " + string(f.Check) + " check failed"
}

// tokenExchange serves an RFC 8693 token exchange: a workload's OIDC JWT
// (subject_token) for an access token with the token's scope map, or with
// requested_token_type refresh_token, for a refresh token that lasts as
// long as the JWT (what `berth credential-provider` asks for). client_id
// names the token; without it, the token whose federated credentials the
// JWT satisfies.
func (s *Service) tokenExchange(w http.ResponseWriter, r *http.Request, scopes []auth.Scope) {
	form := r.PostForm
	jwt := strings.TrimSpace(form.Get("subject_token"))
	if jwt == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "subject_token is required: the workload's OIDC token (JWT)", nil)
		return
	}
	switch form.Get("subject_token_type") {
	case TokenTypeJWT, TokenTypeIDToken:
	default:
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "subject_token_type must be "+TokenTypeJWT+" or "+TokenTypeIDToken, nil)
		return
	}
	requested := form.Get("requested_token_type")
	switch requested {
	case "", TokenTypeAccessToken, TokenTypeRefreshToken:
	default:
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "requested_token_type must be "+TokenTypeAccessToken+" or "+TokenTypeRefreshToken, nil)
		return
	}
	if form.Get("actor_token") != "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "actor_token is not supported: berth exchanges the subject's own token only", nil)
		return
	}
	if err := s.id.Current(); err != nil {
		s.loginFailed(w, unavailable(err))
		return
	}
	name := form.Get("client_id")
	var creds []federation.Credential
	if name != "" {
		var ok bool
		if creds, ok = s.id.FederatedCandidates(name); !ok {
			creds = nil
		}
	} else if iss, err := federation.UnverifiedIssuer(jwt); err == nil {
		creds = s.id.FederatedByIssuer(iss)
	}
	if len(creds) == 0 {
		// Verify anyway, against nothing: the refusal names the check
		// (malformed, or an issuer no credential trusts).
		creds = []federation.Credential{}
	}
	login, f := s.federatedLogin(r, name, jwt, creds, true)
	if f != nil {
		s.loginFailed(w, f)
		return
	}
	if requested == TokenTypeRefreshToken {
		if err := s.tokenAddress(r, login.Identity); err != nil {
			writeNetworkError(w, err)
			return
		}
		rt, c, err := s.id.Signer().IssueRefresh(login.Subject)
		if err != nil {
			s.log.Error("issue refresh token", "err", err)
			writeOAuthError(w, http.StatusInternalServerError, "server_error", "could not issue a token", nil)
			return
		}
		resp := tokenResponse{Token: rt, AccessToken: rt, RefreshToken: rt, IssuedTokenType: TokenTypeRefreshToken, TokenType: "N_A",
			ExpiresIn: c.ExpiresAt - c.IssuedAt, IssuedAt: time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339), Username: login.Subject.Name}
		writeToken(w, resp)
		return
	}
	s.issue(w, r, login.Identity, login.Subject, scopes, false, false)
}
