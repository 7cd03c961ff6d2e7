// Package s3 is the blob store on an S3-compatible object store, so that
// several servers can share one set of code packages. A Put streams its
// reader in parts of bounded size (one part buffer per Put, never the whole
// package), and S3 publishes the object only when the upload completes, so
// readers never see half a package. What an interrupted upload leaves
// behind is an incomplete multipart upload: S3's temporary file, which
// RemoveTemp aborts once it is old enough.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mayfly-run/mayfly/internal/blob"
)

const (
	// DefaultPartSize bounds what one Put holds in memory: one part
	// buffer. 16 MiB parts allow objects up to 156 GiB (S3's limit is
	// 10000 parts), far beyond any code package.
	DefaultPartSize = 16 << 20
	// smallSize is read first: a package that ends within it goes up in
	// one PUT, without the three requests and the part buffer of a
	// multipart upload.
	smallSize = 1 << 20
	// abortTimeout bounds the abort of a failed upload, which runs even
	// when the Put's context has ended (that is often why it failed).
	abortTimeout = 30 * time.Second
)

// Config says where the store lives and how to reach it.
type Config struct {
	Bucket string
	// Prefix is put before every key; empty or ending in "/".
	Prefix string
	// Endpoint is the server's URL (scheme, host and port); empty means
	// AWS itself, addressed by virtual host.
	Endpoint  string
	Region    string
	AccessKey string
	SecretKey string
	// PartSize is the size of one upload part, and so the memory one Put
	// holds; 0 means DefaultPartSize.
	PartSize int64
}

// ParseURL reads a store location of the form s3://bucket/prefix, with the
// endpoint, region and credentials from the usual AWS variables, looked up
// with getenv: AWS_ENDPOINT_URL, AWS_REGION (default us-east-1),
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func ParseURL(rawURL string, getenv func(string) string) (Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Config{}, fmt.Errorf("parse S3 location %q: %w", rawURL, err)
	}
	if u.Scheme != "s3" {
		return Config{}, fmt.Errorf("S3 location %q: scheme must be s3", rawURL)
	}
	if u.Host == "" {
		return Config{}, fmt.Errorf("S3 location %q: no bucket (want s3://bucket/prefix)", rawURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("S3 location %q: only s3://bucket/prefix is understood; credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", rawURL)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := checkKey(prefix); err != nil {
			return Config{}, fmt.Errorf("S3 location %q: bad prefix: %w", rawURL, err)
		}
		prefix += "/"
	}
	cfg := Config{
		Bucket:    u.Host,
		Prefix:    prefix,
		Endpoint:  getenv("AWS_ENDPOINT_URL"),
		Region:    getenv("AWS_REGION"),
		AccessKey: getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: getenv("AWS_SECRET_ACCESS_KEY"),
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return cfg, nil
}

// Store keeps blobs as objects under one prefix of one bucket.
type Store struct {
	client   *minio.Client
	core     minio.Core
	bucket   string
	prefix   string
	partSize int64
}

// New opens the store at s3://bucket/prefix, configured from the
// environment as ParseURL describes, and checks that the bucket answers.
func New(ctx context.Context, rawURL string) (*Store, error) {
	cfg, err := ParseURL(rawURL, os.Getenv)
	if err != nil {
		return nil, err
	}
	return Open(ctx, cfg)
}

// Open connects to the store cfg describes and checks that its bucket
// exists and the credentials are accepted, so a wrong setting is reported
// at start rather than at the first upload.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	host, secure, pathStyle := "s3.amazonaws.com", true, false
	if cfg.Region != "" && cfg.Region != "us-east-1" {
		host = "s3." + cfg.Region + ".amazonaws.com"
	}
	if cfg.Endpoint != "" {
		e := cfg.Endpoint
		if !strings.Contains(e, "://") {
			e = "https://" + e
		}
		u, err := url.Parse(e)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || strings.Trim(u.Path, "/") != "" {
			return nil, fmt.Errorf("S3 endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
		}
		// Servers other than AWS rarely serve bucket names as host
		// names; the path names the bucket instead.
		host, secure, pathStyle = u.Host, u.Scheme == "https", true
	}
	lookup := minio.BucketLookupDNS
	if pathStyle {
		lookup = minio.BucketLookupPath
	}
	// Without keys the client asks the instance or environment chain
	// (IAM role, web identity) the AWS SDKs use.
	var creds *credentials.Credentials
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}, &credentials.IAM{},
		})
	}
	client, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", host, err)
	}
	partSize := cfg.PartSize
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	if partSize < 5<<20 {
		return nil, fmt.Errorf("S3 part size %d: S3 needs at least 5 MiB", partSize)
	}
	s := &Store{client: client, core: minio.Core{Client: client}, bucket: cfg.Bucket, prefix: cfg.Prefix, partSize: partSize}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("reach S3 bucket %s at %s: %w", cfg.Bucket, host, err)
	}
	if !ok {
		return nil, fmt.Errorf("S3 bucket %s at %s does not exist", cfg.Bucket, host)
	}
	return s, nil
}

// checkKey refuses what the fs store refuses, so a key that works on one
// store works on the other.
func checkKey(key string) error {
	if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, "/") || strings.ContainsRune(key, 0) {
		return fmt.Errorf("invalid blob key %q", key)
	}
	return nil
}

func (s *Store) object(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// mapErr is the one place S3's answers become the blob sentinels.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	// Unwrapped by hand: minio.ToErrorResponse sees only the outer error.
	var resp minio.ErrorResponse
	errors.As(err, &resp)
	switch {
	case resp.Code == "NoSuchKey", resp.Code == "NotFound" && resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %w", blob.ErrNotFound, err)
	// versitygw answers a full disk with InsufficientStorage (507) and a
	// used-up quota with QuotaExceeded; other servers use 507 alone.
	case resp.Code == "InsufficientStorage", resp.Code == "QuotaExceeded",
		resp.Code == "XMinioStorageFull", resp.StatusCode == http.StatusInsufficientStorage:
		return fmt.Errorf("%w: %w", blob.ErrNoSpace, err)
	}
	return err
}

func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	obj, err := s.object(key)
	if err != nil {
		return 0, err
	}
	n, err := s.put(ctx, obj, blob.ContextReader(ctx, r))
	if err != nil {
		return 0, fmt.Errorf("put blob %s: %w", key, mapErr(err))
	}
	return n, nil
}

func (s *Store) put(ctx context.Context, obj string, r io.Reader) (int64, error) {
	// A short package goes up in one PUT: S3 stores all of it or none.
	first := make([]byte, smallSize)
	n, err := io.ReadFull(r, first)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		_, err := s.core.PutObject(ctx, s.bucket, obj, bytes.NewReader(first[:n]), int64(n), "", "", minio.PutObjectOptions{})
		return int64(n), err
	case err != nil:
		return 0, err
	}
	return s.putMultipart(ctx, obj, io.MultiReader(bytes.NewReader(first), r))
}

// putMultipart streams r up in parts of s.partSize, holding one part in
// memory. On any failure it aborts the upload, so nothing of it stays
// (but for a crash, which RemoveTemp cleans up).
func (s *Store) putMultipart(ctx context.Context, obj string, r io.Reader) (size int64, err error) {
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, obj, minio.PutObjectOptions{})
	if err != nil {
		return 0, fmt.Errorf("start multipart upload: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		if aerr := s.core.AbortMultipartUpload(actx, s.bucket, obj, id); aerr != nil {
			err = fmt.Errorf("%w (and abort of upload %s failed: %v)", err, id, aerr)
		}
	}()
	buf := make([]byte, s.partSize)
	var parts []minio.CompletePart
	for num := 1; ; num++ {
		n, rerr := io.ReadFull(r, buf)
		last := errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)
		if rerr != nil && !last {
			return 0, rerr
		}
		if n > 0 || num == 1 {
			if num > 10000 {
				return 0, fmt.Errorf("blob larger than 10000 parts of %d bytes", s.partSize)
			}
			p, err := s.core.PutObjectPart(ctx, s.bucket, obj, id, num, bytes.NewReader(buf[:n]), int64(n), minio.PutObjectPartOptions{})
			if err != nil {
				return 0, fmt.Errorf("upload part %d: %w", num, err)
			}
			parts = append(parts, minio.CompletePart{PartNumber: num, ETag: p.ETag})
			size += int64(n)
		}
		if last {
			break
		}
	}
	if _, err := s.core.CompleteMultipartUpload(ctx, s.bucket, obj, id, parts, minio.PutObjectOptions{}); err != nil {
		return 0, fmt.Errorf("complete multipart upload: %w", err)
	}
	return size, nil
}

// Get streams the object; the download stays bound to ctx.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.object(key)
	if err != nil {
		return nil, err
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, obj, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", key, mapErr(err))
	}
	return rc, nil
}

// Delete removes the object. S3 deletes a missing key without complaint,
// so a look first tells the caller it held nothing.
func (s *Store) Delete(ctx context.Context, key string) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	if _, err := s.client.StatObject(ctx, s.bucket, obj, minio.StatObjectOptions{}); err != nil {
		return fmt.Errorf("delete blob %s: %w", key, mapErr(err))
	}
	if err := s.client.RemoveObject(ctx, s.bucket, obj, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete blob %s: %w", key, mapErr(err))
	}
	return nil
}

// List lists the objects under the prefix. An upload in progress or
// interrupted is not an object yet, so it never shows.
func (s *Store) List(ctx context.Context) ([]blob.Info, error) {
	ctx, cancel := context.WithCancel(ctx)
	ch := s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true})
	defer drain(cancel, ch)
	var out []blob.Info
	for o := range ch {
		if o.Err != nil {
			return nil, fmt.Errorf("list blobs in s3://%s/%s: %w", s.bucket, s.prefix, mapErr(o.Err))
		}
		key := strings.TrimPrefix(o.Key, s.prefix)
		if key == "" || strings.HasSuffix(key, "/") {
			continue // a directory marker some servers show
		}
		out = append(out, blob.Info{Key: key, ModTime: o.LastModified})
	}
	return out, nil
}

// RemoveTemp aborts the multipart uploads under the prefix that were
// started before the given time. S3 records only when an upload began, so
// a Put still sending parts is aborted once it is older than that time:
// callers pass a time far beyond the longest upload.
func (s *Store) RemoveTemp(ctx context.Context, before time.Time) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	ch := s.client.ListIncompleteUploads(ctx, s.bucket, s.prefix, true)
	defer drain(cancel, ch)
	n := 0
	for u := range ch {
		if u.Err != nil {
			return n, fmt.Errorf("list incomplete uploads in s3://%s/%s: %w", s.bucket, s.prefix, mapErr(u.Err))
		}
		if !u.Initiated.Before(before) {
			continue
		}
		// By upload id: a younger upload of the same key stays.
		err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID)
		var resp minio.ErrorResponse
		if err != nil && !(errors.As(err, &resp) && resp.Code == "NoSuchUpload") {
			return n, fmt.Errorf("abort stale upload %s of %s: %w", u.UploadID, u.Key, err)
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}

// drain stops a listing and empties its channel: the client's listing
// goroutine blocks on a send when its reader returns early.
func drain[T any](cancel context.CancelFunc, ch <-chan T) {
	cancel()
	for range ch {
	}
}

// Ping reports whether the bucket answers with these credentials.
func (s *Store) Ping(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3 bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("s3 bucket %s does not exist", s.bucket)
	}
	return nil
}
