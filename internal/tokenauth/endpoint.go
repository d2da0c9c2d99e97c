package tokenauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// tokenResponse is the token endpoint's answer, in the shape of both the
// Docker token spec (token) and OAuth2 (access_token).
type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// TokenType and IssuedTokenType are OAuth2's and RFC 8693's.
	TokenType       string `json:"token_type,omitempty"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	// Username is the token a token exchange logged in as.
	Username string `json:"username,omitempty"`
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	// Errors repeats the message in the registry's error shape, which the
	// docker CLI prints.
	Errors []map[string]string `json:"errors,omitempty"`
}

func writeOAuthError(w http.ResponseWriter, status int, code, msg string, hdr http.Header) {
	for k, v := range hdr {
		w.Header()[k] = v
	}
	regCode := "UNAUTHORIZED"
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		regCode = "UNSUPPORTED"
	case http.StatusTooManyRequests:
		regCode = "TOOMANYREQUESTS"
	case http.StatusForbidden:
		regCode = "DENIED"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(oauthError{Error: code, Description: msg, Errors: []map[string]string{{"code": regCode, "message": msg}}})
}

// maxForm bounds a POST's form: credentials and a few scopes fit many times.
const maxForm = 64 << 10

// ServeHTTP serves GET and POST /oauth2/token.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var (
		login   identity.Login
		f       *failure
		offline bool
	)
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if !s.checkService(w, q.Get("service")) {
			return
		}
		offline = q.Get("offline_token") == "true"
		if !s.registryRules(w, r, auth.ParseScopes(q["scope"]...)) {
			return
		}
		user, pass, ok := r.BasicAuth()
		if !ok {
			if r.Header.Get("Authorization") != "" {
				writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "malformed Basic credentials", nil)
				return
			}
			s.anonymousToken(w, r, auth.ParseScopes(q["scope"]...))
			return
		}
		login, f = s.login(r, user, pass, true)
		if f != nil {
			s.loginFailed(w, f)
			return
		}
		s.issue(w, r, login.Identity, login.Subject, auth.ParseScopes(q["scope"]...), offline, false)
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET or POST", nil)
		return
	}

	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeOAuthError(w, http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("the form is larger than %d KiB", maxForm>>10), nil)
			return
		}
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be an application/x-www-form-urlencoded form", nil)
		return
	}
	if !s.checkService(w, r.PostForm.Get("service")) {
		return
	}
	scopes := auth.ParseScopes(r.PostForm["scope"]...)
	if !s.registryRules(w, r, scopes) {
		return
	}
	offline = r.PostForm.Get("access_type") == "offline"
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "password":
		login, f = s.login(r, r.PostForm.Get("username"), r.PostForm.Get("password"), true)
		if f != nil {
			s.loginFailed(w, f)
			return
		}
		s.issue(w, r, login.Identity, login.Subject, scopes, offline, false)
	case "refresh_token":
		start := s.now()
		claims, err := s.id.Verifier().VerifyRefresh(r.PostForm.Get("refresh_token"))
		if err != nil {
			s.observe("refresh", "failure")
			s.recordLogin(r, "", "", "", audit.ResultFailure, "invalid refresh token: "+err.Error(), start, "")
			writeOAuthError(w, http.StatusUnauthorized, "invalid_grant", "invalid refresh token: log in again", nil)
			return
		}
		login, err := s.id.ResolveRefresh(claims)
		if errors.Is(err, identity.ErrUnavailable) {
			s.observe("refresh", "unavailable")
			s.loginFailed(w, unavailable(err))
			return
		}
		if err != nil {
			s.observe("refresh", "failure")
			s.recordLogin(r, claims.Subject, claims.Kind.String(), claims.Slot, audit.ResultFailure, "refresh token no longer valid: "+err.Error(), start, claims.ID)
			msg := err.Error()
			if !strings.HasSuffix(msg, "disabled") && !strings.HasSuffix(msg, "deleted") {
				msg += ": log in again" // with the current password, that helps
			}
			writeOAuthError(w, http.StatusUnauthorized, "invalid_grant", msg, nil)
			return
		}
		s.observe("refresh", "success")
		login.Identity.Bearer = nil // a refresh token carries no access claim to narrow by
		s.issue(w, r, login.Identity, login.Subject, scopes, false, true)
	case GrantTokenExchange:
		s.tokenExchange(w, r, scopes)
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be password, refresh_token or "+GrantTokenExchange, nil)
	}
}

func (s *Service) checkService(w http.ResponseWriter, service string) bool {
	if service != "" && service != s.id.RegistryName() {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "unknown service "+strconv.Quote(service)+": this registry's service is "+strconv.Quote(s.id.RegistryName()), nil)
		return false
	}
	return true
}

func (s *Service) loginFailed(w http.ResponseWriter, f *failure) {
	if f.unavailable {
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", f.message,
			http.Header{"Retry-After": {strconv.FormatInt(secondsCeil(UnavailableRetryAfter), 10)}})
		return
	}
	if f.retryAfter > 0 {
		writeOAuthError(w, http.StatusTooManyRequests, "slow_down", f.message,
			http.Header{"Retry-After": {strconv.FormatInt(secondsCeil(f.retryAfter), 10)}})
		return
	}
	writeOAuthError(w, http.StatusUnauthorized, "invalid_grant", f.message, nil)
}

// anonymousToken answers a token request without credentials: a token
// granting only what anonymous callers may do, or 401 when that is nothing.
func (s *Service) anonymousToken(w http.ResponseWriter, r *http.Request, scopes []auth.Scope) {
	id := auth.Identity{Kind: auth.KindAnonymous, Policy: s.anon}
	if s.anon == nil {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "authentication required: log in first (docker login)",
			http.Header{"Www-Authenticate": {`Basic realm="` + s.id.RegistryName() + `"`}})
		return
	}
	s.issue(w, r, id, auth.Subject{Kind: auth.KindAnonymous}, scopes, false, false)
}

// issue answers a token request with an access token for scopes and, for
// a login with offline access, the login's refresh token, which lasts as
// long as its password; renew (a refresh_token grant) returns a new refresh
// token instead (see auth.Signer.RenewRefresh).
func (s *Service) issue(w http.ResponseWriter, r *http.Request, id auth.Identity, sub auth.Subject, scopes []auth.Scope, offline, renew bool) {
	// Clients ask for "pull" to list tags (docker, crane, skopeo): reading a
	// repository's content implies asking to read its metadata too. What is
	// granted is still only what the identity is allowed.
	if sub.Kind != auth.KindAnonymous {
		s.recordScopeDenials(r, id, scopes)
	}
	for i := range scopes {
		if scopes[i].Type == auth.ScopeTypeRepository && scopes[i].Actions.Has(auth.ContentRead) {
			scopes[i].Actions |= auth.MetadataRead
		}
	}
	if err := s.tokenAddress(r, id); err != nil {
		writeNetworkError(w, err)
		return
	}
	granted := auth.Intersect(scopes, id)
	tok, claims, err := s.id.Signer().IssueAccess(sub, granted)
	if err != nil {
		s.log.Error("issue access token", "err", err)
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "could not issue a token", nil)
		return
	}
	resp := tokenResponse{Token: tok, AccessToken: tok, ExpiresIn: claims.ExpiresAt - claims.IssuedAt,
		IssuedAt: time.Unix(claims.IssuedAt, 0).UTC().Format(time.RFC3339)}
	if (offline || renew) && sub.Kind != auth.KindAnonymous {
		issueRefresh := s.id.Signer().IssueRefresh
		if renew {
			issueRefresh = s.id.Signer().RenewRefresh
		}
		rt, _, err := issueRefresh(sub)
		if err != nil {
			s.log.Error("issue refresh token", "err", err)
			writeOAuthError(w, http.StatusInternalServerError, "server_error", "could not issue a token", nil)
			return
		}
		resp.RefreshToken = rt
	}
	var sc []string
	for _, a := range granted {
		sc = append(sc, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
	}
	resp.Scope = strings.Join(sc, " ")
	resp.TokenType = "Bearer"
	if r.Method == http.MethodPost && r.PostForm.Get("grant_type") == GrantTokenExchange {
		resp.IssuedTokenType, resp.Username = TokenTypeAccessToken, sub.Name
	}
	writeToken(w, resp)
}

func writeToken(w http.ResponseWriter, resp tokenResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(resp)
}

// recordScopeDenials audits each repository scope of a token request
// that asks for actions the identity lacks: the token is issued without
// them (as the token spec says), and the refused push or pull that
// follows would otherwise leave no trace of why.
func (s *Service) recordScopeDenials(r *http.Request, id auth.Identity, scopes []auth.Scope) {
	for _, sc := range scopes {
		switch sc.Type {
		case auth.ScopeTypeRepository:
			if missing := sc.Actions &^ auth.Allowed(id, sc.Name); missing != auth.NoActions {
				s.recordDenial(r, id, sc.Name, strings.Join(sc.Actions.TokenNames(), ","), missing.String())
			}
		case auth.ScopeTypeRegistry:
			if sc.Name == auth.CatalogName && !auth.CanListCatalog(id) {
				s.recordDenial(r, id, "", "catalog", "")
			}
		}
	}
}
