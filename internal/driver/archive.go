package driver

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// WalkArchive reads a Spec's or BakeSpec's Archive, a tar stream gzipped
// or not, and calls fn for each entry with a reader of its contents, until
// the end or fn's first error. Every driver unpacks archives through it, so
// they all accept the same streams.
func WalkArchive(r io.Reader, fn func(hdr *tar.Header, contents io.Reader) error) error {
	br := bufio.NewReader(r)
	var in io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		defer zr.Close()
		in = zr
	}
	tr := tar.NewReader(in)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if err := fn(hdr, tr); err != nil {
			return err
		}
	}
}
