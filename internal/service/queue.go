package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// maxRetryDelay caps exponential backoff: past a day, doubling again only
// postpones a task nobody is waiting for.
const maxRetryDelay = 24 * time.Hour

// retryDelay is how long the n-th retry (1-based) waits.
func retryDelay(rev store.CodeRevision, n int) time.Duration {
	d := time.Duration(rev.RetriesDelay) * time.Second
	if rev.RetriesBackoff == "exponential" && n > 1 {
		for i := 1; i < n && d < maxRetryDelay; i++ {
			d *= 2
		}
	}
	return min(d, maxRetryDelay)
}

// nextTry returns the task that retries t, due after delay, on the code's
// latest revision (a fix uploaded since runs), or its own when the code is
// gone.
func (s *Service) nextTry(ctx context.Context, t store.Task, delay time.Duration, now time.Time) (store.Task, error) {
	revID, rev := t.CodeRevisionID, t.CodeRev
	if c, err := s.store.GetCode(ctx, t.ProjectID, t.CodeID); err == nil {
		revID, rev = c.CodeRevision.ID, c.Rev
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.Task{}, fmt.Errorf("look up code of task %s: %w", t.ID, err)
	}
	return store.Task{
		ID: id.New(), ProjectID: t.ProjectID, CodeID: t.CodeID, CodeName: t.CodeName,
		CodeRevisionID: revID, CodeRev: rev, Status: store.StatusQueued,
		Priority: t.Priority, Payload: t.Payload, Timeout: t.Timeout, Delay: int(delay / time.Second),
		Cluster: t.Cluster, Label: t.Label, RetryOf: t.ID, RetryCount: t.RetryCount + 1,
		ScheduleID: t.ScheduleID, CreatedAt: now, UpdatedAt: now, DueAt: now.Add(delay),
	}, nil
}

// autoRetry returns the retry a finish should insert: only error and
// timeout retry, and only while the code's retries last.
func (s *Service) autoRetry(ctx context.Context, taskID string, status store.Status, now time.Time) (*store.Task, error) {
	if status != store.StatusError && status != store.StatusTimeout {
		return nil, nil
	}
	t, err := s.store.GetTaskByID(ctx, taskID)
	if err != nil {
		return nil, leaseErr(err, taskID)
	}
	rev, err := s.store.GetCodeRevision(ctx, t.CodeRevisionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up code revision of task %s: %w", taskID, err)
	}
	if t.RetryCount >= rev.Retries {
		return nil, nil
	}
	next, err := s.nextTry(ctx, t, retryDelay(rev, t.RetryCount+1), now)
	if err != nil {
		return nil, err
	}
	return &next, nil
}

// RetryTask queues a finished task again by hand, after delay seconds, and
// returns the new task's id.
func (s *Service) RetryTask(ctx context.Context, projectID, taskID string, delay int) (string, error) {
	if delay < 0 {
		return "", errorf(ErrInvalid, "delay must not be negative (got %d)", delay)
	}
	if s.cfg.MaxDelay > 0 && delay > s.cfg.MaxDelay {
		return "", errorf(ErrInvalid, "delay %d s is over the limit of %d s", delay, s.cfg.MaxDelay)
	}
	t, err := s.GetTask(ctx, projectID, taskID)
	if err != nil {
		return "", err
	}
	if !store.Terminal(t.Status) {
		return "", errorf(ErrConflict, "Task is still %s; only a finished task can be retried", t.Status)
	}
	if t.RetryAt != "" {
		return "", errorf(ErrConflict, "Task was already retried as %s", t.RetryAt)
	}
	next, err := s.nextTry(ctx, t, time.Duration(delay)*time.Second, s.now())
	if err != nil {
		return "", err
	}
	if err := s.store.RetryTask(ctx, projectID, taskID, next); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return "", errorf(ErrConflict, "Task was already retried")
		}
		return "", mapStoreErr(err, "Task")
	}
	s.notify()
	return next.ID, nil
}

// SetProgress records a task's progress as reported by the task or a user.
func (s *Service) SetProgress(ctx context.Context, projectID, taskID string, p wire.Progress) error {
	if _, err := s.GetTask(ctx, projectID, taskID); err != nil {
		return err
	}
	if p.Percent == nil {
		return errorf(ErrInvalid, "percent is required (0-100)")
	}
	if *p.Percent < 0 || *p.Percent > 100 {
		return errorf(ErrInvalid, "percent must be between 0 and 100 (got %d)", *p.Percent)
	}
	if len(p.Msg) > 4096 {
		return errorf(ErrInvalid, "msg is limited to 4096 bytes")
	}
	err := s.store.SetProgress(ctx, store.ProgressParams{TaskID: taskID, Percent: *p.Percent, Msg: cleanText(p.Msg), Now: s.now()})
	if errors.Is(err, store.ErrConflict) {
		return errorf(ErrConflict, "Task already ended; progress is no longer recorded")
	}
	return mapStoreErr(err, "Task")
}

// PauseCode stops (paused) or resumes leasing of a code's tasks; queued
// tasks wait meanwhile.
func (s *Service) PauseCode(ctx context.Context, projectID, codeID string, paused bool) error {
	if _, err := s.GetCode(ctx, projectID, codeID); err != nil {
		return err
	}
	if err := s.store.SetCodePaused(ctx, projectID, codeID, paused); err != nil {
		return mapStoreErr(err, "Code")
	}
	action := "code.resume"
	if paused {
		action = "code.pause"
	}
	s.audit(ctx, projectID, action, codeID, "")
	if !paused {
		s.notify()
	}
	return nil
}

// CancelAll cancels every unfinished task of a code.
func (s *Service) CancelAll(ctx context.Context, projectID, codeID string) (int, error) {
	if _, err := s.GetCode(ctx, projectID, codeID); err != nil {
		return 0, err
	}
	n, err := s.store.CancelCodeTasks(ctx, projectID, codeID, s.now())
	if err == nil {
		s.audit(ctx, projectID, "code.cancel_all", codeID, fmt.Sprintf("tasks=%d", n))
	}
	return n, mapStoreErr(err, "Code")
}

// CodeStats counts a code's tasks by status.
func (s *Service) CodeStats(ctx context.Context, projectID, codeID string) (wire.CodeStats, error) {
	if _, err := s.GetCode(ctx, projectID, codeID); err != nil {
		return wire.CodeStats{}, err
	}
	m, err := s.store.CodeStats(ctx, projectID, codeID)
	if err != nil {
		return wire.CodeStats{}, err
	}
	return wire.CodeStats{
		Queued: m[store.StatusQueued], Preparing: m[store.StatusPreparing], Running: m[store.StatusRunning],
		Complete: m[store.StatusComplete], Error: m[store.StatusError], Timeout: m[store.StatusTimeout],
		Killed: m[store.StatusKilled], Cancelled: m[store.StatusCancelled],
	}, nil
}

// Task tokens let a task report its own progress and nothing else:
// "mtt.PROJECT.TASK.EXPIRY.MAC", where MAC is an HMAC of the rest under the
// server's key. Nothing is stored; a token dies with its expiry.
const taskTokenPrefix = "mtt."

// MintTaskToken returns a token for one task, valid for ttl.
func (s *Service) MintTaskToken(projectID, taskID string, ttl time.Duration) string {
	body := projectID + "." + taskID + "." + strconv.FormatInt(s.now().Add(ttl).Unix(), 10)
	return taskTokenPrefix + body + "." + s.tokenMAC(body)
}

func (s *Service) tokenMAC(body string) string {
	m := hmac.New(sha256.New, s.cfg.TaskTokenKey)
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// taskToken checks a task token and returns its project and task.
func (s *Service) taskToken(secret string) (projectID, taskID string, err error) {
	parts := strings.Split(strings.TrimPrefix(secret, taskTokenPrefix), ".")
	if len(parts) != 4 || len(s.cfg.TaskTokenKey) == 0 {
		return "", "", errorf(ErrUnauthorized, "Invalid task token")
	}
	body := strings.Join(parts[:3], ".")
	if !hmac.Equal([]byte(parts[3]), []byte(s.tokenMAC(body))) {
		return "", "", errorf(ErrUnauthorized, "Invalid task token")
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || s.now().Unix() > exp {
		return "", "", errorf(ErrUnauthorized, "Task token expired")
	}
	return parts[0], parts[1], nil
}

// ReportProgress is progress sent by a task with its own token.
func (s *Service) ReportProgress(ctx context.Context, token, taskID string, p wire.Progress) error {
	projectID, tokTask, err := s.taskToken(token)
	if err != nil {
		return err
	}
	if tokTask != taskID {
		return errorf(ErrForbidden, "This task token is for another task")
	}
	return s.SetProgress(ctx, projectID, taskID, p)
}
