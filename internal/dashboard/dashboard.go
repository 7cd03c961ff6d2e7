// Package dashboard is Mayfly's web dashboard: static pages (HTML, CSS and
// JavaScript modules, embedded in the binary, no build step) that call the
// project's own /2/ API from the browser, and the browser session they
// sign in with.
//
// A session is a cookie that holds the project id and the token the user
// signed in with (HttpOnly, Secure, SameSite=Strict, Path=/), so the server
// keeps no session state and revoking the token ends every session made
// with it. The API accepts that cookie in place of the Authorization
// header, but only together with what a cross-site page cannot send: for
// every request, fetch metadata that is absent or same-origin; for every
// change, an Origin of this host (or Sec-Fetch-Site: same-origin) and the
// X-Mayfly-CSRF header carrying the session's check value, an HMAC of the
// token that only a page of this origin can read (GET /dashboard/session).
// Every page is served with a Content-Security-Policy that allows scripts
// of this origin only and no inline script, and the pages put user data
// into the document as text only.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every dashboard response: scripts,
// styles and requests of this origin only, no inline script or style
// attribute, no plugins, no framing, forms post nowhere else.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Pages are the dashboard's paths; each answers the one HTML page, whose
// script draws the page the path names.
var Pages = []string{"/{$}", "/signin", "/codes", "/codes/{id}", "/tasks", "/tasks/{id}", "/schedules", "/runners"}

// SecureHeaders sets the headers every dashboard response carries.
func SecureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// Page answers the dashboard's HTML page.
func Page(w http.ResponseWriter, r *http.Request) {
	SecureHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, static, "static/index.html")
}

// Assets serves the scripts and styles under /assets/.
func Assets() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.StripPrefix("/assets", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SecureHeaders(w.Header())
		// Revalidated every time: the files are small and a new binary
		// must not be met by old scripts.
		w.Header().Set("Cache-Control", "no-cache")
		p := path.Clean("/" + r.URL.Path)
		if p == "/" || p == "/index.html" || strings.HasSuffix(p, "/") {
			http.NotFound(w, r)
			return
		}
		r.URL.Path = p
		files.ServeHTTP(w, r)
	}))
}
