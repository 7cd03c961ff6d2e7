package dashboard

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
)

const (
	// CookieName is the session cookie.
	CookieName = "mayfly_session"
	// CSRFHeader carries the session's check value on every change.
	CSRFHeader = "X-Mayfly-CSRF"
	// SessionAge is how long a browser keeps the cookie. The token in it
	// lives as long as the token does; this bounds only how long a
	// browser left signed in stays so.
	SessionAge = 12 * time.Hour
)

// Auth is what sessions need of the service.
type Auth interface {
	Authenticate(ctx context.Context, secret string) (store.Token, error)
	Authorize(ctx context.Context, t store.Token, projectID string) (store.Project, error)
	SessionCheck(secret string) string
}

// Sessions signs browsers in and out and vouches for the requests they
// make with the cookie.
type Sessions struct{ auth Auth }

func NewSessions(auth Auth) *Sessions { return &Sessions{auth: auth} }

// Session is what a signed-in page knows of itself.
type Session struct {
	ProjectID   string `json:"project_id"`
	ProjectName string `json:"project_name"`
	Kind        string `json:"kind"`
	// CSRF goes in the X-Mayfly-CSRF header of every change.
	CSRF string `json:"csrf"`
}

// SignInRequest is the body of POST /dashboard/session.
type SignInRequest struct {
	Token string `json:"token"`
	// ProjectID picks the project an admin token signs in to; a project
	// token's own project is taken when it is empty.
	ProjectID string `json:"project_id"`
}

func refuse(kind error, msg string) error { return &service.Error{Kind: kind, Msg: msg} }

// SignIn checks a token and, if it may use the project, sets the cookie.
// The request must come from a page of this origin, as a JSON body (a
// cross-site form can send neither), so no other site can sign a browser
// in to a project of its choosing.
func (s *Sessions) SignIn(w http.ResponseWriter, r *http.Request, req SignInRequest) (Session, error) {
	if err := sameOrigin(r, true); err != nil {
		return Session{}, err
	}
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), "application/json") {
		return Session{}, refuse(service.ErrInvalid, "Sign in with a JSON body: {\"token\": \"...\"}")
	}
	secret := strings.TrimSpace(req.Token)
	tok, err := s.auth.Authenticate(r.Context(), secret)
	if err != nil {
		return Session{}, err
	}
	projectID := strings.TrimSpace(req.ProjectID)
	switch tok.Kind {
	case store.TokenProject:
		if projectID == "" {
			projectID = tok.ProjectID
		}
	case store.TokenAdmin:
		if projectID == "" {
			return Session{}, refuse(service.ErrInvalid, "An admin token signs in to one project: give its id")
		}
	default:
		return Session{}, refuse(service.ErrForbidden, "Only a project or an admin token can sign in to the dashboard")
	}
	sess, err := s.session(r.Context(), tok, secret, projectID)
	if err != nil {
		return Session{}, err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: projectID + "." + base64.RawURLEncoding.EncodeToString([]byte(secret)),
		Path: "/", MaxAge: int(SessionAge / time.Second), Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return sess, nil
}

func (s *Sessions) session(ctx context.Context, tok store.Token, secret, projectID string) (Session, error) {
	p, err := s.auth.Authorize(ctx, tok, projectID)
	if err != nil {
		return Session{}, err
	}
	return Session{ProjectID: p.ID, ProjectName: p.Name, Kind: string(tok.Kind), CSRF: s.auth.SessionCheck(secret)}, nil
}

// Current answers the session of the cookie: 401 without a valid one.
func (s *Sessions) Current(r *http.Request) (Session, error) {
	projectID, secret, ok := readCookie(r)
	if !ok {
		return Session{}, refuse(service.ErrUnauthorized, "Not signed in")
	}
	if err := sameOrigin(r, false); err != nil {
		return Session{}, err
	}
	tok, err := s.auth.Authenticate(r.Context(), secret)
	if err != nil {
		return Session{}, err
	}
	return s.session(r.Context(), tok, secret, projectID)
}

// SignOut clears the cookie. It is a change like any other: a page of
// another site cannot sign a browser out.
func (s *Sessions) SignOut(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.Token(r); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode})
	return nil
}

// readCookie splits the session cookie into the project and the token.
func readCookie(r *http.Request) (projectID, secret string, ok bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return "", "", false
	}
	projectID, enc, ok := strings.Cut(c.Value, ".")
	if !ok || !id.Valid(projectID) {
		return "", "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(raw) == 0 {
		return "", "", false
	}
	return projectID, string(raw), true
}

// Token returns the token of the request's session cookie ("" without
// one), once the request has shown it comes from a dashboard page: fetch
// metadata that is absent or same-origin, and for anything but GET and
// HEAD an Origin of this host (or Sec-Fetch-Site: same-origin) and the
// session's check value in X-Mayfly-CSRF.
func (s *Sessions) Token(r *http.Request) (string, error) {
	_, secret, ok := readCookie(r)
	if !ok {
		return "", nil
	}
	change := r.Method != http.MethodGet && r.Method != http.MethodHead
	if err := sameOrigin(r, change); err != nil {
		return "", err
	}
	if change {
		got := r.Header.Get(CSRFHeader)
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.auth.SessionCheck(secret))) != 1 {
			return "", refuse(service.ErrForbidden, "Refused: a change made with the dashboard's cookie must carry its "+CSRFHeader+" header")
		}
	}
	return secret, nil
}

// sameOrigin refuses requests that a browser marks as sent by another
// site. For changes it also wants positive proof of the same origin:
// browsers send Origin with every POST, PUT and DELETE, and fetch metadata
// too.
func sameOrigin(r *http.Request, change bool) error {
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" && site != "none" {
		return refuse(service.ErrForbidden, "Refused: a cross-site request (Sec-Fetch-Site: "+site+") cannot use the dashboard's session")
	}
	if !change {
		return nil
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		if site == "same-origin" {
			return nil
		}
		return refuse(service.ErrForbidden, "Refused: a change made with the dashboard's session must come from its own page (no Origin)")
	}
	u, err := url.Parse(origin)
	if err != nil || !strings.EqualFold(u.Host, r.Host) {
		return refuse(service.ErrForbidden, "Refused: a change made with the dashboard's session must come from its own page (Origin "+origin+")")
	}
	return nil
}
