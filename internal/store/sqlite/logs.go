package sqlite

import (
	"context"
	"fmt"

	"github.com/mayfly-run/mayfly/internal/store"
)

// A log read takes chunks in batches of at most logBatchRows rows and stops
// a batch once it holds logBatchBytes, so a reader holds about that much at
// a time however long the log, and its read connection goes back to the
// pool between batches instead of waiting on a slow client.
const (
	logBatchRows  = 64
	logBatchBytes = 256 << 10
)

func (s *Store) ReadLog(ctx context.Context, taskID string, afterSeq int64, fn func(chunk []byte) error) (int64, error) {
	last := afterSeq
	for {
		seqs, chunks, more, err := s.logBatch(ctx, taskID, last)
		if err != nil {
			return last, fail(err, "read log of task %s after chunk %d", taskID, last)
		}
		if len(chunks) == 0 && last == 0 {
			return 0, fmt.Errorf("read log of task %s: %w", taskID, store.ErrNotFound)
		}
		for i, c := range chunks {
			if err := fn(c); err != nil {
				return last, fmt.Errorf("read log of task %s: %w", taskID, err)
			}
			last = seqs[i]
			chunks[i] = nil // let the written chunk go before the next is read
		}
		if !more {
			return last, nil
		}
	}
}

// logBatch reads the chunks after seq after; more says whether it stopped
// before the end of the log.
func (s *Store) logBatch(ctx context.Context, taskID string, after int64) (seqs []int64, chunks [][]byte, more bool, err error) {
	rows, err := s.read().QueryContext(ctx,
		`SELECT seq, data FROM task_logs WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
		taskID, after, logBatchRows)
	if err != nil {
		return nil, nil, false, err
	}
	defer rows.Close()
	size := 0
	for rows.Next() {
		var (
			seq  int64
			data []byte
		)
		if err := rows.Scan(&seq, &data); err != nil {
			return nil, nil, false, err
		}
		seqs, chunks = append(seqs, seq), append(chunks, data)
		size += len(data)
		if size >= logBatchBytes {
			return seqs, chunks, true, nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, false, err
	}
	return seqs, chunks, len(chunks) == logBatchRows, nil
}
