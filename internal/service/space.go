package service

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/store"
)

// A full disk makes every write fail while reads still work, so a server
// on one looks alive to an orchestrator. Each backend maps its own "full"
// error to a sentinel; NoSpace recognises them all, the API answers 507,
// and Ready stays false while the data directory is short of space or
// for a while after a write found it full.

// defaultNoSpaceHold is how long a disk-full write keeps the server
// unready, so that a disk that frees a little and fills again at once does
// not flap.
const defaultNoSpaceHold = 30 * time.Second

// NoSpace reports whether err says the store, the blob store or a file
// the server wrote ran out of space.
func NoSpace(err error) bool {
	return errors.Is(err, store.ErrNoSpace) || errors.Is(err, blob.ErrNoSpace) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// NoteNoSpace records that a write found the disk full; Ready reports it
// for Config.NoSpaceHold.
func (s *Service) NoteNoSpace() {
	s.noSpaceAt.Store(s.now().UnixNano())
}

// noteIfNoSpace records err when it is a disk-full error and returns it.
func (s *Service) noteIfNoSpace(err error) error {
	if err != nil && NoSpace(err) {
		s.NoteNoSpace()
	}
	return err
}

// spaceReady is the disk part of Ready.
func (s *Service) spaceReady() error {
	if at := s.noSpaceAt.Load(); at != 0 {
		if ago := s.now().Sub(time.Unix(0, at)); ago < s.cfg.NoSpaceHold {
			return fmt.Errorf("a write found the disk full %s ago", ago.Round(time.Second))
		}
	}
	if s.cfg.DataDir == "" || s.cfg.MinFreeBytes <= 0 {
		return nil
	}
	free, err := freeBytes(s.cfg.DataDir)
	if err != nil {
		// /readyz answers anyone: the path stays out of the message
		// (statfs errors carry none).
		return fmt.Errorf("free space of the data directory: %w", err)
	}
	if free >= 0 && free < s.cfg.MinFreeBytes {
		return fmt.Errorf("the data directory has %d bytes free, under the minimum of %d", free, s.cfg.MinFreeBytes)
	}
	return nil
}
