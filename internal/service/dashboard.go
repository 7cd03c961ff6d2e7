package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// SessionCheck is the value a browser signed in with secret must send in
// the dashboard's CSRF header with every change it asks for. It is an HMAC
// of the secret under a key derived from the token hash key, so nothing is
// stored for a session, every server sharing the key agrees on it, and it
// reveals nothing of the secret (nor of its stored digest, which is keyed
// differently).
func (s *Service) SessionCheck(secret string) string {
	k := hmac.New(sha256.New, s.cfg.TokenHashKey)
	k.Write([]byte("mayfly dashboard session check"))
	m := hmac.New(sha256.New, k.Sum(nil))
	m.Write([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Overview windows: the last hour in minutes, the last day in quarter
// hours.
var overviewBuckets = map[time.Duration]time.Duration{
	time.Hour:      time.Minute,
	24 * time.Hour: 15 * time.Minute,
}

// Overview counts a project's tasks for the dashboard: what is unfinished
// now, and what ended in the window (an hour or a day), per code and in
// buckets of time with queue waits.
func (s *Service) Overview(ctx context.Context, projectID string, window time.Duration) (store.Overview, store.OverviewParams, error) {
	bucket, ok := overviewBuckets[window]
	if !ok {
		return store.Overview{}, store.OverviewParams{}, errorf(ErrInvalid, "window must be an hour or a day")
	}
	// Buckets start on whole minutes (quarter hours), so the points of two
	// calls a few seconds apart line up.
	p := store.OverviewParams{ProjectID: projectID, Since: s.now().Truncate(bucket).Add(bucket - window), Bucket: bucket}
	o, err := s.store.Overview(ctx, p)
	if err != nil {
		return store.Overview{}, p, fmt.Errorf("overview of project %s: %w", projectID, err)
	}
	return o, p, nil
}
