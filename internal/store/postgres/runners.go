package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

func (s *Store) RecordRunner(ctx context.Context, r store.Runner) error {
	_, err := s.pool.Exec(ctx,
		`INSERT INTO runners (id, host, clusters, capacity, busy, version, driver, stacks, last_seen)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		 ON CONFLICT (id) DO UPDATE SET host = excluded.host, clusters = excluded.clusters,
			capacity = excluded.capacity, busy = excluded.busy, version = excluded.version,
			driver = excluded.driver, stacks = excluded.stacks,
			last_seen = GREATEST(runners.last_seen, excluded.last_seen)`,
		r.ID, r.Host, jsonList(r.Clusters), r.Capacity, r.Busy, r.Version, r.Driver, jsonList(r.Stacks), micros(r.LastSeen))
	if err != nil {
		return fail(err, "record runner %s", r.ID)
	}
	return nil
}

func (s *Store) TouchRunner(ctx context.Context, runnerID string, seen time.Time) error {
	_, err := s.pool.Exec(ctx,
		`UPDATE runners SET last_seen = GREATEST(last_seen, $1) WHERE id = $2`, micros(seen), runnerID)
	if err != nil {
		return fail(err, "touch runner %s", runnerID)
	}
	return nil
}

func (s *Store) ListRunners(ctx context.Context, since time.Time) ([]store.Runner, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT id, host, clusters, capacity, busy, version, driver, stacks, last_seen
		 FROM runners WHERE last_seen >= $1 ORDER BY id`, micros(since))
	if err != nil {
		return nil, fail(err, "list runners")
	}
	defer rows.Close()
	var out []store.Runner
	for rows.Next() {
		var (
			r                store.Runner
			clusters, stacks string
			seen             int64
		)
		if err := rows.Scan(&r.ID, &r.Host, &clusters, &r.Capacity, &r.Busy, &r.Version, &r.Driver, &stacks, &seen); err != nil {
			return nil, fail(err, "list runners")
		}
		if err := json.Unmarshal([]byte(clusters), &r.Clusters); err != nil {
			return nil, fail(err, "clusters of runner %s", r.ID)
		}
		if err := json.Unmarshal([]byte(stacks), &r.Stacks); err != nil {
			return nil, fail(err, "stacks of runner %s", r.ID)
		}
		r.LastSeen = fromMicros(seen)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err, "list runners")
	}
	return out, nil
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
