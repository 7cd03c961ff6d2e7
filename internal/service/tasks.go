package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// QueueTasks validates and stores a batch of tasks, all or none, and wakes
// waiting runners. It returns the new tasks' ids in request order.
func (s *Service) QueueTasks(ctx context.Context, projectID string, reqs []wire.NewTask) ([]string, error) {
	if len(reqs) == 0 {
		return nil, errorf(ErrInvalid, "No tasks given: send {\"tasks\":[{\"code_name\":...}]}")
	}
	if len(reqs) > s.cfg.MaxTasksPerPost {
		return nil, errorf(ErrTooLarge, "At most %d tasks per request (got %d)", s.cfg.MaxTasksPerPost, len(reqs))
	}
	now := s.now()
	codes := map[string]store.Code{}
	tasks := make([]store.Task, 0, len(reqs))
	for i, r := range reqs {
		t, err := s.newTask(ctx, projectID, r, codes, now)
		if err != nil {
			if len(reqs) > 1 {
				var e *Error
				if errors.As(err, &e) {
					return nil, &Error{Kind: e.Kind, Msg: fmt.Sprintf("Task %d: %s", i, e.Msg)}
				}
			}
			return nil, err
		}
		tasks = append(tasks, t)
	}
	if err := s.checkQueued(ctx, projectID, len(tasks)); err != nil {
		return nil, err
	}
	if err := s.store.InsertTasks(ctx, tasks); err != nil {
		s.forgetUsage(projectID)
		return nil, fmt.Errorf("queue %d tasks: %w", len(tasks), err)
	}
	s.notify()
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.ID
		s.cfg.Metrics.TasksQueued(t.CodeName, 1)
	}
	return ids, nil
}

func (s *Service) newTask(ctx context.Context, projectID string, r wire.NewTask, codes map[string]store.Code, now time.Time) (store.Task, error) {
	if r.CodeName == "" {
		return store.Task{}, errorf(ErrInvalid, "code_name is required")
	}
	code, ok := codes[r.CodeName]
	if !ok {
		c, err := s.store.GetCodeByName(ctx, projectID, r.CodeName)
		if errors.Is(err, store.ErrNotFound) {
			return store.Task{}, errorf(ErrNotFound, "Code not found: no code named %q in this project", r.CodeName)
		}
		if err != nil {
			return store.Task{}, fmt.Errorf("look up code %s: %w", r.CodeName, err)
		}
		codes[r.CodeName], code = c, c
	}
	if int64(len(r.Payload)) > s.cfg.MaxPayloadBytes {
		return store.Task{}, errorf(ErrTooLarge, "Payload is %d bytes; the limit is %d", len(r.Payload), s.cfg.MaxPayloadBytes)
	}
	prio := code.DefaultPriority
	if r.Priority != nil && *r.Priority >= 0 && *r.Priority <= 2 {
		prio = *r.Priority
	}
	timeout := s.cfg.DefaultTimeout
	if r.Timeout != nil && *r.Timeout != 0 {
		timeout = *r.Timeout
	}
	if timeout < 0 {
		return store.Task{}, errorf(ErrInvalid, "timeout must be positive (got %d)", timeout)
	}
	if s.cfg.MaxTimeout > 0 && timeout > s.cfg.MaxTimeout {
		return store.Task{}, errorf(ErrInvalid, "timeout %d s is over the limit of %d s", timeout, s.cfg.MaxTimeout)
	}
	delay := 0
	if r.Delay != nil {
		delay = *r.Delay
	}
	if delay < 0 {
		return store.Task{}, errorf(ErrInvalid, "delay must not be negative (got %d)", delay)
	}
	if s.cfg.MaxDelay > 0 && delay > s.cfg.MaxDelay {
		return store.Task{}, errorf(ErrInvalid, "delay %d s is over the limit of %d s", delay, s.cfg.MaxDelay)
	}
	r.Cluster = wire.Cluster(r.Cluster)
	if err := checkText(map[string]string{"label": r.Label, "cluster": r.Cluster}); err != nil {
		return store.Task{}, err
	}
	if len(r.Label) > 256 || len(r.Cluster) > 64 {
		return store.Task{}, errorf(ErrInvalid, "label is limited to 256 characters and cluster to 64")
	}
	return store.Task{
		ID: id.New(), ProjectID: projectID, CodeID: code.CodeID, CodeName: code.Name,
		CodeRevisionID: code.CodeRevision.ID, CodeRev: code.Rev, Status: store.StatusQueued,
		Priority: prio, Payload: r.Payload, Timeout: timeout, Delay: delay,
		Cluster: r.Cluster, Label: r.Label, CreatedAt: now, UpdatedAt: now,
		DueAt: now.Add(time.Duration(delay) * time.Second),
	}, nil
}

// GetTask returns a task of the project.
func (s *Service) GetTask(ctx context.Context, projectID, taskID string) (store.Task, error) {
	if !id.Valid(taskID) {
		return store.Task{}, errorf(ErrNotFound, "Task not found")
	}
	t, err := s.store.GetTask(ctx, projectID, taskID)
	if err != nil {
		return t, mapStoreErr(err, "Task")
	}
	one := []store.Task{t}
	s.explainWaits(ctx, one)
	return one[0], nil
}

// ListTasks lists a project's tasks, newest first.
func (s *Service) ListTasks(ctx context.Context, f store.TaskFilter) ([]store.Task, error) {
	tasks, err := s.store.ListTasks(ctx, f)
	if err != nil {
		return nil, err
	}
	s.explainWaits(ctx, tasks)
	return tasks, nil
}

// TaskLog returns a task's whole log; ErrNotFound until the task wrote one.
// It holds the log in memory: the API streams it with StreamTaskLog.
func (s *Service) TaskLog(ctx context.Context, projectID, taskID string) ([]byte, error) {
	var b []byte
	_, err := s.StreamTaskLog(ctx, projectID, taskID, 0, func(c []byte) error { b = append(b, c...); return nil })
	if err != nil {
		return nil, err
	}
	return b, nil
}

// StreamTaskLog passes a task's log to fn chunk by chunk as the store reads
// it, from the chunk after afterSeq (0: the start), and returns the seq of
// the last chunk passed, where a follower goes on from. Only a bounded part
// of the log is in memory at a time, however long it is. ErrNotFound until
// the task wrote output.
func (s *Service) StreamTaskLog(ctx context.Context, projectID, taskID string, afterSeq int64, fn func(chunk []byte) error) (int64, error) {
	if _, err := s.GetTask(ctx, projectID, taskID); err != nil {
		return afterSeq, err
	}
	last, err := s.store.ReadLog(ctx, taskID, afterSeq, fn)
	if errors.Is(err, store.ErrNotFound) {
		return afterSeq, errorf(ErrNotFound, "Log not found: the task has not written any output yet")
	}
	return last, err
}

// FollowTaskLog is one round of following a task's log: the task's state,
// then its chunks after afterSeq. ended says the task had ended before the
// chunks were read, so they complete its log. No output yet is no error.
func (s *Service) FollowTaskLog(ctx context.Context, projectID, taskID string, afterSeq int64, fn func(chunk []byte) error) (last int64, ended bool, err error) {
	t, err := s.GetTask(ctx, projectID, taskID)
	if err != nil {
		return afterSeq, false, err
	}
	last, err = s.store.ReadLog(ctx, taskID, afterSeq, fn)
	if errors.Is(err, store.ErrNotFound) {
		return afterSeq, t.Status.Terminal(), nil
	}
	return last, t.Status.Terminal(), err
}

// CancelTask cancels a queued task at once; a preparing or running one is
// flagged and its runner stops it at its next heartbeat.
func (s *Service) CancelTask(ctx context.Context, projectID, taskID string) (store.Task, error) {
	if !id.Valid(taskID) {
		return store.Task{}, errorf(ErrNotFound, "Task not found")
	}
	t, err := s.store.CancelTask(ctx, projectID, taskID, s.now())
	if errors.Is(err, store.ErrConflict) {
		cur, gerr := s.store.GetTask(ctx, projectID, taskID)
		if gerr == nil {
			return cur, errorf(ErrConflict, "Task already finished (%s); nothing to cancel", cur.Status)
		}
	}
	if err == nil {
		s.audit(ctx, projectID, "task.cancel", taskID, "code_name="+quoteDetail(t.CodeName))
	}
	return t, mapStoreErr(err, "Task")
}
